"""Numba kernels of the indexer: pure functions over numpy arrays, no zarr, no I/O.

Numba has no float16 on the CPU, so the kernels take a chunk of float16 activations as its raw
``uint16`` bit pattern (``chunk.view(np.uint16)``) and work on two derived quantities:

* an **order-preserving key** (``f16_key``): the bits with the sign bit flipped for positives and
  every bit flipped for negatives. Comparing keys as integers compares the float16 values (with
  -0 < +0 and NaNs outside the finite range). Top-k / bottom-k therefore run on small integers and
  are exact; the value is recovered bit for bit from the key (``key_to_f16_bits``).
* the **float32 value** from a 65536-entry lookup table (``F16_TO_F32``), for moments and sums.

Every kernel updates its state arrays in place, one chunk at a time, and is parallel over
neurons (``prange``). A chunk arrives as [rows, neurons]; ``transpose_u16`` turns it into
[neurons, rows] with a cache-blocked parallel transpose, so each thread then streams through one
neuron's contiguous activations with its statistics in registers and its histogram and per-token
sums in cache (walking a row-major chunk column by column instead costs a TLB miss per row and ran
~5x slower). No atomics, no races: results depend only on the data and the order of chunks, never
on the number of threads.

Tie-breaking (what makes partial results merge exactly): among equal keys the lower global token
position ranks higher, for top-k and for bottom-k. A chunk is scanned in increasing position, so
within a scan an equal key never displaces a kept one; ``merge_topk`` applies the same total order.

Shapes: R rows of the chunk, N neurons, k kept per neuron, W = window tokens, B sample bins,
S samples per bin, H histogram bins, V vocabulary.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

TILE = 16  # tile edge of the blocked transpose (16 measured fastest of 16-128)

# float16 bit pattern -> float32 value, for all 65536 patterns.  # [65536] float32
F16_TO_F32 = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float32)

# ---- histogram: bins read off the float16 bit pattern --------------------------------------------
# bin = (key >> HIST_SHIFT) - HIST_OFFSET, clamped to [0, HIST_BINS). With HIST_SHIFT = 6 a bin
# holds 64 consecutive float16 values: the sign, the 5 exponent bits and the top 4 of the 10
# mantissa bits, i.e. a log-scale histogram with 16 bins per octave (bins ~6% wide) over the whole
# float16 range, plus linear bins over the subnormals around 0. The edges depend on nothing but
# float16 itself, so histograms of any two parts of a store add up exactly to the whole's.
# Key blocks 0..15 hold only -inf/NaN and 1008..1023 only +inf/NaN; they are folded into the
# first and last finite bins.
HIST_SHIFT = 6
HIST_OFFSET = 16
HIST_BINS = (1 << (16 - HIST_SHIFT)) - 2 * HIST_OFFSET  # 992


def hist_edges() -> np.ndarray:
    """Edges of the histogram bins as float32, [HIST_BINS + 1], ascending.

    Bin i holds the values between edges[i] and edges[i + 1] (for positive values the lower edge
    belongs to the bin, for negative values the upper edge does, since a bin is a block of float16
    bit patterns). The outer edges are -65536 and 65536 (every finite float16 lies inside).
    """
    keys = (np.arange(HIST_BINS + 1, dtype=np.int64) + HIST_OFFSET) << HIST_SHIFT  # first key of each bin
    # A negative bin boundary is best written as the value of the key just below it (a round number).
    bound = np.where(keys >= 0x8000, keys, keys - 1)
    edges = key_to_f16_bits(bound.astype(np.int32)).view(np.float16).astype(np.float32)
    edges[0], edges[-1] = -65536.0, 65536.0
    edges[keys == 0x8000] = 0.0  # -0 vs +0: the edge is 0
    return edges


def f16_keys_np(bits: np.ndarray) -> np.ndarray:
    """Numpy version of ``f16_key`` over an array of uint16 bit patterns -> int32 keys."""
    b = bits.astype(np.int32)
    return b ^ (((b >> 15) * 0x7FFF) | 0x8000)


def key_to_f16_bits(keys: np.ndarray) -> np.ndarray:
    """Inverse of the key transform: int keys -> uint16 float16 bit patterns (view as float16)."""
    k = np.asarray(keys).astype(np.int32)
    bits = np.where(k >= 0x8000, k ^ 0x8000, k ^ 0xFFFF)
    return bits.astype(np.uint16)


def keys_to_f32(keys: np.ndarray) -> np.ndarray:
    """int keys -> float32 values (exact: every float16 is a float32)."""
    return F16_TO_F32[key_to_f16_bits(keys)]


@njit(inline="always", cache=True)
def f16_key(bits):
    """uint16 float16 bits -> int32 key whose integer order is the float order."""
    b = np.int32(bits)
    return b ^ (((b >> 15) * 0x7FFF) | 0x8000)


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


@njit(inline="always", cache=True)
def _copy_window(col, r, row0, ctx_len, before, dst):
    """dst[:] = one neuron's float16 bits (col: [R]) at rows r-before .. r-before+W-1 of the chunk,
    clipped to the context of row r (contexts are ``ctx_len`` rows and never straddle a chunk), 0 elsewhere."""
    W = dst.shape[0]
    p = row0 + r
    lo = (p // ctx_len) * ctx_len - row0  # chunk row where this context starts
    hi = lo + ctx_len
    for w in range(W):
        rr = r - before + w
        if rr >= lo and rr < hi and rr >= 0 and rr < col.shape[0]:
            dst[w] = col[rr]
        else:
            dst[w] = 0


@njit(inline="always", cache=True)
def _worst_top(keys, pos, j):
    """Slot of the lowest-ranked entry of neuron j's top list: smallest key, then highest position."""
    w = 0
    for i in range(1, keys.shape[1]):
        if keys[j, i] < keys[j, w] or (keys[j, i] == keys[j, w] and pos[j, i] > pos[j, w]):
            w = i
    return w


@njit(inline="always", cache=True)
def _worst_bottom(keys, pos, j):
    """Slot of the lowest-ranked entry of a bottom list: largest key, then highest position."""
    w = 0
    for i in range(1, keys.shape[1]):
        if keys[j, i] > keys[j, w] or (keys[j, i] == keys[j, w] and pos[j, i] > pos[j, w]):
            w = i
    return w


@njit(parallel=True, cache=True)
def worst_slots(top_key, top_pos, bot_key, bot_pos, top_worst, bot_worst):
    """Recompute the replace-next slot of every neuron's top and bottom list (after loading a state)."""
    for j in prange(top_key.shape[0]):
        top_worst[j] = _worst_top(top_key, top_pos, j)
        bot_worst[j] = _worst_bottom(bot_key, bot_pos, j)


@njit(cache=True, fastmath={"reassoc", "contract", "nsz", "arcp"})
def _power_sums(col, lut, dens_key, out):
    """out[:] = shift (the first value), power sums 1..4 of (value - shift), count above dens_key.
    Reassociation lets LLVM vectorise the sums; the order is fixed at compile time, so a result is
    reproducible on one machine (moments are compared with a tolerance, never bit for bit)."""
    shift = np.float64(lut[col[0]])
    s1 = 0.0
    s2 = 0.0
    s3 = 0.0
    s4 = 0.0
    for r in range(col.shape[0]):
        d = np.float64(lut[col[r]]) - shift
        d2 = d * d
        s1 += d
        s2 += d2
        s3 += d2 * d
        s4 += d2 * d2
    dens = 0
    for r in range(col.shape[0]):
        dens += f16_key(col[r]) > dens_key
    out[0] = shift
    out[1] = s1
    out[2] = s2
    out[3] = s3
    out[4] = s4
    out[5] = dens


@njit(parallel=True, cache=True)
def pass1_chunk(
    curT,  # uint16 [N, R] float16 bits of one chunk, one neuron per row (see ``transposed``)
    row0,  # global token position of row 0
    ctx_len,  # tokens per context (contexts never straddle a chunk)
    before,  # window tokens before a firing
    lut,  # float32 [65536] bits -> value
    dens_key,  # a value counts for density when its key > dens_key
    top_key,  # int32 [N, k] keys of the kept top entries, -1 = empty slot
    top_pos,  # int64 [N, k] their global positions, -1 = empty
    top_win,  # uint16 [N, k, W] float16 bits of this neuron's activations around each entry
    top_worst,  # int32 [N] slot replaced next
    bot_key,  # int32 [N, k], 65536 = empty slot
    bot_pos,  # int64 [N, k]
    bot_win,  # uint16 [N, k, W]
    bot_worst,  # int32 [N]
    hist,  # int64 [N, HIST_BINS]
    sums,  # float64 [N, 6] this chunk only: shift, power sums 1..4 of value - shift, density count
):
    """The first streaming pass over one chunk: top-k, bottom-k (with windows), histogram,
    density count and shifted power sums for the moments (per-token sums: ``token_sums_chunk``)."""
    N, R = curT.shape
    for j in prange(N):
        col = curT[j]
        _power_sums(col, lut, dens_key, sums[j])
        for r in range(R):
            hb = (f16_key(col[r]) >> HIST_SHIFT) - HIST_OFFSET
            if hb < 0:
                hb = 0
            elif hb >= HIST_BINS:
                hb = HIST_BINS - 1
            hist[j, hb] += 1
        tthr = top_key[j, top_worst[j]]
        bthr = bot_key[j, bot_worst[j]]
        for r in range(R):
            key = f16_key(col[r])
            if key > tthr:
                s = top_worst[j]
                top_key[j, s] = key
                top_pos[j, s] = row0 + r
                _copy_window(col, r, row0, ctx_len, before, top_win[j, s])
                s = _worst_top(top_key, top_pos, j)
                top_worst[j] = s
                tthr = top_key[j, s]
            if key < bthr:
                s = bot_worst[j]
                bot_key[j, s] = key
                bot_pos[j, s] = row0 + r
                _copy_window(col, r, row0, ctx_len, before, bot_win[j, s])
                s = _worst_bottom(bot_key, bot_pos, j)
                bot_worst[j] = s
                bthr = bot_key[j, s]


TOKEN_BLOCK = 256  # neurons per work item of token_sums_chunk


@njit(parallel=True, cache=True)
def token_sums_chunk(cur, lut, tokens, parity, token_sum):
    """token_sum[parity[r], tokens[r], :] += values of row r, on the row-major chunk (cur: uint16
    [R, N]; token_sum: float64 [2, V, N]). Row by row, each row adds into one contiguous row of the
    table; on the transposed chunk the same sums scatter over the whole table (~7x slower)."""
    R, N = cur.shape
    for b in prange((N + TOKEN_BLOCK - 1) // TOKEN_BLOCK):
        j0 = b * TOKEN_BLOCK
        j1 = min(N, j0 + TOKEN_BLOCK)
        for r in range(R):
            t = tokens[r]
            p = parity[r]
            for j in range(j0, j1):
                token_sum[p, t, j] += lut[cur[r, j]]


@njit(parallel=True, cache=True)
def topk_chunk(curT, row0, top_key, top_pos, top_worst):
    """Top-k alone (no windows, no statistics): the kernel the benchmark compares with torch.topk
    and dask.array.topk. curT: uint16 [N, R]; same state layout and tie rule as ``pass1_chunk``."""
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


@njit(parallel=True, cache=True)
def pass2_chunk(
    curT,  # uint16 [N, R] float16 bits of one chunk, one neuron per row
    row0,  # global position of row 0
    ctx_len,  # tokens per context
    before,  # window tokens before a sample
    row_hash,  # uint64 [R] splitmix64 of each row's global position (quantile bins)
    row_hash2,  # uint64 [R] a second, independent hash of the position (the "random" bin)
    salt,  # uint64 [N] per-neuron salt: priority = hash ^ salt
    qbin,  # int32 [N, B-2] first histogram bin of each quantile bin, ascending (0.5, 0.9, ...)
    s_prio,  # uint64 [N, B, S] priorities of kept samples, 2**64-1 = empty slot
    s_pos,  # int64 [N, B, S] their positions, -1 = empty
    s_key,  # int32 [N, B, S] their keys
    s_win,  # uint16 [N, B, S, W] windows
    s_worst,  # int32 [N, B] slot replaced next (highest priority)
):
    """The second streaming pass: per neuron and quantile bin keep the S positions of lowest
    priority among the values falling into the bin; the last bin ("random") takes every position.
    Priorities are a hash of (position, neuron), so the choice is a uniform random sample that does
    not depend on how the store is cut into chunks, and two partial selections merge exactly."""
    N, R = curT.shape
    B = s_prio.shape[1]
    S = s_prio.shape[2]
    nq = qbin.shape[1]
    for j in prange(N):
        col = curT[j]
        sj = salt[j]
        for r in range(R):
            bits = col[r]
            key = f16_key(bits)
            hb = (key >> HIST_SHIFT) - HIST_OFFSET
            if hb < 0:
                hb = 0
            elif hb >= HIST_BINS:
                hb = HIST_BINS - 1
            # quantile bin: 0 is the top one (>= the highest edge), nq is below the lowest edge
            qb = nq
            for e in range(nq - 1, -1, -1):
                if hb >= qbin[j, e]:
                    qb = nq - 1 - e
                    break
            for which in range(2):
                if which == 0:
                    bi = qb
                    pr = row_hash[r] ^ sj
                else:
                    bi = B - 1
                    pr = row_hash2[r] ^ sj
                s = s_worst[j, bi]
                if pr < s_prio[j, bi, s]:
                    s_prio[j, bi, s] = pr
                    s_pos[j, bi, s] = row0 + r
                    s_key[j, bi, s] = key
                    _copy_window(col, r, row0, ctx_len, before, s_win[j, bi, s])
                    w = 0
                    for i in range(1, S):
                        if s_prio[j, bi, i] > s_prio[j, bi, w]:
                            w = i
                    s_worst[j, bi] = w


@njit(parallel=True, cache=True)
def sample_worst_slots(s_prio, s_worst):
    """Recompute the replace-next slot of every (neuron, bin) sample list."""
    N, B, S = s_prio.shape
    for j in prange(N):
        for bi in range(B):
            w = 0
            for i in range(1, S):
                if s_prio[j, bi, i] > s_prio[j, bi, w]:
                    w = i
            s_worst[j, bi] = w


# ---- hashing (numpy; one hash per row, shared by all neurons) ----------------------------------------
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finalizer over uint64 (a bijection, so distinct positions get distinct hashes)."""
    with np.errstate(over="ignore"):
        z = x.astype(np.uint64) + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        return z ^ (z >> np.uint64(31))


def position_hashes(row0: int, rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two independent uint64 hashes of global positions row0 .. row0+rows-1 under ``seed``."""
    pos = np.arange(row0, row0 + rows, dtype=np.uint64)
    with np.errstate(over="ignore"):
        base = pos ^ splitmix64(np.array([seed], dtype=np.uint64))[0]
        h1 = splitmix64(base)
        h2 = splitmix64(h1 ^ _GOLDEN)
    return h1, h2


def neuron_salts(n: int, seed: int) -> np.ndarray:
    """uint64 [n] per-neuron salts (so different neurons draw different random samples)."""
    with np.errstate(over="ignore"):
        return splitmix64(np.arange(n, dtype=np.uint64) * _GOLDEN + np.uint64(seed) + np.uint64(1))
