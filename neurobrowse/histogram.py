"""The activation histogram as the neuron page draws it, without Qt: equal-width bins.

The index keeps each neuron's counts in float16 bit-pattern bins (store.index.kernels.histogram: 16 per octave, so
bins near 0 are tiny and bins in the tail several units wide); plotted as they are, the heights are
not comparable. ``equal_width`` spreads those counts over bins of one width between the neuron's
smallest and largest activation (each stored bin's count shared out in proportion to its overlap, so
every total is kept exactly and heights are proportional to the density).
"""

from __future__ import annotations

import numpy as np

PLOT_BINS = 120  # equal-width bins drawn (a filled path of thousands of steps costs ~50 ms to paint)


def equal_width(edges, counts, lo: float, hi: float, bins: int = PLOT_BINS) -> tuple[np.ndarray, np.ndarray]:
    """(edges [bins + 1], counts [bins] float64) over [lo, hi] from a histogram with any edges
    (edges [H + 1] ascending, counts [H]). Counts outside [lo, hi] go to the end bins."""
    edges = np.asarray(edges, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.float64)
    if not (np.isfinite(lo) and np.isfinite(hi)) or len(edges) != len(counts) + 1 or counts.sum() <= 0:
        return np.array([0.0, 1.0]), np.array([0.0])
    if hi <= lo:
        hi = lo + max(abs(lo) * 1e-3, 1e-6)
    # the occupied stored bins, their outer edges clipped to the data range
    nz = np.flatnonzero(counts)
    e = edges[nz[0]:nz[-1] + 2].copy()
    c = counts[nz[0]:nz[-1] + 1]
    e[0], e[-1] = min(e[0], lo), max(e[-1], hi)
    e = np.clip(e, lo, hi)
    cum = np.concatenate([[0.0], np.cumsum(c)])  # cumulative count at each stored edge
    out_edges = np.linspace(lo, hi, bins + 1)
    # cumulative count at the new edges, linear inside a stored bin; repeated edges (bins squeezed to a
    # point by the clip) take their largest cumulative count so nothing is lost at the ends
    keep = np.r_[np.diff(e) > 0, True]
    ex, cx = e[keep], cum[keep]
    if len(ex) < 2:
        out = np.zeros(bins)
        out[np.clip(np.searchsorted(out_edges, ex[0], "right") - 1, 0, bins - 1)] = cum[-1]
        return out_edges, out
    at = np.interp(out_edges, ex, cx)
    at[0], at[-1] = 0.0, cum[-1]
    return out_edges, np.diff(at)
