"""The GeLU-vs-SoLU population comparison of two stores and its verdict (the app's compare window and
the ``compare`` command).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING
import numpy as np
from neurobrowse.stats import wilson_interval
from store.measures import columns
from store.errors import NeurobrowseError
from store.measures.scores import model_name

if TYPE_CHECKING:  # the browsing package imports this module
    from neurobrowse.browsing.cancellation import Request


@dataclass
class ShareResult:
    name: str  # score name
    threshold: float
    k: int
    n: int

    @property
    def share(self) -> float:
        return self.k / self.n if self.n else float("nan")

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.k, self.n)


def pass_shares(table: dict[str, np.ndarray], thresholds: dict[str, float] | None = None) -> list[ShareResult]:
    """Per score, how many neurons of ``table`` pass it (score >= threshold; NaN scores not counted).
    Thresholds default to the registry's (``store.measures.columns``)."""
    thresholds = thresholds or columns.THRESHOLDS
    out = []
    for name, th in thresholds.items():
        col = np.asarray(table.get(name, np.array([])), dtype=np.float64)
        ok = np.isfinite(col)
        out.append(ShareResult(name, th, int((col[ok] >= th).sum()), int(ok.sum())))
    return out


@dataclass
class Comparison:
    labels: tuple[str, str]  # e.g. ("gelu", "solu_ln")
    tables: tuple[dict, dict]  # neuron tables concatenated over the compared hooks
    shares: tuple[list[ShareResult], list[ShareResult]]
    verdict: str  # the headline (neurobrowse.verdict)
    evidence: object = None  # neurobrowse.verdict.Verdict: headline, evidence lines, help


def comparison_verdict(labels: tuple[str, str], shares: tuple[list[ShareResult], list[ShareResult]]) -> str:
    """A plain sentence: does the paper's result (SoLU-LN more interpretable than GeLU) hold here?

    'Holds' needs the SoLU side's share to be higher with non-overlapping 95% intervals on a score;
    higher but overlapping is 'points the same way but is not significant'; otherwise it does not hold.
    """
    try:
        solu = labels.index(next(l for l in labels if "solu" in l.lower()))
    except StopIteration:
        return (f"Neither store is a SoLU model ({labels[0]} vs {labels[1]}), so the paper's "
                "GeLU-vs-SoLU result is not tested here.")
    gelu = 1 - solu
    clear, weak, against = [], [], []
    for a, b in zip(shares[solu], shares[gelu]):
        lo_s, _ = a.interval
        _, hi_g = b.interval
        desc = f"{a.name} {a.share:.0%} vs {b.share:.0%}"
        if a.share > b.share and lo_s > hi_g:
            clear.append(desc)
        elif a.share > b.share:
            weak.append(desc)
        else:
            against.append(desc)
    s, g = labels[solu], labels[gelu]
    if clear and not against:
        return (f"The paper's result holds on these models: more {s} neurons pass the automated "
                f"interpretability scores than {g} neurons ({'; '.join(clear + weak)}), with 95% intervals apart.")
    if (clear or weak) and not against:
        return (f"The paper's result points the same way here but is not significant: {s} passes more often than {g} "
                f"({'; '.join(weak + clear)}) but the 95% intervals overlap. Record more tokens or a bigger model to tell.")
    if (clear or weak) and against:
        return (f"Mixed: {s} does better than {g} on {'; '.join(clear + weak)} but not on {'; '.join(against)}. "
                f"The paper's result does not clearly hold on these models.")
    return (f"The paper's result does NOT hold on these models: {s} neurons pass the automated scores no more "
            f"often than {g} neurons ({'; '.join(against)}). Small or briefly trained models may not show it.")


def _concat_tables(tables: list[dict]) -> dict:
    keys = set.intersection(*(set(t) for t in tables)) if tables else set()
    return {k: np.concatenate([np.asarray(t[k]) for t in tables]) for k in keys}


def compare_stores(store_a, store_b, hook_kind: str = "hook_post", req: Request | None = None) -> Comparison:
    """Population comparison over every indexed ``hook_kind`` hook of each store (a Store or a path)."""
    from store.format.reader import as_store

    stores = (as_store(store_a), as_store(store_b))
    tables = []
    for st in stores:
        hooks = [h for h in st.hooks if h.endswith(hook_kind) and st.is_indexed(h)]
        if not hooks:
            raise NeurobrowseError(f"{st.path} has no indexed {hook_kind} hook; run `neurobrowse index {st.path}`")
        per = []
        for h in hooks:
            if req:
                req.check()
            t = dict(st.neuron_table(h))
            t["hook"] = np.array([h] * len(t["neuron"]), dtype=object)  # which layer a row is from
            per.append(t)
        tables.append(_concat_tables(per))
    labels = (model_name(stores[0]), model_name(stores[1]))
    if labels[0] == labels[1]:
        labels = (f"{labels[0]} (A)", f"{labels[1]} (B)")
    shares = (pass_shares(tables[0]), pass_shares(tables[1]))
    ev = evidence_verdict(stores[0], stores[1], labels, tables)
    return Comparison(labels, (tables[0], tables[1]), shares, ev.headline if ev else comparison_verdict(labels, shares),
                      ev)


def evidence_verdict(store_a, store_b, labels, tables, thresholds: dict[str, float] | None = None):
    """neurobrowse.verdict.Verdict for two stores (None when neither is a SoLU model): a reported blinded
    study of these two stores leads, the automated scores (store.measures.columns) are proxies."""
    from neurobrowse import verdict
    from neurobrowse.study.registry import reported_study

    thresholds = thresholds or columns.THRESHOLDS
    solu = next((i for i, lab in enumerate(labels) if "solu" in lab.lower()), None)
    if solu is None:
        return None
    order = (solu, 1 - solu)
    names = tuple(_display(labels[i]) for i in order)
    ev = [verdict.score_evidence(name, columns.BY_NAME[name].title if name in columns.BY_NAME else name, th,
                                 tables[order[0]].get(name, []), tables[order[1]].get(name, []))
          for name, th in thresholds.items()
          if np.isfinite(np.asarray(tables[0].get(name, []), np.float64)).any()]
    stores = (store_a, store_b)
    study = reported_study(stores[order[0]].run_uuid, stores[order[1]].run_uuid)
    return verdict.decide(names, ev, study)


def _display(label: str) -> str:
    from store.measures.scores import display_name

    return display_name(label.split(" (")[0])
