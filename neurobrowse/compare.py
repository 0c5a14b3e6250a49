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


def no_verdict_sentence(stores) -> str:
    """The headline when the stores do not pose the paper's question (not exactly one SoLU model)."""
    from neurobrowse.evidence import act_fn, display

    kinds = [act_fn(st) for st in stores]
    if sum(k in ("solu", "solu_ln") for k in kinds) == 2:
        return (f"Both stores are SoLU models ({display(stores[0])} vs {display(stores[1])}), so the paper's "
                "GeLU-vs-SoLU result is not tested here.")
    return (f"Neither store is a SoLU model ({display(stores[0])} vs {display(stores[1])}), so the paper's "
            "GeLU-vs-SoLU result is not tested here.")


def _concat_tables(tables: list[dict]) -> dict:
    keys = set.intersection(*(set(t) for t in tables)) if tables else set()
    return {k: np.concatenate([np.asarray(t[k]) for t in tables]) for k in keys}


def compare_stores(store_a, store_b, hook_kind: str = "hook_post", req: Request | None = None,
                   controls=None) -> Comparison:
    """Population comparison over every indexed ``hook_kind`` hook of each store (a Store or a path), and
    its verdict (neurobrowse.evidence.store_verdict, the one code path of the CLI and the window).
    controls: random-model control stores (paths or Stores); None finds them beside the stores."""
    from neurobrowse.evidence import store_verdict
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
    if controls is not None:
        controls = [as_store(c) for c in controls]
    if req:
        req.check()
    ev = store_verdict(stores[0], stores[1], tables, controls=controls, hook_kind=hook_kind)
    return Comparison(labels, (tables[0], tables[1]), shares, ev.headline if ev else no_verdict_sentence(stores), ev)
