"""The browsing state between the Qt widgets and the store: pure Python, no Qt, testable headless.

What lives here and why:

- ``LatestRequests``: every disk or model access runs in a worker; a newer request of the same kind
  cancels the older one, and a result that arrives for a superseded request is dropped. The Qt layer
  only marshals results to the GUI thread; the bookkeeping is here so it can be tested without Qt.
- ``History`` / ``Bookmarks``: back/forward navigation and bookmarked neurons.
- ``TableFilter`` / ``parse_filter`` / ``ContextSearch``: narrowing the neuron table by column
  expressions (``kurtosis > 10, density < 0.05``) and by a token or a regex over top contexts.
- ``merge_snippets`` / ``shade_rgb``: the neuron page's text, with overlapping windows shown once and
  each token shaded by its activation (red as in the paper, blue for negative values).
- ``load_page``: everything one neuron page needs, read in one go in a worker.
- ``compare_stores``: the GeLU-vs-SoLU population comparison and its verdict.

Widgets never call zarr or numba: they ask this layer, which asks ``store.reader``.
"""

from __future__ import annotations

import bisect
import itertools
import math
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from neurobrowse.formatting import human_bytes
from neurobrowse.snippet_text import SHADE_LEVELS, shade_rgb  # noqa: F401  (the page's shading, re-exported)
from neurobrowse.stats import wilson_interval
from store import columns
from store.errors import NeurobrowseError
from store.scores import model_name

# ---- requests: newest wins ------------------------------------------------------------------------


class Cancelled(Exception):
    """Raised inside a worker that notices its request was superseded; never shown to the user."""


@dataclass
class Request:
    """One unit of background work. ``cancelled`` is set when a newer request of the same kind starts."""

    kind: str  # "open", "table", "neuron", "live", "search", ...
    id: int
    payload: Any = None
    cancelled: threading.Event = field(default_factory=threading.Event)

    def check(self) -> None:
        """Call between steps of long work: stops a superseded request early."""
        if self.cancelled.is_set():
            raise Cancelled(f"{self.kind} request {self.id} superseded")


class LatestRequests:
    """Hands out requests; only the newest of each kind is current. Thread-safe."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._latest: dict[str, Request] = {}
        self._lock = threading.Lock()

    def new(self, kind: str, payload: Any = None) -> Request:
        with self._lock:
            old = self._latest.get(kind)
            if old is not None:
                old.cancelled.set()
            req = Request(kind, next(self._ids), payload)
            self._latest[kind] = req
            return req

    def is_current(self, req: Request) -> bool:
        with self._lock:
            cur = self._latest.get(req.kind)
            return cur is not None and cur.id == req.id and not req.cancelled.is_set()

    def pending(self) -> list[str]:
        """Kinds whose newest request has not finished yet (for the status bar)."""
        with self._lock:
            return sorted(k for k, r in self._latest.items() if not r.cancelled.is_set())

    def done(self, req: Request) -> None:
        """Mark a request finished; it stays current (so its result is accepted) but no longer pending."""
        with self._lock:
            if self._latest.get(req.kind) is req:
                del self._latest[req.kind]

    def cancel_all(self) -> None:
        with self._lock:
            for r in self._latest.values():
                r.cancelled.set()
            self._latest.clear()


# ---- navigation ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class NeuronRef:
    hook: str  # e.g. "blocks.0.mlp.hook_post"
    neuron: int

    @property
    def layer(self) -> int:
        return int(self.hook.split(".")[1])

    def label(self) -> str:
        return f"L{self.layer} N{self.neuron} ({self.hook.rsplit('.', 1)[-1]})"


class History:
    """Browser-style back/forward over visited neurons. Re-visiting the current neuron is not a step."""

    def __init__(self, limit: int = 500) -> None:
        self._items: list[NeuronRef] = []
        self._pos = -1
        self._limit = limit

    @property
    def current(self) -> NeuronRef | None:
        return self._items[self._pos] if self._pos >= 0 else None

    def visit(self, ref: NeuronRef) -> None:
        if self.current == ref:
            return
        del self._items[self._pos + 1 :]  # a new visit drops the forward branch
        self._items.append(ref)
        if len(self._items) > self._limit:
            del self._items[0]
        self._pos = len(self._items) - 1

    def can_back(self) -> bool:
        return self._pos > 0

    def can_forward(self) -> bool:
        return self._pos < len(self._items) - 1

    def back(self) -> NeuronRef | None:
        if not self.can_back():
            return None
        self._pos -= 1
        return self.current

    def forward(self) -> NeuronRef | None:
        if not self.can_forward():
            return None
        self._pos += 1
        return self.current


class Bookmarks:
    """Bookmarked neurons of one store (keyed by the store's run uuid by whoever persists them)."""

    def __init__(self, items: Iterable[NeuronRef] = ()) -> None:
        self._items: list[NeuronRef] = list(dict.fromkeys(items))

    def __contains__(self, ref: NeuronRef) -> bool:
        return ref in self._items

    def __iter__(self):
        return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def toggle(self, ref: NeuronRef) -> bool:
        """Add or remove; returns True when the neuron is now bookmarked."""
        if ref in self._items:
            self._items.remove(ref)
            return False
        self._items.append(ref)
        return True

    def to_list(self) -> list[list]:
        return [[r.hook, r.neuron] for r in self._items]

    @classmethod
    def from_list(cls, items: Iterable) -> "Bookmarks":
        out = []
        for it in items or ():
            try:
                out.append(NeuronRef(str(it[0]), int(it[1])))
            except (TypeError, ValueError, IndexError):
                continue  # a damaged settings entry is skipped, not fatal
        return cls(out)


def step_neuron(order: Sequence[int] | np.ndarray, current: int | None, step: int, n_neurons: int) -> int:
    """The next/previous neuron: along ``order`` (the table's visible order) when ``current`` is in it,
    else by number. Stops at the ends rather than wrapping (a researcher notices the end)."""
    order = np.asarray(order)
    if current is not None and len(order):
        hits = np.flatnonzero(order == current)
        if len(hits):
            i = int(np.clip(hits[0] + step, 0, len(order) - 1))
            return int(order[i])
        if step > 0:
            later = order[order > current]
            return int(later.min()) if len(later) else int(order.max())
        earlier = order[order < current]
        return int(earlier.max()) if len(earlier) else int(order.min())
    base = 0 if current is None else current + step
    return int(np.clip(base, 0, max(n_neurons - 1, 0)))


def step_layer(hooks: Sequence[str], current: str, step: int) -> str:
    """The same hook kind one layer up or down (hook_post stays hook_post); clamps at the ends."""
    layer, kind = int(current.split(".")[1]), current.rsplit(".", 1)[-1]
    same_kind = sorted((h for h in hooks if h.rsplit(".", 1)[-1] == kind), key=lambda h: int(h.split(".")[1]))
    if not same_kind:
        return current
    layers = [int(h.split(".")[1]) for h in same_kind]
    idx = min(range(len(layers)), key=lambda i: abs(layers[i] - layer))
    return same_kind[int(np.clip(idx + step, 0, len(same_kind) - 1))]


def paired_hook(hooks: Sequence[str], hook: str) -> str | None:
    """For SoLU-LN: hook_mid <-> hook_post of the same layer, when the store has both."""
    prefix, kind = hook.rsplit(".", 1)
    other = {"hook_mid": "hook_post", "hook_post": "hook_mid"}.get(kind)
    cand = f"{prefix}.{other}" if other else None
    return cand if cand in hooks else None


# ---- the neuron table: filters and search ------------------------------------------------------------

# The neuron table's columns, in order: (key, header, format spec): the registry's table columns, with the
# label column (from the label database) right after the top token, so it stays in view at the default width.
TABLE_COLUMNS: list[tuple[str, str, str]] = [(c.name, c.header, c.fmt) for c in columns.COLUMNS if c.in_table]
TABLE_COLUMNS.insert([k for k, _, _ in TABLE_COLUMNS].index("top_token") + 1, ("label", "Label", ""))
NUMERIC_COLUMNS = columns.NUMERIC
TEXT_COLUMNS = (*columns.TEXT, "label")


class FilterError(NeurobrowseError):
    """A filter expression that cannot be parsed; the message says which part and the accepted form."""


@dataclass(frozen=True)
class Clause:
    column: str
    op: str  # one of < <= > >= == != ~ (substring / regex for text columns)
    value: float | str


_CLAUSE = re.compile(r"^\s*([A-Za-z_]+)\s*(<=|>=|==|!=|<|>|=|~)\s*(.+?)\s*$")


def parse_filter(expr: str) -> list[Clause]:
    """``"kurtosis > 10, density < 0.05 and label ~ quote"`` -> clauses (all must hold).

    Numeric columns take < <= > >= = !=; text columns (top_token, label) take ``~`` (regex, case
    insensitive) or ``=`` (exact)."""
    clauses: list[Clause] = []
    for part in re.split(r",|\band\b|&&", expr or ""):
        if not part.strip():
            continue
        m = _CLAUSE.match(part)
        if not m:
            raise FilterError(f"cannot read filter {part.strip()!r}; write e.g. 'kurtosis > 10, density < 0.05, label ~ quote'")
        col, op, raw = m.group(1).lower(), m.group(2), m.group(3).strip().strip("'\"")
        col = columns.ALIASES.get(col, col)
        op = "==" if op == "=" else op
        if col in NUMERIC_COLUMNS:
            if op == "~":
                raise FilterError(f"'~' works on text columns ({', '.join(TEXT_COLUMNS)}), not on {col!r}")
            try:
                value: float | str = float(raw)
            except ValueError:
                raise FilterError(f"{col} {op} {raw!r}: {raw!r} is not a number") from None
        elif col in TEXT_COLUMNS:
            if op not in ("~", "==", "!="):
                raise FilterError(f"text column {col!r} takes '~' (regex), '=' or '!=', not {op!r}")
            if op == "~":
                try:
                    re.compile(raw)
                except re.error as e:
                    raise FilterError(f"bad regex {raw!r} in filter: {e}") from None
            value = raw
        else:
            known = ", ".join(NUMERIC_COLUMNS + TEXT_COLUMNS)
            raise FilterError(f"unknown column {col!r} in filter; columns: {known}")
        clauses.append(Clause(col, op, value))
    return clauses


_NUM_OPS: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    "<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal,
    "==": np.equal, "!=": np.not_equal,
}


def apply_filter(table: dict[str, np.ndarray], clauses: Sequence[Clause]) -> np.ndarray:
    """Boolean mask [neuron] of rows where every clause holds (NaN fails numeric clauses)."""
    n = len(table["neuron"])
    mask = np.ones(n, dtype=bool)
    for c in clauses:
        col = table.get(c.column)
        if col is None:
            col = np.array([""] * n, dtype=object) if c.column in TEXT_COLUMNS else np.full(n, np.nan)
        if c.column in NUMERIC_COLUMNS:
            with np.errstate(invalid="ignore"):
                mask &= _NUM_OPS[c.op](np.asarray(col, dtype=np.float64), float(c.value))
        else:
            strs = [str(x) if x is not None else "" for x in col]
            if c.op == "~":
                rx = re.compile(str(c.value), re.IGNORECASE)
                hit = np.fromiter((bool(rx.search(s)) for s in strs), bool, n)
            else:
                hit = np.fromiter((s == c.value for s in strs), bool, n)
            mask &= hit if c.op != "!=" else ~hit
    return mask


class ContextSearch:
    """Search a hook's top-activating contexts: which neurons fire on a token or on text matching a regex.

    ``mode="token"``: the pattern is matched (case-insensitively, as a regex, against the whole token
    text with surrounding spaces stripped) against the vocabulary, then neurons whose top contexts
    hold one of those tokens *at a firing position* are kept. ``mode="regex"``: the regex is run over
    each neuron's top-context text (windows joined by newlines). Built once per hook in a worker.
    """

    def __init__(self, context_tokens: np.ndarray, centers: int, vocab: Sequence[str]) -> None:
        self.context_tokens = np.asarray(context_tokens)  # [neuron, k, window] int32, -1 = padding
        self.center = centers  # index of the firing token in each window
        self.vocab = np.asarray(list(vocab) + [""], dtype=object)  # id -1 maps to the last entry: ""
        self._texts: list[str] | None = None

    @classmethod
    def from_store(cls, store, hook: str, req: Request | None = None) -> "ContextSearch":
        from store.snippets import context_slots

        toks = np.asarray(store.index_array(hook, "top_context_tokens")[...])
        pos = np.asarray(store.index_array(hook, "top_positions")[...])
        if req:
            req.check()
        before, _after = store.index_window(hook)
        # only the text the model saw with each firing (windows also hold greyed text outside its context)
        toks = np.where(context_slots(pos, before, toks.shape[-1], store.context_len), toks, -1)
        vocab = store.token_strings(list(range(int(store.model_config["d_vocab"]))))
        return cls(toks, before, vocab)

    def texts(self) -> list[str]:
        if self._texts is None:
            strs = self.vocab[self.context_tokens]  # [neuron, k, window] of str
            self._texts = ["\n".join("".join(w) for w in neuron) for neuron in strs]
        return self._texts

    def search(self, pattern: str, mode: str = "token") -> np.ndarray:
        """Boolean mask [neuron]. Raises FilterError on a bad regex."""
        if not pattern:
            return np.ones(self.context_tokens.shape[0], dtype=bool)
        rx = _search_regex(pattern, mode)
        if mode == "regex":
            return np.fromiter((bool(rx.search(t)) for t in self.texts()), bool, self.context_tokens.shape[0])
        ids = [i for i, s in enumerate(self.vocab[:-1]) if rx.match(s)]
        if not ids:
            return np.zeros(self.context_tokens.shape[0], dtype=bool)
        firing = self.context_tokens[:, :, self.center]  # [neuron, k]
        return np.isin(firing, ids).any(axis=1)


def _search_regex(pattern: str, mode: str) -> re.Pattern:
    """token mode: the whole token text (spaces around it stripped); regex mode: anywhere in the text."""
    try:
        return re.compile(pattern if mode == "regex" else rf"^\s*(?:{pattern})\s*$", re.IGNORECASE)
    except re.error as e:
        raise FilterError(f"bad search regex {pattern!r}: {e}") from None


def search_marker(pattern: str, mode: str = "token") -> Callable[[Sequence[str]], set[int]] | None:
    """Which tokens of a snippet a context search matches, to mark them on the page: in token mode the
    tokens ``ContextSearch`` matches, in regex mode every token a match in the snippet's text overlaps.
    None without a (valid) pattern."""
    if not pattern:
        return None
    try:
        rx = _search_regex(pattern, mode)
    except FilterError:
        return None
    if mode != "regex":
        return lambda tokens: {i for i, t in enumerate(tokens) if rx.match(t)}

    def overlapping(tokens: Sequence[str]) -> set[int]:
        ends = list(itertools.accumulate(len(t) for t in tokens))
        out: set[int] = set()
        for m in rx.finditer("".join(tokens)):
            if m.end() > m.start():
                first = bisect.bisect_right(ends, m.start())
                last = bisect.bisect_left(ends, m.end())
                out.update(range(first, min(last, len(tokens) - 1) + 1))
        return out

    return overlapping


@dataclass
class TableFilter:
    expression: str = ""  # column clauses, see parse_filter
    search: str = ""  # token or regex over top contexts
    search_mode: str = "token"  # "token" | "regex"
    bookmarked_only: bool = False


# ---- the neuron page ------------------------------------------------------------------------------


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
    more: int = 0  # further firings in this context that are not shown (store.snippets.one_per_context)

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

    Each snippet (store.snippets.Snippet) covers global positions ``position - center + i``; its
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
            lo, [entries[p][0] if p in entries else -1 for p in poss], [entries[p][1] if p in entries else "" for p in poss],
            np.array([entries[p][2] if p in entries else 0.0 for p in poss], dtype=np.float32),
            [p - lo for p in fire], max(vals) if descending else min(vals), len(g),
            np.array([entries[p][3] if p in entries else True for p in poss], dtype=bool), sum(m.more for m in g)))
    out.sort(key=lambda m: m.value, reverse=descending)
    return out


@dataclass
class NeuronPage:
    """What one neuron page shows, read in one worker call."""

    ref: NeuronRef
    view: Any  # store.reader.NeuronView
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
    page = NeuronPage(ref, view, top, bottom, samples, scale, bottom_scale=(shading_scale(view.bottom, scale)[0], scale),
                      sample_scales={name: shading_scale(snips, scale) for name, snips in view.samples.items()},
                      bin_ranges=bin_ranges(view))
    if paired is not None:
        page.paired = paired
        page.paired_top = merge_snippets(paired.top, descending=True)
        page.paired_scale = _scale(paired)
    return page


def load_page(store, ref: NeuronRef, req: Request | None = None) -> NeuronPage:
    """Read one neuron (and, for SoLU-LN, the same neuron on the other side of the LayerNorm)."""
    n = int(store.d_mlp)
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


# ---- store-level summaries ----------------------------------------------------------------------------


def store_title(store) -> str:
    act = store.model_config.get("act_fn", "?")
    return f"{Path(store.path).name} · {act} · {store.n_tokens:,} tokens"


def store_status(store, size_bytes: int | None = None, indexed: Iterable[str] | None = None) -> str:
    """One line for the status bar: size, completeness, which hooks are indexed (``indexed``: as already
    read, so the GUI thread does not read the index state from disk)."""
    indexed = [h for h in store.hooks if store.is_indexed(h)] if indexed is None else list(indexed)
    parts = [store_title(store)]
    if size_bytes is not None:
        parts.append(human_bytes(size_bytes))
    parts.append("complete" if store.complete else "INCOMPLETE recording")
    parts.append(f"{len(indexed)}/{len(store.hooks)} hooks indexed")
    return " · ".join(parts)


def store_problems(store) -> list[str]:
    """Problems worth a dialog on open, each saying how to fix it."""
    out = []
    if not store.complete:
        resume = getattr(store, "resume_command", None)
        how = f"`{resume()}`" if callable(resume) else "`neurobrowse record` again with the same arguments"
        out.append(f"The recording in {store.path} is incomplete (it was interrupted). "
                   f"Run {how} to resume it, then `neurobrowse index {store.path}`. Until then only what is "
                   "already indexed can be browsed.")
    missing = [h for h in store.hooks if not store.is_indexed(h)]
    if missing and store.complete:
        out.append(f"{', '.join(missing)} not indexed yet: run `neurobrowse index {store.path}`.")
    return out


# ---- comparing two models ----------------------------------------------------------------------------


@dataclass
class ShareResult:
    name: str  # score name
    threshold: float
    k: int
    n: int

    @property
    def share(self) -> float:
        return self.k / self.n if self.n else float("nan")

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.k, self.n)


def pass_shares(table: dict[str, np.ndarray], thresholds: dict[str, float] | None = None) -> list[ShareResult]:
    """Per score, how many neurons of ``table`` pass it (score >= threshold; NaN scores not counted).
    Thresholds default to the registry's (``store.columns``)."""
    thresholds = thresholds or columns.THRESHOLDS
    out = []
    for name, th in thresholds.items():
        col = np.asarray(table.get(name, np.array([])), dtype=np.float64)
        ok = np.isfinite(col)
        out.append(ShareResult(name, th, int((col[ok] >= th).sum()), int(ok.sum())))
    return out


@dataclass
class Comparison:
    labels: tuple[str, str]  # e.g. ("gelu", "solu_ln")
    tables: tuple[dict, dict]  # neuron tables concatenated over the compared hooks
    shares: tuple[list[ShareResult], list[ShareResult]]
    verdict: str  # the headline (neurobrowse.verdict)
    evidence: object = None  # neurobrowse.verdict.Verdict: headline, evidence lines, help


def comparison_verdict(labels: tuple[str, str], shares: tuple[list[ShareResult], list[ShareResult]]) -> str:
    """A plain sentence: does the paper's result (SoLU-LN more interpretable than GeLU) hold here?

    'Holds' needs the SoLU side's share to be higher with non-overlapping 95% intervals on a score;
    higher but overlapping is 'points the same way but is not significant'; otherwise it does not hold.
    """
    try:
        solu = labels.index(next(l for l in labels if "solu" in l.lower()))
    except StopIteration:
        return (f"Neither store is a SoLU model ({labels[0]} vs {labels[1]}), so the paper's "
                "GeLU-vs-SoLU result is not tested here.")
    gelu = 1 - solu
    clear, weak, against = [], [], []
    for a, b in zip(shares[solu], shares[gelu]):
        lo_s, _ = a.interval
        _, hi_g = b.interval
        desc = f"{a.name} {a.share:.0%} vs {b.share:.0%}"
        if a.share > b.share and lo_s > hi_g:
            clear.append(desc)
        elif a.share > b.share:
            weak.append(desc)
        else:
            against.append(desc)
    s, g = labels[solu], labels[gelu]
    if clear and not against:
        return (f"The paper's result holds on these models: more {s} neurons pass the automated "
                f"interpretability scores than {g} neurons ({'; '.join(clear + weak)}), with 95% intervals apart.")
    if (clear or weak) and not against:
        return (f"The paper's result points the same way here but is not significant: {s} passes more often than {g} "
                f"({'; '.join(weak + clear)}) but the 95% intervals overlap. Record more tokens or a bigger model to tell.")
    if (clear or weak) and against:
        return (f"Mixed: {s} does better than {g} on {'; '.join(clear + weak)} but not on {'; '.join(against)}. "
                f"The paper's result does not clearly hold on these models.")
    return (f"The paper's result does NOT hold on these models: {s} neurons pass the automated scores no more "
            f"often than {g} neurons ({'; '.join(against)}). Small or briefly trained models may not show it.")


def _concat_tables(tables: list[dict]) -> dict:
    keys = set.intersection(*(set(t) for t in tables)) if tables else set()
    return {k: np.concatenate([np.asarray(t[k]) for t in tables]) for k in keys}


def compare_stores(store_a, store_b, hook_kind: str = "hook_post", req: Request | None = None) -> Comparison:
    """Population comparison over every indexed ``hook_kind`` hook of each store (a Store or a path)."""
    from store.reader import as_store

    stores = (as_store(store_a), as_store(store_b))
    tables = []
    for st in stores:
        hooks = [h for h in st.hooks if h.endswith(hook_kind) and st.is_indexed(h)]
        if not hooks:
            raise NeurobrowseError(f"{st.path} has no indexed {hook_kind} hook; run `neurobrowse index {st.path}`")
        per = []
        for h in hooks:
            if req:
                req.check()
            t = dict(st.neuron_table(h))
            t["hook"] = np.array([h] * len(t["neuron"]), dtype=object)  # which layer a row is from
            per.append(t)
        tables.append(_concat_tables(per))
    labels = (model_name(stores[0]), model_name(stores[1]))
    if labels[0] == labels[1]:
        labels = (f"{labels[0]} (A)", f"{labels[1]} (B)")
    shares = (pass_shares(tables[0]), pass_shares(tables[1]))
    ev = evidence_verdict(stores[0], stores[1], labels, tables)
    return Comparison(labels, (tables[0], tables[1]), shares, ev.headline if ev else comparison_verdict(labels, shares),
                      ev)


def evidence_verdict(store_a, store_b, labels, tables, thresholds: dict[str, float] | None = None):
    """neurobrowse.verdict.Verdict for two stores (None when neither is a SoLU model): a reported blinded
    study of these two stores leads, the automated scores (store.columns) are proxies."""
    from neurobrowse import verdict
    from neurobrowse.study import reported_study

    thresholds = thresholds or columns.THRESHOLDS
    solu = next((i for i, lab in enumerate(labels) if "solu" in lab.lower()), None)
    if solu is None:
        return None
    order = (solu, 1 - solu)
    names = tuple(_display(labels[i]) for i in order)
    ev = [verdict.score_evidence(name, columns.BY_NAME[name].title if name in columns.BY_NAME else name, th,
                                 tables[order[0]].get(name, []), tables[order[1]].get(name, []))
          for name, th in thresholds.items()
          if np.isfinite(np.asarray(tables[0].get(name, []), np.float64)).any()]
    stores = (store_a, store_b)
    study = reported_study(stores[order[0]].run_uuid, stores[order[1]].run_uuid)
    return verdict.decide(names, ev, study)


def _display(label: str) -> str:
    from neurobrowse.study import display_name

    return display_name(label.split(" (")[0])
