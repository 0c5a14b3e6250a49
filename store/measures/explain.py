"""Automatic rule explanations per neuron, without a language model.

The SoLU paper calls a neuron interpretable when at least 80% of its strongest firings follow one
rule or category. ``explain_arrays`` searches a library of simple rules a reader can check against
the snippets, in the rule families of store.measures.explain_families (the token, its case-folded form, its class,
the tokens before and after, the line it starts, ...), and keeps, per neuron, the best one.
 (store.measures.explain_families: the token, its case-folded form, its class, the tokens
before and after, the line it starts, ...) and keeps, per neuron, the best one.

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
Words are rendered at read time from the stored family and arguments
(store.measures.explain_families.describe), e.g. ``the token ' WITH': 19/20 top firings, precision 0.91``.

Everything is vectorised NumPy over blocks of neurons; the exact rule counts over the token
stream are computed once per store (store.measures.explain_counts.StreamCounts).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

from store import schema
from store.measures.explain_counts import StreamCounts, window_occurrences
from store.measures.explain_families import F_PAIR, FEAT_BITS, VALUE_BITS, Vocab, features
from store.measures.snippets import context_slots

N_TOP = 20  # distinct top firings a rule is judged on (a rater sees about 20)
HIGH_FRACTION = 0.5  # "high": at least this far from the mean activation to the median top firing
BETA = 2.0  # the score is the F-beta measure of coverage (recall) and precision
PASS_SCORE = 0.7  # a neuron "has a rule" at score >= this (F2 of coverage 0.8, precision 0.5 is 0.71)
PRIOR_WEIGHT = 4.0  # occurrences the census-and-samples precision estimate counts for (see _explain_block)
MIN_HITS = 2  # a rule must match at least this many distinct top firings
BLOCK = 512  # neurons per vectorised block

# the arrays stored under index/{hook}/ next to schema.INDEX_ARRAYS (see schema.EXPLAIN_ARRAYS)
OUTPUTS = ("explain_family", "explain_args", "explain_hits", "explain_n", "explain_coverage",
           "explain_precision", "explain_score")


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
    keys = (np.broadcast_to(nl[:, None, None], f_top.shape)[m] << FEAT_BITS) | f_top[m]
    cand, hits = np.unique(keys, return_counts=True)
    ok = hits >= MIN_HITS
    cand, hits = cand[ok], hits[ok]
    res = {"explain_family": np.full(b, -1, np.int8), "explain_args": np.full((b, 2), -1, np.int64),
           "explain_hits": np.zeros(b, np.int32), "explain_n": n_top.astype(np.int32),
           "explain_coverage": np.full(b, np.nan, np.float32), "explain_precision": np.full(b, np.nan, np.float32),
           "explain_score": np.where(alive | (n_top > 0), 0.0, np.nan).astype(np.float32)}
    if cand.size == 0:
        return res
    cn = cand >> FEAT_BITS
    cf = cand & ((1 << FEAT_BITS) - 1)

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
        kk = (np.broadcast_to(nl[:, None, None], f_rows.shape)[mm] << FEAT_BITS) | f_rows[mm]
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
    m_w, h_w = window_occurrences(a, voc, cand, tau, c)
    prec = (h_w + PRIOR_WEIGHT * prior) / (m_w + PRIOR_WEIGHT)
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = hits / n_top[cn]
        score = np.where(prec + cov > 0, (1 + BETA**2) * prec * cov / (BETA**2 * prec + cov), 0.0)
    fam = cf >> VALUE_BITS
    # best per neuron: highest score, then the simpler family, then more hits
    order = np.lexsort((-hits, fam, -score, cn))
    first = np.ones(order.size, bool)
    first[1:] = cn[order][1:] != cn[order][:-1]
    best = order[first]
    bn = cn[best]
    val = cf[best] & ((1 << VALUE_BITS) - 1)
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


# ---- what an index holds (written by store.index.explanations, through store.index.group.IndexGroup) -----
EXPLAIN_VERSION = 1  # index/{hook} attribute "explained": the version of the rule search that wrote the arrays
INPUTS = ("top_values", "top_positions", "top_context_tokens", "sample_positions", "sample_values",
          "sample_context_tokens", "quantile_edges", "mean", "hist_counts", "hist_edges", "top_context_acts",
          "sample_context_acts")


def is_explained(store, hook: str) -> bool:
    """True when index/{hook} holds explanation arrays of this EXPLAIN_VERSION (``store``: anything with
    ``index_state(hook)``, e.g. a store.format.reader.Store)."""
    return store.index_state(hook).get("explained") == EXPLAIN_VERSION


__all__ = ["explain_arrays", "distinct_top", "bin_masses", "is_explained", "OUTPUTS", "INPUTS", "PASS_SCORE", "N_TOP"]
