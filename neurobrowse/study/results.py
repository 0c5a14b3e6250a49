"""Unblinding: per model the neurons' majority verdicts, shares with Wilson intervals, Fisher's exact
test, raters' agreement and every automated score's ROC AUC (``compute_report``). Pure data.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
import numpy as np
from neurobrowse.stats import cohen_kappa, fisher_exact, fleiss_kappa, roc_auc, wilson_interval
from store.measures.columns import SCORES
from store.errors import NeurobrowseError
from store.labels.label import VERDICTS
from store.schema import parse_hook_name
from neurobrowse.study.folder import StudyError, load_items, load_key
from neurobrowse.study.ratings import latest_ratings


# ---- the report ------------------------------------------------------------------------------------
@dataclass
class ModelResult:
    name: str
    act_fn: str
    n_items: int  # neurons drawn from this model
    n_ratings: int  # pooled ratings (secondary figures)
    interpretable: int
    not_interpretable: int
    unsure: int
    share: float
    ci_low: float
    ci_high: float
    per_rater: dict[str, tuple[int, int]]  # rater -> (interpretable, ratings)
    # per item (neuron): the raters' majority verdict, ties unsure; the study's primary figures
    items_rated: int = 0
    items_interpretable: int = 0
    items_not: int = 0
    items_unsure: int = 0
    hook_kind: str = ""  # set when the study shows several hook kinds (hook_mid and hook_post)
    run_uuid: str = ""

    @property
    def item_share(self) -> float:
        return self.items_interpretable / self.items_rated if self.items_rated else math.nan

    @property
    def item_interval(self) -> tuple[float, float]:
        return wilson_interval(self.items_interpretable, self.items_rated)


def majority(verdicts: list[str]) -> str:
    """The raters' majority verdict of one item: the verdict given most often; a tie is unsure."""
    counts = sorted(((verdicts.count(v), v) for v in set(verdicts)), reverse=True)
    if not counts:
        return "unsure"
    if len(counts) > 1 and counts[0][0] == counts[1][0]:
        return "unsure"
    return counts[0][1]


def _item_scores(key: dict) -> dict[str, dict[str, float]]:
    """{item id: {score: value}} for every automated score column, read from the stores now (so a
    score added after the study was drawn, such as the rule explanation score, is checked too);
    the scores saved in key.json where a store is gone or re-recorded."""
    from store.format.reader import Store

    tables: dict = {}
    out: dict[str, dict[str, float]] = {}
    models = {int(m["index"]): m for m in key["models"]}
    for iid, it in key["items"].items():
        vals = {k: (math.nan if v is None else float(v)) for k, v in (it.get("scores") or {}).items()}
        m = models.get(int(it["model"]), {})
        tk = (m.get("store"), it["hook"])
        if tk not in tables:
            try:
                st = Store.open(m.get("store"))
                tables[tk] = st.neuron_table(it["hook"]) if st.run_uuid == m.get("run_uuid") else None
            except (NeurobrowseError, OSError, TypeError):
                tables[tk] = None
        t = tables[tk]
        if t is not None:
            for name in AUC_SCORES:
                if name in t:
                    vals[name] = float(t[name][int(it["neuron"])])
        out[iid] = vals
    return out


AUC_SCORES = SCORES  # every automated score of store.measures.columns is checked against the verdicts


def compute_report(study: str | os.PathLike) -> dict:
    """Unblind and compute every statistic of the report (see the module docstring). Pure data."""
    study = Path(study)
    items = load_items(study)
    key = load_key(study)
    latest = latest_ratings(study)
    raters = sorted({r for r, _ in latest})
    if not raters:
        raise StudyError(f"{study} has no ratings yet; rate it with `neurobrowse study rate {study} --rater NAME`")
    models = key["models"]
    # groups: one per model, or per (model, hook kind) when the study shows both sides of a LayerNorm
    several = len(key.get("hooks") or ()) > 1
    model_of = {iid: (int(k["model"]), parse_hook_name(k["hook"])[1] if several else "")
                for iid, k in key["items"].items()}
    groups = [(int(m["index"]), kind) for m in models
              for kind in (list(key["hooks"]) if several else [""])
              if any(g == (int(m["index"]), kind) for g in model_of.values())]
    by_item: dict[str, list[str]] = {}
    for (_, iid), (v, _) in latest.items():
        by_item.setdefault(iid, []).append(v)
    item_verdict = {iid: majority(vs) for iid, vs in by_item.items()}
    # two models of one name (a GeLU and its random-model control drawn before stores recorded their init):
    # told apart by their store folder's name, so no line of the report names two models alike
    names = [m["name"] for m in models]
    shown = {int(m["index"]): f"{m['name']} ({Path(m['store']).name})" if names.count(m["name"]) > 1 else m["name"]
             for m in models}
    results = []
    for mi, kind in groups:
        m = models[mi]
        m = {**m, "name": shown[int(m["index"])]}
        mi = (mi, kind)
        vs = [(r, v) for (r, iid), (v, _) in latest.items() if model_of[iid] == mi]
        n = len(vs)
        k = sum(v == "interpretable" for _, v in vs)
        lo, hi = wilson_interval(k, n)
        per = {r: (sum(v == "interpretable" for rr, v in vs if rr == r), sum(rr == r for rr, _ in vs)) for r in raters}
        iv = [v for iid, v in item_verdict.items() if model_of[iid] == mi]
        results.append(ModelResult(name=f"{m['name']} {kind}" if kind else m["name"], act_fn=m["act_fn"],
                                   n_items=sum(1 for x in model_of.values() if x == mi), n_ratings=n,
                                   interpretable=k, not_interpretable=sum(v == "not_interpretable" for _, v in vs),
                                   unsure=sum(v == "unsure" for _, v in vs), share=k / n if n else math.nan,
                                   ci_low=lo, ci_high=hi, per_rater=per, items_rated=len(iv),
                                   items_interpretable=iv.count("interpretable"),
                                   items_not=iv.count("not_interpretable"), items_unsure=iv.count("unsure"),
                                   hook_kind=kind, run_uuid=m["run_uuid"]))
    # Fisher exact test: GeLU vs SoLU-LN when both are present, else the first two models; on items
    # (majority verdicts: two raters do not double the sample), and on pooled ratings as a secondary line
    by_fn: dict = {}
    for r, (mi, _) in zip(results, groups):  # the first trained model of each act_fn (never a control)
        if str(models[mi].get("model_init") or "trained") == "trained":
            by_fn.setdefault((r.act_fn, r.hook_kind), r)
    main = "hook_post" if several else ""
    pair = ([by_fn[("gelu", main)], by_fn[("solu_ln", main)]] if ("gelu", main) in by_fn and ("solu_ln", main) in by_fn
            else results[:2] if len(results) >= 2 else [])
    fisher = fisher_ratings = None
    if pair and all(r.items_rated for r in pair):
        tbl = [[r.items_interpretable, r.items_rated - r.items_interpretable] for r in pair]
        odds, p = fisher_exact(tbl)
        fisher = {"a": pair[0].name, "b": pair[1].name, "table": tbl, "odds_ratio": float(odds), "p_value": float(p)}
        tbl = [[r.interpretable, r.n_ratings - r.interpretable] for r in pair]
        odds, p = fisher_exact(tbl)
        fisher_ratings = {"a": pair[0].name, "b": pair[1].name, "table": tbl, "odds_ratio": float(odds),
                          "p_value": float(p)}
    # the LayerNorm question: the same SoLU-LN neurons rated before (hook_mid) and after (hook_post) the LN
    fisher_ln = None
    ln = [by_fn.get(("solu_ln", "hook_mid")), by_fn.get(("solu_ln", "hook_post"))]
    if all(r is not None and r.items_rated for r in ln):
        tbl = [[r.items_interpretable, r.items_rated - r.items_interpretable] for r in ln]
        odds, p = fisher_exact(tbl)
        fisher_ln = {"a": ln[0].name, "b": ln[1].name, "table": tbl, "odds_ratio": float(odds), "p_value": float(p)}
    # agreement over the items every rater rated
    common = [it.item_id for it in items if all((r, it.item_id) in latest for r in raters)]
    agreement: dict[str, Any] = {"raters": raters, "n_items": len(common)}
    if len(raters) == 2:
        a = [latest[(raters[0], i)][0] for i in common]
        b = [latest[(raters[1], i)][0] for i in common]
        agreement.update(method="cohen", kappa=cohen_kappa(a, b, VERDICTS))
    elif len(raters) > 2:
        table = np.array([[sum(latest[(r, i)][0] == c for r in raters) for c in VERDICTS] for i in common])
        agreement.update(method="fleiss", kappa=fleiss_kappa(table.reshape(-1, len(VERDICTS))))
    else:
        agreement.update(method=None, kappa=math.nan)
    # ROC AUC of each automated score predicting the items' majority verdict (unsure items left out)
    decided = [(iid, v) for iid, v in item_verdict.items() if v != "unsure"]
    positive = np.array([v == "interpretable" for _, v in decided], dtype=bool)
    scores = _item_scores(key)
    names = [s for s in dict.fromkeys([*AUC_SCORES, *SCORES])
             if any(math.isfinite(scores[iid].get(s, math.nan)) for iid, _ in decided)]
    aucs = {}
    for s in names:
        vals = np.array([scores[iid].get(s, math.nan) for iid, _ in decided], dtype=np.float64)
        aucs[s] = {"auc": roc_auc(vals, positive) if len(decided) else math.nan,
                   "n_positive": int(positive.sum()), "n_negative": int((~positive).sum()),
                   "n_scored": int(np.isfinite(vals).sum())}
    times = [s for (_, _), (_, s) in latest.items() if s is not None]
    return {"study": str(study), "seed": key["seed"], "n_items": len(items), "raters": raters,
            "models": results, "fisher": fisher, "fisher_ratings": fisher_ratings, "fisher_ln": fisher_ln,
            "agreement": agreement, "auc": aucs,
            "median_seconds_per_item": float(np.median(times)) if times else None}
