"""The statistics the app's compare view and the blinded study report share.

- ``wilson_interval``: a 95% interval for a share k/n.
- ``fisher_exact``: two-sided Fisher exact test of a 2 x 2 table.
- ``cohen_kappa`` / ``fleiss_kappa``: agreement between two / several raters.
- ``roc_auc``: how well a score separates positives from negatives.

Pure functions over numbers; no store, no Qt.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np

Z95 = 1.959963984540054  # standard normal quantile for a two-sided 95% interval


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval (95% by default) of a share k/n.

    Well-behaved at k = 0, k = n and small n. With n = 0 there is no evidence at all and the interval
    is (0.0, 1.0): every share is possible (it is also the limit of the formula as n -> 0).
    """
    if n <= 0:
        return (0.0, 1.0)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo, hi = max(0.0, centre - half), min(1.0, centre + half)
    # the interval always holds the observed share (k = n or k = 0 must not round to 0.9999999999999999)
    return (min(lo, p), max(hi, p))


def fisher_exact(table: Sequence[Sequence[int]]) -> tuple[float, float]:
    """(odds ratio, two-sided p-value) of a 2 x 2 table [[a_yes, a_no], [b_yes, b_no]]."""
    from scipy.stats import fisher_exact as _fisher

    odds, p = _fisher(np.asarray(table, dtype=np.int64), alternative="two-sided")
    return float(odds), float(p)


def cohen_kappa(a: Sequence[str], b: Sequence[str], categories: Iterable[str]) -> float:
    """Cohen's kappa of two raters' labels of the same items (NaN with no items or no variation)."""
    cats = list(categories)
    n = len(a)
    if n == 0:
        return math.nan
    po = sum(x == y for x, y in zip(a, b)) / n
    pe = sum((list(a).count(c) / n) * (list(b).count(c) / n) for c in cats)
    return math.nan if pe == 1 else (po - pe) / (1 - pe)


def fleiss_kappa(table: np.ndarray) -> float:
    """Fleiss' kappa from counts [items, categories] (each row sums to the number of raters)."""
    table = np.asarray(table, dtype=np.float64)
    n_items, _ = table.shape
    r = table.sum(axis=1)
    if n_items == 0 or not np.all(r == r[0]) or r[0] < 2:
        return math.nan
    r = r[0]
    p_j = table.sum(axis=0) / (n_items * r)
    p_i = (np.sum(table * table, axis=1) - r) / (r * (r - 1))
    p_bar, pe = p_i.mean(), np.sum(p_j * p_j)
    return math.nan if pe == 1 else float((p_bar - pe) / (1 - pe))


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve: P(score of a positive > score of a negative), ties counted half.
    NaN scores are left out; NaN when either class is empty."""
    from scipy.stats import rankdata

    scores, positive = np.asarray(scores, dtype=np.float64), np.asarray(positive, dtype=bool)
    ok = np.isfinite(scores)
    scores, positive = scores[ok], positive[ok]
    n1, n0 = int(positive.sum()), int((~positive).sum())
    if n1 == 0 or n0 == 0:
        return math.nan
    ranks = rankdata(scores)
    return float((ranks[positive].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


__all__ = ["Z95", "wilson_interval", "fisher_exact", "cohen_kappa", "fleiss_kappa", "roc_auc"]
