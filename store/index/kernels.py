"""Numba kernels of the indexer: pure functions over numpy arrays, no zarr, no I/O.

Numba has no float16 on the CPU, so the kernels take a chunk of float16 activations as its raw
``uint16`` bit pattern (``chunk.view(np.uint16)``) and work on two derived quantities:

* an **order-preserving key** (``f16_key``): the bits with the sign bit flipped for positives and
  every bit flipped for negatives. Comparing keys as integers compares the float16 values (with
  -0 < +0 and NaNs outside the finite range). Top-k / bottom-k therefore run on small integers and
  are exact; the value is recovered bit for bit from the key (``key_to_f16_bits``).
* the **value** as float64 (``f16_to_f64``: the CPU's F16C conversion where it has one, else the
  65536-entry table ``F16_TO_F32``), for moments and sums.

Every kernel updates its state arrays in place, one chunk at a time. The indexer's kernels
(``pass1_rows``, ``pass2_rows``) are serial and ``nogil`` over a range of neuron blocks; the indexer
hands the ranges to a thread pool as threads come free (``store.index.blocks.run_blocks``) while the
next chunks are read in other threads. The others are parallel with ``prange``.
The kernels work on the chunk row-major, as stored: a work item owns ``ROW_BLOCK`` contiguous
neurons and walks the rows, reading the block's contiguous bits per row, with its statistics in
small per-block arrays. One sweep computes every pass-1 statistic (transposing each chunk to [neurons, rows] first cost
more than any statistic; benchmarks/topk_kernels.py keeps that variant for comparison). No atomics,
no races: results depend only on the data and the order of chunks, never on the number of threads or
the block size.

Tie-breaking (what makes partial results merge exactly): among equal keys the lower global token
position ranks higher, for top-k and for bottom-k. A chunk is scanned in increasing position, so
within a scan an equal key never displaces a kept one, and merging two partial results
(``store.index.merge_partials``) applies the same total order.

Shapes: R rows of the chunk, N neurons, k kept per neuron, W = window tokens, B sample bins,
S samples per bin, H histogram bins, V vocabulary.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit, prange, types
from numba.extending import intrinsic



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


def _native_f16() -> bool:
    """Whether LLVM converts float16 in hardware here (x86 F16C, every arm64), so a half -> double
    ``fpext`` compiles to vcvtph2ps & co. and vectorises; elsewhere it would need a runtime library
    call that Numba's JIT may not link."""
    import platform

    if platform.machine().lower() in ("aarch64", "arm64"):
        return True
    try:
        from llvmlite import binding

        return bool(binding.get_host_cpu_features().get("f16c"))
    except Exception:  # noqa: BLE001 - unknown CPU: take the portable path
        return False


NATIVE_F16 = _native_f16()


@intrinsic
def _f16_fpext(typingctx, bits):
    """uint16 float16 bit pattern -> float64, exact (LLVM ``fpext half to double``)."""
    from llvmlite import ir

    def codegen(context, builder, signature, args):
        return builder.fpext(builder.bitcast(args[0], ir.HalfType()), ir.DoubleType())

    return types.float64(types.uint16), codegen


@njit(inline="always", cache=True)
def _f16_lookup(bits):
    """The portable float16 -> float64: the F16_TO_F32 table (exact, but a gather that does not vectorise)."""
    return np.float64(F16_TO_F32[bits])


# float16 bits -> float64 value, exact for all 65536 patterns (tested): the hardware conversion (F16C)
# where the CPU has it, the fastest way measured; else the table.
f16_to_f64 = _f16_fpext if NATIVE_F16 else _f16_lookup


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


@njit(nogil=True, cache=True)  # serial: tiny work, and waking threads on a busy box cost ~10 ms a call
def worst_slots(top_key, top_pos, bot_key, bot_pos, top_worst, bot_worst):
    """Recompute the replace-next slot of every neuron's top and bottom list (after loading a state)."""
    for j in range(top_key.shape[0]):
        top_worst[j] = _worst_top(top_key, top_pos, j)
        bot_worst[j] = _worst_bottom(bot_key, bot_pos, j)


@njit(nogil=True, cache=True)  # serial, as worst_slots
def sample_worst_slots(s_prio, s_worst):
    """Recompute the replace-next slot of every (neuron, bin) sample list."""
    N, B, S = s_prio.shape
    for j in range(N):
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


ZONES = 8  # unit_sample_rows: zones of units for the cheap reject
ZONE_SPREAD = 4.0  # the most a zone's largest threshold may exceed its smallest (but in the last zone)

# ---- row-major kernels (the indexer's) -------------------------------------------------------------
# Each work item owns a block of ``block`` contiguous neurons and walks the R rows of the row-major
# chunk. Each neuron sees its rows in increasing order, so the results equal those of column-wise
# kernels over a transposed chunk (bit for bit for everything but the power sums' rounding).
ROW_BLOCK = 128  # neurons per work item of the row-major kernels (64-256 measured alike; see bench_index.py)


@njit(inline="always", cache=True)
def _copy_window_rows(cur, j, r, row0, ctx_len, before, dst):
    """dst[:] = neuron j's float16 bits at rows r-before .. r-before+W-1 of the row-major chunk,
    clipped to the context of row r (contexts are ``ctx_len`` rows and never straddle a chunk), 0 elsewhere."""
    W = dst.shape[0]
    p = row0 + r
    lo = (p // ctx_len) * ctx_len - row0
    hi = lo + ctx_len
    R = cur.shape[0]
    for w in range(W):
        rr = r - before + w
        if rr >= lo and rr < hi and rr >= 0 and rr < R:
            dst[w] = cur[rr, j]
        else:
            dst[w] = 0


@njit(inline="always", cache=True)
def _keep(j, r, row0, key, keys, pos, worst, top):
    """Put row r's entry (key) of neuron j into the replace-next slot of its top (``top``) or bottom
    list, find the list's new replace-next slot and return the key to beat now. The window is
    copied later (``_fill_windows``), once for the entries the chunk leaves in the list: most
    entries of the first chunks are replaced again within the chunk."""
    s = worst[j]
    keys[j, s] = key
    pos[j, s] = row0 + r
    s = _worst_top(keys, pos, j) if top else _worst_bottom(keys, pos, j)
    worst[j] = s
    return keys[j, s]


@njit(inline="always", cache=True)
def _fill_windows(cur, j, row0, ctx_len, before, pos, win):
    """Copy the window of every entry of neuron j's list (pos [N, m], win [N, m, W]) that came from
    this chunk (rows row0 .. row0 + R - 1): the windows ``_keep`` left out."""
    R = cur.shape[0]
    for s in range(pos.shape[1]):
        r = pos[j, s] - row0
        if r >= 0 and r < R:
            _copy_window_rows(cur, j, r, row0, ctx_len, before, win[j, s])


# ---- pass 1's arguments: a few named structures (namedtuples, which Numba takes as they are) ----------
# Shapes: R rows of the chunk, N neurons, k kept per neuron, W window tokens, G the chunk's distinct
# (context parity, token) pairs, nb neuron blocks of ROW_BLOCK.


class ChunkRows(NamedTuple):
    """One row-major chunk and where it lies in the store."""

    bits: np.ndarray  # uint16 [R, N] float16 bits of the chunk, row-major as stored
    row0: int  # global token position of row 0
    context_len: int  # tokens per context (contexts never straddle a chunk)
    before: int  # window tokens before a firing (W = before + 1 + after)


class RankedList(NamedTuple):
    """The top (or bottom) k firings of every neuron, updated in place: empty slots have key -1 for a
    top list, 65536 for a bottom one, and position -1."""

    key: np.ndarray  # int32 [N, k] float16 order keys (f16_key)
    pos: np.ndarray  # int64 [N, k] global token positions
    win: np.ndarray  # uint16 [N, k, W] float16 bits of this neuron's activations around each entry
    worst: np.ndarray  # int32 [N] the slot replaced next (the lowest-ranked entry)


class DistinctList(NamedTuple):
    """A RankedList of contexts (the best, or lowest, firing of each), with each entry's count of other
    tokens of its context firing at least MORE_SHARE as strongly."""

    key: np.ndarray  # int32 [N, k]
    pos: np.ndarray  # int64 [N, k]
    win: np.ndarray  # uint16 [N, k, W]
    more: np.ndarray  # int32 [N, k]
    worst: np.ndarray  # int32 [N]


class TokenGroups(NamedTuple):
    """The chunk's rows grouped by (context parity, token), for the per-token sums."""

    of_row: np.ndarray  # int32 [R] group of each row: index of its (parity, token) among the chunk's distinct ones
    parity: np.ndarray  # int64 [G] context parity of each group (0 / 1)
    table_row: np.ndarray  # int64 [G] the row of the token sum table of each group's token


class Pass1Sums(NamedTuple):
    """The counts and sums pass 1 adds to."""

    hist_blocks: np.ndarray  # [nb, 2**(16 - HIST_SHIFT), ROW_BLOCK] uint16 / int32 += count per (neuron block, key block,
    # neuron), kept across chunks and folded into [N, HIST_BINS] by ``fold_key_blocks``
    moments: np.ndarray  # float64 [N, 6] this chunk only: shift, power sums 1..4 of value - shift, density count
    token_sum: np.ndarray  # float32 [2, >= T, N] += value per (parity, table row): the chunk's sum in float64, rounded once
    density_key: int  # a value counts for the density when its key is above this one


@njit(nogil=True, cache=True)
def pass1_rows(chunk, top, bot, dtop, dbot, groups, acc, block, b0, b1):
    """Every pass-1 statistic of one chunk in one sweep over the row-major chunk: top-k, bottom-k
    (with windows), histogram, density count, shifted power sums, per-token sums and the distinct
    lists (the best and the lowest firing of each context, see "distinct passages" below).

    chunk: ChunkRows; top / bot: RankedList (top and bottom k); dtop / dbot: DistinctList; groups:
    TokenGroups; acc: Pass1Sums (all updated in place); the neuron blocks b0 .. b1 - 1 of ``block``
    neurons each are this call's work item.

    A row's values and keys go to small buffers first, so the arithmetic loops over the block are
    plain and LLVM vectorises them; only the histogram scatter and the rare insertions are scalar,
    and insertions are only looked for when some neuron of the block beats its k-th key in that row
    (most rows: none). Token sums are added in row order per (token, neuron), so they are the same
    bits whatever the block size or thread count."""
    cur, row0, ctx_len, before = chunk
    top_key, top_pos, top_win, top_worst = top
    bot_key, bot_pos, bot_win, bot_worst = bot
    dtop_key, dtop_pos, dtop_win, dtop_more, dtop_worst = dtop
    dbot_key, dbot_pos, dbot_win, dbot_more, dbot_worst = dbot
    grp, gpar, gtok = groups
    hist_blocks, sums, token_sum, dens_key = acc
    R, N = cur.shape
    for b in range(b0, b1):
        j0 = b * block
        j1 = min(N, j0 + block)
        m = j1 - j0
        shift = np.zeros(m)
        psum = np.zeros((4, m))  # power sums 1..4 of value - shift
        dens = np.zeros(m, np.int64)
        top_thr = np.empty(m, np.int32)
        bot_thr = np.empty(m, np.int32)
        top_new = np.zeros(m, np.bool_)  # whether the chunk put entries into each top (bottom) list
        bot_new = np.zeros(m, np.bool_)
        # the block's histogram counts, key-block-major: neighbouring neurons share their hot bins, so
        # the counts a row touches sit in a few cache lines. Kept across chunks by the caller and
        # folded into [N, HIST_BINS] once (fold_key_blocks), instead of zeroing and folding a
        # per-chunk histogram every chunk (that cost ~17% of the sweep: 16 MB of table per chunk)
        hist_block = hist_blocks[b]
        vbuf = np.empty(m)  # one row's values of the block
        kbuf = np.empty(m, np.int32)  # and their keys
        # the chunk's table rows of the block, gathered once: rows are added in row order as before
        # (the same float64 additions per (token, neuron)), but into a small dense buffer instead of
        # scattered rows of the [2, V, N] table
        G = gtok.shape[0]
        token_acc = np.empty((G, m))
        for g in range(G):
            from_table = token_sum[gpar[g], gtok[g], j0:j1]
            to_acc = token_acc[g]
            for jj in range(m):
                to_acc[jj] = from_table[jj]
        for jj in range(m):
            if R > 0:
                shift[jj] = F16_TO_F32[cur[0, j0 + jj]]
            top_thr[jj] = top_key[j0 + jj, top_worst[j0 + jj]]
            bot_thr[jj] = bot_key[j0 + jj, bot_worst[j0 + jj]]
        # distinct lists: the best (lowest) key of the current context per neuron, and its row
        best = np.empty(m, np.int32)
        brow = np.empty(m, np.int64)
        low = np.empty(m, np.int32)
        lrow = np.empty(m, np.int64)
        dtop_thr = np.empty(m, np.int32)
        dbot_thr = np.empty(m, np.int32)
        for jj in range(m):
            dtop_thr[jj] = dtop_key[j0 + jj, dtop_worst[j0 + jj]]
            dbot_thr[jj] = dbot_key[j0 + jj, dbot_worst[j0 + jj]]
        cstart = 0
        cend = 0
        for r in range(R):
            if r == cend:  # a context starts: rows cstart .. cend - 1 of the chunk
                cstart = r
                cend = min(R, ((row0 + r) // ctx_len + 1) * ctx_len - row0)
                for jj in range(m):
                    best[jj] = -1
                    low[jj] = 65536
            row = cur[r, j0:j1]
            ts = token_acc[grp[r]]
            # simple loops over the block, so LLVM vectorises the arithmetic; only the histogram
            # scatter and the rare insertions are scalar
            for jj in range(m):
                vbuf[jj] = f16_to_f64(row[jj])
                kbuf[jj] = f16_key(row[jj])
            for jj in range(m):
                ts[jj] += vbuf[jj]
            a1 = psum[0]
            a2 = psum[1]
            a3 = psum[2]
            a4 = psum[3]
            for jj in range(m):
                d = vbuf[jj] - shift[jj]
                d2 = d * d
                a1[jj] += d
                a2[jj] += d2
                a3[jj] += d2 * d
                a4[jj] += d2 * d2
            hit = False
            for jj in range(m):
                key = kbuf[jj]
                dens[jj] += key > dens_key
                hit |= (key > top_thr[jj]) | (key < bot_thr[jj])
            for jj in range(m):  # the context's best and lowest so far (the first row on ties)
                key = kbuf[jj]
                if key > best[jj]:
                    best[jj] = key
                    brow[jj] = r
                if key < low[jj]:
                    low[jj] = key
                    lrow[jj] = r
            for jj in range(m):
                hist_block[kbuf[jj] >> HIST_SHIFT, jj] += 1
            if hit:
                for jj in range(m):
                    key = kbuf[jj]
                    j = j0 + jj
                    if key > top_thr[jj]:
                        top_thr[jj] = _keep(j, r, row0, key, top_key, top_pos, top_worst, True)
                        top_new[jj] = True
                    if key < bot_thr[jj]:
                        bot_thr[jj] = _keep(j, r, row0, key, bot_key, bot_pos, bot_worst, False)
                        bot_new[jj] = True
            if r + 1 == cend:  # the context's best and lowest firing compete for the distinct lists
                _keep_context(cur, j0, m, row0, ctx_len, before, cstart, cend, best, brow, dtop_thr,
                              dtop_key, dtop_pos, dtop_win, dtop_more, dtop_worst, True)
                _keep_context(cur, j0, m, row0, ctx_len, before, cstart, cend, low, lrow, dbot_thr,
                              dbot_key, dbot_pos, dbot_win, dbot_more, dbot_worst, False)
        for jj in range(m):  # the windows of the entries this chunk left in the lists
            if top_new[jj]:
                _fill_windows(cur, j0 + jj, row0, ctx_len, before, top_pos, top_win)
            if bot_new[jj]:
                _fill_windows(cur, j0 + jj, row0, ctx_len, before, bot_pos, bot_win)
        for g in range(G):
            to_table = token_sum[gpar[g], gtok[g], j0:j1]
            from_acc = token_acc[g]
            for jj in range(m):
                to_table[jj] = from_acc[jj]
        for jj in range(m):
            o = sums[j0 + jj]
            o[0] = shift[jj]
            o[1] = psum[0, jj]
            o[2] = psum[1, jj]
            o[3] = psum[2, jj]
            o[4] = psum[3, jj]
            o[5] = dens[jj]


@njit(nogil=True, cache=True)
def fold_key_blocks(hkb, hist):
    """hist [N, HIST_BINS] int64 += the key-block counts hkb [nb, 2**(16 - HIST_SHIFT), block] (uint16
    or int32; in place) and zero hkb: bin = key block - HIST_OFFSET, the outer blocks (only inf / NaN)
    folded into the end bins."""
    nb, nk, block = hkb.shape
    N = hist.shape[0]
    for b in range(nb):
        for jj in range(block):
            j = b * block + jj
            if j >= N:  # padding neurons of the last block: never counted, kept zero
                for kb in range(nk):
                    hkb[b, kb, jj] = 0
                continue
            h = hist[j]
            for kb in range(nk):
                c = hkb[b, kb, jj]
                if c:
                    bi = kb - HIST_OFFSET
                    if bi < 0:
                        bi = 0
                    elif bi >= HIST_BINS:
                        bi = HIST_BINS - 1
                    h[bi] += c
                    hkb[b, kb, jj] = 0


@njit(nogil=True, cache=True)
def pass2_rows(cur, row0, ctx_len, before, row_hash, row_hash2, salt, qbin, s_prio, s_pos, s_key, s_win,
               s_worst, block, b0, b1):
    """The second streaming pass over one row-major chunk (cur: uint16 [R, N]): per neuron and
    quantile bin keep the S positions of lowest priority among the values falling into the bin; the
    last bin ("random") takes every position. Priorities are a hash of (position, neuron), so the
    choice is a uniform random sample that does not depend on how the store is cut into chunks, and
    two partial selections merge exactly. Most priorities lose against every quantile bin's current
    S-th (a cheap reject before the key and bin are computed).

    row_hash / row_hash2: uint64 [R] two independent hashes of each row's global position; salt:
    uint64 [N] per neuron (priority = hash ^ salt); qbin: int32 [N, B-2] first histogram bin of each
    quantile bin, ascending; s_prio uint64 [N, B, S] (2**64-1 = empty), s_pos int64 [N, B, S] (-1 =
    empty), s_key int32 [N, B, S], s_win uint16 [N, B, S, W], s_worst int32 [N, B] slot replaced next."""
    R, N = cur.shape
    B = s_prio.shape[1]
    S = s_prio.shape[2]
    nq = qbin.shape[1]
    for b in range(b0, b1):
        j0 = b * block
        j1 = min(N, j0 + block)
        m = j1 - j0
        # per neuron: the priority a new entry must beat in each bin (bin-major, so the reject test
        # below reads contiguous rows), and the first key of each quantile bin
        thr = np.empty((B, m), np.uint64)
        qkey = np.empty((nq, m), np.int32)
        for jj in range(m):
            for bi in range(B):
                thr[bi, jj] = s_prio[j0 + jj, bi, s_worst[j0 + jj, bi]]
            for e in range(nq):
                # key >= qkey  <=>  clamped histogram bin >= qbin (bin 0 takes every key below it)
                qkey[e, jj] = (qbin[j0 + jj, e] + HIST_OFFSET) << HIST_SHIFT if qbin[j0 + jj, e] > 0 else -1
        sl = salt[j0:j1]
        kbuf = np.empty(m, np.int32)  # one row's keys of the block
        tsel = np.empty(m, np.uint64)  # the priority each would have to beat
        snew = np.zeros((B, m), np.bool_)  # whether the chunk put entries into each (bin, neuron) list
        for r in range(R):
            h1 = row_hash[r]
            h2 = row_hash2[r]
            row = cur[r, j0:j1]
            # cheap reject, in loops over the block that LLVM vectorises: does any neuron take this
            # row into a bin? tsel = the current S-th priority of the value's quantile bin (0 = top)
            for jj in range(m):
                kbuf[jj] = f16_key(row[jj])
                tsel[jj] = thr[nq, jj]
            for e in range(nq):
                te = thr[nq - 1 - e]
                qe = qkey[e]
                for jj in range(m):
                    if kbuf[jj] >= qe[jj]:
                        tsel[jj] = te[jj]
            hit = False
            trand = thr[B - 1]
            for jj in range(m):
                hit |= ((h1 ^ sl[jj]) < tsel[jj]) | ((h2 ^ sl[jj]) < trand[jj])
            if not hit:
                continue
            for jj in range(m):
                j = j0 + jj
                sj = salt[j]
                for which in range(2):
                    if which == 0:
                        pr = h1 ^ sj
                        key = f16_key(cur[r, j])
                        hb = (key >> HIST_SHIFT) - HIST_OFFSET
                        if hb < 0:
                            hb = 0
                        elif hb >= HIST_BINS:
                            hb = HIST_BINS - 1
                        bi = nq
                        for e in range(nq - 1, -1, -1):
                            if hb >= qbin[j, e]:
                                bi = nq - 1 - e
                                break
                    else:
                        pr = h2 ^ sj
                        bi = B - 1
                    if pr < thr[bi, jj]:
                        key = f16_key(cur[r, j])
                        s = s_worst[j, bi]
                        s_prio[j, bi, s] = pr
                        s_pos[j, bi, s] = row0 + r
                        s_key[j, bi, s] = key
                        snew[bi, jj] = True  # its window: below, if it is still there at the end of the chunk
                        w = 0
                        for i in range(1, S):
                            if s_prio[j, bi, i] > s_prio[j, bi, w]:
                                w = i
                        s_worst[j, bi] = w
                        thr[bi, jj] = s_prio[j, bi, w]
        for bi in range(B):  # the windows of the samples this chunk left in the lists
            for jj in range(m):
                if snew[bi, jj]:
                    _fill_windows(cur, j0 + jj, row0, ctx_len, before, s_pos[:, bi], s_win[:, bi])


@njit(nogil=True, cache=True)
def unit_sample_rows(cur, row0, ctx_len, before, row_hash, row_hash2, salt, ukb, unit_kb,
                     s_prio, s_pos, s_key, s_win, s_worst, block, b0, b1):
    """Samples drawn in the same sweep as pass 1, before the quantile edges are known: per neuron
    and *unit* (a run of histogram bins) keep the S positions of lowest priority ``row_hash ^ salt``
    among the values in the unit; the last unit (``U - 1``) takes every position with priority
    ``row_hash2 ^ salt`` (the "random" bin). Same priorities as ``pass2_rows``, so a quantile bin
    that is a union of units gets exactly pass 2's samples: the S lowest of its units' S lowest.

    ukb: uint8 [nb, 2**(16 - HIST_SHIFT), block] the unit of each (neuron block, key block, neuron)
    (``unit_key_blocks``); unit_kb: int32 [N, U + 1] the first key block of each unit (unit 0: 0;
    unused units and the end: 2**(16 - HIST_SHIFT)), so unit u covers key blocks unit_kb[u] ..
    unit_kb[u + 1] - 1. The cheap reject works on *zones* of consecutive units of similar thresholds
    (regrouped at every chunk, see below) and on the high 32 bits of priorities and thresholds: a few
    32-bit compare-selects per value that LLVM vectorises; only the values that pass look up their
    unit and compare whole priorities. Results do not depend on the zones: they only skip values that
    cannot be samples. Other arrays as pass2_rows."""
    R, N = cur.shape
    U = s_prio.shape[1]
    S = s_prio.shape[2]
    for b in range(b0, b1):
        j0 = b * block
        j1 = min(N, j0 + block)
        m = j1 - j0
        thr = np.empty((U, m), np.uint64)  # per unit and neuron: the priority a new entry must beat
        for jj in range(m):
            for u in range(U):
                thr[u, jj] = s_prio[j0 + jj, u, s_worst[j0 + jj, u]]
        ul = ukb[b]  # [key block, neuron of the block]
        thr32 = np.empty((U, m), np.uint32)  # the high halves of thr, for the cheap reject
        for jj in range(m):
            for u in range(U):
                thr32[u, jj] = np.uint32(thr[u, jj] >> np.uint64(32))
        sl = salt[j0:j1]
        sl32 = np.empty(m, np.uint32)
        trand32 = np.empty(m, np.uint32)
        for jj in range(m):
            sl32[jj] = np.uint32(sl[jj] >> np.uint64(32))
            trand32[jj] = np.uint32(thr[U - 1, jj] >> np.uint64(32))
        # zones for the cheap reject, made afresh each chunk from the thresholds: runs of consecutive
        # units whose thresholds lie within a factor ZONE_SPREAD of each other (at most ZONES; the last
        # takes the rest), each with the largest threshold among them (thresholds only fall, so it stays
        # an upper bound through the chunk). A value whose priority's high half is above its zone's is
        # no sample: a few compare-selects per value, no table lookup
        zk = np.full((ZONES, m), 1 << 20, np.int32)  # first key of each zone; unused: above every key
        zt = np.zeros((ZONES, m), np.uint32)
        for jj in range(m):
            j = j0 + jj
            z = 0
            zk[0, jj] = 0
            lo = np.uint32(0xFFFFFFFF)
            hi = np.uint32(0)
            for u in range(U - 1):
                if unit_kb[j, u] >= 1 << (16 - HIST_SHIFT):  # past the neuron's units
                    break
                t = thr32[u, jj]
                nlo = min(lo, t)
                nhi = max(hi, t)
                if u > 0 and z < ZONES - 1 and np.float64(nhi) > ZONE_SPREAD * max(np.float64(nlo), 1.0):
                    z += 1
                    zk[z, jj] = unit_kb[j, u] << HIST_SHIFT
                    nlo = t
                    nhi = t
                lo = nlo
                hi = nhi
                zt[z, jj] = hi
        tsel = np.empty(m, np.uint32)
        kbuf = np.empty(m, np.int32)
        takes = np.zeros(-(-m // 8) * 8, np.uint8)  # whether each neuron may take the row
        words = takes.view(np.uint64)  # the same flags 8 at a time, to skip the neurons that do not
        snew = np.zeros((U, m), np.bool_)  # whether the chunk put entries into each (unit, neuron) list
        for r in range(R):
            h1 = row_hash[r]
            h2 = row_hash2[r]
            h1_32 = np.uint32(h1 >> np.uint64(32))
            h2_32 = np.uint32(h2 >> np.uint64(32))
            row = cur[r, j0:j1]
            hit = 0
            for jj in range(m):  # compare-selects only, vectorised: the zone threshold of each value
                kbuf[jj] = f16_key(row[jj])
                tsel[jj] = zt[0, jj]
            for z in range(1, ZONES):
                zkz = zk[z]
                ztz = zt[z]
                for jj in range(m):
                    if kbuf[jj] >= zkz[jj]:
                        tsel[jj] = ztz[jj]
            for jj in range(m):
                t = np.uint8(((h1_32 ^ sl32[jj]) <= tsel[jj]) | ((h2_32 ^ sl32[jj]) <= trand32[jj]))
                takes[jj] = t
                hit |= t
            if hit == 0:
                continue
            for wi in range(words.shape[0]):
                if words[wi] == 0:
                    continue
                for jj in range(wi * 8, min(m, wi * 8 + 8)):
                    if takes[jj] == 0:
                        continue
                    j = j0 + jj
                    u = np.int64(ul[kbuf[jj] >> HIST_SHIFT, jj])
                    if (((h1_32 ^ sl32[jj]) > thr32[u, jj]) & ((h2_32 ^ sl32[jj]) > trand32[jj])):
                        continue  # the value's own unit rejects it
                    for which in range(2):
                        uu = u if which == 0 else U - 1
                        pr = (h1 if which == 0 else h2) ^ sl[jj]
                        if pr >= thr[uu, jj]:
                            continue
                        s = s_worst[j, uu]
                        s_prio[j, uu, s] = pr
                        s_pos[j, uu, s] = row0 + r
                        s_key[j, uu, s] = kbuf[jj]
                        snew[uu, jj] = True  # its window: below, if it is still there at the end of the chunk
                        w = 0
                        for i in range(1, S):
                            if s_prio[j, uu, i] > s_prio[j, uu, w]:
                                w = i
                        s_worst[j, uu] = w
                        thr[uu, jj] = s_prio[j, uu, w]
                        thr32[uu, jj] = np.uint32(thr[uu, jj] >> np.uint64(32))
                        if which == 1:
                            trand32[jj] = thr32[uu, jj]
        for u in range(U):  # the windows of the samples this chunk left in the lists
            for jj in range(m):
                if snew[u, jj]:
                    _fill_windows(cur, j0 + jj, row0, ctx_len, before, s_pos[:, u], s_win[:, u])


@njit(nogil=True, cache=True)
def key_block_counts(cur, counts, block, b0, b1):
    """counts [nb, 2**(16 - HIST_SHIFT), block] int32 += the number of values of each neuron per
    (neuron block, key block, neuron) of one row-major chunk cur [R, N], for the neuron blocks b0..b1-1:
    a histogram without pass 1, in pass1_rows's layout (folded by ``fold_key_blocks``)."""
    R, N = cur.shape
    for b in range(b0, b1):
        j0 = b * block
        j1 = min(N, j0 + block)
        hl = counts[b]
        for r in range(R):
            row = cur[r, j0:j1]
            for jj in range(j1 - j0):
                hl[f16_key(row[jj]) >> HIST_SHIFT, jj] += 1


def unit_key_blocks(umap: np.ndarray, block: int) -> np.ndarray:
    """uint8 [nb, 2**(16 - HIST_SHIFT), block]: ``umap`` [N, HIST_BINS] (histogram bin -> unit) by
    (neuron block, key block, neuron), the outer key blocks taking the end bins' units (as the
    histogram folds them), for ``unit_sample_rows``."""
    N = umap.shape[0]
    nb = -(-N // block)
    kb = np.clip(np.arange(1 << (16 - HIST_SHIFT)) - HIST_OFFSET, 0, HIST_BINS - 1)
    full = np.zeros((nb * block, kb.shape[0]), np.uint8)
    full[:N] = umap[:, kb]
    return np.ascontiguousarray(full.reshape(nb, block, -1).transpose(0, 2, 1))


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


# ---- distinct passages: the best firing of each context --------------------------------------------
# A second top-k (and bottom-k) per neuron over *contexts* instead of tokens: each context (ctx_len
# contiguous rows, never straddling a chunk) offers only its best firing, so the list holds distinct
# passages: Neuroscope keeps one firing per document). Kept beside the raw top-k in the same sweep
# (pass1_rows: a running best and lowest key per context, offered at the context's end). Same total order and tie
# rule as the raw lists (key, then lower position; within a context the first best position), so
# partial results merge exactly. With each entry: how many other tokens of its context fire at least
# MORE_SHARE as strongly (same sign), counted when the entry is kept.
MORE_SHARE = 0.5  # store.measures.snippets.MORE_SHARE


@njit(inline="always", cache=True)
def _count_more(cur, j, lo, hi, peak):
    """Tokens of rows lo..hi-1 (one context) of neuron j, other than the peak itself, whose value is at
    least MORE_SHARE of the peak value (same sign); 0 for a peak of 0."""
    if peak == 0.0:
        return 0
    lim = MORE_SHARE * peak
    n = 0
    for rr in range(lo, hi):
        v = f16_to_f64(cur[rr, j])
        if (peak > 0.0 and v >= lim) or (peak < 0.0 and v <= lim):
            n += 1
    return n - 1


@njit(inline="always", cache=True)
def _keep_context(cur, j0, m, row0, ctx_len, before, c0, c1, peak, prow, thr, keys, pos, win, more, worst, top):
    """At the end of a context (rows c0 .. c1 - 1 of the chunk): for each neuron j0 + jj of the block
    whose context peak (``peak[jj]`` at row ``prow[jj]``: the largest key for the top list, the
    smallest for the bottom one) beats its list's threshold ``thr[jj]``, put it into the list with its
    window and its ``more`` count, and update the threshold."""
    for jj in range(m):
        if (peak[jj] > thr[jj]) if top else (peak[jj] < thr[jj]):
            j = j0 + jj
            s = worst[j]
            keys[j, s] = peak[jj]
            pos[j, s] = row0 + prow[jj]
            _copy_window_rows(cur, j, prow[jj], row0, ctx_len, before, win[j, s])
            more[j, s] = _count_more(cur, j, c0, c1, f16_to_f64(cur[prow[jj], j]))
            s = _worst_top(keys, pos, j) if top else _worst_bottom(keys, pos, j)
            worst[j] = s
            thr[jj] = keys[j, s]
