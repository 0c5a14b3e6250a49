"""The compare verdict: which evidence decides, effect sizes, intervals and p-values checked by hand."""

import math

import numpy as np
import pytest

from neurobrowse import verdict
from neurobrowse.verdict import StudyEvidence, decide, newcombe, score_evidence, wilson


def _hand_fisher(a, b, c, d):
    r1, c1, n = a + b, a + c, a + b + c + d

    def prob(x):
        return math.comb(c1, x) * math.comb(n - c1, r1 - x) / math.comb(n, r1)

    p_obs = prob(a)
    return sum(prob(x) for x in range(max(0, r1 + c1 - n), min(r1, c1) + 1) if prob(x) <= p_obs * (1 + 1e-7))


def test_score_evidence_by_hand():
    solu = np.r_[np.full(30, 0.9), np.full(70, 0.1), np.nan]  # 30 of 100 pass 0.5 (NaN left out)
    gelu = np.r_[np.full(10, 0.9), np.full(90, 0.1)]
    e = score_evidence("explain_score", "rule explanation score", 0.5, solu, gelu)
    assert e.k == (30, 10) and e.n == (100, 100) and e.diff == pytest.approx(0.2)
    assert e.p_fisher == pytest.approx(_hand_fisher(30, 70, 10, 90), rel=1e-9)
    # Mann-Whitney effect: P(solu > gelu) + half the ties
    wins = (30 * 90 + 0.5 * (30 * 10 + 70 * 90)) / (100 * 100)
    assert e.mwu_effect == pytest.approx(wins)
    lo, hi = e.diff_interval
    assert lo < 0.2 < hi
    # by hand: Wilson 30/100 = [0.2189, 0.3958], 10/100 = [0.0552, 0.1744]; 0.2 -+ sqrt(sum of squared arms)
    assert newcombe(30, 100, 10, 100) == pytest.approx((0.0900, 0.3058), abs=5e-4)
    assert wilson(0, 0) == (0.0, 1.0) and e.outcome == "holds" and e.discriminates


def test_a_score_that_passes_almost_every_neuron_does_not_decide():
    sat = score_evidence("sim_score", "token lookup correlation", 0.5, np.full(100, 0.9), np.r_[np.full(95, 0.9),
                                                                                              np.full(5, 0.1)])
    assert not sat.discriminates
    weak = score_evidence("token_rule_score", "token-rule score", 0.8, np.r_[np.full(22, 0.9), np.full(78, 0.1)],
                          np.r_[np.full(20, 0.9), np.full(80, 0.1)])
    v = decide(("SoLU-LN", "GeLU"), [sat, weak])
    assert v.decided_by == "token_rule_score" and v.outcome == "undecided"
    assert v.headline.startswith("Automated proxy, token-rule score ≥ 0.8") and "includes zero" in v.headline
    assert any("does not decide" in line and "token lookup correlation" in line for line in v.lines)
    v = decide(("SoLU-LN", "GeLU"), [sat])
    assert v.outcome == "untested" and v.headline.startswith("Undecided")
    against = score_evidence("explain_score", "rule explanation score", 0.7, np.r_[np.full(10, 0.9), np.full(90, 0)],
                             np.r_[np.full(40, 0.9), np.full(60, 0)])
    assert decide(("SoLU-LN", "GeLU"), [weak, against]).outcome == "does not hold"  # the explanation score leads


def test_a_reported_study_is_the_headline_and_proxies_come_second():
    weak = score_evidence("token_rule_score", "token-rule score", 0.8, np.r_[np.full(22, 0.9), np.full(78, 0.1)],
                          np.r_[np.full(20, 0.9), np.full(80, 0.1)])
    study = StudyEvidence("s", (31, 17), (60, 60), verdict.fisher_p(31, 60, 17, 60), 2)
    v = decide(("SoLU-LN", "GeLU"), [weak], study)
    assert v.decided_by == "study" and v.outcome == "holds"
    assert v.headline.startswith("Blinded study (2 raters, majority verdict per neuron): SoLU-LN 31/60 = 52%")
    assert f"p = {_hand_fisher(31, 29, 17, 43):.2g}" in v.headline
    assert v.lines[0].startswith("proxy: token-rule score")
