"""The sweep's report: `neurobrowse replicate report OUT` -> OUT/report/report.{txt,json,png}.

Every number is read from the folder's own files when the report is made, and report.json names where
each comes from (checkpoint config.json, store path and run UUID, study folder):

* **share interpretable by size and model**, 95% Wilson intervals: from the blinded ratings entered with
  `neurobrowse study rate` (per neuron the raters' majority verdict, as `study report` counts), and, for
  every model, the **automated proxy** (the share of all the store's ``hook_post`` neurons whose rule
  explanation score passes its threshold), always labelled as the proxy; how many items are unrated;
* **the loss table**: validation loss of every model and size, SoLU-LN and SoLU minus GeLU in percent,
  and the effective size of SoLU and SoLU-LN read off GeLU's loss-vs-MLP-width curve (piecewise linear in
  log width) as "like a GeLU model X% smaller" (in MLP width and in parameters);
* per-layer shares, the LayerNorm overlap of the SoLU-LN neurons (hook_mid vs hook_post top firings),
  the dictionary alignment where a dictionary summary exists ("not computed" otherwise), wall time per step.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from neurobrowse.replicate.folder import (
    STUDIED, TRAINED, marker_path, model_name_for_width, read_manifest, size_dir,
)
from neurobrowse.replicate.presets import ReplicateError
from neurobrowse.stats import wilson_interval
from store.format import atomic

NAMES = {"gelu": "GeLU", "solu_ln": "SoLU-LN", "solu": "SoLU", "control": "control"}
PROXY_SCORE = "explain_score"  # the automated proxy's score (store.columns; its threshold from there)
PROXY_LABEL = "automated proxy: rule explanation score >= {thr:g} (not a human rating)"


# ---- pieces -----------------------------------------------------------------------------------------
def _ci(k: int, n: int) -> dict:
    lo, hi = wilson_interval(k, n)
    return {"k": int(k), "n": int(n), "share": (k / n) if n else None, "ci95": [lo, hi]}


def _checkpoint_row(path: Path) -> dict | None:
    cfg = path / "config.json"
    if not cfg.exists():
        return None
    meta = json.loads(cfg.read_text(encoding="utf-8"))
    m = meta.get("metrics") or {}
    return {"checkpoint": str(path), "complete": bool(meta.get("complete")), "val_loss": m.get("val_loss"),
            "val_tokens": m.get("val_tokens"), "d_mlp": meta.get("d_mlp"), "n_params": meta.get("n_params"),
            "act_fn": meta.get("act_fn"), "train_wall_s": m.get("wall_s"), "tokens_seen": m.get("tokens_seen"),
            "init": meta.get("init") or (meta.get("control") or {}).get("kind") or "trained"}


def effective_size(widths: list[int], losses: list[float], params: list[int], target: float) -> dict:
    """Where ``target`` loss falls on GeLU's loss-vs-width curve (points ``widths``/``losses``, the full width
    last of the largest): piecewise linear in log2(width), searched from the widest point down, so the
    estimate is the largest GeLU width whose interpolated loss equals the target. Returns the width, the
    parameters at it (linear between the points) and both as "% smaller" than the full GeLU; beyond the
    curve's ends it says so instead of extrapolating."""
    order = np.argsort(widths)
    w = np.asarray(widths, np.float64)[order]
    L = np.asarray(losses, np.float64)[order]
    P = np.asarray(params, np.float64)[order]
    full_w, full_p = w[-1], P[-1]
    if np.any(np.diff(L) >= 0):  # a wider GeLU is not better: no width can be read off the curve
        worse = [f"d_mlp {int(a)}: {la:.4f} <= d_mlp {int(b)}: {lb:.4f}"
                 for a, la, b, lb in zip(w[:-1], L[:-1], w[1:], L[1:]) if lb >= la]
        return {"width": None, "bound": "undefined", "mlp_smaller_pct": None, "params_smaller_pct": None,
                "note": "undefined: GeLU's loss does not fall with MLP width at this scale ("
                        + "; ".join(worse) + ")"}
    if target <= L[-1]:
        return {"width": None, "bound": "at least the full width", "mlp_smaller_pct": 0.0,
                "params_smaller_pct": 0.0, "note": "loss at or below the full-width GeLU's: no smaller"}
    for i in range(len(w) - 1, 0, -1):
        hi_l, lo_l = L[i], L[i - 1]  # loss at the wider and the narrower point
        if min(hi_l, lo_l) <= target <= max(hi_l, lo_l) and hi_l != lo_l:
            t = (target - hi_l) / (lo_l - hi_l)
            lw = math.log2(w[i]) + t * (math.log2(w[i - 1]) - math.log2(w[i]))
            width = 2 ** lw
            pw = P[i] + (width - w[i]) / (w[i - 1] - w[i]) * (P[i - 1] - P[i])
            return {"width": width, "bound": None, "mlp_smaller_pct": 100 * (1 - width / full_w),
                    "params_smaller_pct": 100 * (1 - pw / full_p), "note": ""}
    return {"width": None, "bound": f"below the narrowest GeLU ({int(w[0])})",
            "mlp_smaller_pct": 100 * (1 - w[0] / full_w), "params_smaller_pct": 100 * (1 - P[0] / full_p),
            "note": f"loss above every GeLU of the curve: more than {100 * (1 - w[0] / full_w):.0f}% smaller "
                    f"in MLP width"}


def proxy_shares(store_path: Path) -> dict:
    """The automated proxy per model: share of the store's hook_post neurons whose PROXY_SCORE passes its
    threshold, over all of them and per layer, with 95% Wilson intervals."""
    from store.measures.columns import THRESHOLDS
    from store.format.reader import Store
    from store.schema import parse_hook_name

    st = Store.open(store_path)
    thr = THRESHOLDS[PROXY_SCORE]
    per_layer, k_all, n_all = {}, 0, 0
    for h in st.hooks:
        layer, kind = parse_hook_name(h)
        if kind != "hook_post":
            continue
        v = np.asarray(st.neuron_table(h)[PROXY_SCORE], np.float64)
        v = v[np.isfinite(v)]
        k, n = int((v >= thr).sum()), int(v.size)
        per_layer[str(layer)] = _ci(k, n)
        k_all, n_all = k_all + k, n_all + n
    return {"label": PROXY_LABEL.format(thr=thr), "score": PROXY_SCORE, "threshold": thr,
            "store": str(st.path), "run_uuid": st.run_uuid, **_ci(k_all, n_all), "per_layer": per_layer}


def calibrated_shares(store_path: Path) -> dict | None:
    """The verdict engineer's calibrated rule proxy (issue 20: neurobrowse.calibration over
    store.measures.rules), where this checkout has it: the expected share a blinded rater would call
    interpretable, with a 95% interval that includes the calibration's own error, over all hook_post
    neurons and per layer. None where it is absent or fails (the threshold proxy is reported regardless)."""
    try:
        from neurobrowse import calibration
        from store.measures.rules import store_rules
    except ImportError:
        return None
    from store.format.reader import Store
    from store.schema import parse_hook_name

    try:
        st = Store.open(store_path)
        parts, per_layer = [], {}
        for h in st.hooks:
            layer, kind = parse_hook_name(h)
            if kind != "hook_post":
                continue
            X = calibration.features(store_rules(st, h)[0])
            parts.append(X)
            sh, _ = calibration.share(X)
            per_layer[str(layer)] = {"share": sh.share, "ci95": [sh.lo, sh.hi], "n": sh.n}
        sh, _ = calibration.share(np.vstack(parts))
    except Exception:  # noqa: BLE001 - another version of issue 20's code: leave it out, say so
        return None
    return {"label": "calibrated proxy (issue 20: rule score and coverage -> P(rater says interpretable)); "
                     "not a human rating", "share": sh.share, "ci95": [sh.lo, sh.hi], "n": sh.n,
            "store": str(st.path), "run_uuid": st.run_uuid, "per_layer": per_layer}


def ln_overlap(store_path: Path) -> dict:
    """SoLU-LN: per layer, the share of each neuron's distinct top firings kept across the LayerNorm
    (store column ln_overlap, hook_post side): median, and the share of neurons keeping fewer than half."""
    from store.format.reader import Store
    from store.schema import parse_hook_name

    st = Store.open(store_path)
    out = {}
    for h in st.hooks:
        layer, kind = parse_hook_name(h)
        if kind != "hook_post":
            continue
        v = np.asarray(st.neuron_table(h)["ln_overlap"], np.float64)
        v = v[np.isfinite(v)]
        if v.size:
            out[str(layer)] = {"median": float(np.median(v)), "below_half": float((v < 0.5).mean()),
                               "neurons": int(v.size)}
    return out


def dictionary_alignment(store_path: Path) -> dict | None:
    """The dictionary engineer's summary (issue 19) of every dictionary trained on the store: per feature
    hook the feature-neuron alignment (aligned / spread shares, median max |cos|) and the explained shares.
    None where that code or any dictionary is absent ("not computed")."""
    try:
        from store.format.dictionary import list_dictionaries
        from store.format.features import dictionary_summary
        from store.format.reader import Store
    except ImportError:
        return None
    out = {}
    for hook in list_dictionaries(store_path):
        try:
            s = dictionary_summary(Store.open(store_path), hook)
        except Exception:  # noqa: BLE001 - an unfinished or foreign dictionary: left out, the rest reported
            continue
        out[hook] = {k: s.get(k) for k in ("d_sae", "k", "aligned_share", "spread_share", "median_max_cos",
                                           "explained_share", "neurons_explained_share", "hidden_share")}
    return out or None


def check_study_stores(study: Path, key: dict) -> None:
    """Refuse a study whose stores were moved or replaced: the unblinding would read other neurons."""
    from store.errors import StoreError
    from store.format.reader import Store

    for m in key.get("models", []):
        path = Path(m["store"])
        try:
            st = Store.open(path)
        except (StoreError, OSError):
            raise ReplicateError(f"the study {study} names the store {path}, which is not there (moved or "
                                 f"deleted?); put it back where it was recorded, or rerun `neurobrowse replicate` "
                                 f"to record it again (the report was not written)") from None
        if st.run_uuid != m.get("run_uuid"):
            raise ReplicateError(f"the study {study} was drawn from the recording {m.get('run_uuid')} but {path} "
                                 f"now holds {st.run_uuid}: the store was replaced; the study cannot be unblinded "
                                 f"against it (the report was not written)")


def human_shares(study: Path) -> dict:
    """Blinded ratings of one size's study: per model and per layer the share of neurons whose majority
    verdict is interpretable (Wilson 95%), items unrated, raters, agreement."""
    from neurobrowse.study.folder import load_items, load_key
    from neurobrowse.study.ratings import latest_ratings
    from neurobrowse.study.results import majority

    items = load_items(study)
    key = load_key(study)
    check_study_stores(study, key)
    latest = latest_ratings(study)
    raters = sorted({r for r, _ in latest})
    by_item: dict[str, list[str]] = {}
    for (_, iid), (v, _) in latest.items():
        by_item.setdefault(iid, []).append(v)
    verdict = {iid: majority(vs) for iid, vs in by_item.items()}
    models = {int(m["index"]): m for m in key["models"]}
    per_model: dict[str, dict] = {}
    for idx, m in models.items():
        mine = [iid for iid, it in key["items"].items() if int(it["model"]) == idx]
        rated = [iid for iid in mine if iid in verdict]
        k = sum(verdict[i] == "interpretable" for i in rated)
        layers: dict[str, list[int]] = {}
        for iid in rated:
            c = layers.setdefault(str(key["items"][iid]["layer"]), [0, 0])
            c[0] += verdict[iid] == "interpretable"
            c[1] += 1
        name = Path(m["store"]).name
        per_model[name] = {**_ci(k, len(rated)), "drawn": len(mine), "unrated": len(mine) - len(rated),
                           "unsure": sum(verdict[i] == "unsure" for i in rated), "store": m["store"],
                           "run_uuid": m["run_uuid"],
                           "per_layer": {L: _ci(a, b) for L, (a, b) in sorted(layers.items())}}
    per_rater = {r: sum(1 for (rr, _) in latest if rr == r) for r in raters}
    kappa = None
    if len(raters) >= 2:
        from neurobrowse.study.results import compute_report

        a = compute_report(study)["agreement"]
        kappa = {"method": a["method"], "kappa": None if not math.isfinite(a["kappa"]) else a["kappa"],
                 "items": a["n_items"]}
    return {"study": str(study), "items": len(items), "unrated": len(items) - len(verdict), "raters": raters,
            "ratings_per_rater": per_rater, "agreement": kappa, "models": per_model}


# ---- the whole report -------------------------------------------------------------------------------
def compute(out: str | os.PathLike) -> dict:
    out = Path(out).absolute()
    doc = read_manifest(out)
    s = doc["settings"]
    d_mlp = s["model"]["d_mlp"]
    for n in doc["sizes"]:  # first of all: every study must still find the stores it was drawn from
        study = size_dir(out, n) / "study"
        if (study / "study.json").exists():
            from neurobrowse.study.folder import load_key

            check_study_stores(study, load_key(study))
    sizes = []
    for n in doc["sizes"]:
        sd = size_dir(out, n)
        row: dict = {"n_layers": n, "losses": {}, "shares": {}, "proxy": {}, "ln_overlap": None,
                     "dictionary_alignment": None, "study": None}
        for name in (*TRAINED, "control", *[model_name_for_width(w) for w in s["gelu_widths"]]):
            r = _checkpoint_row(sd / "models" / name)
            if r is not None and r["complete"]:
                row["losses"][name] = r
        L = row["losses"]
        g = L.get("gelu")
        if g:
            for name in ("solu_ln", "solu", "control"):
                if name in L:
                    L[name]["vs_gelu_pct"] = 100 * (L[name]["val_loss"] - g["val_loss"]) / g["val_loss"]
            curve = [(L[model_name_for_width(w)]["d_mlp"], L[model_name_for_width(w)]["val_loss"],
                      L[model_name_for_width(w)]["n_params"]) for w in s["gelu_widths"]
                     if model_name_for_width(w) in L]
            curve.append((g["d_mlp"], g["val_loss"], g["n_params"]))
            row["gelu_curve"] = [{"d_mlp": w, "val_loss": v, "n_params": p} for w, v, p in sorted(curve)]
            if len(curve) >= 2:
                for name in ("solu", "solu_ln"):
                    if name in L:
                        L[name]["effective"] = effective_size([c[0] for c in curve], [c[1] for c in curve],
                                                              [c[2] for c in curve], L[name]["val_loss"])
        for name in STUDIED:
            st = sd / "stores" / name
            if marker_path(out, f"L{n}-record-{name}").exists():
                row["proxy"][name] = proxy_shares(st)
                cal = calibrated_shares(st)
                if cal is not None:
                    row.setdefault("calibrated", {})[name] = cal
        if marker_path(out, f"L{n}-record-solu_ln").exists():
            row["ln_overlap"] = ln_overlap(sd / "stores" / "solu_ln")
            al = {m: dictionary_alignment(sd / "stores" / m) for m in STUDIED}
            row["dictionary_alignment"] = {m: a for m, a in al.items() if a is not None} or None
        if (sd / "study" / "study.json").exists():
            row["study"] = human_shares(sd / "study")
        sizes.append(row)
    steps = []
    for p in (out / "steps").glob("*.json"):
        m = json.loads(p.read_text(encoding="utf-8"))
        steps.append({"name": m["name"], "size": m.get("size"), "kind": m.get("kind"), "seconds": m["seconds"],
                      "finished": m.get("finished"), "marker": str(p)})
    steps.sort(key=lambda s: (s["finished"] or "", s["name"]))  # in the order they finished
    return {"kind": "neurobrowse-replicate-report", "out": str(out), "preset": s["preset"], "sizes": doc["sizes"],
            "d_mlp": d_mlp, "settings": s, "by_size": sizes, "steps": steps}


def _pct(c: dict | None) -> str:
    if not c or not c.get("n"):
        return "   n/a"
    lo, hi = c["ci95"]
    return f"{100 * c['share']:5.1f}% [{100 * lo:4.1f}-{100 * hi:4.1f}] ({c['k']}/{c['n']})"


def _share(x) -> str:
    return "n/a" if x is None or not math.isfinite(float(x)) else f"{100 * float(x):.0f}%"


def _num(x) -> str:
    return "n/a" if x is None or not math.isfinite(float(x)) else f"{float(x):.2f}"


def report_text(rep: dict) -> str:
    lines = [f"neurobrowse replicate: preset {rep['preset']}, sizes {', '.join(map(str, rep['sizes']))} layers "
             f"({rep['out']})", ""]
    lines.append("Share of neurons interpretable, blinded ratings (majority verdict per neuron; unsure and ties "
                 "count as not), 95% Wilson interval:")
    any_h = False
    for r in rep["by_size"]:
        st = r["study"]
        if not st:
            lines.append(f"  {r['n_layers']} layer(s): no study drawn yet")
            continue
        head = (f"  {r['n_layers']} layer(s): {st['items']} items, {st['unrated']} unrated, raters: "
                f"{', '.join(st['raters']) or 'none yet'}")
        if st["agreement"] and st["agreement"]["kappa"] is not None:
            head += f" ({st['agreement']['method']} kappa {st['agreement']['kappa']:.2f})"
        lines.append(head)
        for name in STUDIED:
            m = st["models"].get(name)
            if m and m["n"]:
                any_h = True
                lines.append(f"      {NAMES[name]:<8} {_pct(m)}  {m['unrated']} of {m['drawn']} unrated")
            elif m:
                lines.append(f"      {NAMES[name]:<8} no ratings yet ({m['unrated']} of {m['drawn']} unrated)")
    if not any_h:
        lines.append("  (no ratings entered yet: rate each size's study with `neurobrowse study rate STUDY`)")
    thr = next((p["threshold"] for r in rep["by_size"] for p in r["proxy"].values()), None)
    lines += ["", f"Share of neurons passing the AUTOMATED PROXY (rule explanation score >= {thr}), all hook_post "
                  "neurons of each store, 95% Wilson interval; not a human rating:" if thr is not None else
              "Automated proxy: no store recorded yet"]
    for r in rep["by_size"]:
        cells = [f"{NAMES[n]} {_pct(r['proxy'][n])}" for n in STUDIED if n in r["proxy"]]
        if cells:
            lines.append(f"  {r['n_layers']} layer(s): " + "; ".join(cells))
    cal_rows = [(r["n_layers"], r["calibrated"]) for r in rep["by_size"] if r.get("calibrated")]
    if cal_rows:
        lines += ["", "CALIBRATED PROXY (issue 20: the rule score and coverage mapped to the chance a blinded rater "
                      "says interpretable, fitted on docs/studies; 95% interval includes the calibration's error); "
                      "not a human rating:"]
        for n, cal in cal_rows:
            lines.append(f"  {n} layer(s): " + "; ".join(
                f"{NAMES[m]} {100 * c['share']:.1f}% [{100 * c['ci95'][0]:.1f}-{100 * c['ci95'][1]:.1f}]"
                for m, c in cal.items()))
    lines += ["", "Validation loss (nats/token, held-out split), difference to GeLU, and the effective size on "
                  "GeLU's loss-vs-MLP-width curve (the control: the GeLU's untrained initial weights):"]
    for r in rep["by_size"]:
        L = r["losses"]
        if not L:
            lines.append(f"  {r['n_layers']} layer(s): no model finished yet")
            continue
        lines.append(f"  {r['n_layers']} layer(s):")
        for name in ("gelu", "solu_ln", "solu", "control"):
            if name not in L:
                continue
            x = L[name]
            cell = f"      {NAMES[name]:<8} {x['val_loss']:.4f}"
            if "vs_gelu_pct" in x and name != "gelu":
                cell += f"  {x['vs_gelu_pct']:+.2f}% vs GeLU"
            e = x.get("effective")
            if e:
                if e["width"] is not None:
                    cell += (f"  like a GeLU {e['mlp_smaller_pct']:.0f}% smaller in MLP width (d_mlp "
                             f"{e['width']:.0f} of {rep['d_mlp']}), {e['params_smaller_pct']:.0f}% fewer parameters")
                else:
                    cell += f"  effective size: {e['note']}"
            lines.append(cell)
        curve = r.get("gelu_curve") or []
        if curve:
            lines.append("      GeLU curve: " + ", ".join(f"d_mlp {c['d_mlp']}: {c['val_loss']:.4f}" for c in curve))
    lines += ["", "Per layer (blinded share where rated; automated proxy otherwise marked 'proxy'):"]
    for r in rep["by_size"]:
        if r["n_layers"] < 2:
            continue
        for name in STUDIED:
            hm = (r["study"] or {}).get("models", {}).get(name, {}).get("per_layer") or {}
            pm = (r["proxy"].get(name) or {}).get("per_layer") or {}
            cells = []
            for layer in sorted(set(hm) | set(pm), key=int):
                h = hm.get(layer)
                cells.append(f"L{layer} {_pct(h)}" if h and h["n"] else f"L{layer} proxy {_pct(pm.get(layer))}")
            if cells:
                lines.append(f"  {r['n_layers']} layers, {NAMES[name]:<8}: " + "; ".join(cells))
    lines += ["", "LayerNorm overlap (SoLU-LN: share of each neuron's distinct top firings kept from hook_mid to "
                  "hook_post), per layer: median, and share of neurons keeping fewer than half:"]
    for r in rep["by_size"]:
        if r["ln_overlap"]:
            lines.append(f"  {r['n_layers']} layer(s): " + "; ".join(
                f"L{k} median {v['median']:.2f}, {100 * v['below_half']:.0f}% < 0.5"
                for k, v in r["ln_overlap"].items()))
    dl = [f"  {r['n_layers']} layer(s), {NAMES.get(m, m)}, {hook}: aligned {_share(d.get('aligned_share'))}, spread "
          f"{_share(d.get('spread_share'))}, median max |cos| {_num(d.get('median_max_cos'))}, features explained "
          f"{_share(d.get('explained_share'))} (neurons {_share(d.get('neurons_explained_share'))})"
          for r in rep["by_size"] for m, hooks in (r["dictionary_alignment"] or {}).items()
          for hook, d in hooks.items()]
    lines += ["", "Dictionary alignment (feature-neuron, per dictionary trained on a store): "
              + ("" if dl else "not computed"), *dl]
    lines += ["", "Wall time per step (the run that finished it), seconds:"]
    by_kind: dict = {}
    for s in rep["steps"]:
        by_kind.setdefault((s["size"], s["kind"]), []).append(s["seconds"])
    for s in rep["steps"]:
        lines.append(f"  {s['name']:<28} {s['seconds']:8.1f}")
    tot = {}
    for (size, _kind), v in by_kind.items():
        tot[size] = tot.get(size, 0.0) + sum(v)
    lines.append("  total per size: " + ", ".join(f"{'corpus' if k is None else str(k) + ' layer(s)'} "
                                                 f"{v / 60:.1f} min" for k, v in tot.items()))
    return "\n".join(lines) + "\n"


def plot(rep: dict, path: Path) -> None:
    """Left: share interpretable by size per model (filled: blinded ratings; hollow dashed: the calibrated proxy
    where issue 20's calibration is present, else the threshold proxy).
    Right: GeLU's validation loss vs MLP width per size, with SoLU-LN and SoLU as horizontal marks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"gelu": "#4c72b0", "solu_ln": "#dd8452", "solu": "#55a868", "control": "#8c8c8c"}
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 4), dpi=130)
    sizes = [r["n_layers"] for r in rep["by_size"]]
    proxy_kind = "calibrated proxy" if any(r.get("calibrated") for r in rep["by_size"]) else "proxy"
    for j, name in enumerate(STUDIED):
        off = (j - 1.5) * 0.06
        for src, style in (("human", "-"), ("proxy", "--")):
            xs, ys, lo, hi = [], [], [], []
            for r in rep["by_size"]:
                c = ((r["study"] or {}).get("models", {}).get(name) if src == "human"
                     else (r.get("calibrated") or {}).get(name) or r["proxy"].get(name))
                if c and c.get("n"):
                    xs.append(r["n_layers"] * (1 + off))
                    ys.append(100 * c["share"])
                    lo.append(100 * (c["share"] - c["ci95"][0]))
                    hi.append(100 * (c["ci95"][1] - c["share"]))
            if xs:
                ax.errorbar(xs, ys, yerr=np.clip([lo, hi], 0, None), fmt="o" + style, color=colors[name], capsize=3,
                            mfc=colors[name] if src == "human" else "white", lw=1,
                            label=f"{NAMES[name]} ({'blinded' if src == 'human' else proxy_kind})")
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes, [str(s) for s in sizes])
    ax.set_xlabel("layers")
    ax.set_ylabel("% of neurons interpretable")
    ax.set_ylim(0, 100)
    ax.set_title("Share interpretable (95% Wilson)", fontsize=9)
    ax.legend(fontsize=6, ncol=2)
    for r in rep["by_size"]:
        curve = r.get("gelu_curve") or []
        if len(curve) < 1:
            continue
        line, = bx.plot([c["d_mlp"] for c in curve], [c["val_loss"] for c in curve], "o-",
                        label=f"GeLU {r['n_layers']}L")
        for name, ls in (("solu_ln", "--"), ("solu", ":")):
            if name in r["losses"]:
                bx.axhline(r["losses"][name]["val_loss"], color=line.get_color(), ls=ls, lw=1,
                           label=f"{NAMES[name]} {r['n_layers']}L")
    bx.set_xscale("log", base=2)
    bx.set_xlabel("GeLU MLP width (d_mlp)")
    bx.set_ylabel("validation loss (nats/token)")
    bx.set_title("Loss vs MLP width; dashed SoLU-LN, dotted SoLU", fontsize=9)
    bx.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    try:
        with atomic.writing(path, suffix=".png") as tmp:
            fig.savefig(tmp)
    finally:
        plt.close(fig)


def write_report(out: str | os.PathLike) -> dict:
    """Compute the report and write OUT/report/report.{txt,json,png}; returns {ext: path}."""
    rep = compute(out)
    dest = Path(out).absolute() / "report"
    dest.mkdir(parents=True, exist_ok=True)
    with atomic.output(dest / "report.json", error=ReplicateError) as f:
        json.dump(rep, f, indent=1, default=float)
    with atomic.output(dest / "report.txt", error=ReplicateError) as f:
        f.write(report_text(rep))
    plot(rep, dest / "report.png")
    return {k: str(dest / f"report.{k}") for k in ("txt", "json", "png")}
