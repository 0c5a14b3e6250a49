"""Leave-one-set-out validation of the calibrated rule proxy against every rated set in docs/studies.

    python benchmarks/validate_verdict.py [--studies docs/studies] [--boot 200] [--json OUT]

For each rated set H: the calibration (neurobrowse.calibration.fit) is fitted on every *other* set, then
scored on H alone: ROC AUC of the per-neuron probability against H's majority verdicts (unsure and tied
left out, as `study report` does; pooled and within each model), the proxy's SoLU-LN minus GeLU
difference in expected share interpretable (hook_post items; 95% interval with the calibration's error)
next to the study's own difference (majority shares, Newcombe interval), and whether the two verdict
words (holds / does not hold / undecided) agree. The rules (store.rules) have no fitted weights; the
calibration's coefficients are the only fitted part.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from neurobrowse import calibration as cal_mod  # noqa: E402
from neurobrowse.verdict import newcombe, word_for  # noqa: E402


def validate(sets, n_boot: int = 200, rebuilt: dict | None = None) -> list[dict]:
    """rebuilt: {set name: folder of stores that rebuild its pair} (``rebuilt_stores`` checks them)."""
    rows = []
    rebuilt = rebuilt or {}
    for h, whole in enumerate(sets):
        train = [s for j, s in enumerate(sets) if j != h]
        cal = cal_mod.fit(train, n_boot=n_boot)
        held = whole.neurons()  # a dictionary's feature items are scored apart (row["features"])
        p = cal.p(held.X)
        d = held.decided
        row = {"set": held.name, "trained_on": [s.name for s in train], "n": int(len(held.y)),
               "auc": cal_mod.roc_auc(p[d], held.y[d])}
        for act in ("gelu", "solu_ln"):
            g = held.act_fn == act
            row[f"auc_{act}"] = cal_mod.roc_auc(p[d & g], held.y[d & g])
        s, o = held.group("solu_ln"), held.group("gelu")
        sa, sb, (diff, lo, hi) = cal_mod.difference(held.X[s], held.X[o], cal)
        ks, ns, ko, no = int(held.y[s].sum()), int(s.sum()), int(held.y[o].sum()), int(o.sum())
        st_diff = ks / ns - ko / no
        st_lo, st_hi = newcombe(ks, ns, ko, no)
        row.update(proxy_shares=(sa.share, sb.share), proxy_diff=diff, proxy_interval=(lo, hi),
                   proxy_word=word_for(lo, hi), study_shares=(ks / ns, ko / no), study_diff=st_diff,
                   study_interval=(st_lo, st_hi), study_word=word_for(st_lo, st_hi))
        row["within_10_points"] = abs(diff - st_diff) <= 0.10
        row["agree"] = row["proxy_word"] == row["study_word"]
        found = None
        if held.name in rebuilt:
            found, row["rebuilt_check"] = rebuilt_stores(held, rebuilt[held.name])
            row["rebuilt_from"] = str(rebuilt[held.name])
        pop = population(held, cal, found)
        if pop is not None:
            row["population"] = pop
            row["population_agree"] = pop["word"] == row["study_word"]
            row["population_within_10_points"] = abs(pop["diff"] - st_diff) <= 0.10
        if (whole.unit == "feature").any():
            f = whole.subset(whole.unit == "feature")
            pf, df = cal.p(f.X), f.decided
            row["features"] = {"n": int(len(f.y)), "auc": cal_mod.roc_auc(pf[df], f.y[df]), "by_model": {
                act: {"proxy": float(pf[f.act_fn == act].mean()), "study": float(f.y[f.act_fn == act].mean()),
                      "n": int((f.act_fn == act).sum()),
                      "auc": cal_mod.roc_auc(pf[df & (f.act_fn == act)], f.y[df & (f.act_fn == act)])}
                for act in ("gelu", "solu_ln") if (f.act_fn == act).any()}}
        if (held.hook_kind == "hook_mid").any():
            m = held.group("solu_ln", "hook_mid")
            row["hook_mid"] = {"proxy": float(cal.p(held.X[m]).mean()), "study": float(held.y[m].mean()),
                               "n": int(m.sum())}
        rows.append(row)
    return rows


def rebuilt_stores(held, folder) -> tuple[dict, dict]:
    """The trained stores under ``folder`` (a rebuild of the set's pair, e.g. `neurobrowse demo --seed 1`) that
    reproduce the rated set: a store stands in for the key's model of its act_fn when every rated item of that
    model has the same max activation in it (key.json's max_act; a rebuild has other run UUIDs, so they cannot
    match). Returns ({act_fn: Store}, {act_fn: (items equal, items)})."""
    import json
    import math

    import numpy as np

    from neurobrowse import evidence
    from store.errors import NeurobrowseError
    from store.format.reader import Store

    key = json.loads((Path(held.folder) / "key.json").read_text(encoding="utf-8"))
    models = {m["index"]: m for m in key["models"] if cal_mod._model_init(m) == "trained"}
    found, check = {}, {}
    for d in sorted(Path(folder).iterdir()):
        try:
            st = Store.open(d)
        except (NeurobrowseError, OSError):
            continue
        if evidence.model_init(st) != "trained":
            continue
        act = evidence.act_fn(st)
        items = [it for it in key["items"].values() if it["model"] in models and models[it["model"]]["act_fn"] == act]
        tables = {}
        same = 0
        for it in items:
            if it["hook"] not in st.hooks:
                continue
            if it["hook"] not in tables:
                tables[it["hook"]] = np.asarray(st.neuron_table(it["hook"])["max_act"], np.float64)
            v = tables[it["hook"]][it["neuron"]]
            same += bool(math.isclose(float(v), float(it["max_act"]), rel_tol=0, abs_tol=1e-6))
        check[act] = (same, len(items))
        if items and same == len(items):
            found.setdefault(act, st)
    return found, check


def population(held, cal, found: dict | None = None):
    """The proxy as `compare` applies it: over every hook_post neuron of the study's trained GeLU and SoLU-LN
    stores (when they are still on disk, or ``found``: stores that reproduce them, ``rebuilt_stores``), with
    the held-out calibration; None without the stores."""
    import json

    from neurobrowse import evidence
    from store.errors import NeurobrowseError
    from store.format.reader import Store

    if found is None:
        folder = Path(held.folder)
        key = json.loads((folder / "key.json").read_text(encoding="utf-8"))
        found = {}
        for m in key["models"]:
            try:
                st = Store.open(m["store"])
            except (NeurobrowseError, OSError):
                continue
            if (st.run_uuid == m["run_uuid"] and evidence.model_init(st) == "trained"
                    and cal_mod._model_init(m) == "trained"):
                found.setdefault(m["act_fn"], st)
    if "gelu" not in found or "solu_ln" not in found:
        return None
    xs, xg = evidence.rule_features(found["solu_ln"]), evidence.rule_features(found["gelu"])
    sa, sb, (d, lo, hi) = cal_mod.difference(xs, xg, cal)
    return {"shares": (sa.share, sb.share), "diff": d, "interval": (lo, hi), "word": word_for(lo, hi),
            "n": (len(xs), len(xg))}


def population_table(rows) -> str:
    out = ["| held-out set | proxy over all neurons of the stores, SoLU-LN − GeLU [95%] | study [95%] | within 10 pts "
           "| proxy / study verdict | agree |", "|---|---|---|---|---|---|"]
    for r in rows:
        p = r.get("population")
        if p is None:
            continue
        (pl, ph), (sl, sh) = p["interval"], r["study_interval"]
        out.append(f"| `{r['set']}` | {100 * p['diff']:+.0f} [{100 * pl:+.0f}, {100 * ph:+.0f}] "
                   f"({100 * p['shares'][0]:.0f}% vs {100 * p['shares'][1]:.0f}%, {p['n'][0]} + {p['n'][1]} neurons) | "
                   f"{100 * r['study_diff']:+.0f} [{100 * sl:+.0f}, {100 * sh:+.0f}] | "
                   f"{'yes' if r['population_within_10_points'] else 'no'} | {p['word']} / {r['study_word']} | "
                   f"{'yes' if r['population_agree'] else 'no'} |")
    return "\n".join(out) if len(out) > 2 else ""


def table(rows) -> str:
    out = ["| held-out set | n | AUC pooled (GeLU / SoLU-LN) | proxy SoLU-LN − GeLU [95%] | study SoLU-LN − GeLU [95%] "
           "| within 10 pts | proxy / study verdict | agree |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        pl, ph = r["proxy_interval"]
        sl, sh = r["study_interval"]
        out.append(f"| `{r['set']}` | {r['n']} | {r['auc']:.3f} ({r['auc_gelu']:.3f} / {r['auc_solu_ln']:.3f}) | "
                   f"{100 * r['proxy_diff']:+.0f} [{100 * pl:+.0f}, {100 * ph:+.0f}] "
                   f"({100 * r['proxy_shares'][0]:.0f}% vs {100 * r['proxy_shares'][1]:.0f}%) | "
                   f"{100 * r['study_diff']:+.0f} [{100 * sl:+.0f}, {100 * sh:+.0f}] "
                   f"({100 * r['study_shares'][0]:.0f}% vs {100 * r['study_shares'][1]:.0f}%) | "
                   f"{'yes' if r['within_10_points'] else 'no'} | {r['proxy_word']} / {r['study_word']} | "
                   f"{'yes' if r['agree'] else 'no'} |")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--studies", default=str(ROOT / "docs" / "studies"))
    ap.add_argument("--set", action="append", default=[], metavar="FOLDER",
                    help="also a rated study folder outside --studies (repeatable)")
    ap.add_argument("--stores", action="append", default=[], metavar="SET=DIR",
                    help="stores that rebuild SET's pair (e.g. `neurobrowse demo --seed 1 --workdir W`: W/stores); "
                         "used for the every-neuron table when they reproduce every rated item's max activation")
    ap.add_argument("--boot", type=int, default=200)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    sets = cal_mod.rating_sets(args.studies) + [cal_mod.load_rating_set(f) for f in args.set]
    if len(sets) < 2:
        print("error: leave-one-set-out needs at least two rated sets", file=sys.stderr)
        return 2
    rebuilt = {}
    for spec in args.stores:
        name, sep, folder = spec.partition("=")
        if not sep or not Path(folder).is_dir() or name not in {s.name for s in sets}:
            print(f"error: --stores {spec!r}: give SET=DIR with SET one of the rated sets "
                  f"({', '.join(s.name for s in sets)}) and DIR a folder of stores", file=sys.stderr)
            return 2
        rebuilt[name] = Path(folder)
    rows = validate(sets, args.boot, rebuilt)
    print(table(rows))
    pt = population_table(rows)
    if pt:
        print("\nThe same calibration (fitted without the set) over every hook_post neuron of the set's stores, where "
              "they are still on disk (what `compare` shows):")
        print(pt)
    for r in rows:
        if "rebuilt_check" in r:
            print(f"{r['set']}: stores rebuilt in {r['rebuilt_from']}: rated items with the same max activation: "
                  + ", ".join(f"{a} {k}/{n}" for a, (k, n) in sorted(r["rebuilt_check"].items())))
    for r in rows:
        if "hook_mid" in r:
            m = r["hook_mid"]
            print(f"{r['set']}: SoLU-LN hook_mid ({m['n']} items): proxy {100 * m['proxy']:.0f}% vs study "
                  f"{100 * m['study']:.0f}% interpretable")
    for r in rows:
        if "features" in r:
            f = r["features"]
            print(f"{r['set']}: dictionary feature items, apart from the neuron verdict ({f['n']} items): AUC "
                  f"{f['auc']:.3f}; " + "; ".join(
                      f"{'GeLU' if a == 'gelu' else 'SoLU-LN'} features proxy {100 * m['proxy']:.0f}% vs study "
                      f"{100 * m['study']:.0f}% (n {m['n']}, AUC {m['auc']:.3f})" for a, m in f["by_model"].items()))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1, default=float), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
