"""The histogram's bins, read off the float16 bit pattern, and the kernels that count into them."""

from __future__ import annotations

import numpy as np
from numba import njit

from store.index.kernels.f16 import f16_key, key_to_f16_bits


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
