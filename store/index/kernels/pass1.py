"""Pass 1 of the indexer: every per-neuron statistic but the samples, in one sweep over each
row-major chunk (``pass1_rows``), and the named structures it takes."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from store.index.kernels.f16 import F16_TO_F32, f16_key, f16_to_f64
from store.index.kernels.histogram import HIST_SHIFT
from store.index.kernels.topk import _fill_windows, _keep, _keep_context


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

    hist_blocks: np.ndarray  # [nb, 2**(16 - HIST_SHIFT), ROW_BLOCK] uint16 / int32 += count per (neuron block,
    # key block, neuron), kept across chunks and folded into [N, HIST_BINS] by ``fold_key_blocks``
    moments: np.ndarray  # float64 [N, 6] this chunk only: shift, power sums 1..4 of value - shift, density count
    token_sum: np.ndarray  # float32 [2, >= T, N] += value per (parity, table row): the chunk's sum in float64,
    # rounded once
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
