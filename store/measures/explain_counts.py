"""How often a rule matches (store.measures.explain's precision): exactly over the whole token stream
(``StreamCounts``, once per store), and over the positions of a block's top and sample windows
(``window_occurrences``, a Numba pass).
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from store import schema
from store.measures.explain_families import (
    BEFORE_SPAN, C_INSIDE_WORD, F_BEFORE, F_CLASS, F_FOLD, F_LINE, F_NEXT, F_PAIR, F_PREV, F_PREVCLASS, F_TOKEN,
    FEAT_BITS, VALUE_BITS, Vocab,
)

OCC_BEFORE, OCC_AFTER = 24, 8  # the snippet span searched for the rule's other occurrences


# ---- exact rule counts over the token stream -----------------------------------------------------------
@dataclass
class StreamCounts:
    """How often each rule matches in the whole recording (exact), for the precision denominators."""

    n: int
    by_family: dict  # family -> int64 [values] counts (families with small value ranges)
    pair_keys: np.ndarray  # int64 sorted prev * V + tok
    pair_counts: np.ndarray  # int64

    @classmethod
    def build(cls, tokens: np.ndarray, context_len: int, voc: Vocab) -> "StreamCounts":
        V = voc.size
        tok = np.asarray(tokens, np.int64)
        n = tok.size
        pos = np.arange(n, dtype=np.int64)
        first = pos % context_len == 0
        prev = np.where(first, -1, np.roll(tok, 1))
        last = (pos % context_len == context_len - 1) | (pos == n - 1)
        nxt = np.where(last, -1, np.roll(tok, -1))
        p = np.where(prev >= 0, prev, V)
        pp = np.where((pos % context_len >= 2), np.roll(tok, 2), V)
        tcount = np.bincount(tok, minlength=V + 1).astype(np.int64)
        pcount = np.bincount(p, minlength=V + 1).astype(np.int64)
        fam = {F_TOKEN: tcount[:V], F_PREV: pcount[:V],
               F_NEXT: np.bincount(nxt[nxt >= 0], minlength=V).astype(np.int64),
               F_FOLD: np.bincount(voc.fold[:V], weights=tcount[:V], minlength=len(voc.fold_names)).astype(np.int64)}
        ccount = (tcount[:, None] * voc.class_mat).sum(0)
        inside = (prev >= 0) & voc.starts_alpha[tok] & voc.ends_alpha[p]
        ccount[C_INSIDE_WORD] = int(inside.sum())
        fam[F_CLASS] = ccount.astype(np.int64)
        pc = (pcount[:V, None] * voc.class_mat[:V]).sum(0)
        fam[F_PREVCLASS] = pc.astype(np.int64)
        line = np.where(prev < 0, 2, np.where(voc.line_end[p], 0,
                        np.where(voc.indent_end[p] | (voc.blank[p] & voc.line_end[pp]), 1, -1)))
        fam[F_LINE] = np.bincount(line[line >= 0], minlength=3).astype(np.int64)
        # "before": positions with token B among the BEFORE_SPAN tokens before them, in the same context.
        # An occurrence at q covers q+1 .. q+BEFORE_SPAN up to its context's end and up to the next
        # occurrence of the same token (which covers the rest).
        order = np.argsort(tok, kind="stable")
        q = order
        tq = tok[q]
        nq = np.empty_like(q)
        nq[:-1] = q[1:]
        nq[-1] = n + BEFORE_SPAN
        same = np.zeros(n, bool)
        same[:-1] = tq[1:] == tq[:-1]
        gap = np.where(same, nq - q, BEFORE_SPAN)
        ctx_end = np.minimum((q // context_len + 1) * context_len, n)
        cover = np.minimum(np.minimum(gap, BEFORE_SPAN), ctx_end - 1 - q)
        fam[F_BEFORE] = np.bincount(tq, weights=cover, minlength=V).astype(np.int64)
        if V * V < (1 << VALUE_BITS):
            keys, counts = np.unique(prev[prev >= 0] * V + tok[prev >= 0], return_counts=True)
        else:
            keys, counts = np.zeros(0, np.int64), np.zeros(0, np.int64)
        return cls(n, fam, keys.astype(np.int64), counts.astype(np.int64))

    def count(self, feats: np.ndarray) -> np.ndarray:
        """int64 [m] how often each feature (family << 36 | value) matches in the stream."""
        feats = np.asarray(feats, np.int64)
        fam = feats >> VALUE_BITS
        val = feats & ((1 << VALUE_BITS) - 1)
        out = np.zeros(feats.shape, np.int64)
        for f, table in self.by_family.items():
            m = fam == f
            if m.any():
                v = val[m]
                out[m] = np.where(v < table.size, table[np.minimum(v, table.size - 1)], 0)
        m = fam == F_PAIR
        if m.any() and self.pair_keys.size:
            v = val[m]
            i = np.minimum(np.searchsorted(self.pair_keys, v), self.pair_keys.size - 1)
            out[m] = np.where(self.pair_keys[i] == v, self.pair_counts[i], 0)
        return out



def window_occurrences(a: dict, voc: Vocab, cand: np.ndarray, tau: np.ndarray,
                        c: int = schema.CONTEXT_BEFORE) -> tuple[np.ndarray, np.ndarray]:
    """(matched, matched and high) counts per candidate key over the distinct positions of a block's
    top and sample windows (``c``: the window slot of the firing token, the index's window ``before``)
    from OCC_BEFORE before to OCC_AFTER after the firing, leaving out the window centers and every
    top-k position."""
    top_pos = a["top_positions"]
    b = top_pos.shape[0]
    W0 = a["top_context_tokens"].shape[-1]
    lo, hi = max(0, c - OCC_BEFORE - BEFORE_SPAN - 2), min(W0, c + OCC_AFTER + 2)  # the slots needed
    W = hi - lo
    pos = np.concatenate([top_pos, a["sample_positions"].reshape(b, -1)], 1)  # [b, R]
    win = np.concatenate([a["top_context_tokens"][..., lo:hi],
                          a["sample_context_tokens"].reshape(b, -1, W0)[..., lo:hi]], 1)  # [b, R, W]
    acts = np.concatenate([a["top_context_acts"][..., lo:hi],
                           a["sample_context_acts"].reshape(b, -1, W0)[..., lo:hi]], 1)
    c -= lo
    nl = np.arange(b, dtype=np.int64)
    gp = pos[:, :, None] + (np.arange(W) - c)[None, None, :]  # [b, R, W] global position of each slot
    span = np.zeros(W, bool)
    span[max(0, c - OCC_BEFORE):c + OCC_AFTER + 1] = True
    ok = (pos[:, :, None] >= 0) & (win >= 0) & span
    ok[:, :, c] = False
    key = np.where(ok, (nl[:, None, None] << FEAT_BITS) | np.maximum(gp, 0), -1)
    top_keys = ((nl[:, None] << FEAT_BITS) | top_pos)[top_pos >= 0]
    flat = key.ravel()
    _, first = np.unique(flat, return_index=True)
    keep = np.zeros(flat.size, bool)
    keep[first] = True
    keep &= (flat >= 0) & ~np.isin(flat, top_keys)
    keep = keep.reshape(key.shape)
    high = np.asarray(acts, np.float64) >= tau[:, None, None]
    m_w = np.zeros(cand.size)
    h_w = np.zeros(cand.size)
    starts = np.searchsorted(cand >> FEAT_BITS, np.arange(b + 1))  # candidates of neuron i: starts[i]:starts[i + 1]
    feat = cand & ((1 << FEAT_BITS) - 1)
    _count_window_matches(np.ascontiguousarray(win, np.int64), keep, high, feat, starts, voc.size,
                          _pair_ok(voc.size), voc.fold, voc.cls, voc.starts_alpha, voc.ends_alpha, voc.line_end,
                          voc.indent_end, voc.blank, m_w, h_w)
    return m_w, h_w


def _pair_ok(V: int) -> bool:
    return V * V < (1 << VALUE_BITS)


@numba.njit(cache=True, nogil=True)
def _count_window_matches(win, keep, high, feat, starts, V, pair_ok, fold, cls, starts_alpha, ends_alpha, line_end,
                          indent_end, blank, m_w, h_w):  # pragma: no cover (compiled)
    """For every kept slot (i, r, j) of the windows win [b, R, W]: its features (the same as
    ``features``), each looked up among neuron i's candidates feat[starts[i]:starts[i + 1]] (sorted):
    m_w[cand] += 1 and h_w[cand] += high[i, r, j]."""
    b, R, W = win.shape
    fs = np.empty(32, np.int64)
    sh = np.int64(VALUE_BITS)
    for i in range(b):
        lo0, hi0 = starts[i], starts[i + 1]
        if lo0 == hi0:
            continue
        for r in range(R):
            for j in range(W):
                if not keep[i, r, j]:
                    continue
                tok = win[i, r, j]
                if tok < 0:
                    continue
                prev = win[i, r, j - 1] if j >= 1 else -1
                pprev = win[i, r, j - 2] if j >= 2 else -1
                nxt = win[i, r, j + 1] if j + 1 < W else -1
                p = prev if prev >= 0 else V
                pp = pprev if pprev >= 0 else V
                n = 0
                fs[n] = (np.int64(F_TOKEN) << sh) | tok
                n += 1
                if fold[tok] >= 0:
                    fs[n] = (np.int64(F_FOLD) << sh) | fold[tok]
                    n += 1
                for q in range(cls.shape[1]):
                    if cls[tok, q] >= 0:
                        fs[n] = (np.int64(F_CLASS) << sh) | cls[tok, q]
                        n += 1
                if prev >= 0 and starts_alpha[tok] and ends_alpha[p]:
                    fs[n] = (np.int64(F_CLASS) << sh) | C_INSIDE_WORD
                    n += 1
                if prev >= 0:
                    fs[n] = (np.int64(F_PREV) << sh) | prev
                    n += 1
                    if pair_ok:
                        fs[n] = (np.int64(F_PAIR) << sh) | (prev * V + tok)
                        n += 1
                for q in range(j - BEFORE_SPAN, j):
                    if 0 <= q < W and win[i, r, q] >= 0:
                        fs[n] = (np.int64(F_BEFORE) << sh) | win[i, r, q]
                        n += 1
                if nxt >= 0:
                    fs[n] = (np.int64(F_NEXT) << sh) | nxt
                    n += 1
                line = -1
                if prev < 0:
                    line = 2
                elif line_end[p]:
                    line = 0
                elif indent_end[p] or (blank[p] and line_end[pp]):
                    line = 1
                if line >= 0:
                    fs[n] = (np.int64(F_LINE) << sh) | line
                    n += 1
                if prev >= 0:
                    for q in range(cls.shape[1]):
                        if cls[p, q] >= 0:
                            fs[n] = (np.int64(F_PREVCLASS) << sh) | cls[p, q]
                            n += 1
                hi_ij = high[i, r, j]
                for a in range(n):
                    x = fs[a]
                    dup = False
                    for a2 in range(a):
                        if fs[a2] == x:
                            dup = True
                            break
                    if dup:
                        continue
                    lo, hi = lo0, hi0
                    while lo < hi:
                        mid = (lo + hi) >> 1
                        if feat[mid] < x:
                            lo = mid + 1
                        else:
                            hi = mid
                    if lo < hi0 and feat[lo] == x:
                        m_w[lo] += 1.0
                        if hi_ij:
                            h_w[lo] += 1.0


__all__ = ["StreamCounts", "window_occurrences"]
