"""The report files: report.txt, report.csv, report.png (matplotlib) and report.json, written by
``study_report``.
"""

from __future__ import annotations

import csv
import json
import math
import os
from datetime import datetime, timezone
from pathlib import Path
import numpy as np
from neurobrowse.stats import wilson_interval
from store.format import atomic
from neurobrowse.study.folder import StudyError
from neurobrowse.study.folder import report_dir
from neurobrowse.study.results import compute_report
from neurobrowse.study.folder import load_key
from neurobrowse.study.registry import record_in_stores


def _fmt(x: float | None, nd: int = 3) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def report_text(rep: dict) -> str:
    n_r = len(rep["raters"])
    lines = [f"Blinded rating study {rep['study']} (seed {rep['seed']}): {rep['n_items']} items, "
             f"raters: {', '.join(rep['raters'])}", "",
             f"Share of neurons 'interpretable' by the raters' majority verdict per neuron (ties and unsure "
             f"count as not), 95% Wilson interval{' (one rater: their verdicts)' if n_r == 1 else ''}:"]
    for r in rep["models"]:
        lo, hi = r.item_interval
        lines.append(f"  {r.name:<8} {r.items_interpretable:>4}/{r.items_rated:<4} = {100 * r.item_share:5.1f}%  "
                     f"[{100 * lo:5.1f}%, {100 * hi:5.1f}%]   ({r.n_items} neurons drawn; {r.items_not} not, "
                     f"{r.items_unsure} unsure or tied)")
    f = rep["fisher"]
    if f:
        lines.append(f"Fisher exact test {f['a']} vs {f['b']} on neurons (two-sided): odds ratio "
                     f"{_fmt(f['odds_ratio'])}, p = {f['p_value']:.4g}")
    else:
        lines.append("Fisher exact test: needs two models with ratings")
    f = rep.get("fisher_ln")
    if f:
        lines.append(f"The same SoLU-LN neurons before vs after the LayerNorm ({f['a']} vs {f['b']}), Fisher exact "
                     f"test (two-sided; the samples are paired, so this is conservative): p = {f['p_value']:.4g}")
    lines += ["", "Secondary: every rating pooled (each rater counted separately) and per rater:"]
    for r in rep["models"]:
        lines.append(f"  {r.name:<8} {r.interpretable:>4}/{r.n_ratings:<4} = {100 * r.share:5.1f}%  "
                     f"[{100 * r.ci_low:5.1f}%, {100 * r.ci_high:5.1f}%]   ({r.not_interpretable} not, "
                     f"{r.unsure} unsure)")
        for rater, (k, n) in r.per_rater.items():
            lines.append(f"      {rater}: {k}/{n}")
    fr = rep.get("fisher_ratings")
    if fr:
        lines.append(f"  Fisher exact test on pooled ratings (not independent when raters share items): "
                     f"p = {fr['p_value']:.4g}")
    lines.append("")
    a = rep["agreement"]
    if a["method"]:
        lines.append(f"Agreement between raters ({'Cohen' if a['method'] == 'cohen' else 'Fleiss'}'s kappa over "
                     f"{a['n_items']} items rated by all): {_fmt(a['kappa'])}")
    else:
        lines.append("Agreement between raters: needs two or more raters")
    lines.append("ROC AUC of automated scores predicting a neuron's majority verdict 'interpretable' "
                 "(unsure and tied neurons left out):")
    for s, d in rep["auc"].items():
        partly = d.get("n_scored", 0) != d["n_positive"] + d["n_negative"]
        lines.append(f"  {s:<18} {_fmt(d['auc'])}  ({d['n_positive']} interpretable, {d['n_negative']} not"
                     f"{', ' + str(d.get('n_scored')) + ' scored' if partly else ''})")
    if rep.get("controls"):
        lines += ["", *rep["controls"]]
    if rep["median_seconds_per_item"] is not None:
        lines.append(f"Median time per rated item: {rep['median_seconds_per_item']:.1f} s")
    return "\n".join(lines) + "\n"


def report_rows(rep: dict) -> list[list]:
    rows = [["section", "name", "rater", "interpretable", "ratings", "share", "ci_low", "ci_high", "value"]]
    for r in rep["models"]:
        lo, hi = r.item_interval
        rows.append(["model_items", r.name, "majority", r.items_interpretable, r.items_rated,
                     r.item_share if r.items_rated else "", lo, hi, ""])
    for r in rep["models"]:
        rows.append(["model", r.name, "all", r.interpretable, r.n_ratings, r.share, r.ci_low, r.ci_high, ""])
        for rater, (k, n) in r.per_rater.items():
            lo, hi = wilson_interval(k, n)
            rows.append(["model", r.name, rater, k, n, k / n if n else "", lo, hi, ""])
    if rep["fisher"]:
        f = rep["fisher"]
        rows.append(["fisher_p", f"{f['a']} vs {f['b']}", "majority", "", "", "", "", "", f["p_value"]])
        rows.append(["fisher_odds_ratio", f"{f['a']} vs {f['b']}", "majority", "", "", "", "", "", f["odds_ratio"]])
    if rep.get("fisher_ratings"):
        f = rep["fisher_ratings"]
        rows.append(["fisher_p_ratings", f"{f['a']} vs {f['b']}", "all", "", "", "", "", "", f["p_value"]])
    a = rep["agreement"]
    rows.append([f"kappa_{a['method'] or 'none'}", "+".join(a["raters"]), "all", "", a["n_items"], "", "", "",
                 a["kappa"]])
    for s, d in rep["auc"].items():
        rows.append(["roc_auc", s, "majority", d["n_positive"], d["n_positive"] + d["n_negative"], "", "", "",
                     d["auc"]])
    return rows


def plot_report(rep: dict, path: str | os.PathLike) -> None:
    """A bar chart in the style of the paper's figure: share interpretable per model, Wilson bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = rep["models"]
    colors = {"GeLU": "#9fb9d6", "SoLU-LN": "#e9a66b"}
    fig, ax = plt.subplots(figsize=(4.2, 3.6), dpi=150)
    x = np.arange(len(res))
    shares = np.array([100 * r.item_share for r in res])
    iv = [r.item_interval for r in res]
    # clipped at 0: at a share of 0% or 100% a Wilson bound may differ from the share by a rounding error,
    # and matplotlib refuses a negative error bar
    err = np.clip(np.array([[100 * (r.item_share - lo) for r, (lo, _) in zip(res, iv)],
                            [100 * (hi - r.item_share) for r, (_, hi) in zip(res, iv)]]), 0, None)
    ax.bar(x, shares, width=0.6, color=[colors.get(r.name, "#b0b0b0") for r in res], edgecolor="none",
           yerr=err, capsize=4, error_kw={"elinewidth": 1, "ecolor": "#444444"})
    for xi, r in zip(x, res):
        ax.text(xi, 2, f"{r.items_interpretable}/{r.items_rated}", ha="center", va="bottom", fontsize=8,
                color="#333333")
    ax.set_xticks(x, [r.name for r in res])
    ax.set_ylim(0, 100)
    ax.set_ylabel("% of neurons: interpretable (majority)")
    title = "Blinded rating of random neurons"
    if rep["fisher"]:
        title += f"\nFisher exact p = {rep['fisher']['p_value']:.3g}"
    ax.set_title(title, fontsize=9)
    for s in ("top", "right"):
        ax.spines[s].set_visible(False)
    ax.yaxis.grid(True, color="#e6e6e6")
    ax.set_axisbelow(True)
    fig.tight_layout()
    try:
        with atomic.writing(path, suffix=".png") as tmp:  # never a half-written (0-byte) report.png (full disk)
            fig.savefig(tmp)
    except OSError as e:
        raise StudyError(f"writing {path} failed ({e.strerror or e}); free some space (or choose another --out) and "
                         f"run `neurobrowse study report` again") from None
    finally:
        plt.close(fig)


def study_report(study: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> dict:
    """Compute the report and write report.txt, report.csv and report.png into ``out_dir``
    (default STUDY.key/report, beside the key; STUDY/report for an older study). Returns the report dict
    plus the written paths under "files"."""
    rep = compute_report(study)
    rep["controls"] = control_lines(load_key(study))
    out = Path(out_dir) if out_dir is not None else report_dir(study)  # beside the key, not in the raters' folder
    out.mkdir(parents=True, exist_ok=True)
    with atomic.output(out / "report.txt", error=StudyError) as f:
        f.write(report_text(rep))
    with atomic.output(out / "report.csv", newline="", error=StudyError) as f:
        csv.writer(f).writerows(report_rows(rep))
    plot_report(rep, out / "report.png")
    summary = report_summary(rep)
    summary["report"] = str((out / "report.json").absolute())
    with atomic.output(out / "report.json", error=StudyError) as f:
        json.dump(summary, f, indent=1)
    rep["recorded_in"] = [str(p) for p in record_in_stores(summary, load_key(study))]
    rep["files"] = {k: str(out / f"report.{k}") for k in ("txt", "csv", "png", "json")}
    return rep


def control_lines(key: dict) -> list[str]:
    """Random-model controls found beside the study's stores (neurobrowse.evidence.find_controls): their
    calibrated share interpretable next to the trained models' (no rater saw them); [] without any."""
    from neurobrowse import calibration, evidence
    from store.errors import NeurobrowseError
    from store.format.reader import Store

    stores = []
    for m in key.get("models", []):
        try:
            st = Store.open(m["store"])
        except (NeurobrowseError, OSError, KeyError, TypeError):
            continue
        if st.run_uuid == m.get("run_uuid"):
            stores.append(st)
    controls = evidence.find_controls(stores) if stores else []
    if not controls:
        return []
    out = ["Random-model controls beside these stores (calibrated rule proxy over every hook_post neuron; no rater "
           "saw them), next to the trained models on the same proxy:"]
    for st in stores + controls:
        x = evidence.rule_features(st)
        if len(x):
            sh, _ = calibration.share(x)
            out.append(f"  {evidence.display(st):<22} {100 * sh.share:5.1f}%  [{100 * sh.lo:5.1f}%, "
                       f"{100 * sh.hi:5.1f}%]  ({sh.n} neurons)")
    return out


def report_summary(rep: dict) -> dict:
    """The per-item result of a report as plain JSON (report.json and the registry of reported studies)."""
    return {"kind": "neurobrowse-study-report", "study": str(Path(rep["study"]).absolute()),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "raters": len(rep["raters"]),
            "models": [{"name": r.name, "act_fn": r.act_fn, "run_uuid": r.run_uuid, "hook_kind": r.hook_kind,
                        "items_rated": r.items_rated, "items_interpretable": r.items_interpretable}
                       for r in rep["models"] if r.hook_kind in ("", "hook_post")],
            "fisher_p": rep["fisher"]["p_value"] if rep["fisher"] else None,
            "auc": {k: (None if not math.isfinite(d["auc"]) else d["auc"]) for k, d in rep["auc"].items()}}
