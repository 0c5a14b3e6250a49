"""Top-k alone, two ways, for benchmarks/bench_index.py: over the row-major chunk as stored
(``topk_rows``, the indexer's kernel style) and over a transposed chunk (``transposed`` + ``topk_chunk``,
the column-wise variant the indexer replaced). Same state layout and tie rule as store.index.kernels: among
equal keys the lower position ranks higher. ``check()`` tests both against a numpy sort.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from store.index.kernels.f16 import f16_key, f16_keys_np
from store.index.kernels.topk import _worst_top

TILE = 16  # tile edge of the blocked transpose (16 measured fastest of 16-128)


@njit(parallel=True, cache=True)
def transpose_u16(src, dst):
    """dst[j, r] = src[r, j] for uint16 [R, N] -> [N, R], in TILE x TILE blocks, parallel over row tiles of dst."""
    R, N = src.shape
    for jt in prange((N + TILE - 1) // TILE):
        j0 = jt * TILE
        j1 = min(N, j0 + TILE)
        for r0 in range(0, R, TILE):
            r1 = min(R, r0 + TILE)
            for j in range(j0, j1):
                for r in range(r0, r1):
                    dst[j, r] = src[r, j]


def transposed(bits: np.ndarray) -> np.ndarray:
    """uint16 [R, N] -> C-contiguous uint16 [N, R]."""
    out = np.empty((bits.shape[1], bits.shape[0]), np.uint16)
    transpose_u16(np.ascontiguousarray(bits), out)
    return out



@njit(parallel=True, cache=True)
def topk_chunk(curT, row0, top_key, top_pos, top_worst):
    """Top-k alone on a transposed chunk (curT: uint16 [N, R], see ``transposed``): the column-wise
    variant of ``topk_rows`` (same state layout, tie rule and result), kept for comparison."""
    N, R = curT.shape
    for j in prange(N):
        col = curT[j]
        thr = top_key[j, top_worst[j]]
        for r in range(R):
            key = f16_key(col[r])
            if key > thr:
                s = top_worst[j]
                top_key[j, s] = key
                top_pos[j, s] = row0 + r
                s = _worst_top(top_key, top_pos, j)
                top_worst[j] = s
                thr = top_key[j, s]



# neurons per work item of topk_rows (top-k alone, benchmarks only): it does so little per value that the
# per-row overhead dominates small blocks: 2M x 512 in memory, one thread, 0.77 s at 128 vs 0.21 s at 512
TOPK_BLOCK = 512


@njit(parallel=True, nogil=True, cache=True)
def topk_rows(cur, row0, top_key, top_pos, top_worst, block):
    """Top-k alone on the row-major chunk (cur: uint16 [R, N]); same state and tie rule as topk_chunk.
    Per row a block first tests whether any of its neurons beats its current k-th key (a reduction
    LLVM vectorises); only then does it walk the block to insert."""
    R, N = cur.shape
    nb = (N + block - 1) // block
    for b in prange(nb):
        j0 = b * block
        j1 = min(N, j0 + block)
        m = j1 - j0
        tthr = np.empty(m, np.int32)
        for jj in range(m):
            tthr[jj] = top_key[j0 + jj, top_worst[j0 + jj]]
        for r in range(R):
            row = cur[r, j0:j1]
            hit = False
            for jj in range(m):
                hit |= f16_key(row[jj]) > tthr[jj]
            if not hit:
                continue
            for jj in range(m):
                key = f16_key(row[jj])
                if key > tthr[jj]:
                    j = j0 + jj
                    s = top_worst[j]
                    top_key[j, s] = key
                    top_pos[j, s] = row0 + r
                    s = _worst_top(top_key, top_pos, j)
                    top_worst[j] = s
                    tthr[jj] = top_key[j, s]



def check(seed: int = 0) -> None:
    """Both kernels keep exactly numpy's top-k (ties to the lower position), over several chunks."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((2048, 300)) * 2).astype(np.float16)
    x[rng.random(x.shape) < 0.3] = 0  # many ties
    N, k = x.shape[1], 8
    key = f16_keys_np(x.view(np.uint16)).astype(np.int64)
    want = np.argsort(-key, axis=0, kind="stable")[:k].T  # [N, k]: lower position first among ties
    for variant in ("rows", "transposed"):
        top_key = np.full((N, k), -1, np.int32)
        top_pos = np.full((N, k), -1, np.int64)
        worst = np.zeros(N, np.int32)
        for c in range(4):
            bits = np.ascontiguousarray(x[c * 512:(c + 1) * 512]).view(np.uint16)
            if variant == "rows":
                topk_rows(bits, c * 512, top_key, top_pos, worst, TOPK_BLOCK)
            else:
                topk_chunk(transposed(bits), c * 512, top_key, top_pos, worst)
        got = np.take_along_axis(top_pos, np.lexsort((top_pos, -top_key.astype(np.int64)), axis=-1), 1)
        assert np.array_equal(got, want), variant
