"""Numba kernels of the indexer: pure functions over numpy arrays, no zarr, no I/O.

Numba has no float16 on the CPU, so the kernels take a chunk of float16 activations as its raw
``uint16`` bit pattern (``chunk.view(np.uint16)``) and work on two derived quantities:

* an **order-preserving key** (``f16_key``): the bits with the sign bit flipped for positives and
  every bit flipped for negatives. Comparing keys as integers compares the float16 values (with
  -0 < +0 and NaNs outside the finite range). Top-k / bottom-k therefore run on small integers and
  are exact; the value is recovered bit for bit from the key (``key_to_f16_bits``).
* the **float32 value** from a 65536-entry lookup table (``F16_TO_F32``), for moments and sums.

Every kernel updates its state arrays in place, one chunk at a time, and is parallel over blocks
of neurons (``prange``): a block of ``NEURON_BLOCK`` adjacent neurons is 128 bytes of a row, so
each thread streams through the chunk row by row touching only its own columns and its own state
(no atomics, no races). Results depend only on the data and the order of chunks, never on the
number of threads.

Tie-breaking (what makes partial results merge exactly): among equal keys the lower global token
position ranks higher, for top-k and for bottom-k. A chunk is scanned in increasing position, so
within a scan an equal key never displaces a kept one; ``merge_topk`` applies the same total order.

Shapes: R rows of the chunk, N neurons, k kept per neuron, W = window tokens, B sample bins,
S samples per bin, H histogram bins, V vocabulary.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

NEURON_BLOCK = 64  # neurons per parallel work item: 64 x uint16 = two cache lines of a row

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


@njit(inline="always", cache=True)
def _copy_window(cur, r, j, row0, ctx_len, before, dst):
    """dst[:] = neuron j's float16 bits at rows r-before .. r-before+W-1 of the chunk, clipped to the
    context of row r (contexts are ``ctx_len`` rows and never straddle a chunk), 0 elsewhere."""
    W = dst.shape[0]
    p = row0 + r
    lo = (p // ctx_len) * ctx_len - row0  # chunk row where this context starts
    hi = lo + ctx_len
    for w in range(W):
        rr = r - before + w
        if rr >= lo and rr < hi and rr >= 0 and rr < cur.shape[0]:
            dst[w] = cur[rr, j]
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


@njit(parallel=True, cache=True)
def pass1_chunk(
    cur,  # uint16 [R, N] float16 bits of one chunk
    tokens,  # int32 [R] current token ids of those rows
    row0,  # global token position of row 0
    ctx_len,  # tokens per context (contexts never straddle a chunk)
    before,  # window tokens before a firing
    lut,  # float32 [65536] bits -> value
    dens_key,  # a value counts for density when its key > dens_key
    shift,  # float64 [N] per-neuron shift for the power sums (the chunk's first row)
    top_key,  # int32 [N, k] keys of the kept top entries, -1 = empty slot
    top_pos,  # int64 [N, k] their global positions, -1 = empty
    top_win,  # uint16 [N, k, W] float16 bits of this neuron's activations around each entry
    top_worst,  # int32 [N] slot replaced next
    bot_key,  # int32 [N, k], 65536 = empty slot
    bot_pos,  # int64 [N, k]
    bot_win,  # uint16 [N, k, W]
    bot_worst,  # int32 [N]
    hist,  # int64 [N, HIST_BINS]
    npos,  # int64 [N] count of values above the density threshold
    sums,  # float64 [4, N] power sums of (value - shift), this chunk only (caller zeroes it)
    token_sum,  # float64 [2, V, N] sum of activation per current token, by context parity
):
    """The first streaming pass over one chunk: top-k, bottom-k (with windows), histogram,
    density count, shifted power sums for the moments and per-token sums."""
    R, N = cur.shape
    nblk = (N + NEURON_BLOCK - 1) // NEURON_BLOCK
    for b in prange(nblk):
        j0 = b * NEURON_BLOCK
        j1 = min(N, j0 + NEURON_BLOCK)
        for r in range(R):
            p = row0 + r
            par = (p // ctx_len) & 1
            t = tokens[r]
            for j in range(j0, j1):
                bits = cur[r, j]
                key = f16_key(bits)
                hb = (key >> HIST_SHIFT) - HIST_OFFSET
                if hb < 0:
                    hb = 0
                elif hb >= HIST_BINS:
                    hb = HIST_BINS - 1
                hist[j, hb] += 1
                if key > dens_key:
                    npos[j] += 1
                v = lut[bits]
                d = np.float64(v) - shift[j]
                d2 = d * d
                sums[0, j] += d
                sums[1, j] += d2
                sums[2, j] += d2 * d
                sums[3, j] += d2 * d2
                token_sum[par, t, j] += v
                s = top_worst[j]
                if key > top_key[j, s]:
                    top_key[j, s] = key
                    top_pos[j, s] = p
                    _copy_window(cur, r, j, row0, ctx_len, before, top_win[j, s])
                    top_worst[j] = _worst_top(top_key, top_pos, j)
                s = bot_worst[j]
                if key < bot_key[j, s]:
                    bot_key[j, s] = key
                    bot_pos[j, s] = p
                    _copy_window(cur, r, j, row0, ctx_len, before, bot_win[j, s])
                    bot_worst[j] = _worst_bottom(bot_key, bot_pos, j)


@njit(parallel=True, cache=True)
def topk_chunk(cur, row0, top_key, top_pos, top_worst):
    """Top-k alone (no windows, no statistics): the kernel the benchmark compares with torch.topk
    and dask.array.topk. Same state layout and tie rule as ``pass1_chunk``."""
    R, N = cur.shape
    nblk = (N + NEURON_BLOCK - 1) // NEURON_BLOCK
    for b in prange(nblk):
        j0 = b * NEURON_BLOCK
        j1 = min(N, j0 + NEURON_BLOCK)
        for r in range(R):
            for j in range(j0, j1):
                key = f16_key(cur[r, j])
                s = top_worst[j]
                if key > top_key[j, s]:
                    top_key[j, s] = key
                    top_pos[j, s] = row0 + r
                    top_worst[j] = _worst_top(top_key, top_pos, j)


@njit(parallel=True, cache=True)
def pass2_chunk(
    cur,  # uint16 [R, N] float16 bits of one chunk
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
    R, N = cur.shape
    B = s_prio.shape[1]
    S = s_prio.shape[2]
    nq = qbin.shape[1]
    nblk = (N + NEURON_BLOCK - 1) // NEURON_BLOCK
    for b in prange(nblk):
        j0 = b * NEURON_BLOCK
        j1 = min(N, j0 + NEURON_BLOCK)
        for r in range(R):
            h1 = row_hash[r]
            h2 = row_hash2[r]
            for j in range(j0, j1):
                bits = cur[r, j]
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
                        pr = h1 ^ salt[j]
                    else:
                        bi = B - 1
                        pr = h2 ^ salt[j]
                    s = s_worst[j, bi]
                    if pr < s_prio[j, bi, s]:
                        s_prio[j, bi, s] = pr
                        s_pos[j, bi, s] = row0 + r
                        s_key[j, bi, s] = key
                        _copy_window(cur, r, j, row0, ctx_len, before, s_win[j, bi, s])
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
