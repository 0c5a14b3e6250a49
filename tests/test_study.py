"""The blinded study end to end on two real tiny stores, with the report's numbers checked by hand."""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from tests.builders import run_cli as _cli
from neurobrowse.study.draw import StudyConfig, new_study
from neurobrowse.study.folder import StudyError, load_items
from neurobrowse.study.session import StudySession, rate_from_answers
from neurobrowse.study.folder import key_path, report_dir
from store.format.reader import Store

ROOT = Path(__file__).resolve().parents[1]




@pytest.fixture(scope="module")
def study(tiny_stores, tmp_path_factory):
    out = tmp_path_factory.mktemp("study") / "s"
    r = _cli(["study", "new", "--stores", str(tiny_stores["gelu"]), str(tiny_stores["solu_ln"]), "--per-model", "12",
              "--seed", "7", "--out", str(out)])
    assert r.returncode == 0, r.stderr
    return out


def test_study_file_is_blinded(study, tiny_stores):
    text = (study / "study.json").read_text(encoding="utf-8")
    doc = json.loads(text)
    assert set(doc) == {"kind", "version", "created", "rule", "n_items", "items"}
    assert doc["n_items"] == 24 and len(doc["items"]) == 24
    for it in doc["items"]:
        assert set(it) == {"item_id", "snippets"}
        assert 1 <= len(it["snippets"]) <= 20
        for s in it["snippets"]:
            assert set(s) == {"tokens", "acts", "center"} and len(s["tokens"]) == len(s["acts"])
        peaks = [s["acts"][s["center"]] for s in it["snippets"]]
        assert peaks == sorted(peaks, reverse=True)  # the top firings, strongest first
    for path in tiny_stores.values():
        st = Store.open(path)
        assert st.run_uuid not in text and str(path) not in text
    key = json.loads(key_path(study).read_text())
    assert key["seed"] == 7 and sorted(key["items"]) == sorted(it["item_id"] for it in doc["items"])
    models = [key["items"][it["item_id"]]["model"] for it in doc["items"]]
    assert models.count(0) == 12 and models.count(1) == 12
    assert models != sorted(models)  # shuffled together
    # the items shown are the neurons' real top snippets (cropped around the firing token)
    it = doc["items"][0]
    k = key["items"][it["item_id"]]
    view = Store.open(key["models"][k["model"]]["store"]).neuron(k["hook"], k["neuron"])
    s0, ref = it["snippets"][0], view.top[0]
    assert s0["tokens"][s0["center"]] == ref.tokens[ref.center]
    # relative activations above zero only (tests/test_study_blind.py): the strongest firing is 1
    peak = max(max(v.value for v in view.top[:20]), 0)
    assert s0["acts"][s0["center"]] == pytest.approx(max(ref.value, 0) / peak, abs=1e-3)
    assert max(max(s["acts"]) for s in it["snippets"]) == pytest.approx(1.0)


def test_same_seed_draws_the_same_study(study, tiny_stores, tmp_path):
    again = new_study([tiny_stores["gelu"], tiny_stores["solu_ln"]], tmp_path / "s2", StudyConfig(per_model=12, seed=7))
    a, b = json.loads(key_path(study).read_text()), json.loads(key_path(again).read_text())
    assert a["items"] == b["items"]
    assert [i.item_id for i in load_items(study)] == [i.item_id for i in load_items(again)]
    with pytest.raises(StudyError, match="already holds a study"):
        new_study([tiny_stores["gelu"]], again, StudyConfig(per_model=2, seed=1))


def _answers(study: Path) -> tuple[dict, dict, dict]:
    """Two raters' answers made from the key so the expected numbers can be worked out by hand."""
    key = json.loads(key_path(study).read_text())
    models = {m["index"]: m["act_fn"] for m in key["models"]}
    ann, ben = {}, {}
    for i, it in enumerate(load_items(study)):
        fn = models[key["items"][it.item_id]["model"]]
        if fn == "solu_ln":
            a = "interpretable" if i % 3 != 0 else "not_interpretable"
        else:
            a = "interpretable" if i % 3 == 0 else ("unsure" if i % 5 == 0 else "not_interpretable")
        b = {"interpretable": "not_interpretable", "not_interpretable": "interpretable"}.get(a, a) if i % 4 == 0 else a
        ann[it.item_id], ben[it.item_id] = a, b
    return key, ann, ben


def _hand_fisher(a: int, b: int, c: int, d: int) -> float:
    """Two-sided Fisher exact p for [[a, b], [c, d]]: sum of tables with probability <= the observed."""
    r1, c1, n = a + b, a + c, a + b + c + d

    def prob(x: int) -> float:
        return math.comb(c1, x) * math.comb(n - c1, r1 - x) / math.comb(n, r1)

    p_obs = prob(a)
    return sum(prob(x) for x in range(max(0, r1 + c1 - n), min(r1, c1) + 1) if prob(x) <= p_obs * (1 + 1e-7))


def _hand_wilson(k: int, n: int) -> tuple[float, float]:
    z = 1.959963984540054
    p = k / n
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = (z / (1 + z**2 / n)) * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    return centre - half, centre + half


def test_new_rate_report_end_to_end(study, tmp_path):
    key, ann, ben = _answers(study)
    (tmp_path / "ann.csv").write_text("item_id,verdict\n" + "".join(f"{k},{v}\n" for k, v in ann.items()))
    (tmp_path / "ben.json").write_text(json.dumps(ben))
    for rater, f in (("ann", "ann.csv"), ("ben", "ben.json")):
        r = _cli(["study", "rate", str(study), "--rater", rater, "--answers", str(tmp_path / f)])
        assert r.returncode == 0 and "saved 24 rating(s)" in r.stdout, r.stderr
    r = _cli(["study", "report", str(study), "--out", str(tmp_path / "rep")])
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(open(tmp_path / "rep" / "report.csv")))

    # --- by hand ---------------------------------------------------------------------------------
    fn_of = {iid: {m["index"]: m["act_fn"] for m in key["models"]}[k["model"]] for iid, k in key["items"].items()}
    counts = {}
    for fn in ("gelu", "solu_ln"):
        verdicts = [v for ans in (ann, ben) for iid, v in ans.items() if fn_of[iid] == fn]
        counts[fn] = (verdicts.count("interpretable"), len(verdicts))
    name = {"gelu": "GeLU", "solu_ln": "SoLU-LN"}
    for fn, (k, n) in counts.items():
        (row,) = [x for x in rows if x["section"] == "model" and x["name"] == name[fn] and x["rater"] == "all"]
        lo, hi = _hand_wilson(k, n)
        assert (int(row["interpretable"]), int(row["ratings"])) == (k, n) == (k, 24)
        assert float(row["share"]) == pytest.approx(k / n)
        assert (float(row["ci_low"]), float(row["ci_high"])) == (pytest.approx(lo), pytest.approx(hi))
    (kg, ng), (ks, ns) = counts["gelu"], counts["solu_ln"]
    (fisher,) = [x for x in rows if x["section"] == "fisher_p_ratings"]
    assert float(fisher["value"]) == pytest.approx(_hand_fisher(kg, ng - kg, ks, ns - ks), rel=1e-9)

    # per neuron: the two raters' majority (disagreement is a tie -> unsure); shares and Fisher on neurons
    maj = {i: (ann[i] if ann[i] == ben[i] else "unsure") for i in ann}
    items = {}
    for fn in ("gelu", "solu_ln"):
        vs = [v for i, v in maj.items() if fn_of[i] == fn]
        items[fn] = (vs.count("interpretable"), len(vs))
        (row,) = [x for x in rows if x["section"] == "model_items" and x["name"] == name[fn]]
        lo, hi = _hand_wilson(*items[fn])
        assert (int(row["interpretable"]), int(row["ratings"])) == items[fn] and items[fn][1] == 12
        assert (float(row["ci_low"]), float(row["ci_high"])) == (pytest.approx(lo), pytest.approx(hi))
    (ig, jg), (is_, js) = items["gelu"], items["solu_ln"]
    (fisher,) = [x for x in rows if x["section"] == "fisher_p"]
    assert float(fisher["value"]) == pytest.approx(_hand_fisher(ig, jg - ig, is_, js - is_), rel=1e-9)

    items = list(ann)
    cats = ("interpretable", "not_interpretable", "unsure")
    po = sum(ann[i] == ben[i] for i in items) / len(items)
    pe = sum((sum(ann[i] == c for i in items) / 24) * (sum(ben[i] == c for i in items) / 24) for c in cats)
    (kappa,) = [x for x in rows if x["section"] == "kappa_cohen"]
    assert float(kappa["value"]) == pytest.approx((po - pe) / (1 - pe))

    # ROC AUC of every score (the rule explanation score too) against the neurons' majority verdicts
    for score in ("explain_score", "token_rule_score", "sim_score"):
        pos = [key["items"][i]["scores"][score] for i, v in maj.items() if v == "interpretable"]
        neg = [key["items"][i]["scores"][score] for i, v in maj.items() if v == "not_interpretable"]
        wins = sum((p > q) + 0.5 * (p == q) for p in pos for q in neg)
        (auc,) = [x for x in rows if x["section"] == "roc_auc" and x["name"] == score]
        assert float(auc["value"]) == pytest.approx(wins / (len(pos) * len(neg)))

    text = (tmp_path / "rep" / "report.txt").read_text()
    assert re.search(rf"GeLU +{kg}/{ng} ", text) and re.search(rf"SoLU-LN +{ks}/{ns} ", text)
    assert "Cohen's kappa" in text and "Fisher exact test GeLU vs SoLU-LN on neurons" in text
    assert re.search(rf"GeLU +{ig}/{jg} ", text) and "explain_score" in text
    # the report is recorded inside both stores, for `compare`, which then leads with it
    from neurobrowse.study.registry import REPORTED_FILE, reported_study
    from store.format.reader import Store

    stores = {m["act_fn"]: Store.open(m["store"]) for m in key["models"]}
    for st in stores.values():
        (doc,) = json.loads((st.path / REPORTED_FILE).read_text())
        assert doc["study"] == str(study.absolute()) and {m["run_uuid"] for m in doc["models"]} == \
            {s.run_uuid for s in stores.values()}
    ev = reported_study(stores["solu_ln"], stores["gelu"])
    assert ev is not None and ev.k == (is_, ig) and ev.n == (js, jg) and ev.raters == 2
    from neurobrowse.compare import compare_stores

    cmp = compare_stores(stores["gelu"], stores["solu_ln"], controls=[])
    assert cmp.evidence.decided_by == "study" and [i.kind for i in cmp.evidence.items][:2] == ["study", "proxy"]
    png = (tmp_path / "rep" / "report.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    # per-rater rows: ann's SoLU share by hand
    ann_solu = [v for iid, v in ann.items() if fn_of[iid] == "solu_ln"]
    (row,) = [x for x in rows if x["section"] == "model" and x["name"] == "SoLU-LN" and x["rater"] == "ann"]
    assert int(row["interpretable"]) == ann_solu.count("interpretable")


def test_answers_faults_save_nothing(study, tmp_path):
    items = load_items(study)
    f = tmp_path / "a.csv"
    f.write_text(f"item_id,verdict\n{items[0].item_id},interpretable\nnot-an-item,unsure\n")
    with pytest.raises(StudyError, match=r"a.csv, line 3: no item 'not-an-item'"):
        rate_from_answers(study, "zed", f)
    f.write_text(f"item_id,verdict\n{items[0].item_id},yes\n")
    with pytest.raises(StudyError, match=r"line 2: unknown verdict 'yes'"):
        rate_from_answers(study, "zed", f)
    s = StudySession(study, "zed")
    assert s.progress() == (0, 24)
    s.close()


def test_session_timing_pause_and_resume(study):
    now = [100.0]
    s = StudySession(study, "timer", clock=lambda: now[0])
    first = s.current()
    now[0] = 103.0
    s.pause()
    with pytest.raises(StudyError, match="paused"):
        s.rate("interpretable")
    now[0] = 110.0  # 7 s paused: not counted
    s.resume()
    now[0] = 112.0
    nxt = s.rate("interpretable")
    assert s.ratings[first.item_id] == ("interpretable", pytest.approx(5.0))
    assert nxt is s.current() and nxt.item_id != first.item_id
    now[0] = 113.5
    s.rate("unsure")
    s.close()
    # a new session (the app reopened) resumes at the first item this rater has not rated
    s2 = StudySession(study, "timer", clock=lambda: now[0])
    assert s2.progress() == (2, 24) and s2.index == 2
    assert s2.ratings[nxt.item_id] == ("unsure", pytest.approx(1.5))
    s2.close()


def test_three_raters_use_fleiss(tiny_stores, tmp_path):
    st = new_study([tiny_stores["gelu"], tiny_stores["solu_ln"]], tmp_path / "s3", StudyConfig(per_model=3, seed=3))
    items = [i.item_id for i in load_items(st)]
    verdicts = {"r1": ["interpretable"] * 6, "r2": ["interpretable"] * 3 + ["not_interpretable"] * 3,
                "r3": ["unsure", "interpretable", "interpretable", "not_interpretable", "not_interpretable",
                       "not_interpretable"]}
    for rater, vs in verdicts.items():
        (tmp_path / f"{rater}.json").write_text(json.dumps(dict(zip(items, vs))))
        rate_from_answers(st, rater, tmp_path / f"{rater}.json")
    from neurobrowse.study.results import compute_report

    rep = compute_report(st)
    cats = ("interpretable", "not_interpretable", "unsure")
    table = np.array([[sum(verdicts[r][i] == c for r in verdicts) for c in cats] for i in range(6)])
    n, r = 6, 3
    p_j = table.sum(0) / (n * r)
    p_i = ((table**2).sum(1) - r) / (r * (r - 1))
    hand = (p_i.mean() - (p_j**2).sum()) / (1 - (p_j**2).sum())
    assert rep["agreement"]["method"] == "fleiss" and rep["agreement"]["kappa"] == pytest.approx(hand)


def test_both_sides_of_the_layernorm_rated_blind(tiny_stores, tmp_path):
    """`study new --hooks hook_mid,hook_post`: the same SoLU-LN neurons before and after the LN, split in the report."""
    out = tmp_path / "ln"
    r = _cli(["study", "new", "--stores", str(tiny_stores["gelu"]), str(tiny_stores["solu_ln"]), "--per-model", "5",
              "--seed", "3", "--hooks", "hook_mid,hook_post", "--out", str(out)])
    assert r.returncode == 0, r.stderr
    key = json.loads(key_path(out).read_text())
    solu = [k for k in key["items"].values() if k["model"] == 1]
    by_neuron = {}
    for k in solu:
        by_neuron.setdefault((k["layer"], k["neuron"]), set()).add(k["hook"].rsplit(".", 1)[1])
    assert len(by_neuron) == 5 and all(v == {"hook_mid", "hook_post"} for v in by_neuron.values())
    assert sum(k["model"] == 0 for k in key["items"].values()) == 5  # GeLU has no hook_mid: post only
    text = (out / "study.json").read_text()
    assert "hook_mid" not in text and "hook_post" not in text  # blind
    answers = {iid: ("interpretable" if k["hook"].endswith("hook_post") else "not_interpretable")
               for iid, k in key["items"].items()}
    (tmp_path / "a.json").write_text(json.dumps(answers))
    assert _cli(["study", "rate", str(out), "--rater", "ann", "--answers", str(tmp_path / "a.json")]).returncode == 0
    r = _cli(["study", "report", str(out)])
    assert r.returncode == 0, r.stderr
    rep = (report_dir(out) / "report.txt").read_text()
    assert re.search(r"SoLU-LN hook_mid +0/5 ", rep) and re.search(r"SoLU-LN hook_post +5/5 ", rep)
    assert "before vs after the LayerNorm" in rep
    r = _cli(["study", "new", "--stores", str(tiny_stores["solu_ln"]), "--hooks", "hook_mid,hook_psot",
              "--out", str(tmp_path / "bad")])
    assert r.returncode == 2 and "unknown hook kind 'hook_psot'" in r.stderr


def test_ln_overlap_column_and_filter(solu, gelu):
    from neurobrowse.browsing.filtering import apply_filter, parse_filter

    post = solu.hook_for(0, "hook_post")
    t = solu.neuron_table(post)
    o = t["ln_overlap"]
    assert np.isfinite(o).all() and ((o >= 0) & (o <= 1)).all()
    # by hand for one neuron: its distinct top firings after the LN found among its top-k before it
    from store.measures.explain import distinct_top

    n = int(np.argmin(o))
    pos_post = np.asarray(solu.index_array(post, "top_positions")[n])
    pos_mid = set(np.asarray(solu.index_array(solu.hook_for(0, "hook_mid"), "top_positions")[n]).tolist())
    keep = distinct_top(pos_post[None], solu.context_len)[0]
    assert o[n] == pytest.approx(np.mean([p in pos_mid for p in pos_post[keep]]))
    assert np.array_equal(apply_filter(t, parse_filter("ln_overlap < 0.99")), o < 0.99)
    assert np.array_equal(apply_filter(t, parse_filter("overlap < 0.99")), o < 0.99)  # the alias
    assert np.isnan(gelu.neuron_table(gelu.hooks[0])["ln_overlap"]).all()
