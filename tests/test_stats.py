"""The shared statistics (neurobrowse.stats), the number formatter and the statistics-column registry."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binomtest
from scipy.stats import fisher_exact as scipy_fisher

from neurobrowse import formatting, stats
from store.measures import columns


def test_wilson_interval_matches_scipy_and_known_values():
    for k, n in ((21, 60), (36, 60), (0, 12), (12, 12), (0, 10), (50, 100), (1, 1)):
        ref = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        assert stats.wilson_interval(k, n) == (pytest.approx(ref.low, abs=1e-9), pytest.approx(ref.high, abs=1e-9))
    lo, hi = stats.wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-3)


def test_wilson_interval_without_data_is_the_whole_range():
    # n = 0: no evidence, every share possible (the formula's limit as n -> 0), in the app and the study alike
    assert stats.wilson_interval(0, 0) == (0.0, 1.0)
    lo, hi = stats.wilson_interval(1, 10**9)
    assert 0 < lo < hi < 1e-8


def test_fisher_cohen_fleiss_roc_against_known_values():
    odds, p = stats.fisher_exact([[8, 2], [1, 5]])
    ref = scipy_fisher([[8, 2], [1, 5]], alternative="two-sided")
    assert (odds, p) == (pytest.approx(ref[0]), pytest.approx(ref[1]))
    # Cohen's kappa, by hand: po = 0.7, pe = 0.5*0.6 + 0.5*0.4 = 0.5 -> 0.4
    a = ["y"] * 5 + ["n"] * 5
    b = ["y", "y", "y", "y", "n", "y", "y", "n", "n", "n"]
    assert stats.cohen_kappa(a, b, ("y", "n")) == pytest.approx((0.7 - 0.5) / 0.5)
    assert math.isnan(stats.cohen_kappa([], [], ("y", "n")))
    # Fleiss' kappa: the worked example of Fleiss (1971) as given on Wikipedia: 0.210
    table = np.array([[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
                      [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]])
    assert stats.fleiss_kappa(table) == pytest.approx(0.2099, abs=5e-4)
    # ROC AUC: perfect, inverted, and a tie counted half
    pos = np.array([True, True, False, False])
    assert stats.roc_auc(np.array([3.0, 4.0, 1.0, 2.0]), pos) == 1.0
    assert stats.roc_auc(np.array([1.0, 2.0, 3.0, 4.0]), pos) == 0.0
    assert stats.roc_auc(np.array([1.0, 1.0, 1.0, 1.0]), pos) == 0.5


def test_human_bytes_is_binary_and_says_so():
    assert formatting.human_bytes(512) == "512 B"
    assert formatting.human_bytes(1536) == "1.5 KiB"
    assert formatting.human_bytes(8 * 2**20) == "8.0 MiB"
    assert formatting.human_bytes(2 * 2**30) == "2.0 GiB"
    assert formatting.human_bytes(3 * 2**50) == "3.0 PiB"


def test_column_registry_owns_scores_thresholds_and_formats():
    assert columns.SCORES == ("token_rule_score", "sim_score", "explain_score")
    assert columns.THRESHOLDS == {"token_rule_score": 0.8, "sim_score": 0.5, "explain_score": 0.7}
    from store.measures.explain import PASS_SCORE

    assert columns.THRESHOLDS["explain_score"] == PASS_SCORE  # the registry and store.measures.explain agree
    from store import schema

    for name in columns.INDEX_SCALARS:  # every column read from the index is an index array the schema knows
        assert name in schema.INDEX_ARRAYS
    for name in columns.EXPLAIN_SCALARS:
        assert name in schema.EXPLAIN_ARRAYS
    assert columns.format_value("density", 0.12345) == "0.123"
    assert columns.format_value("neuron", 7) == "7"
    assert columns.format_value("kurtosis", float("nan")) == "—"
    assert columns.format_value("top_token", " the") == " the"
    from neurobrowse.browsing.filtering import TABLE_COLUMNS, parse_filter

    keys = [k for k, _, _ in TABLE_COLUMNS]
    assert keys.index("label") == keys.index("top_token") + 1  # in view at the default width
    assert keys[-3:] == ["explain_score", "explanation", "ln_overlap"]
    assert parse_filter("rule >= 0.8")[0].column == "token_rule_score"


def test_wilson_interval_holds_the_observed_share_at_the_edges():
    from neurobrowse.stats import wilson_interval

    for n in (1, 7, 256, 1000, 12345):
        assert wilson_interval(n, n)[1] == 1.0 and wilson_interval(0, n)[0] == 0.0
        for k in (0, n // 3, n):
            lo, hi = wilson_interval(k, n)
            assert lo <= k / n <= hi
