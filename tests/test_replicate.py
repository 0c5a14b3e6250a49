"""`neurobrowse replicate` end to end with the `test` preset (sizes 1 and 2, tiny widths, real training for
seconds on real text): a run killed with SIGKILL mid-way and resumed without redoing finished steps, the
report's numbers traced back to the checkpoints, stores and ratings, and the bad inputs."""

from __future__ import annotations

import csv
import json
import shutil
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.builders import cli_command, run_cli
from neurobrowse.study.folder import key_path

ROOT = Path(__file__).resolve().parents[1]
SIZES = "1,2"
KILL_AFTER = "L1-record-gelu"  # the first recording's marker: the kill lands in a later step


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """A sweep killed with SIGKILL after its first recording finished, then resumed in process to the end.
    Returns (folder, markers as they were at the kill, the resumed run's output)."""
    out = tmp_path_factory.mktemp("replicate") / "sweep"
    proc = subprocess.Popen(cli_command("replicate", "--sizes", SIZES, "--preset", "test", "--out", out,
                                        "--device", "cpu"),
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # the step's marker is written before its "done" line is printed: wait for the line, so the kill cannot
    # land between the two (it did under load 9)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if f"{KILL_AFTER}: done" in line:
            proc.send_signal(signal.SIGKILL)
            break
    first_output = "".join(lines) + proc.communicate()[0]
    assert proc.returncode == -signal.SIGKILL, first_output[-3000:]
    assert (out / "steps" / f"{KILL_AFTER}.json").exists()
    before = {p.name: p.read_text() for p in (out / "steps").glob("*.json")}
    r = run_cli(["replicate", "--sizes", SIZES, "--preset", "test", "--out", out, "--device", "cpu"])
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return out, before, first_output, r.stdout


def test_a_killed_sweep_resumes_without_redoing_finished_steps(sweep):
    out, before, first, resumed = sweep
    assert "corpus: done" in first  # one line per step when not a terminal
    assert "\r" not in first  # no progress bars into a pipe
    assert f"{KILL_AFTER}: done" in first
    for name, text in before.items():  # finished steps were skipped, their markers untouched
        assert (out / "steps" / name).read_text() == text
        assert f"{name[:-5]}: finished earlier, skipped" in resumed
    redone = [ln for ln in resumed.splitlines() if ": done in" in ln]
    assert redone and not any(f" {name[:-5]}: done" in ln for ln in redone for name in before)
    # every step of the plan is finished now, and the artefacts are whole
    from neurobrowse.replicate.pipeline import STUDIED
    from store.format.reader import Store

    for n in (1, 2):
        for m in STUDIED:
            st = Store.open(out / f"L{n}" / "stores" / m)
            assert st.complete and all(st.is_indexed(h) for h in st.hooks)
            assert not st.dense  # --dense none by default
            assert (out / "steps" / f"L{n}-record-{m}.json").exists()
        for m in ("gelu", "solu_ln", "solu", "control", "gelu_mlp32"):
            cfg = json.loads((out / f"L{n}" / "models" / m / "config.json").read_text())
            assert cfg["complete"] and cfg["n_layers"] == n
        assert (out / f"L{n}" / "study" / "study.json").exists()
    # a third run does nothing but the report
    r = run_cli(["replicate", "--sizes", SIZES, "--preset", "test", "--out", out, "--device", "cpu"])
    assert r.returncode == 0 and ": done in" not in r.stdout and "21 finished earlier" in r.stdout


def test_same_data_seed_and_initialisation(sweep):
    """The three activations of a size start from the same weights (the SoLU-LN's extra LN aside) and
    see the same batches: the training histories differ only through the activation."""
    import torch

    from solu_core.checkpoint import load_checkpoint
    from solu_core.model import Transformer

    out = sweep[0]
    cks = {m: load_checkpoint(out / "L2" / "models" / m, device="cpu") for m in ("gelu", "solu_ln", "solu")}
    assert len({ck.meta["corpus_manifest_hash"] for ck in cks.values()}) == 1
    assert len({json.dumps(ck.meta["training"], sort_keys=True) for ck in cks.values()}) == 1
    inits = {}
    for m, ck in cks.items():
        torch.manual_seed(ck.meta["training"]["seed"])
        inits[m] = Transformer(ck.config).state_dict()
    for k, v in inits["gelu"].items():
        assert torch.equal(v, inits["solu"][k]) and torch.equal(v, inits["solu_ln"][k])
    # the control is the GeLU's initial weights, never trained
    ctrl = load_checkpoint(out / "L2" / "models" / "control", device="cpu")
    for k, v in inits["gelu"].items():
        assert torch.equal(ctrl.model.state_dict()[k], v)


def test_study_draws_every_layer_and_every_model(sweep):
    out = sweep[0]
    key = json.loads(key_path(out / "L2" / "study").read_text())
    assert [Path(m["store"]).name for m in key["models"]] == ["gelu", "solu_ln", "solu", "control"]
    per = {}
    for it in key["items"].values():
        per.setdefault(it["model"], []).append(it["layer"])
    assert sorted(per) == [0, 1, 2, 3]
    for layers in per.values():  # 8 per model, 4 from each of the 2 layers
        assert sorted(layers) == [0] * 4 + [1] * 4
    study = json.loads((out / "L2" / "study" / "study.json").read_text())
    blob = json.dumps(study)
    assert "gelu" not in blob and "solu" not in blob and "store" not in blob  # blinded


def _answers(study: Path, path: Path, rule) -> dict:
    """Answers for a study built from its key (a test may look): rule(model name, layer) -> verdict or None
    (left unrated). Returns {model name: (interpretable, rated)}."""
    key = json.loads(key_path(study).read_text())
    names = {int(m["index"]): Path(m["store"]).name for m in key["models"]}
    counts: dict[str, list[int]] = {}
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["item_id", "verdict"])
        for iid, it in sorted(key["items"].items()):
            v = rule(names[int(it["model"])], int(it["layer"]))
            if v is None:
                continue
            w.writerow([iid, v])
            c = counts.setdefault(names[int(it["model"])], [0, 0])
            c[0] += v == "interpretable"
            c[1] += 1
    return counts


def test_report_numbers_trace_back_to_checkpoints_stores_and_ratings(sweep, tmp_path):
    from neurobrowse.replicate.report import PROXY_SCORE
    from store.measures.columns import THRESHOLDS
    from store.format.reader import Store

    out = sweep[0]
    study = out / "L2" / "study"
    ans = tmp_path / "answers.csv"
    # SoLU-LN interpretable in layer 1 only, GeLU nowhere, SoLU everywhere, the control left unrated
    rule = {"gelu": lambda L: "not_interpretable", "solu_ln": lambda L: "interpretable" if L == 1 else "unsure",
            "solu": lambda L: "interpretable", "control": lambda L: None}
    counts = _answers(study, ans, lambda m, L: rule[m](L))
    r = run_cli(["study", "rate", study, "--rater", "t1", "--answers", ans])
    assert r.returncode == 0, r.stderr
    # the study's own report tells the GeLU from its control and tests GeLU (not the control) vs SoLU-LN
    from neurobrowse.study.results import compute_report

    srep = compute_report(study)
    assert len({m.name for m in srep["models"]}) == 4
    assert srep["fisher"]["table"] == [[0, 8], [4, 4]]
    r = run_cli(["replicate", "report", out])
    assert r.returncode == 0, r.stderr
    rep = json.loads((out / "report" / "report.json").read_text())
    assert (out / "report" / "report.png").stat().st_size > 10_000
    by = {s["n_layers"]: s for s in rep["by_size"]}
    h = by[2]["study"]
    assert h["raters"] == ["t1"] and h["unrated"] == 8  # the control's 8 items
    for m, (k, n) in counts.items():
        assert (h["models"][m]["k"], h["models"][m]["n"]) == (k, n)
    assert h["models"]["solu_ln"]["per_layer"]["1"]["share"] == 1.0
    assert h["models"]["solu_ln"]["per_layer"]["0"]["share"] == 0.0
    assert h["models"]["control"]["unrated"] == 8 and h["models"]["control"]["n"] == 0
    text = (out / "report" / "report.txt").read_text()
    assert "SoLU-LN   50.0%" in text and "8 of 8 unrated" in text and "AUTOMATED PROXY" in text
    assert by[1]["study"]["unrated"] == by[1]["study"]["items"]  # size 1 not rated: proxy only
    # losses: the checkpoints' own validation losses, differences and the width curve
    for n in (1, 2):
        L = by[n]["losses"]
        for m in ("gelu", "solu_ln", "solu", "control", "gelu_mlp32"):
            cfg = json.loads((out / f"L{n}" / "models" / m / "config.json").read_text())
            assert L[m]["val_loss"] == cfg["metrics"]["val_loss"] and L[m]["checkpoint"].endswith(f"models/{m}")
        g = L["gelu"]["val_loss"]
        assert L["solu_ln"]["vs_gelu_pct"] == pytest.approx(100 * (L["solu_ln"]["val_loss"] - g) / g)
        assert [c["d_mlp"] for c in by[n]["gelu_curve"]] == [32, 64]
        assert "effective" in L["solu"] and "effective" in L["solu_ln"]
        # the proxy: recomputed from the store
        for m in ("gelu", "solu_ln", "solu", "control"):
            st = Store.open(out / f"L{n}" / "stores" / m)
            k = nn = 0
            for hook in [x for x in st.hooks if x.endswith("hook_post")]:
                v = np.asarray(st.neuron_table(hook)[PROXY_SCORE], float)
                v = v[np.isfinite(v)]
                k, nn = k + int((v >= THRESHOLDS[PROXY_SCORE]).sum()), nn + v.size
            p = by[n]["proxy"][m]
            assert (p["k"], p["n"], p["run_uuid"]) == (k, nn, st.run_uuid)
        st = Store.open(out / f"L{n}" / "stores" / "solu_ln")
        v = np.asarray(st.neuron_table("blocks.0.mlp.hook_post")["ln_overlap"], float)
        assert by[n]["ln_overlap"]["0"]["median"] == pytest.approx(float(np.median(v[np.isfinite(v)])))
    assert by[1]["dictionary_alignment"] is None and "per dictionary trained on a store): not computed" in text
    names = [s["name"] for s in rep["steps"]]
    assert len(names) == 21 and names[0] == "corpus" and all(s["seconds"] >= 0 for s in rep["steps"])


def test_effective_size_interpolates_the_gelu_curve():
    from neurobrowse.replicate.report import effective_size

    widths, losses, params = [64, 128, 256], [4.0, 3.6, 3.4], [1000, 1200, 1600]
    e = effective_size(widths, losses, params, 3.5)  # halfway between 128 and 256 in log width
    assert e["width"] == pytest.approx(2 ** 7.5)
    assert e["mlp_smaller_pct"] == pytest.approx(100 * (1 - 2 ** 7.5 / 256))
    assert e["params_smaller_pct"] == pytest.approx(100 * (1 - (1200 + (2 ** 7.5 - 128) / 128 * 400) / 1600))
    assert effective_size(widths, losses, params, 3.3)["mlp_smaller_pct"] == 0.0
    low = effective_size(widths, losses, params, 4.5)
    assert low["width"] is None and "more than 75% smaller" in low["note"]
    # a curve on which a wider GeLU is not better has no effective size (seen on undertrained small models)
    flat = effective_size(widths, [3.6, 3.7, 3.8], params, 3.65)
    assert flat["width"] is None and flat["mlp_smaller_pct"] is None and "does not fall" in flat["note"]
    assert "d_mlp 64: 3.6000 <= d_mlp 128: 3.7000" in flat["note"]


def test_bad_sizes_and_presets_refused_with_nothing_written(tmp_path):
    out = tmp_path / "new"
    for sizes, what in (("1,x", "'x' is not a whole number"), ("0", "out of range"), ("1,1", "given twice"),
                        ("", "layer counts")):
        r = run_cli(["replicate", "--sizes", sizes, "--preset", "test", "--out", out])
        assert r.returncode == 2 and r.stderr.startswith("error: --sizes") and what in r.stderr, r.stderr
    r = run_cli(["replicate", "--sizes", "64", "--preset", "gpu", "--out", out, "--device", "cpu"])
    assert r.returncode == 2 and "needs about" in r.stderr and "GB" in r.stderr, r.stderr
    r = run_cli(["replicate", "--preset", "nope", "--out", out])
    assert r.returncode == 2 and "unknown --preset 'nope'" in r.stderr
    r = run_cli(["replicate", "--preset", "test", "--sizes", "1", "--per-model", "1000", "--out", out])
    assert r.returncode == 2 and "--per-model 1000" in r.stderr
    r = run_cli(["replicate", "--sizes", "1", "--preset", "test", "--out", out, "--device", "cuda:7"])
    assert r.returncode == 2 and "cuda:7" in r.stderr
    r = run_cli(["replicate", "report"])
    assert r.returncode == 2 and "replicate report DIR" in r.stderr
    assert not out.exists()


def test_an_output_folder_holding_something_else_is_refused(tmp_path, sweep):
    other = tmp_path / "busy"
    other.mkdir()
    (other / "thesis.tex").write_text("mine")
    r = run_cli(["replicate", "--sizes", "1", "--preset", "test", "--out", other])
    assert r.returncode == 2 and "already holds other files" in r.stderr
    assert [p.name for p in other.iterdir()] == ["thesis.tex"] and (other / "thesis.tex").read_text() == "mine"
    # the sweep's own folder, asked with other settings: refused, untouched
    out = sweep[0]
    manifest = (out / "replicate.json").read_text()
    r = run_cli(["replicate", "--sizes", SIZES, "--preset", "test", "--per-model", "4", "--out", out])
    assert r.returncode == 2 and "other settings (per_model" in r.stderr, r.stderr
    assert (out / "replicate.json").read_text() == manifest
    r = run_cli(["replicate", "report", other])
    assert r.returncode == 2 and "not a replicate folder" in r.stderr


def test_a_study_whose_stores_were_moved_is_refused(sweep, tmp_path):
    src = sweep[0]
    out = tmp_path / "copy"
    shutil.copytree(src, out)
    for n in (1, 2):  # make the copy's studies name the copy's stores, as if drawn there
        kp = key_path(out / f"L{n}" / "study")  # the key beside the study (STUDY.key/)
        kp.write_text(kp.read_text().replace(str(src), str(out)))
    assert run_cli(["replicate", "report", out]).returncode == 0
    before = (out / "report" / "report.txt").read_text()
    (out / "L2" / "stores" / "solu").rename(out / "elsewhere")
    r = run_cli(["replicate", "report", out])
    assert r.returncode == 2 and "names the store" in r.stderr and "L2/stores/solu" in r.stderr, r.stderr
    assert (out / "report" / "report.txt").read_text() == before
