"""Automatic rule explanations per neuron, without a language model.

The SoLU paper calls a neuron interpretable when at least 80% of its strongest firings follow one
rule or category. ``explain_arrays`` searches a library of simple rules a reader can check against
the snippets and keeps, per neuron, the best one:

================  ==============================================================================
family            the rule matches a position when ...
================  ==============================================================================
token             its token is exactly T
folded            its token is T up to case and a leading space
class             its token is of a class: digits, number, punctuation, bracket, quote, line
                  break, indentation, capitalised / all-caps word, word start, identifier piece,
                  operator, non-ASCII text; or it is a word piece inside a longer word
previous          the token just before is P
pair              the token is T right after P
before            token B occurs within the BEFORE_SPAN tokens before (e.g. "after ' import'")
next              the token just after is N (what the neuron predicts or sits in front of)
line              it starts a line, is the first token after indentation, or starts a context
previous class    the token just before is of a class ("after digits")
================  ==============================================================================

Two numbers rate a rule, and a third combines them:

* **coverage**: the share of the neuron's *distinct* top firings (at most one per context, the
  strongest ``N_TOP`` of them, as a rater sees them) that the rule matches;
* **precision**: the estimated share of the rule's occurrences in the whole recording where the
  neuron fires "high", i.e. at least halfway from its mean activation to the median of its distinct
  top firings. The denominator (how often the rule matches in the recording) is counted exactly
  from the token stream; the numerator is estimated from what the index keeps: the top-k firings
  are a census of the strongest activations (weight 1/n_tokens each) and the quantile and random
  samples stand for their quantile bins (each bin's probability mass shared among its samples).
  A rule that matches many low activations (a frequent token, a broad class) has low precision.
* **score**: the F2 measure of coverage and precision, 5 P C / (4 P + C): coverage counts more,
  as in the paper's rule, but a rule that is not specific cannot score high.

The rule kept is the one of highest score among rules matching at least two distinct top firings.
Words are rendered at read time from the stored family and arguments (``describe``), e.g.
``the token ' WITH': 19/20 top firings, precision 0.91``.

Everything is vectorised NumPy over blocks of neurons; the exact rule counts over the token
stream are computed once per store (``StreamCounts``).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numba
import numpy as np

from store import schema
from store.measures.snippets import context_slots
from store.measures.token_classes import CLASSES as TOKEN_CLASSES, token_table

N_TOP = 20  # distinct top firings a rule is judged on (a rater sees about 20)
BEFORE_SPAN = 8  # tokens before the firing searched by the "before" family
HIGH_FRACTION = 0.5  # "high": at least this far from the mean activation to the median top firing
BETA = 2.0  # the score is the F-beta measure of coverage (recall) and precision
PASS_SCORE = 0.7  # a neuron "has a rule" at score >= this (F2 of coverage 0.8, precision 0.5 is 0.71)
PRIOR_WEIGHT = 4.0  # occurrences the census-and-samples precision estimate counts for (see _explain_block)
OCC_BEFORE, OCC_AFTER = 24, 8  # the snippet span searched for the rule's other occurrences
MIN_HITS = 2  # a rule must match at least this many distinct top firings
BLOCK = 512  # neurons per vectorised block

FAMILIES = ("token", "folded", "class", "previous", "pair", "before", "next", "line", "previous class")
F_TOKEN, F_FOLD, F_CLASS, F_PREV, F_PAIR, F_BEFORE, F_NEXT, F_LINE, F_PREVCLASS = range(len(FAMILIES))
LINE_RULES = ("at the start of a line", "the first token after indentation", "at the start of a context")
_VALUE_BITS = 36  # a feature is family << 36 | value
_FEAT_BITS = 40  # a (neuron, feature) key is neuron << 40 | feature

# the per-token classes (a token can be in several) and the one contextual class
CLASSES = TOKEN_CLASSES + ("a word piece inside a longer word",)
C_INSIDE_WORD = CLASSES.index("a word piece inside a longer word")

# the arrays stored under index/{hook}/ next to schema.INDEX_ARRAYS (see schema.EXPLAIN_ARRAYS)
OUTPUTS = ("explain_family", "explain_args", "explain_hits", "explain_n", "explain_coverage",
           "explain_precision", "explain_score")


# ---- the vocabulary ---------------------------------------------------------------------------------
@dataclass
class Vocab:
    """Per-token tables derived from the readable vocabulary (index V is the -1 padding token)."""

    strings: list[str]
    fold: np.ndarray  # int64 [V + 1] folded-form id (-1 for padding)
    fold_names: list[str]  # folded form of each fold id
    cls: np.ndarray  # int64 [V + 1, 4] class ids, -1 padded
    class_mat: np.ndarray  # bool [V + 1, len(CLASSES)]
    starts_alpha: np.ndarray  # bool [V + 1] no leading space, first character a letter
    ends_alpha: np.ndarray  # bool [V + 1] last character a letter
    line_end: np.ndarray  # bool [V + 1] ends with a line break
    indent_end: np.ndarray  # bool [V + 1] a line break followed by spaces / tabs only
    blank: np.ndarray  # bool [V + 1] spaces / tabs only

    @property
    def size(self) -> int:
        return len(self.strings)

    @classmethod
    def build(cls, strings: list[str]) -> "Vocab":
        t = token_table(strings)
        V = len(t.classes)
        classes = np.full((V + 1, 4), -1, np.int64)
        class_mat = np.zeros((V + 1, len(CLASSES)), bool)
        line_end = np.zeros(V + 1, bool)
        blank = np.zeros(V + 1, bool)
        for i, s in enumerate(strings):
            c = t.classes[i]
            class_mat[i, c] = True
            classes[i, :len(c[:4])] = c[:4]
            line_end[i] = s.endswith("⏎")
            blank[i] = bool(s) and set(s) <= {" ", "⇥"}
        return cls(list(strings), t.fold, t.fold_names, classes, class_mat, t.starts_alpha, t.ends_alpha, line_end,
                   t.indent_end, blank)


# ---- features of positions ----------------------------------------------------------------------------
def _col(win: np.ndarray, j: int) -> np.ndarray:
    if 0 <= j < win.shape[-1]:
        return win[..., j].astype(np.int64)
    return np.full(win.shape[:-1], -1, np.int64)


def _enc(fam: int, value: np.ndarray, ok: np.ndarray) -> np.ndarray:
    return np.where(ok & (value >= 0), (np.int64(fam) << _VALUE_BITS) | value, -1)


def features(win: np.ndarray, j: int, voc: Vocab) -> np.ndarray:
    """int64 [..., F] the rule features of the position at column ``j`` of token windows ``win``
    [..., W] (-1 padded at context edges): each is family << 36 | value, -1 where none."""
    V = voc.size
    tok = _col(win, j)
    prev = _col(win, j - 1)
    pprev = _col(win, j - 2)
    nxt = _col(win, j + 1)
    has = tok >= 0
    t = np.where(has, tok, V)
    p = np.where(prev >= 0, prev, V)
    pp = np.where(pprev >= 0, pprev, V)
    cols = [_enc(F_TOKEN, tok, has), _enc(F_FOLD, voc.fold[t], has)]
    cols += [_enc(F_CLASS, voc.cls[t, i], has) for i in range(voc.cls.shape[1])]
    inside = has & (prev >= 0) & voc.starts_alpha[t] & voc.ends_alpha[p]
    cols.append(_enc(F_CLASS, np.full_like(tok, C_INSIDE_WORD), inside))
    cols.append(_enc(F_PREV, prev, has))
    if V * V < (1 << _VALUE_BITS):
        cols.append(_enc(F_PAIR, prev * V + tok, has & (prev >= 0)))
    cols += [_enc(F_BEFORE, _col(win, i), has) for i in range(j - BEFORE_SPAN, j)]
    cols.append(_enc(F_NEXT, nxt, has))
    line = np.where(prev < 0, 2, np.where(voc.line_end[p], 0,
                    np.where(voc.indent_end[p] | (voc.blank[p] & voc.line_end[pp]), 1, -1)))
    cols.append(_enc(F_LINE, line, has))
    cols += [_enc(F_PREVCLASS, voc.cls[p, i], has & (prev >= 0)) for i in range(voc.cls.shape[1])]
    f = np.stack(cols, -1)
    # a feature counts once per position (a token repeated in the "before" span, say)
    f = np.sort(f, axis=-1)
    dup = np.zeros_like(f, bool)
    dup[..., 1:] = f[..., 1:] == f[..., :-1]
    return np.where(dup, -1, f)


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
        if V * V < (1 << _VALUE_BITS):
            keys, counts = np.unique(prev[prev >= 0] * V + tok[prev >= 0], return_counts=True)
        else:
            keys, counts = np.zeros(0, np.int64), np.zeros(0, np.int64)
        return cls(n, fam, keys.astype(np.int64), counts.astype(np.int64))

    def count(self, feats: np.ndarray) -> np.ndarray:
        """int64 [m] how often each feature (family << 36 | value) matches in the stream."""
        feats = np.asarray(feats, np.int64)
        fam = feats >> _VALUE_BITS
        val = feats & ((1 << _VALUE_BITS) - 1)
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


# ---- the search -------------------------------------------------------------------------------------
def distinct_top(top_pos: np.ndarray, context_len: int, n_top: int = N_TOP) -> np.ndarray:
    """bool [N, k]: the strongest firing of each context among the top-k (sorted strongest first),
    at most ``n_top`` per neuron; invalid entries (position -1) are never kept."""
    valid = top_pos >= 0
    ctx = np.where(valid, top_pos // context_len, -1 - np.arange(top_pos.shape[1]))
    k = ctx.shape[1]
    earlier = np.tril(np.ones((k, k), bool), -1)  # [j, j'] j' < j
    dup = ((ctx[:, :, None] == ctx[:, None, :]) & earlier).any(-1)
    keep = valid & ~dup
    return keep & (np.cumsum(keep, 1) <= n_top)


def _window_occurrences(a: dict, voc: Vocab, cand: np.ndarray, tau: np.ndarray,
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
    key = np.where(ok, (nl[:, None, None] << _FEAT_BITS) | np.maximum(gp, 0), -1)
    top_keys = ((nl[:, None] << _FEAT_BITS) | top_pos)[top_pos >= 0]
    flat = key.ravel()
    _, first = np.unique(flat, return_index=True)
    keep = np.zeros(flat.size, bool)
    keep[first] = True
    keep &= (flat >= 0) & ~np.isin(flat, top_keys)
    keep = keep.reshape(key.shape)
    high = np.asarray(acts, np.float64) >= tau[:, None, None]
    m_w = np.zeros(cand.size)
    h_w = np.zeros(cand.size)
    starts = np.searchsorted(cand >> _FEAT_BITS, np.arange(b + 1))  # candidates of neuron i: starts[i]:starts[i + 1]
    feat = cand & ((1 << _FEAT_BITS) - 1)
    _count_window_matches(np.ascontiguousarray(win, np.int64), keep, high, feat, starts, voc.size,
                          _pair_ok(voc.size), voc.fold, voc.cls, voc.starts_alpha, voc.ends_alpha, voc.line_end,
                          voc.indent_end, voc.blank, m_w, h_w)
    return m_w, h_w


def _pair_ok(V: int) -> bool:
    return V * V < (1 << _VALUE_BITS)


@numba.njit(cache=True, nogil=True)
def _count_window_matches(win, keep, high, feat, starts, V, pair_ok, fold, cls, starts_alpha, ends_alpha, line_end,
                          indent_end, blank, m_w, h_w):  # pragma: no cover (compiled)
    """For every kept slot (i, r, j) of the windows win [b, R, W]: its features (the same as
    ``features``), each looked up among neuron i's candidates feat[starts[i]:starts[i + 1]] (sorted):
    m_w[cand] += 1 and h_w[cand] += high[i, r, j]."""
    b, R, W = win.shape
    fs = np.empty(32, np.int64)
    sh = np.int64(_VALUE_BITS)
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


def _share_at_least(hist: np.ndarray, edges: np.ndarray, tau: np.ndarray) -> np.ndarray:
    """float [b] share of a neuron's activations >= tau, from its histogram hist [b, H] over edges
    [H + 1] (linear within the bin holding tau)."""
    hist = np.asarray(hist, np.float64)
    total = np.maximum(hist.sum(1), 1.0)
    lo, hi = edges[:-1], edges[1:]
    t = np.nan_to_num(tau, nan=np.inf)[:, None]
    frac = np.clip((hi[None, :] - t) / np.maximum(hi - lo, 1e-30)[None, :], 0.0, 1.0)  # [b, H] share of each bin above
    return (hist * frac).sum(1) / total


def _bin_of(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Quantile bin (index into SAMPLE_BINS, 0 = the highest) of values [N, m] under edges [N, 4]."""
    return len(schema.SAMPLE_QUANTILES) - (values[:, :, None] >= edges[:, None, :]).sum(-1)


def bin_masses() -> np.ndarray:
    """Probability mass of each quantile bin of schema.SAMPLE_BINS (the 'random' bin excluded)."""
    q = np.array((*schema.SAMPLE_QUANTILES, 1.0))
    lo = np.concatenate([[0.0], q[:-1]])
    return (q - lo)[::-1]  # SAMPLE_BINS lists the highest bin first


def explain_arrays(tokens: np.ndarray, context_len: int, voc: Vocab, arrays: dict[str, np.ndarray],
                   counts: StreamCounts | None = None, block: int = BLOCK,
                   before: int = schema.CONTEXT_BEFORE) -> dict[str, np.ndarray]:
    """The explanation arrays (OUTPUTS) of every neuron of a hook from its index arrays.

    before: the window slots before the firing in the index's windows (its attributes).
    arrays: the index arrays top_values, top_positions, top_context_tokens, sample_positions,
    sample_values, sample_context_tokens, quantile_edges and mean (schema.INDEX_ARRAYS);
    tokens: the store's token stream (for the exact rule counts, unless ``counts`` is given).
    """
    counts = counts or StreamCounts.build(tokens, context_len, voc)
    N = arrays["top_positions"].shape[0]
    # only the tokens the model saw with each firing (index windows also hold text outside its context)
    arrays = dict(arrays)
    for kind in ("top", "sample"):
        toks = np.asarray(arrays[f"{kind}_context_tokens"])
        inside = context_slots(np.asarray(arrays[f"{kind}_positions"]), before, toks.shape[-1], context_len)
        arrays[f"{kind}_context_tokens"] = np.where(inside, toks, -1)
    out = {"explain_family": np.full(N, -1, np.int8), "explain_args": np.full((N, 2), -1, np.int64),
           "explain_hits": np.zeros(N, np.int32), "explain_n": np.zeros(N, np.int32),
           "explain_coverage": np.full(N, np.nan, np.float32), "explain_precision": np.full(N, np.nan, np.float32),
           "explain_score": np.full(N, np.nan, np.float32)}

    def explain_block(b0: int):
        sl = slice(b0, min(N, b0 + block))
        part = {k: np.asarray(v if k == "hist_edges" else v[sl]) for k, v in arrays.items()}
        return sl, _explain_block(context_len, voc, counts, part, before)

    # blocks of neurons on the kernels' threads (the match count and most numpy work release the GIL)
    starts = range(0, N, block)
    with ThreadPoolExecutor(max(1, min(numba.get_num_threads(), len(starts)))) as pool:
        for sl, res in pool.map(explain_block, starts):
            for k, v in res.items():
                out[k][sl] = v
    out["explain_args"] = out["explain_args"].astype(np.int32)
    return out


def _explain_block(context_len: int, voc: Vocab, counts: StreamCounts, a: dict,
                   c: int = schema.CONTEXT_BEFORE) -> dict[str, np.ndarray]:
    top_pos, top_val = a["top_positions"], a["top_values"].astype(np.float64)
    b, k = top_pos.shape
    distinct = distinct_top(top_pos, context_len)
    n_top = distinct.sum(1)
    med = np.array([np.median(top_val[i, distinct[i]]) if n_top[i] else np.nan for i in range(b)])
    mean = np.asarray(a["mean"], np.float64)
    tau = mean + HIGH_FRACTION * (med - mean)  # [b] the "high" activation level
    alive = (n_top >= MIN_HITS) & np.isfinite(tau) & (med > mean)

    f_top = features(a["top_context_tokens"], c, voc)  # [b, k, F]
    nl = np.arange(b, dtype=np.int64)

    # coverage: distinct top firings matched per (neuron, feature)
    m = distinct[:, :, None] & (f_top >= 0) & alive[:, None, None]
    keys = (np.broadcast_to(nl[:, None, None], f_top.shape)[m] << _FEAT_BITS) | f_top[m]
    cand, hits = np.unique(keys, return_counts=True)
    ok = hits >= MIN_HITS
    cand, hits = cand[ok], hits[ok]
    res = {"explain_family": np.full(b, -1, np.int8), "explain_args": np.full((b, 2), -1, np.int64),
           "explain_hits": np.zeros(b, np.int32), "explain_n": n_top.astype(np.int32),
           "explain_coverage": np.full(b, np.nan, np.float32), "explain_precision": np.full(b, np.nan, np.float32),
           "explain_score": np.where(alive | (n_top > 0), 0.0, np.nan).astype(np.float32)}
    if cand.size == 0:
        return res
    cn = cand >> _FEAT_BITS
    cf = cand & ((1 << _FEAT_BITS) - 1)

    # precision numerator: census of the top-k (weight 1/n each) + samples standing for their bins
    n = max(counts.n, 1)
    edges = np.asarray(a["quantile_edges"], np.float64)
    masses = bin_masses()
    n_bins = masses.size
    top_ok = top_pos >= 0
    census_bin = np.where(top_ok, _bin_of(np.nan_to_num(top_val, nan=-np.inf), edges), -1)
    census_mass = np.stack([(census_bin == i).sum(1) for i in range(n_bins)], 1) / n  # [b, bins]
    vk = np.where(top_ok.any(1), np.nanmin(np.where(top_ok, top_val, np.nan), 1), np.inf)  # [b]
    spos = a["sample_positions"]
    sval = a["sample_values"].astype(np.float64)
    sbins = np.broadcast_to(np.arange(spos.shape[1])[None, :, None], spos.shape)
    rnd = schema.SAMPLE_BINS.index("random")
    flat_pos = spos.reshape(b, -1)
    flat_val = sval.reshape(b, -1)
    flat_bin = sbins.reshape(b, -1).copy()
    is_rnd = flat_bin == rnd
    flat_bin[is_rnd] = _bin_of(np.nan_to_num(flat_val, nan=-np.inf), edges)[is_rnd]
    keep = (flat_pos >= 0) & np.isfinite(flat_val) & (flat_val < vk[:, None])
    n_b = np.stack([((flat_bin == i) & keep).sum(1) for i in range(n_bins)], 1)  # [b, bins]
    left = np.maximum(masses[None, :] - census_mass, 0.0)
    per = np.where(n_b > 0, left / np.maximum(n_b, 1), 0.0)  # [b, bins]
    s_w = np.where(keep, np.take_along_axis(per, np.clip(flat_bin, 0, n_bins - 1), 1), 0.0)  # [b, m]
    s_high = keep & (flat_val >= tau[:, None])
    t_high = top_ok & (top_val >= tau[:, None])
    f_s = features(a["sample_context_tokens"].reshape(b, -1, a["sample_context_tokens"].shape[-1]), c, voc)
    num = np.zeros(cand.size)
    for f_rows, w_rows in ((f_top, np.where(t_high, 1.0 / n, 0.0)), (f_s, np.where(s_high, s_w, 0.0))):
        mm = (f_rows >= 0) & (w_rows[:, :, None] > 0)
        kk = (np.broadcast_to(nl[:, None, None], f_rows.shape)[mm] << _FEAT_BITS) | f_rows[mm]
        ww = np.broadcast_to(w_rows[:, :, None], f_rows.shape)[mm]
        i = np.minimum(np.searchsorted(cand, kk), cand.size - 1)
        hit = cand[i] == kk
        num += np.bincount(i[hit], weights=ww[hit], minlength=cand.size)
    # precision = P(match | high) * P(high) / P(match): P(high) exact from the histogram, P(match)
    # exact from the stream, P(match | high) the weighted share of matching positions among the high
    # positions of the census and the samples (a ratio, so the sampling noise of the high mass cancels)
    high_w = np.where(t_high, 1.0 / n, 0.0).sum(1) + np.where(s_high, s_w, 0.0).sum(1)  # [b]
    p_high = _share_at_least(a["hist_counts"], np.asarray(a["hist_edges"], np.float64), tau)  # [b]
    scale = np.where(high_w > 0, p_high / np.maximum(high_w, 1e-300), 0.0)
    num = num * scale[cn]
    freq = counts.count(cf) / n
    with np.errstate(invalid="ignore", divide="ignore"):
        prior = np.clip(np.where(freq > 0, num / freq, 0.0), 0.0, 1.0)
    # the rule's other occurrences inside the snippets (window positions that are not a top firing):
    # the share where the neuron is high, with the estimate above as a prior of PRIOR_WEIGHT occurrences
    m_w, h_w = _window_occurrences(a, voc, cand, tau, c)
    prec = (h_w + PRIOR_WEIGHT * prior) / (m_w + PRIOR_WEIGHT)
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = hits / n_top[cn]
        score = np.where(prec + cov > 0, (1 + BETA**2) * prec * cov / (BETA**2 * prec + cov), 0.0)
    fam = cf >> _VALUE_BITS
    # best per neuron: highest score, then the simpler family, then more hits
    order = np.lexsort((-hits, fam, -score, cn))
    first = np.ones(order.size, bool)
    first[1:] = cn[order][1:] != cn[order][:-1]
    best = order[first]
    bn = cn[best]
    val = cf[best] & ((1 << _VALUE_BITS) - 1)
    bf = fam[best]
    V = voc.size
    res["explain_family"][bn] = bf
    res["explain_args"][bn, 0] = np.where(bf == F_PAIR, val // V, val)
    res["explain_args"][bn, 1] = np.where(bf == F_PAIR, val % V, -1)
    res["explain_hits"][bn] = hits[best]
    res["explain_coverage"][bn] = cov[best]
    res["explain_precision"][bn] = prec[best]
    res["explain_score"][bn] = score[best]
    return res


# ---- words ----------------------------------------------------------------------------------------------
def _q(voc: Vocab, t: int) -> str:
    return f"'{voc.strings[t]}'" if 0 <= t < voc.size else f"⟨id {t}⟩"


def rule_words(voc: Vocab, family: int, a0: int, a1: int) -> str:
    """The rule in words, e.g. "the token ' WITH'" or "after ' import' (within 8 tokens)"."""
    if family == F_TOKEN:
        return f"the token {_q(voc, a0)}"
    if family == F_FOLD:
        name = voc.fold_names[a0] if 0 <= a0 < len(voc.fold_names) else f"⟨fold {a0}⟩"
        return f"'{name}' in any case, with or without a leading space"
    if family == F_CLASS:
        return CLASSES[a0] if 0 <= a0 < len(CLASSES) else f"⟨class {a0}⟩"
    if family == F_PREV:
        return f"right after {_q(voc, a0)}"
    if family == F_PAIR:
        return f"{_q(voc, a1)} right after {_q(voc, a0)}"
    if family == F_BEFORE:
        return f"after {_q(voc, a0)} (within {BEFORE_SPAN} tokens)"
    if family == F_NEXT:
        return f"just before {_q(voc, a0)}"
    if family == F_LINE:
        return LINE_RULES[a0] if 0 <= a0 < len(LINE_RULES) else f"⟨line {a0}⟩"
    if family == F_PREVCLASS:
        return f"after {CLASSES[a0]}" if 0 <= a0 < len(CLASSES) else f"⟨class {a0}⟩"
    return ""


def describe(voc: Vocab, family: int, args, hits: int, n: int, precision: float) -> str:
    """One neuron's explanation in words, e.g. "the token ' WITH': 19/20 top firings, precision 0.91";
    '' when no rule matched two distinct top firings."""
    if family < 0 or n <= 0:
        return ""
    rule = rule_words(voc, int(family), int(args[0]), int(args[1]))
    return f"{rule}: {hits}/{n} top firings, precision {precision:.2f}"


def describe_all(voc: Vocab, arrays: dict[str, np.ndarray]) -> np.ndarray:
    """object [N] the explanation of every neuron (see ``describe``)."""
    fam, args, hits, n, prec = (arrays[k] for k in ("explain_family", "explain_args", "explain_hits", "explain_n",
                                                     "explain_precision"))
    return np.array([describe(voc, int(fam[i]), args[i], int(hits[i]), int(n[i]), float(prec[i]))
                     for i in range(len(fam))], dtype=object)


__all__ = ["Vocab", "StreamCounts", "explain_arrays", "describe", "describe_all", "rule_words", "features",
           "distinct_top", "bin_masses", "OUTPUTS", "FAMILIES", "CLASSES", "PASS_SCORE", "N_TOP"]


# ---- what an index holds (written by store.index.explanations, through store.index.group.IndexGroup) -----
EXPLAIN_VERSION = 1  # index/{hook} attribute "explained": the version of the rule search that wrote the arrays
INPUTS = ("top_values", "top_positions", "top_context_tokens", "sample_positions", "sample_values",
          "sample_context_tokens", "quantile_edges", "mean", "hist_counts", "hist_edges", "top_context_acts",
          "sample_context_acts")


def is_explained(store, hook: str) -> bool:
    """True when index/{hook} holds explanation arrays of this EXPLAIN_VERSION (``store``: anything with
    ``index_state(hook)``, e.g. a store.format.reader.Store)."""
    return store.index_state(hook).get("explained") == EXPLAIN_VERSION
