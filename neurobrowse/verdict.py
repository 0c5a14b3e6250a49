"""Does the SoLU paper's result hold on two models? A verdict that names its evidence and how sure it is.

Evidence comes in two kinds, in this order:

1. **A blinded rating study of these two stores** (``neurobrowse study``), when one has been reported:
   per neuron (item) the raters' majority verdict, the share of interpretable neurons per model with
   95% Wilson intervals, and a two-sided Fisher exact test on those item counts. It is the headline.
2. **Automated proxies**: for each index score with a pass threshold (store.measures.columns), the share of
   neurons passing per model with Wilson intervals, the difference of the shares with its 95%
   Newcombe interval (the effect size), a two-sided Fisher exact test on the pass counts and a
   Mann-Whitney U test on the score distributions (with its effect size P(SoLU score > GeLU score)).
   A score that passes more than DISCRIMINATION_LIMIT of *both* models' neurons cannot tell them
   apart: it is shown but does not decide. Without a study the first deciding score (in the order
   of ``PROXY_ORDER``) makes the headline, called a proxy.

"Holds" means: the SoLU model's share is higher and the two-sided Fisher exact test gives
p < ALPHA; "points the same way" is higher with p >= ALPHA; "does not hold" is lower or equal
(``HOLDS_HELP`` says it in words for the window's tooltip and the CLI).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from neurobrowse.stats import wilson_interval

ALPHA = 0.05
DISCRIMINATION_LIMIT = 0.9  # a score passing more than this share of both models' neurons does not decide
PROXY_ORDER = ("explain_score", "token_rule_score", "lookup_corr", "sim_score")  # which proxy leads
HOLDS_HELP = (
    "'Holds' means SoLU-LN neurons pass more often than GeLU neurons and a two-sided Fisher exact test on the "
    f"pass counts gives p < {ALPHA:g}; 'points the same way' means higher but p >= {ALPHA:g}; 'does not hold' "
    "means not higher. A blinded rating study of these stores, once reported (`neurobrowse study report`), is "
    "the evidence; automated scores are proxies for it, and a score that passes more than "
    f"{DISCRIMINATION_LIMIT:.0%} of both models' neurons cannot tell them apart, so it does not decide.")


def wilson(k: int, n: int) -> tuple[float, float]:
    """95% Wilson score interval of k/n: neurobrowse.stats.wilson_interval, the one definition."""
    return wilson_interval(k, n)


def newcombe(k1: int, n1: int, k2: int, n2: int) -> tuple[float, float]:
    """95% interval of p1 - p2 (Newcombe's hybrid score interval from the two Wilson intervals)."""
    p1, p2 = (k1 / n1 if n1 else 0.0), (k2 / n2 if n2 else 0.0)
    l1, u1 = wilson(k1, n1)
    l2, u2 = wilson(k2, n2)
    d = p1 - p2
    return (d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2), d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2))


def fisher_p(k1: int, n1: int, k2: int, n2: int) -> float:
    """Two-sided Fisher exact test of k1/n1 against k2/n2."""
    from scipy.stats import fisher_exact

    if n1 <= 0 or n2 <= 0:
        return math.nan
    return float(fisher_exact([[k1, n1 - k1], [k2, n2 - k2]], alternative="two-sided")[1])


class _TwoShares:
    """Shares, Wilson intervals, difference and outcome of k/n on two sides (solu, other); the evidence
    dataclasses below carry k, n and p_fisher."""

    @property
    def shares(self) -> tuple[float, float]:
        return tuple(k / n if n else math.nan for k, n in zip(self.k, self.n))

    @property
    def intervals(self) -> tuple[tuple[float, float], tuple[float, float]]:
        return (wilson(self.k[0], self.n[0]), wilson(self.k[1], self.n[1]))

    @property
    def diff(self) -> float:
        return self.shares[0] - self.shares[1]

    @property
    def diff_interval(self) -> tuple[float, float]:
        return newcombe(self.k[0], self.n[0], self.k[1], self.n[1])

    @property
    def outcome(self) -> str:
        return _outcome(self.diff, self.p_fisher)


@dataclass
class ScoreEvidence(_TwoShares):
    """One automated score compared between the SoLU side (s) and the other side (g)."""

    name: str
    title: str
    threshold: float
    k: tuple[int, int]  # neurons passing: (solu, other)
    n: tuple[int, int]  # neurons with a finite score
    p_fisher: float
    mwu_effect: float  # P(score of a SoLU neuron > score of an other neuron), ties half
    p_mwu: float

    @property
    def discriminates(self) -> bool:
        s, g = self.shares
        return not (s > DISCRIMINATION_LIMIT and g > DISCRIMINATION_LIMIT) and min(self.n) > 0


def _outcome(diff: float, p: float) -> str:
    if not math.isfinite(diff):
        return "untested"
    if diff > 0 and p < ALPHA:
        return "holds"
    if diff > 0:
        return "same way, not significant"
    return "does not hold"


def score_evidence(name: str, title: str, threshold: float, solu: np.ndarray, other: np.ndarray) -> ScoreEvidence:
    from scipy.stats import mannwhitneyu

    a = np.asarray(solu, np.float64)
    b = np.asarray(other, np.float64)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    k = (int((a >= threshold).sum()), int((b >= threshold).sum()))
    n = (int(a.size), int(b.size))
    if a.size and b.size:
        u, p = mannwhitneyu(a, b, alternative="two-sided")
        eff = float(u) / (a.size * b.size)
    else:
        p, eff = math.nan, math.nan
    return ScoreEvidence(name, title, float(threshold), k, n, fisher_p(k[0], n[0], k[1], n[1]), eff, float(p))


@dataclass
class StudyEvidence(_TwoShares):
    """A reported blinded study of these stores, per item (neuron): majority verdicts."""

    path: str
    k: tuple[int, int]  # items judged interpretable by the majority: (solu, other)
    n: tuple[int, int]  # items
    p_fisher: float
    raters: int



@dataclass
class Verdict:
    headline: str
    lines: list[str]  # the evidence line by line (study, deciding proxies, the rest)
    outcome: str  # holds / same way, not significant / does not hold / untested
    decided_by: str  # "study", a score name, or "" when nothing decides
    evidence: list[ScoreEvidence] = field(default_factory=list)
    study: StudyEvidence | None = None
    help: str = HOLDS_HELP

    @property
    def text(self) -> str:
        return "\n".join([self.headline, *self.lines])


def _pct(x: float) -> str:
    return "n/a" if not math.isfinite(x) else f"{100 * x:.0f}%"


def _ci(iv) -> str:
    return f"[{100 * iv[0]:.0f}–{100 * iv[1]:.0f}%]"


def _p(p: float) -> str:
    if not math.isfinite(p):
        return "p n/a"
    return f"p = {p:.2g}" if p >= 1e-4 else "p < 0.0001"


def _evidence_line(e: ScoreEvidence, names: tuple[str, str]) -> str:
    (ls, hs), (lg, hg) = e.intervals
    d0, d1 = e.diff_interval
    line = (f"{e.title} ≥ {e.threshold:g}: {names[0]} {e.k[0]}/{e.n[0]} = {_pct(e.shares[0])} {_ci((ls, hs))} vs "
            f"{names[1]} {e.k[1]}/{e.n[1]} = {_pct(e.shares[1])} {_ci((lg, hg))}; difference "
            f"{100 * e.diff:+.0f} points [{100 * d0:+.0f}, {100 * d1:+.0f}], Fisher exact {_p(e.p_fisher)}; "
            f"Mann-Whitney P({names[0]} > {names[1]}) = {e.mwu_effect:.2f}, {_p(e.p_mwu)}")
    if not e.discriminates:
        line += f" — passes over {DISCRIMINATION_LIMIT:.0%} of both models' neurons: shown, does not decide"
    return line


_SAYS = {"holds": "the paper's result holds", "same way, not significant":
         "the paper's result points the same way but is not significant",
         "does not hold": "the paper's result does not hold", "untested": "nothing to decide on"}


def decide(names: tuple[str, str], evidence: list[ScoreEvidence], study: StudyEvidence | None = None) -> Verdict:
    """The verdict from the evidence. names: (SoLU side, other side) display names; evidence as
    ``score_evidence`` made it, in any order (PROXY_ORDER picks the leading proxy)."""
    rank = {n: i for i, n in enumerate(PROXY_ORDER)}
    ev = sorted(evidence, key=lambda e: rank.get(e.name, len(rank)))
    deciding = [e for e in ev if e.discriminates]
    proxy_lines = [("proxy: " if e in deciding else "proxy (does not decide): ") + _evidence_line(e, names)
                   for e in ev]
    if study is not None and sum(study.n) > 0:
        (ls, hs), (lg, hg) = study.intervals
        d0, d1 = study.diff_interval
        headline = (f"Blinded study ({study.raters} rater{'s' if study.raters != 1 else ''}, majority verdict per "
                    f"neuron): {names[0]} {study.k[0]}/{study.n[0]} = {_pct(study.shares[0])} {_ci((ls, hs))} vs "
                    f"{names[1]} {study.k[1]}/{study.n[1]} = {_pct(study.shares[1])} {_ci((lg, hg))} "
                    f"interpretable; difference {100 * study.diff:+.0f} points [{100 * d0:+.0f}, {100 * d1:+.0f}], "
                    f"Fisher exact {_p(study.p_fisher)}: {_SAYS[study.outcome]} on these models.")
        return Verdict(headline, proxy_lines, study.outcome, "study", ev, study)
    if not deciding:
        why = ("no automated score tells the models apart (each passes over "
               f"{DISCRIMINATION_LIMIT:.0%} of both models' neurons)" if ev else "no automated scores")
        return Verdict(f"Undecided: {why}. Run a blinded study (`neurobrowse study new`) to decide.", proxy_lines,
                       "untested", "", ev, None)
    lead = deciding[0]
    (ls, hs), (lg, hg) = lead.intervals
    d0, d1 = lead.diff_interval
    headline = (f"Automated proxy, {lead.title} ≥ {lead.threshold:g}: {names[0]} {_pct(lead.shares[0])} "
                f"{_ci((ls, hs))} vs {names[1]} {_pct(lead.shares[1])} {_ci((lg, hg))} of neurons pass; difference "
                f"{100 * lead.diff:+.0f} points [{100 * d0:+.0f}, {100 * d1:+.0f}], Fisher exact {_p(lead.p_fisher)}: "
                f"{_SAYS[lead.outcome]} on this proxy (no blinded study of these stores reported yet).")
    return Verdict(headline, proxy_lines, lead.outcome, lead.name, ev, None)


__all__ = ["ALPHA", "DISCRIMINATION_LIMIT", "HOLDS_HELP", "ScoreEvidence", "StudyEvidence", "Verdict", "decide",
           "score_evidence", "wilson", "newcombe", "fisher_p"]
