"""Per neuron, the tokens of highest mean activation, from the per-token sums."""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(inline="always", cache=True)
def _ranks_above(m1, i1, m2, i2):
    """(mean m1, token i1) ranks above (m2, i2): higher mean first, NaN last, lower token id on ties
    (the order of ``np.lexsort((ids, -means))``)."""
    n1 = np.isnan(m1)
    n2 = np.isnan(m2)
    if n1 != n2:
        return n2
    if not n1 and m1 != m2:
        return m1 > m2
    return i1 < i2


@njit(parallel=True, nogil=True, cache=True)
def top_tokens_by_mean(token_sum, token_count, rows, ids, out_ids, out_means, block):
    """Per neuron, the tokens of highest mean activation among the token ids ``ids`` (int64, their
    sums in rows ``rows`` of token_sum), best first: out_ids int64 [N, t] (-1 where fewer than t ids),
    out_means float64 [N, t]. token_sum: float32 [2, >= T, N] sums by context parity (added here in
    float64); token_count: int64 [V] (both parities). A streaming top-t per neuron over the rows of
    token_sum (row-major, blocks of neurons), instead of sorting all the means of every neuron."""
    _two, T, N = token_sum.shape
    t = out_ids.shape[1]
    nb = (N + block - 1) // block
    for b in prange(nb):
        j0 = b * block
        j1 = min(N, j0 + block)
        m = j1 - j0
        kid = np.full((m, t), -1, np.int64)
        kmean = np.zeros((m, t))
        filled = 0  # slots filled so far (the same for every neuron: the first t ids fill them)
        worst = np.zeros(m, np.int64)
        for i in range(ids.shape[0]):
            v = ids[i]
            r = rows[i]
            c = token_count[v]
            if filled < t:
                for jj in range(m):
                    kid[jj, filled] = v
                    kmean[jj, filled] = (np.float64(token_sum[0, r, j0 + jj]) + token_sum[1, r, j0 + jj]) / c
                filled += 1
                if filled == t:
                    for jj in range(m):
                        w = 0
                        for s in range(1, t):
                            if _ranks_above(kmean[jj, w], kid[jj, w], kmean[jj, s], kid[jj, s]):
                                w = s
                        worst[jj] = w
                continue
            for jj in range(m):
                mean = (np.float64(token_sum[0, r, j0 + jj]) + token_sum[1, r, j0 + jj]) / c
                w = worst[jj]
                if _ranks_above(mean, v, kmean[jj, w], kid[jj, w]):
                    kid[jj, w] = v
                    kmean[jj, w] = mean
                    w = 0
                    for s in range(1, t):
                        if _ranks_above(kmean[jj, w], kid[jj, w], kmean[jj, s], kid[jj, s]):
                            w = s
                    worst[jj] = w
        for jj in range(m):  # best first: insertion sort of the t kept
            for s in range(1, filled):
                ms = kmean[jj, s]
                i_s = kid[jj, s]
                q = s - 1
                while q >= 0 and _ranks_above(ms, i_s, kmean[jj, q], kid[jj, q]):
                    kmean[jj, q + 1] = kmean[jj, q]
                    kid[jj, q + 1] = kid[jj, q]
                    q -= 1
                kmean[jj, q + 1] = ms
                kid[jj, q + 1] = i_s
            for s in range(t):
                out_ids[j0 + jj, s] = kid[jj, s]
                out_means[j0 + jj, s] = kmean[jj, s]
