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
    top-k position. A position seen in several windows of a neuron counts once, from the first of
    them (top rows first, then the samples, in their stored order)."""
    top_pos = np.ascontiguousarray(a["top_positions"], np.int64)
    b = top_pos.shape[0]
    W0 = a["top_context_tokens"].shape[-1]
    lo, hi = max(0, c - OCC_BEFORE - BEFORE_SPAN - 2), min(W0, c + OCC_AFTER + 2)  # the slots needed
    samp_pos = np.ascontiguousarray(a["sample_positions"].reshape(b, -1), np.int64)
    top_win = np.ascontiguousarray(a["top_context_tokens"][..., lo:hi], np.int64)
    samp_win = np.ascontiguousarray(a["sample_context_tokens"].reshape(b, -1, W0)[..., lo:hi], np.int64)
    t = np.asarray(tau, np.float64)[:, None, None]
    top_high = np.asarray(a["top_context_acts"][..., lo:hi]) >= t  # float16 >= float64: compared as float64
    samp_high = np.asarray(a["sample_context_acts"].reshape(b, -1, W0)[..., lo:hi]) >= t
    m_w = np.zeros(cand.size)
    h_w = np.zeros(cand.size)
    starts = np.searchsorted(cand >> FEAT_BITS, np.arange(b + 1))  # candidates of neuron i: starts[i]:starts[i + 1]
    feat = np.ascontiguousarray(cand & ((1 << FEAT_BITS) - 1), np.int64)
    c -= lo
    _count_window_matches(top_pos, samp_pos, top_win, samp_win, top_high, samp_high, c,
                          max(0, c - OCC_BEFORE), min(hi - lo, c + OCC_AFTER + 1), feat, starts.astype(np.int64),
                          voc.size, _pair_ok(voc.size), voc.fold, voc.cls, voc.starts_alpha, voc.ends_alpha,
                          voc.line_end, voc.indent_end, voc.blank, m_w, h_w)
    return m_w, h_w


_HASH_MUL = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing of a feature into its neuron's candidate table


def _pair_ok(V: int) -> bool:
    return V * V < (1 << VALUE_BITS)


@numba.njit(cache=True, nogil=True)
def _count_window_matches(top_pos, samp_pos, top_win, samp_win, top_high, samp_high, c, j0, j1, feat, starts, V,
                          pair_ok, fold, cls, starts_alpha, ends_alpha, line_end, indent_end, blank,
                          m_w, h_w):  # pragma: no cover (compiled)
    """For every neuron i with candidates feat[starts[i]:starts[i + 1]] (sorted): the slots j0 <= j < j1
    (but the center c) of its windows (rows: the top ones, then the samples) holding a token, whose
    global position (row position + j - c) is not one of the neuron's top positions and was not seen
    in an earlier slot (row by row, left to right); each such slot's features (``features``, each
    once) that are candidates get m_w[cand] += 1 and, when the neuron is high there, h_w[cand] += 1.

    Per neuron the candidates go into a hash table, and into bit masks by family (which tokens,
    folded forms, classes, line rules they name), so that a slot's features are looked up only
    where a candidate of their family and value may exist (no feature that matches is skipped)."""
    b, K, W = top_win.shape
    S = samp_win.shape[1]
    R = K + S
    sh = np.int64(VALUE_BITS)
    vmask = (np.int64(1) << sh) - 1
    pbits = 1
    while (1 << pbits) < 2 * (R * max(j1 - j0, 1) + K):
        pbits += 1
    pkeys = np.empty(1 << pbits, np.int64)  # the positions seen in neuron ``pstamp`` (open addressing)
    pstamp = np.full(1 << pbits, -1, np.int64)
    pshift = np.uint64(64 - pbits)
    pmask = np.uint64((1 << pbits) - 1)
    got = np.empty(64, np.int64)  # the candidates a slot matched (each counts once per slot)
    tokmask = np.zeros(V + 1, np.uint8)  # per token: 1 token, 2 previous, 4 before, 8 next, 16 pair's second
    n_fold = 1
    for t in range(fold.size):
        if fold[t] + 1 > n_fold:
            n_fold = fold[t] + 1
    foldmask = np.zeros(n_fold, np.uint8)
    for i in range(b):
        lo0, hi0 = starts[i], starts[i + 1]
        if lo0 == hi0:
            continue
        for q in range(K):  # the top positions are left out: seen before any slot
            if top_pos[i, q] >= 0:
                _first_visit(top_pos[i, q], i, pkeys, pstamp, pshift, pmask)
        bits = 1
        while (1 << bits) < 2 * (hi0 - lo0):
            bits += 1
        table = np.full(1 << bits, -1, np.int64)  # open addressing: the neuron's candidates by feature
        shift = np.uint64(64 - bits)
        hmask = np.uint64((1 << bits) - 1)
        class_bits = np.int64(0)
        prevclass_bits = np.int64(0)
        line_bits = np.int64(0)
        any_fold = False
        for x in range(lo0, hi0):
            y = feat[x]
            h = (np.uint64(y) * _HASH_MUL) >> shift
            while table[h] >= 0:
                h = (h + np.uint64(1)) & hmask
            table[h] = x
            f = y >> sh
            v = y & vmask
            if f == F_TOKEN:
                tokmask[v] |= 1
            elif f == F_PREV:
                tokmask[v] |= 2
            elif f == F_BEFORE:
                tokmask[v] |= 4
            elif f == F_NEXT:
                tokmask[v] |= 8
            elif f == F_PAIR:
                tokmask[v % V] |= 16
            elif f == F_FOLD:
                foldmask[v] = 1
                any_fold = True
            elif f == F_CLASS:
                class_bits |= np.int64(1) << v
            elif f == F_PREVCLASS:
                prevclass_bits |= np.int64(1) << v
            elif f == F_LINE:
                line_bits |= np.int64(1) << v
        for r in range(R):  # row by row, left to right: a position counts at its first slot
            p = top_pos[i, r] if r < K else samp_pos[i, r - K]
            if p < 0:
                continue
            if r < K:
                row = top_win[i, r]
                hrow = top_high[i, r]
            else:
                row = samp_win[i, r - K]
                hrow = samp_high[i, r - K]
            for j in range(j0, j1):
                if j == c or row[j] < 0:
                    continue
                g = p + j - c
                if not _first_visit(g if g > 0 else 0, i, pkeys, pstamp, pshift, pmask):
                    continue
                _count_slot(row, j, W, V, hrow[j], pair_ok, fold, cls, starts_alpha, ends_alpha, line_end,
                            indent_end, blank, tokmask, foldmask, any_fold, class_bits, prevclass_bits, line_bits,
                            table, feat, shift, hmask, got, m_w, h_w)
        for x in range(lo0, hi0):  # clear the masks for the next neuron
            y = feat[x]
            f = y >> sh
            v = y & vmask
            if f == F_TOKEN or f == F_PREV or f == F_BEFORE or f == F_NEXT:
                tokmask[v] = 0
            elif f == F_PAIR:
                tokmask[v % V] = 0
            elif f == F_FOLD:
                foldmask[v] = 0


@numba.njit(cache=True, nogil=True, inline="always")
def _first_visit(g, stamp, keys, stamps, shift, mask) -> bool:  # pragma: no cover (compiled)
    """Mark position g seen in the table of visit ``stamp`` (a neuron); True when it was not seen yet."""
    h = (np.uint64(g) * _HASH_MUL) >> shift
    while stamps[h] == stamp:
        if keys[h] == g:
            return False
        h = (h + np.uint64(1)) & mask
    stamps[h] = stamp
    keys[h] = g
    return True


@numba.njit(cache=True, nogil=True)
def _count_slot(row, j, W, V, high, pair_ok, fold, cls, starts_alpha, ends_alpha, line_end, indent_end, blank,
                tokmask, foldmask, any_fold, class_bits, prevclass_bits, line_bits, table, feat, shift, hmask, got,
                m_w, h_w):  # pragma: no cover (compiled)
    """The features of slot j of the token window ``row`` (those of ``features``) that are candidates
    of the neuron (its masks and hash table), each once: m_w += 1, h_w += high."""
    sh = np.int64(VALUE_BITS)
    tok = row[j]
    prev = row[j - 1] if j >= 1 else -1
    nxt = row[j + 1] if j + 1 < W else -1
    p = prev if prev >= 0 else V
    n = 0
    if tokmask[tok] & 1:
        n = _hit((np.int64(F_TOKEN) << sh) | tok, table, feat, shift, hmask, got, n)
    if any_fold and fold[tok] >= 0 and foldmask[fold[tok]]:
        n = _hit((np.int64(F_FOLD) << sh) | fold[tok], table, feat, shift, hmask, got, n)
    if class_bits:
        for q in range(cls.shape[1]):
            cv = cls[tok, q]
            if cv >= 0 and (class_bits >> cv) & 1:
                n = _hit((np.int64(F_CLASS) << sh) | cv, table, feat, shift, hmask, got, n)
        if (class_bits >> C_INSIDE_WORD) & 1 and prev >= 0 and starts_alpha[tok] and ends_alpha[p]:
            n = _hit((np.int64(F_CLASS) << sh) | C_INSIDE_WORD, table, feat, shift, hmask, got, n)
    if prev >= 0:
        if tokmask[prev] & 2:
            n = _hit((np.int64(F_PREV) << sh) | prev, table, feat, shift, hmask, got, n)
        if pair_ok and tokmask[tok] & 16:
            n = _hit((np.int64(F_PAIR) << sh) | (prev * V + tok), table, feat, shift, hmask, got, n)
    for q in range(j - BEFORE_SPAN, j):
        if 0 <= q < W:
            t = row[q]
            if t >= 0 and tokmask[t] & 4:
                n = _hit((np.int64(F_BEFORE) << sh) | t, table, feat, shift, hmask, got, n)
    if nxt >= 0 and tokmask[nxt] & 8:
        n = _hit((np.int64(F_NEXT) << sh) | nxt, table, feat, shift, hmask, got, n)
    if line_bits:
        pprev = row[j - 2] if j >= 2 else -1
        pp = pprev if pprev >= 0 else V
        line = -1
        if prev < 0:
            line = 2
        elif line_end[p]:
            line = 0
        elif indent_end[p] or (blank[p] and line_end[pp]):
            line = 1
        if line >= 0 and (line_bits >> line) & 1:
            n = _hit((np.int64(F_LINE) << sh) | line, table, feat, shift, hmask, got, n)
    if prevclass_bits and prev >= 0:
        for q in range(cls.shape[1]):
            cv = cls[p, q]
            if cv >= 0 and (prevclass_bits >> cv) & 1:
                n = _hit((np.int64(F_PREVCLASS) << sh) | cv, table, feat, shift, hmask, got, n)
    for a in range(n):
        m_w[got[a]] += 1.0
        if high:
            h_w[got[a]] += 1.0


@numba.njit(cache=True, nogil=True, inline="always")
def _hit(y, table, feat, shift, hmask, got, n):  # pragma: no cover (compiled)
    """Look the feature y up in a neuron's candidate table; a candidate not yet in got[:n] is added.
    Returns the new n."""
    h = (np.uint64(y) * _HASH_MUL) >> shift
    while table[h] >= 0:
        x = table[h]
        if feat[x] == y:
            for a in range(n):
                if got[a] == x:
                    return n
            got[n] = x
            return n + 1
        h = (h + np.uint64(1)) & hmask
    return n


__all__ = ["StreamCounts", "window_occurrences"]
