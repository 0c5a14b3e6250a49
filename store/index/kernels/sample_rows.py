"""The random samples per (neuron, bin): position hashes and the two sample kernels, pass 2's
(``pass2_rows``, quantile bins known) and the one in pass 1's read (``unit_sample_rows``, per unit)."""

from __future__ import annotations

import numpy as np
from numba import njit

from store.index.kernels.f16 import f16_key
from store.index.kernels.histogram import HIST_BINS, HIST_OFFSET, HIST_SHIFT
from store.index.kernels.topk import _fill_windows


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


ZONES = 8  # unit_sample_rows: zones of units for the cheap reject
ZONE_SPREAD = 4.0  # the most a zone's largest threshold may exceed its smallest (but in the last zone)


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
