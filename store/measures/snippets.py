"""Which firings a neuron's snippets show, and how a stored window becomes a snippet.

The one place that decides it, for the app, ``neurobrowse show``, the study and ``export``:

* **Distinct passages.** By default a neuron shows at most one firing per recorded context (as
  Neuroscope keeps one per document): its best one, with ``more`` = how many other tokens of that
  context fire at least half as strongly. An index written with distinct lists (``distinct_top_*``,
  kept by the indexer's kernel beside the raw top-k) already holds one entry per context and the
  count; an older index gets the same rule applied to its raw top-k (``one_per_context``).
* **Windows.** Each entry's window spans ``before`` tokens before the firing token and ``after``
  after it (the sizes the index was written with, ``index_window``). Tokens outside the context the
  model saw are stored too (activation 0) and marked by ``Snippet.ctx_lo`` / ``ctx_hi``, so views can
  grey them; window slots past the ends of the store (or, in an older index, outside the context)
  hold token -1 and are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LEGACY_WINDOW = (24, 8)  # the window of indexes written before the size was stored in their attributes
MORE_SHARE = 0.5  # a further firing in a context: a token at least this share of the context's best value


@dataclass
class Snippet:
    """A window of tokens around one firing of a neuron."""

    position: int  # global token index of the firing
    value: float  # the activation there
    token_ids: np.ndarray  # [window] int32, padding removed
    tokens: list[str]  # readable pieces, same length
    acts: np.ndarray  # [window] float32: this neuron's activation at each window token (0 outside the context)
    center: int  # index of the firing token in the window
    ctx_lo: int = 0  # tokens[ctx_lo:ctx_hi] are the ones the model saw in the firing's context
    ctx_hi: int = -1  # -1: to the end
    more: int = 0  # further firings in the same context (>= MORE_SHARE of this one's value)

    def __post_init__(self) -> None:
        if self.ctx_hi < 0:
            self.ctx_hi = len(self.tokens)

    @property
    def start(self) -> int:
        """Global position of tokens[0]."""
        return self.position - self.center

    def crop(self, before: int | None = None, after: int | None = None) -> tuple[int, int]:
        """(lo, hi): the tokens[lo:hi] a reader is shown: those the model saw with the firing (its
        context), at most ``before`` tokens before the firing token and ``after`` after it (None: all).
        The one crop of the page text, `show`, exports and the study."""
        lo, hi = self.ctx_lo, self.ctx_hi
        if before is not None:
            lo = max(lo, self.center - before)
        if after is not None:
            hi = min(hi, self.center + after + 1)
        return lo, hi


def index_window(index_attrs: dict) -> tuple[int, int]:
    """(before, after) of an index's windows, from its attributes (older indexes: LEGACY_WINDOW)."""
    b, a = index_attrs.get("context_before"), index_attrs.get("context_after")
    if b is None or a is None:
        return LEGACY_WINDOW
    return int(b), int(a)


def window_positions(positions: np.ndarray, before: int, after: int, n_tokens: int) -> tuple[np.ndarray, np.ndarray]:
    """(int64 [..., W] global position of each window slot around ``positions``, bool [..., W] whether
    it holds a token: the position is not empty (-1) and the slot lies inside the store's 0..n_tokens)."""
    pos = np.asarray(positions, dtype=np.int64)
    q = pos[..., None] + np.arange(-before, after + 1)  # [..., W]
    return q, (pos[..., None] >= 0) & (q >= 0) & (q < n_tokens)


def shared_slots(positions: np.ndarray, raw_positions: np.ndarray) -> np.ndarray:
    """int64 [..., m] for each entry of ``positions`` [..., m] the slot of the raw list ``raw_positions``
    [..., k] holding the same (non-empty) position, -1 where none does (schema.INDEX_SHARED_WINDOWS)."""
    d = np.asarray(positions, dtype=np.int64)
    r = np.asarray(raw_positions, dtype=np.int64)
    same = (d[..., :, None] == r[..., None, :]) & (d[..., :, None] >= 0)  # [..., m, k]
    return np.where(same.any(-1), same.argmax(-1), -1)


def fill_shared_windows(acts: np.ndarray, positions: np.ndarray, raw_positions: np.ndarray,
                        raw_acts: np.ndarray) -> np.ndarray:
    """The windows ``acts`` [..., m, W] of a distinct list stored with shared windows, completed: each
    entry whose position is also in the raw list takes that entry's window from ``raw_acts`` [..., k, W]."""
    slot = shared_slots(positions, raw_positions)
    got = np.take_along_axis(np.asarray(raw_acts), np.maximum(slot, 0)[..., None], -2)
    return np.where((slot >= 0)[..., None], got, acts)


def context_slots(positions: np.ndarray, before: int, width: int, context_len: int) -> np.ndarray:
    """bool [..., width]: which window slots around ``positions`` lie in the firing's own context."""
    pos = np.asarray(positions, dtype=np.int64)
    q = pos[..., None] - before + np.arange(width)  # [..., W] global position of each slot
    ctx = np.where(pos >= 0, pos // context_len, -1)[..., None]
    return (pos[..., None] >= 0) & (q >= 0) & (q // context_len == ctx)


def one_per_context(positions: np.ndarray, values: np.ndarray, context_len: int) -> tuple[np.ndarray, np.ndarray]:
    """For a best-first list of firings (positions [m], -1 = empty; values [m]): the indices of the
    first firing of each context, best first, and for each the number of further firings of the
    list in that context with at least MORE_SHARE of its value (same sign)."""
    pos = np.asarray(positions, dtype=np.int64)
    vals = np.asarray(values, dtype=np.float64)
    keep, more, seen = [], [], {}
    for j in np.flatnonzero(pos >= 0):
        c = int(pos[j]) // context_len
        if c in seen:
            i = seen[c]
            best = vals[keep[i]]
            if np.isfinite(best) and best != 0 and vals[j] / best >= MORE_SHARE:
                more[i] += 1
            continue
        seen[c] = len(keep)
        keep.append(int(j))
        more.append(0)
    return np.asarray(keep, dtype=np.int64), np.asarray(more, dtype=np.int64)


def build_snippets(positions, values, ctx_tokens, ctx_acts, strings, *, before: int, context_len: int,
                   more=None, distinct: bool = True) -> list[Snippet]:
    """Snippets of one neuron's list (best first). positions / values [m]; ctx_tokens / ctx_acts /
    strings [m, W] (strings: readable pieces). ``more`` [m]: further firings per entry when the list
    is already one per context (the indexer's distinct lists); else, with ``distinct``, the list is
    cut to one entry per context here (``one_per_context``). Empty entries (position -1) are skipped."""
    positions = np.asarray(positions)
    if more is not None:
        idx = np.flatnonzero(positions >= 0)
        counts = np.asarray(more, dtype=np.int64)[idx]
    elif distinct:
        idx, counts = one_per_context(positions, values, context_len)
    else:
        idx = np.flatnonzero(positions >= 0)
        counts = np.zeros(len(idx), np.int64)
    if not len(idx):
        return []
    W = ctx_tokens.shape[-1]
    inside = context_slots(positions[idx], before, W, context_len)  # [m', W]
    valid = ctx_tokens[idx] >= 0  # [m', W]
    out = []
    for row, (j, n_more) in enumerate(zip(idx.tolist(), counts.tolist())):
        keep = valid[row]
        kept_in = np.flatnonzero(inside[row][keep])  # in-context slots, as indices among the kept ones
        ctx_lo, ctx_hi = (int(kept_in[0]), int(kept_in[-1]) + 1) if len(kept_in) else (0, 0)
        out.append(Snippet(position=int(positions[j]), value=float(values[j]),
                           token_ids=ctx_tokens[j][keep].astype(np.int32), tokens=list(strings[j][keep]),
                           acts=np.where(inside[row], ctx_acts[j], 0)[keep].astype(np.float32),
                           center=before - int((~keep[:before]).sum()),
                           ctx_lo=ctx_lo, ctx_hi=ctx_hi, more=int(n_more)))
    return out


def distinct_names(kind: str) -> dict[str, str]:
    """Index array names of a neuron's ``kind`` ("top" / "bottom") list: raw and distinct."""
    return {"positions": f"{kind}_positions", "values": f"{kind}_values", "tokens": f"{kind}_context_tokens",
            "acts": f"{kind}_context_acts", "d_positions": f"distinct_{kind}_positions",
            "d_values": f"distinct_{kind}_values", "d_tokens": f"distinct_{kind}_context_tokens",
            "d_acts": f"distinct_{kind}_context_acts", "d_more": f"distinct_{kind}_more"}


def has_distinct(index_attrs: dict) -> bool:
    """Whether an index holds the kernel's one-per-context lists."""
    return bool(index_attrs.get("distinct_lists"))


__all__ = ["Snippet", "index_window", "context_slots", "one_per_context", "build_snippets", "distinct_names",
           "has_distinct", "LEGACY_WINDOW", "MORE_SHARE"]
