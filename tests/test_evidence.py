"""Rules a rater would name (store.measures.rules), the calibrated proxy and the evidence of two real tiny stores."""

import json

import numpy as np
import pytest

from neurobrowse import calibration, evidence, verdict
from store.measures import rule_windows, rules
from store.format.reader import Store
from tests.builders import TINY_CHUNK_TOKENS, run_cli
from solu_core.record_config import CorpusText, RecordConfig


# ---- the rules on hand-made snippets ----------------------------------------------------------------------
def _snip(tokens, center, fire=5.0):
    acts = [0.0] * len(tokens)
    acts[center] = fire
    return {"tokens": tokens, "acts": acts, "center": center}


def _best(items):
    win, voc = rule_windows.from_snippets(items)
    arr = rules.rule_arrays(win, voc)
    return arr, voc, [rules.describe(voc, arr, i) for i in range(len(items))]


def test_a_category_beats_single_tokens_and_reads_like_a_rater():
    roles = ["func", "class", "meth", "mod", "attr"]
    # the role name of Sphinx markup, a different role each time, in otherwise varied text
    items = [[_snip([" see", " the", " :", roles[i % 5], ":`", "os", ".", "path", "`", " for"], 3)
              for i in range(20)]]
    # the second piece of a split word (a word start, then its continuation), varied words
    words = [(" multi", "plex"), (" auto", "matic"), (" pre", "fix"), (" sub", "class"), (" over", "ride")]
    items.append([_snip([" a", words[i % 5][0], words[i % 5][1], " is", " here"], 2) for i in range(20)])
    # one token
    items.append([_snip([" x", " =", " None", " if", " y"], 2) for _ in range(20)])
    arr, voc, words_out = _best(items)
    assert words_out[0].startswith("the role name in Sphinx markup (:func:, :class:, ...): 20/20 firings")
    assert words_out[1].startswith("the second piece of a split word: 20/20") or \
        words_out[1].startswith("a word piece inside a longer word: 20/20")
    assert words_out[2].startswith("the token ' None': 20/20 firings")
    assert (arr["rule_score"] > 0.8).all()


def test_a_rule_that_also_matches_quiet_tokens_loses_precision():
    # fires on ' if' right after ' x'; the same ' if' also occurs, silent, after other tokens
    items = [[_snip([" if", " x", " if", " y", " if"], 2) for _ in range(20)]]
    arr, _, words_out = _best(items)
    assert words_out[0].startswith("right after ' x': 20/20 firings")
    only_token = [[_snip([" a", " x", " if", " y", " b"], 2) for _ in range(20)]]
    assert _best(only_token)[2][0].startswith("the token ' if': 20/20")


def test_token_sets_need_members_a_rater_can_group():
    # two unrelated tokens (a word start, a bracket) split the firings: no set of them
    items = [[_snip([" a", " b", " apple" if i % 2 else "(", " c"], 2) for i in range(20)]]
    arr, _, words_out = _best(items)
    assert not words_out[0].startswith("one of the tokens")
    # two capitalised word starts do make a set
    items = [[_snip([" a", " b", " Alpha" if i % 2 else " Beta", " c"], 2) for i in range(20)]]
    arr, _, words_out = _best(items)
    assert words_out[0].startswith(("one of the tokens ' Alpha', ' Beta'", "one of the tokens ' Beta', ' Alpha'",
                                    "a capitalised word"))
    # two lower-case word starts share only "a word start", which nearly every word is: no category
    items = [[_snip([" a", " b", " to" if i % 2 else " des", " c"], 2) for i in range(20)]]
    assert not _best(items)[2][0].startswith("one of the tokens")


def test_sparsity_features_read_off_the_snippets():
    quiet = [[{"tokens": [" a", " b", " c", " d"], "acts": [-0.1, -0.2, 5.0, -0.1], "center": 2} for _ in range(20)]]
    busy = [[{"tokens": [" a", " b", " c", " d"], "acts": [2.0, 3.0, 5.0, 2.5], "center": 2} for _ in range(20)]]
    q, b = _best(quiet)[0], _best(busy)[0]
    assert q["positive_other"][0] == 0.0 and b["positive_other"][0] == 1.0
    assert q["log_kurtosis"][0] > b["log_kurtosis"][0]
    # the kurtosis of the 80 activations as a study keeps them (negatives as zero), by hand
    a = np.array([0.0, 0.0, 5.0, 0.0] * 20)
    assert _best([[{"tokens": [" a", " b", " c", " d"], "acts": [0.0, 0.0, 1.0, 0.0], "center": 2}] * 20])[0][
        "log_kurtosis"][0] == pytest.approx(q["log_kurtosis"][0])  # scale- and sign-free
    z = (a - a.mean()) / a.std()
    assert q["log_kurtosis"][0] == pytest.approx(np.log((z ** 4).mean()), rel=1e-5)


def test_repeated_tokens_numbers_and_spans():
    toks = [[" x", " =", " foo", "(", " bar", ")", " +", " foo"], 7]  # ' foo' again
    items = [[_snip(list(toks[0][:-1]) + [f" t{i}", " ", f" t{i}"], 9) for i in range(20)]]
    items.append([_snip([" version", " 3", ".", str(10 + i), " and"], 3) for i in range(20)])
    # every token inside backticks fires (a span neuron), the text around them does not
    items.append([{"tokens": [" the", " `", f"w{i}", "_", f"k{i}", "`", " y"], "acts": [0, 0, 4, 4, 5, 0, 0],
                   "center": 4} for i in range(20)])
    _, _, w = _best(items)
    assert w[0].startswith("a token repeated from earlier in the context")
    assert w[1].startswith(("digits after a dot", "a piece of a version number"))
    assert w[2].startswith("inside backticks")


# ---- the store path and the study path agree -----------------------------------------------------------------
def test_store_windows_are_what_a_study_shows(tiny_stores, tmp_path):
    st = Store.open(tiny_stores["solu_ln"])
    r = run_cli(["study", "new", "--stores", tiny_stores["gelu"], tiny_stores["solu_ln"], "--per-model", "8",
                 "--seed", "3", "--out", tmp_path / "s"])
    assert r.returncode == 0, r.stderr
    doc = json.loads((tmp_path / "s" / "study.json").read_text(encoding="utf-8"))
    from neurobrowse.study.folder import key_path
    key = json.loads(key_path(tmp_path / "s").read_text(encoding="utf-8"))
    solu = next(m["index"] for m in key["models"] if m["act_fn"] == "solu_ln")
    picked = [(it, key["items"][it["item_id"]]) for it in doc["items"]
              if key["items"][it["item_id"]]["model"] == solu]
    win, voc = rule_windows.from_snippets([it["snippets"] for it, _ in picked])
    from_study = rules.rule_arrays(win, voc)
    by_hook = {}
    for _, k in picked:
        if k["hook"] not in by_hook:
            by_hook[k["hook"]] = rules.store_rules(st, k["hook"])
    for i, (_, k) in enumerate(picked):
        arr, svoc = by_hook[k["hook"]]
        n = k["neuron"]
        assert from_study["rule_n"][i] == arr["rule_n"][n]
        assert from_study["rule_score"][i] == pytest.approx(float(arr["rule_score"][n]), abs=1e-4)
        assert from_study["positive_other"][i] == pytest.approx(float(arr["positive_other"][n]), abs=0.01)
        assert from_study["log_kurtosis"][i] == pytest.approx(float(arr["log_kurtosis"][n]), abs=0.01), \
            (win.acts[i], rule_windows.windows_from_store(st, k["hook"]).acts[n])
        assert rules.describe(voc, from_study, i) == rules.describe(svoc, arr, n)


def test_store_windows_gathered_from_tokens_equal_the_stored_windows(tiny_stores):
    """windows_from_store gathers only the cropped token slots (the fast path); it must give exactly what
    cropping the index's stored distinct windows gives, on every hook."""
    from store.measures.snippets import index_window

    for name in ("gelu", "solu_ln"):
        st = Store.open(tiny_stores[name])
        for h in st.hooks:
            before, after = index_window(st.index_state(h))
            assert st.index_state(h).get("distinct_lists") and before >= rule_windows.SPAN_BEFORE  # the fast path runs
            fast = rule_windows.windows_from_store(st, h)
            pos = np.asarray(st.index_array(h, "distinct_top_positions")[...], np.int64)
            acts = np.asarray(st.index_array(h, "distinct_top_context_acts")[...], np.float32)
            slow = rule_windows._stored_windows(st, h, "distinct_top", pos, acts, before)
            assert (fast.tokens >= 0).sum() > 100 and fast.center == slow.center
            assert fast.tokens.dtype == slow.tokens.dtype and np.array_equal(fast.tokens, slow.tokens)
            assert fast.acts.dtype == slow.acts.dtype and np.array_equal(fast.acts, slow.acts)


def test_row_medians_equal_numpy_median_row_by_row():
    rng = np.random.default_rng(0)
    for trial in range(60):
        b, S, W = rng.integers(1, 12, 3)
        act = (rng.standard_normal((b, S, W)) * 10.0 ** rng.integers(-3, 3)).astype(np.float16).astype(np.float32)
        act[rng.random(act.shape) < 0.3 * (trial % 2)] = 0.0  # ties
        act[rng.random(act.shape) < 0.05 * (trial % 5 == 0)] = np.nan
        mask = rng.random((b, S, W)) < rng.random()
        want = np.array([np.median(act[i][mask[i]]) if mask[i].any() else 0.0 for i in range(b)])
        got = rules._row_medians(act, mask)
        assert got.dtype == want.dtype and np.array_equal(got, want, equal_nan=True)


# ---- calibration ---------------------------------------------------------------------------------------------
def test_logistic_fit_recovers_a_known_model():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(4000, 2))
    true = np.array([-0.5, 2.0, -1.0])
    y = rng.random(4000) < calibration.predict(X, true)
    w = calibration.fit_logistic(X, y, ridge=0.0)
    assert w == pytest.approx(true, abs=0.15)


def test_shipped_calibration_is_fitted_from_docs_studies_reproducibly(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "cal.json"
    shipped = json.loads(calibration.RESOURCE.read_text())  # reproducible from the sets it names
    r = subprocess.run([sys.executable, str(root / "tools" / "fit_calibration.py"), "--out", str(out), "--only",
                        *shipped["sets"]], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert json.loads(out.read_text()) == json.loads(calibration.RESOURCE.read_text())
    cal = calibration.shipped()
    assert cal.features == calibration.FEATURES and len(cal.draws) == calibration.BOOTSTRAP
    sets = calibration.rating_sets(root / "docs" / "studies")
    assert set(cal.sets) == {s.name for s in sets}  # every rated set
    assert cal.n == sum(len(s.neurons().y) for s in sets) < sum(len(s.y) for s in sets)  # feature items not fitted
    feat = next(s for s in sets if (s.unit == "feature").any())
    assert set(feat.neurons().unit) == {"neuron"} and not feat.neurons().group("gelu", "hook_post.sae.8x-k32").any()


def test_a_set_whose_control_is_unnamed_is_refused(tmp_path):
    import shutil
    from pathlib import Path

    src = Path(__file__).resolve().parents[1] / "docs" / "studies" / "replicate-small-L1-2026-12-07"
    dst = tmp_path / "set"
    shutil.copytree(src, dst)
    key = json.loads((dst / "key.json").read_text(encoding="utf-8"))
    assert calibration.load_rating_set(dst).group("gelu").sum() == 30  # the control (30 more GeLU items) kept apart
    for m in key["models"]:
        m.pop("model_init")
    (dst / "key.json").write_text(json.dumps(key), encoding="utf-8")
    with pytest.raises(ValueError, match="model_init"):
        calibration.load_rating_set(dst)


def test_share_interval_includes_the_calibrations_error():
    X = np.tile([[0.8, 0.9, 0.05, 0.0, 2.5, 0.3]], (400, 1))  # score, coverage, shaded, set, log kurtosis, active
    exact = calibration.Calibration(calibration.shipped().coef, np.tile(calibration.shipped().coef, (50, 1)), [], 0)
    narrow, _ = calibration.share(X, exact)
    wide, _ = calibration.share(X, calibration.shipped())
    assert narrow.lo <= narrow.share <= narrow.hi
    assert (wide.hi - wide.lo) > (narrow.hi - narrow.lo)


def test_verdict_words_never_say_does_not_hold_inside_zero_or_against_a_study():
    assert verdict.word_for(0.02, 0.2) == "holds" and verdict.word_for(-0.2, -0.01) == "does not hold"
    assert verdict.word_for(-0.1, 0.3) == "undecided"
    against = verdict.CalibratedEvidence((0.3, 0.5), ((0.25, 0.35), (0.45, 0.55)), (500, 500), -0.2, (-0.28, -0.12))
    v = verdict.decide(("SoLU-LN", "GeLU"), [], None, against)
    assert v.outcome == "does not hold" and v.decided_by == "calibrated"
    study = verdict.StudyEvidence("s", (34, 28), (60, 60), verdict.fisher_p(34, 60, 28, 60), 2)
    v = verdict.decide(("SoLU-LN", "GeLU"), [], study, against)
    assert v.decided_by == "study" and [i.kind for i in v.items] == ["study", "proxy"]
    assert v.items[1].word == "undecided"  # the study points the other way
    inside = verdict.CalibratedEvidence((0.5, 0.45), ((0.4, 0.6), (0.35, 0.55)), (60, 60), 0.05, (-0.1, 0.2))
    v = verdict.decide(("SoLU-LN", "GeLU"), [], None, inside)
    assert v.outcome == "undecided" and "undecided" in v.headline and v.headline.count(".") >= 1


# ---- two real stores and a random control -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def control_store(tiny_root, tiny_stores):
    """A random-init SoLU-LN control recorded beside the tiny stores (so `compare` finds it)."""
    from solu_core.record import record
    from solu_core.train import control_dir, train_pair
    from store.index import index_store

    train_pair(tiny_root / "corpus", tiny_root / "models", preset="tiny", act_fns="solu_ln", progress=False,
               inits="random")
    out = tiny_root / "stores" / "solu_ln-random"
    record(control_dir(tiny_root / "models", "solu_ln", "random"), out,
           RecordConfig(text=CorpusText(tiny_root / "corpus"), n_tokens=8192, device="cpu",
                        chunk_tokens=TINY_CHUNK_TOKENS), progress=False)
    st = Store.open(out)
    if not all(st.is_indexed(h) for h in st.hooks):
        index_store(out, progress=False)
    return out


def test_store_verdict_finds_the_solu_side_and_the_control(tiny_stores, control_store):
    g, s = Store.open(tiny_stores["gelu"]), Store.open(tiny_stores["solu_ln"])
    tables = [dict(st.neuron_table(evidence.hooks_of(st)[0])) for st in (g, s)]
    v = evidence.store_verdict(g, s, tables)
    assert v is not None and v.decided_by == "calibrated" and v.outcome in verdict.WORDS
    kinds = [i.kind for i in v.items]
    assert kinds[0] == "proxy" and kinds[-1] == "control" and "study" not in kinds
    assert v.items[0].name == "Calibrated rule proxy"
    for it in v.items[:-1]:
        assert it.lo <= it.diff <= it.hi and it.word in verdict.WORDS
    (ctl,) = v.controls
    assert ctl.act_fn == "solu_ln" and ctl.init == "random" and ctl.name == "SoLU-LN random init"
    assert 0.0 <= ctl.interval[0] <= ctl.share <= ctl.interval[1] <= 1.0
    assert "Random-model control" in v.lines[-1] and "SoLU-LN random init" in v.lines[-1]
    # the control's share of the leading threshold score is named, with the trained models' beside it
    lead = next(e for e in v.evidence if e.name == verdict.PROXY_ORDER[0])
    assert ctl.threshold_name == f"{lead.title} ≥ {lead.threshold:g}"
    assert f"passing {ctl.threshold_name}: SoLU-LN random init {100 * ctl.threshold_share:.0f}% (trained: " \
        in v.lines[-1]
    assert v.lines[-1].count("(trained: ") == 2
    # the controls' evidence row (the forest plot's label) is named by their shares beside the trained models'
    assert v.items[-1].name == (f"Random-init control {100 * ctl.share:.0f}% "
                                f"(trained {100 * v.calibrated.shares[0]:.0f}%)")
    # the SoLU side comes from the manifest, whatever the order
    v2 = evidence.store_verdict(s, g, tables[::-1], controls=[])
    assert v2.calibrated.shares == pytest.approx(v.calibrated.shares) and not v2.controls
    # two GeLU-like stores (the same one twice): no SoLU side, no verdict
    assert evidence.store_verdict(g, g, [tables[0], tables[0]]) is None


def test_study_report_lists_the_control_beside_the_trained_models(tiny_stores, control_store):
    """`study report`'s control lines (neurobrowse.study.report.control_lines): the random-init control found
    beside the study's stores, with its calibrated share next to each trained model's on the same proxy."""
    from neurobrowse.study.report import control_lines

    key = {"models": [{"store": str(tiny_stores[a]), "run_uuid": Store.open(tiny_stores[a]).run_uuid}
                      for a in ("gelu", "solu_ln")]}
    lines = control_lines(key)
    assert lines[0].startswith("Random-model controls beside these stores")
    body = lines[1:]
    assert len(body) == 3 and "random init" in body[-1]
    for line in body:
        share = float(line.split("%")[0].split()[-1])
        assert 0.0 <= share <= 100.0 and line.rstrip().endswith("neurons)")
    # a key whose run UUIDs are not these stores' lists nothing (the study was of other recordings)
    assert control_lines({"models": [{"store": str(tiny_stores["gelu"]), "run_uuid": "other"}]}) == []


def test_the_compare_sentence_names_the_calibrated_proxy_once():
    """The compare window's one sentence with no study: led by the calibrated proxy, named once (it read
    "automated proxy Calibrated rule proxy")."""
    from neurobrowse.qt.compare_window import ForestRow, one_sentence

    rows = [ForestRow("Calibrated rule proxy", "proxy", 0.12, 0.03, 0.20, "holds"),
            ForestRow("Random-init controls 9% vs 9% (trained 61% vs 50%)", "control", 0.0, -0.04, 0.04, "undecided",
                      decides=False)]
    said = one_sentence(rows)
    assert said.startswith("No blinded study yet; calibrated rule proxy: SoLU-LN minus GeLU +12 points [+3, +20]")
    assert "automated proxy Calibrated" not in said and "the paper's result holds" in said
    threshold = one_sentence([ForestRow("token-rule score ≥ 0.8", "proxy", 0.14, 0.08, 0.19, "holds")])
    assert threshold.startswith("No blinded study yet; automated proxy token-rule score ≥ 0.8:")
