"""A neuron page: its snippets merged (overlapping windows shown once), the shading scale, the bins,
and ``load_page`` (everything one page needs, read in one go in a worker) with its cache.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Sequence
import numpy as np
from store.errors import NeurobrowseError
from neurobrowse.browsing.cancellation import Request
from neurobrowse.browsing.navigation import NeuronRef, paired_hook


@dataclass
class MergedSnippet:
    """Overlapping windows of one neuron merged into one span of the token stream."""

    start: int  # global position of the first token
    token_ids: list[int]
    tokens: list[str]
    acts: np.ndarray  # float32 [len]: this neuron's activation at each token
    firing: list[int]  # indices (into tokens) of the top-k / sample firings inside this span
    value: float  # the strongest firing value in the span (signed as stored)
    n_merged: int  # how many stored snippets went into it
    greyed: np.ndarray | None = None  # bool [len]: tokens outside the context the model saw (no activation)
    more: int = 0  # further firings in this context that are not shown (store.measures.snippets.one_per_context)

    def __post_init__(self) -> None:
        if self.greyed is None:
            self.greyed = np.zeros(len(self.tokens), bool)

    @property
    def positions(self) -> range:
        return range(self.start, self.start + len(self.tokens))


def merged_from(s: Any) -> MergedSnippet:
    """One store Snippet as a MergedSnippet (greyed outside its context)."""
    n = len(s.tokens)
    greyed = np.ones(n, bool)
    greyed[s.ctx_lo:s.ctx_hi] = False
    return MergedSnippet(int(s.position) - int(s.center), [int(i) for i in s.token_ids], list(s.tokens),
                         np.asarray(s.acts, np.float32), [int(s.center)], float(s.value), 1, greyed,
                         int(getattr(s, "more", 0)))


def merge_snippets(snippets: Sequence[Any], descending: bool = True) -> list[MergedSnippet]:
    """Merge snippets whose in-context windows overlap in the token stream, so no text is shown twice.

    Each snippet (store.measures.snippets.Snippet) covers global positions ``position - center + i``; its
    tokens ``ctx_lo:ctx_hi`` are those the model saw with the firing, the rest is greyed context.
    Windows of one context agree on tokens and activations, so overlapping ones are merged; windows of
    different contexts are never merged (their activations come from different forward passes). The
    result is ordered by the strongest firing in each span (descending for top-k, ascending for bottom-k).
    """
    items = []
    for s in snippets:
        if not len(s.tokens):
            continue
        m = merged_from(s)
        c_lo, c_hi = m.start + s.ctx_lo, m.start + s.ctx_hi - 1
        items.append((c_lo, c_hi, m))
    items.sort(key=lambda t: t[0])
    groups: list[list[MergedSnippet]] = []
    cur_hi = None
    for lo, hi, m in items:
        if groups and cur_hi is not None and lo <= cur_hi:
            groups[-1].append(m)
            cur_hi = max(cur_hi, hi)
        else:
            groups.append([m])
            cur_hi = hi
    out = []
    for g in groups:
        if len(g) == 1:
            out.append(g[0])
            continue
        entries: dict[int, tuple[int, str, float, bool]] = {}
        for m in g:
            for i, p in enumerate(m.positions):
                if p not in entries or (entries[p][3] and not m.greyed[i]):
                    entries[p] = (m.token_ids[i], m.tokens[i], float(m.acts[i]), bool(m.greyed[i]))
        lo, hi = min(entries), max(entries)
        poss = range(lo, hi + 1)
        fire = sorted({m.start + f for m in g for f in m.firing})
        vals = [m.value for m in g]
        out.append(MergedSnippet(
            lo, [entries[p][0] if p in entries else -1 for p in poss],
            [entries[p][1] if p in entries else "" for p in poss],
            np.array([entries[p][2] if p in entries else 0.0 for p in poss], dtype=np.float32),
            [p - lo for p in fire], max(vals) if descending else min(vals), len(g),
            np.array([entries[p][3] if p in entries else True for p in poss], dtype=bool), sum(m.more for m in g)))
    out.sort(key=lambda m: m.value, reverse=descending)
    return out


@dataclass
class NeuronPage:
    """What one neuron page shows, read in one worker call."""

    ref: NeuronRef
    view: Any  # store.format.neuron_page.NeuronView
    top: list[MergedSnippet]
    bottom: list[MergedSnippet]
    samples: dict[str, list[MergedSnippet]]
    scale: float  # max |activation| among the top snippets: the top tab's shading scale
    paired: Any | None = None  # NeuronView of the other LN hook (SoLU-LN only)
    paired_top: list[MergedSnippet] = field(default_factory=list)
    paired_scale: float = 0.0
    bottom_scale: tuple[float, float] = (0.0, 0.0)  # the bottom tab's own (negative, positive) shading scales
    sample_scales: dict[str, tuple[float, float]] = field(default_factory=dict)  # each quantile bin's own
    bin_ranges: dict[str, tuple[float, float]] = field(default_factory=dict)  # activation range of each bin


def _scale(view) -> float:
    vals = [abs(float(s.value)) for s in list(view.top) + list(view.bottom)]
    vals += [float(np.max(np.abs(s.acts))) for s in view.top if len(s.acts)]
    stat = view.stats.get("max_act") if isinstance(view.stats, dict) else None
    if stat is not None and math.isfinite(float(stat)):
        vals.append(abs(float(stat)))
    return max(vals) if vals else 1.0


def shading_scale(snippets: Sequence[Any], fallback: float = 1.0) -> tuple[float, float]:
    """A list's own shading scales (negative, positive): the largest |value| of its firings of each sign,
    so a bottom-k list or a low quantile bin uses the full colour range (tokens beyond it shade fully);
    ``fallback`` where the list has no firing of that sign."""
    vals = [float(s.value) for s in snippets if math.isfinite(float(s.value))]
    neg = max((-v for v in vals if v < 0), default=0.0)
    pos = max((v for v in vals if v > 0), default=0.0)
    return (neg if neg > 0 else fallback, pos if pos > 0 else fallback)


def bin_ranges(view) -> dict[str, tuple[float, float]]:
    """The activation range of each quantile bin of store.schema.SAMPLE_BINS ("0.999-1" -> (q0.999, max)),
    read off the neuron's quantile edges and its min / max; "random" spans min .. max."""
    st = view.stats
    q = {float(k): float(v) for k, v in (st.get("quantiles") or {}).items()}
    lo_all, hi_all = float(st.get("min_act", float("nan"))), float(st.get("max_act", float("nan")))
    out = {}
    for name in view.samples:
        if name == "random":
            out[name] = (lo_all, hi_all)
            continue
        a, b = (float(x) for x in name.split("-"))
        out[name] = (q.get(a, lo_all) if a > 0 else lo_all, q.get(b, hi_all) if b < 1 else hi_all)
    return out


def build_page(ref: NeuronRef, view, paired=None) -> NeuronPage:
    """Turn reader views into display-ready merged snippets (pure; no I/O)."""
    top = merge_snippets(view.top, descending=True)
    bottom = merge_snippets(view.bottom, descending=False)
    samples = {name: merge_snippets(snips, descending=True) for name, snips in view.samples.items()}
    scale = _scale(view)
    page = NeuronPage(ref, view, top, bottom, samples, scale,
                      bottom_scale=(shading_scale(view.bottom, scale)[0], scale),
                      sample_scales={name: shading_scale(snips, scale) for name, snips in view.samples.items()},
                      bin_ranges=bin_ranges(view))
    if paired is not None:
        page.paired = paired
        page.paired_top = merge_snippets(paired.top, descending=True)
        page.paired_scale = _scale(paired)
    return page


def load_page(store, ref: NeuronRef, req: Request | None = None) -> NeuronPage:
    """Read one neuron (and, for SoLU-LN, the same neuron on the other side of the LayerNorm)."""
    n = int(store.n_units(ref.hook)) if hasattr(store, "n_units") else int(store.d_mlp)
    if not 0 <= ref.neuron < n:
        raise NeurobrowseError(f"neuron {ref.neuron} does not exist in {ref.hook}: this layer has neurons 0-{n - 1}")
    if not store.is_indexed(ref.hook):
        raise NeurobrowseError(
            f"{ref.hook} in {store.path} is not indexed yet; run `neurobrowse index {store.path}` and reopen")
    view = store.neuron(ref.hook, ref.neuron)
    if req:
        req.check()
    other = paired_hook(store.hooks, ref.hook)
    paired = store.neuron(other, ref.neuron) if other and store.is_indexed(other) else None
    return build_page(ref, view, paired)


def load_passage(store, ref: NeuronRef, position: int) -> MergedSnippet:
    """A firing's whole recorded context with its document around it (greyed), as the page shows it."""
    return merged_from(store.passage(ref.hook, ref.neuron, int(position)))


class PageCache:
    """A small LRU of built pages so going back and forth between neurons costs nothing."""

    def __init__(self, size: int = 64) -> None:
        self._d: OrderedDict[tuple, NeuronPage] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get(self, key: tuple) -> NeuronPage | None:
        with self._lock:
            page = self._d.get(key)
            if page is not None:
                self._d.move_to_end(key)
            return page

    def put(self, key: tuple, page: NeuronPage) -> None:
        with self._lock:
            self._d[key] = page
            self._d.move_to_end(key)
            while len(self._d) > self._size:
                self._d.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._d.clear()
