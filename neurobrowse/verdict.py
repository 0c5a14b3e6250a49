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

3. **The calibrated rule proxy** (``CalibratedEvidence``, neurobrowse.calibration): every neuron's
   probability of being rated interpretable, from the rules a rater would name (store.rules), fitted
   on the rated sets of docs/studies; the per-model share with an interval that includes the
   calibration's error. Without a study it makes the headline; the threshold proxies above follow it.
4. **Random-model controls** (``ControlEvidence``): the calibrated share of an untrained (or
   weight-shuffled) model of the same preset, so a proxy that passes random neurons shows.

Every piece of evidence is also an ``EvidenceItem`` (``Verdict.items``, in the order study, calibrated
proxy, threshold proxies, controls): a name, the SoLU-LN minus GeLU difference with its 95% interval
and one word, ``holds`` (the interval lies above zero), ``does not hold`` (below zero) or
``undecided`` (it includes zero). A proxy never says "does not hold" while a reported study of the
same stores points the other way (``HOLDS_HELP`` says it in words for the window's tooltip and the CLI).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from neurobrowse.stats import wilson_interval

ALPHA = 0.05
DISCRIMINATION_LIMIT = 0.9  # a score passing more than this share of both models' neurons does not decide
PROXY_ORDER = ("explain_score", "token_rule_score", "sim_score")  # which proxy leads
HOLDS_HELP = (
    "'Holds' means the 95% interval of the difference (SoLU-LN minus GeLU share of interpretable neurons) lies "
    "above zero; 'does not hold' means it lies below zero; 'undecided' means it includes zero. A blinded rating "
    "study of these stores, once reported (`neurobrowse study report`), is the evidence; the calibrated rule "
    "proxy (each neuron's probability of being rated interpretable, fitted on the rated sets in docs/studies; "
    "its interval includes the calibration's error) stands in for it until then, and never says 'does not hold' "
    "while a study of the same stores points the other way. Threshold scores are shown as further proxies; one "
    f"that passes more than {DISCRIMINATION_LIMIT:.0%} of both models' neurons cannot tell them apart.")
WORDS = ("holds", "does not hold", "undecided")


def word_for(lo: float, hi: float) -> str:
    """'holds' when the interval of the difference lies above zero, 'does not hold' below, else 'undecided'."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "undecided"
    if lo > 0:
        return "holds"
    if hi < 0:
        return "does not hold"
    return "undecided"


def _guard(word: str, study_diff: float | None) -> str:
    """A proxy's word, never 'does not hold' (or 'holds') against a reported study pointing the other way."""
    if study_diff is None or not math.isfinite(study_diff):
        return word
    if word == "does not hold" and study_diff > 0 or word == "holds" and study_diff < 0:
        return "undecided"
    return word


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
        """holds / does not hold / undecided from the 95% interval of the difference (untested: no data)."""
        if not math.isfinite(self.diff):
            return "untested"
        return word_for(*self.diff_interval)


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
class CalibratedEvidence:
    """The calibrated rule proxy (neurobrowse.calibration) over both models' neurons."""

    shares: tuple[float, float]  # expected share interpretable: (solu, other)
    intervals: tuple[tuple[float, float], tuple[float, float]]
    n: tuple[int, int]
    diff: float
    diff_interval: tuple[float, float]
    sets: tuple[str, ...] = ()  # the rating sets the calibration was fitted on

    @property
    def outcome(self) -> str:
        return word_for(*self.diff_interval)


@dataclass
class ControlEvidence:
    """A random-model control: its calibrated share (and the threshold score's), per control store."""

    name: str  # e.g. "SoLU-LN random init"
    act_fn: str
    init: str  # random / shuffled
    share: float
    interval: tuple[float, float]
    n: int
    threshold_share: float = math.nan  # share passing the leading threshold score (PROXY_ORDER[0])
    threshold_name: str = ""  # that score and its threshold in words, e.g. "rule explanation score ≥ 0.7"


@dataclass
class EvidenceItem:
    """One row of the evidence (the compare window's forest plot): the SoLU-LN minus GeLU difference of
    the share interpretable (or passing), its 95% interval and one word."""

    name: str  # e.g. "Blinded study (2 raters)", "Calibrated rule proxy", "rule explanation score ≥ 0.7"
    kind: str  # "study", "proxy" or "control"
    diff: float  # SoLU-LN minus GeLU, a fraction (NaN where the item has no difference, e.g. one control)
    lo: float
    hi: float
    word: str  # holds / does not hold / undecided
    shares: tuple[float, float]  # (SoLU side, other side); NaN where absent
    share_intervals: tuple[tuple[float, float], tuple[float, float]]
    line: str  # the evidence in words
    decides: bool = True  # False: shown, does not decide (a saturated score, a control)


@dataclass
class Verdict:
    headline: str  # one sentence
    lines: list[str]  # the evidence line by line (study, calibrated proxy, threshold proxies, controls)
    outcome: str  # holds / does not hold / undecided / untested
    decided_by: str  # "study", "calibrated", a score name, or "" when nothing decides
    evidence: list[ScoreEvidence] = field(default_factory=list)
    study: StudyEvidence | None = None
    help: str = HOLDS_HELP
    items: list[EvidenceItem] = field(default_factory=list)  # study first, then each proxy, then the controls
    calibrated: CalibratedEvidence | None = None
    controls: list[ControlEvidence] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n".join([self.headline, *self.lines])


def _pct(x: float) -> str:
    return "n/a" if not math.isfinite(x) else f"{100 * x:.0f}%"


def _ci(iv) -> str:
    return f"[{100 * iv[0]:.0f}–{100 * iv[1]:.0f}%]"


def _pts(d: float, iv) -> str:
    return f"{100 * d:+.0f} points [{100 * iv[0]:+.0f}, {100 * iv[1]:+.0f}]"


def _p(p: float) -> str:
    if not math.isfinite(p):
        return "p n/a"
    return f"p = {p:.2g}" if p >= 1e-4 else "p < 0.0001"


def _evidence_line(e: ScoreEvidence, names: tuple[str, str]) -> str:
    (ls, hs), (lg, hg) = e.intervals
    line = (f"{e.title} ≥ {e.threshold:g}: {names[0]} {e.k[0]}/{e.n[0]} = {_pct(e.shares[0])} {_ci((ls, hs))} vs "
            f"{names[1]} {e.k[1]}/{e.n[1]} = {_pct(e.shares[1])} {_ci((lg, hg))}; difference "
            f"{_pts(e.diff, e.diff_interval)}, Fisher exact {_p(e.p_fisher)}; "
            f"Mann-Whitney P({names[0]} > {names[1]}) = {e.mwu_effect:.2f}, {_p(e.p_mwu)}")
    if not e.discriminates:
        line += f" — passes over {DISCRIMINATION_LIMIT:.0%} of both models' neurons: shown, does not decide"
    return line


_SAYS = {"holds": "the paper's result holds", "does not hold": "the paper's result does not hold",
         "undecided": "undecided: the interval of the difference includes zero",
         "untested": "nothing to decide on"}


def study_sentence(study: StudyEvidence, names: tuple[str, str]) -> str:
    return (f"Blinded study ({study.raters} rater{'s' if study.raters != 1 else ''}, majority verdict per "
            f"neuron): {names[0]} {study.k[0]}/{study.n[0]} = {_pct(study.shares[0])} {_ci(study.intervals[0])} vs "
            f"{names[1]} {study.k[1]}/{study.n[1]} = {_pct(study.shares[1])} {_ci(study.intervals[1])} "
            f"interpretable; difference {_pts(study.diff, study.diff_interval)}, Fisher exact {_p(study.p_fisher)}: "
            f"{_SAYS[study.outcome]} on these models.")


def calibrated_sentence(c: CalibratedEvidence, names: tuple[str, str], word: str, lead: bool) -> str:
    where = " (no blinded study of these stores reported yet)" if lead else ""
    return (f"Calibrated rule proxy{where}: {names[0]} {_pct(c.shares[0])} {_ci(c.intervals[0])} vs {names[1]} "
            f"{_pct(c.shares[1])} {_ci(c.intervals[1])} of neurons interpretable (expected share; the interval "
            f"includes the calibration's error); difference {_pts(c.diff, c.diff_interval)}: {_SAYS[word]}"
            f"{' on this proxy' if word in ('holds', 'does not hold') else ''}.")


def control_line(controls: list[ControlEvidence], trained: CalibratedEvidence | None, names: tuple[str, str],
                 evidence: list[ScoreEvidence] | None = None) -> str:
    """The controls' shares beside the trained models': the calibrated proxy's, then the leading threshold
    score's (named, with the trained models' share of it from ``evidence`` where it is there)."""
    parts = [f"{c.name} {_pct(c.share)} {_ci(c.interval)}" for c in controls]
    line = "Random-model control, calibrated proxy: " + "; ".join(parts)
    if trained is not None:
        line += (f" (trained: {names[0]} {_pct(trained.shares[0])}, {names[1]} {_pct(trained.shares[1])})")
    th = [c for c in controls if math.isfinite(c.threshold_share)]
    if th:
        what = th[0].threshold_name or "the threshold proxy"
        line += f"; passing {what}: " + ", ".join(f"{c.name} {_pct(c.threshold_share)}" for c in th)
        lead = [e for e in evidence or [] if e.name == PROXY_ORDER[0]]
        if lead:
            line += f" (trained: {names[0]} {_pct(lead[0].shares[0])}, {names[1]} {_pct(lead[0].shares[1])})"
    return line


def control_name(controls: list[ControlEvidence], trained: CalibratedEvidence | None) -> str:
    """The controls' row of the evidence, named by their calibrated shares beside the trained models' (SoLU side
    first), e.g. "Random-init controls 9% vs 9% (trained 61% vs 50%)": the forest plot draws the controls'
    SoLU-LN minus GeLU difference, the name says what the shares are."""
    by_fn = {c.act_fn: c for c in controls}
    side = [by_fn.get("solu_ln") or by_fn.get("solu"), by_fn.get("gelu")]
    shown = [c for c in side if c is not None] or controls[:2]
    kind = "Random-init" if all(c.init == "random" for c in shown) else "Random-model"
    name = f"{kind} control{'s' if len(shown) > 1 else ''} " + " vs ".join(_pct(c.share) for c in shown)
    if trained is not None:
        name += (f" (trained {_pct(trained.shares[0])} vs {_pct(trained.shares[1])})" if len(shown) > 1 else
                 f" (trained {_pct(trained.shares[0 if shown[0] is side[0] else 1])})")
    return name


def decide(names: tuple[str, str], evidence: list[ScoreEvidence], study: StudyEvidence | None = None,
           calibrated: CalibratedEvidence | None = None, controls: list[ControlEvidence] | None = None) -> Verdict:
    """The verdict from the evidence. names: (SoLU side, other side) display names; evidence as
    ``score_evidence`` made it, in any order (PROXY_ORDER orders them); a reported study leads, else
    the calibrated proxy, else the first threshold score that tells the models apart."""
    controls = list(controls or [])
    rank = {n: i for i, n in enumerate(PROXY_ORDER)}
    ev = sorted(evidence, key=lambda e: rank.get(e.name, len(rank)))
    deciding = [e for e in ev if e.discriminates]
    has_study = study is not None and sum(study.n) > 0
    sdiff = study.diff if has_study else None
    items: list[EvidenceItem] = []
    lines: list[str] = []
    if has_study:
        items.append(EvidenceItem(f"Blinded study ({study.raters} rater{'s' if study.raters != 1 else ''})", "study",
                                  study.diff, *study.diff_interval, study.outcome, study.shares, study.intervals,
                                  study_sentence(study, names)))
    cal_word = None
    if calibrated is not None:
        cal_word = _guard(calibrated.outcome, sdiff)
        line = calibrated_sentence(calibrated, names, cal_word, lead=False)
        items.append(EvidenceItem("Calibrated rule proxy", "proxy", calibrated.diff, *calibrated.diff_interval,
                                  cal_word, calibrated.shares, calibrated.intervals, line))
        if has_study:  # without a study it is the headline, not repeated below it
            lines.append("proxy: " + line)
    for e in ev:
        w = _guard(e.outcome, sdiff)
        line = _evidence_line(e, names)
        items.append(EvidenceItem(f"{e.title} ≥ {e.threshold:g}", "proxy", e.diff, *e.diff_interval, w, e.shares,
                                  e.intervals, line, decides=e in deciding))
        lines.append(("proxy: " if e in deciding else "proxy (does not decide): ") + line)
    if controls:
        by_fn = {c.act_fn: c for c in controls}
        s_c, o_c = by_fn.get("solu_ln") or by_fn.get("solu"), by_fn.get("gelu")
        line = control_line(controls, calibrated, names, ev)
        if s_c is not None and o_c is not None:
            # the two controls' difference: with their shares' intervals combined like Newcombe's
            d = s_c.share - o_c.share
            lo = d - math.hypot(s_c.share - s_c.interval[0], o_c.interval[1] - o_c.share)
            hi = d + math.hypot(s_c.interval[1] - s_c.share, o_c.share - o_c.interval[0])
        else:
            d = lo = hi = math.nan
        sh = (s_c.share if s_c else math.nan, o_c.share if o_c else math.nan)
        iv = (s_c.interval if s_c else (math.nan, math.nan), o_c.interval if o_c else (math.nan, math.nan))
        items.append(EvidenceItem(control_name(controls, calibrated), "control", d, lo, hi, word_for(lo, hi), sh, iv,
                                  line, decides=False))
        lines.append(line)
    if has_study:
        return Verdict(study_sentence(study, names), lines, study.outcome, "study", ev, study, items=items,
                       calibrated=calibrated, controls=controls)
    if calibrated is not None:
        return Verdict(calibrated_sentence(calibrated, names, cal_word, lead=True), lines, cal_word, "calibrated",
                       ev, None, items=items, calibrated=calibrated, controls=controls)
    if not deciding:
        why = ("no automated score tells the models apart (each passes over "
               f"{DISCRIMINATION_LIMIT:.0%} of both models' neurons)" if ev else "no automated scores")
        return Verdict(f"Undecided: {why}. Run a blinded study (`neurobrowse study new`) to decide.", lines,
                       "untested", "", ev, None, items=items, controls=controls)
    lead = deciding[0]
    headline = (f"Automated proxy, {lead.title} ≥ {lead.threshold:g}: {names[0]} {_pct(lead.shares[0])} "
                f"{_ci(lead.intervals[0])} vs {names[1]} {_pct(lead.shares[1])} {_ci(lead.intervals[1])} of neurons "
                f"pass; difference {_pts(lead.diff, lead.diff_interval)}, Fisher exact {_p(lead.p_fisher)}: "
                f"{_SAYS[lead.outcome]}{' on this proxy' if lead.outcome in ('holds', 'does not hold') else ''} "
                f"(no blinded study of these stores reported yet).")
    return Verdict(headline, lines, lead.outcome, lead.name, ev, None, items=items, controls=controls)


__all__ = ["ALPHA", "DISCRIMINATION_LIMIT", "HOLDS_HELP", "WORDS", "ScoreEvidence", "StudyEvidence", "control_name",
           "CalibratedEvidence", "ControlEvidence", "EvidenceItem", "Verdict", "decide", "score_evidence", "word_for",
           "wilson", "newcombe", "fisher_p"]
