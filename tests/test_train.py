"""Training: schedule, fair data order and init, a real tiny pair learns, kill-and-resume, CLI errors."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from neurobrowse.cli import main
from solu_core.checkpoint import load_checkpoint, read_config
from solu_core.model import ModelConfig, Transformer
from solu_core.train import PRESETS, TrainConfig, batch_at, get_preset, lr_at, parse_act_fns, train_pair
from store.errors import CheckpointError, NeurobrowseError
from tests.builders import run_cli
from tests.helpers import kill_9_when

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def corpus(tiny_root):
    """The session's tiny corpus (tests/builders.py)."""
    return tiny_root / "corpus"


@pytest.fixture(scope="module")
def tiny_pair(tiny_root):
    """The session's tiny pair, trained on that corpus with the `tiny` preset and one thread."""
    return {a: tiny_root / "models" / a for a in ("gelu", "solu_ln")}


def test_lr_schedule_warms_up_then_decays():
    tc = TrainConfig(steps=100, lr=1.0, min_lr_frac=0.1, warmup_steps=10)
    lrs = [lr_at(s, tc) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))  # monotone decay after warm-up
    assert lr_at(100, tc) == pytest.approx(0.1)


def test_data_order_is_a_function_of_seed_and_step():
    tokens = np.arange(10_000, dtype=np.uint16)
    a, b = batch_at(tokens, 7, 0, 4, 16), batch_at(tokens, 7, 0, 4, 16)
    assert torch.equal(a, b) and a.shape == (4, 17)
    assert (a[:, 1:] - a[:, :-1] == 1).all()  # contiguous windows
    assert not torch.equal(a, batch_at(tokens, 8, 0, 4, 16))
    assert not torch.equal(a, batch_at(tokens, 7, 1, 4, 16))


def test_pair_starts_from_the_same_weights():
    cfgs = {a: ModelConfig(n_layers=2, d_model=32, n_heads=2, d_head=16, d_mlp=64, d_vocab=50, n_ctx=8, act_fn=a)
            for a in ("gelu", "solu", "solu_ln")}
    sds = {}
    for a, cfg in cfgs.items():
        torch.manual_seed(0)  # what train_one does before building each model
        sds[a] = Transformer(cfg).state_dict()
    for k, v in sds["gelu"].items():
        assert torch.equal(v, sds["solu"][k]) and torch.equal(v, sds["solu_ln"][k]), k


def test_tiny_pair_learns_and_records_metrics(tiny_pair, corpus):
    paths = tiny_pair
    assert set(paths) == {"gelu", "solu_ln"}
    vocab = read_config(paths["gelu"])["d_vocab"]
    for act_fn, path in paths.items():
        assert path.name == act_fn
        ck = load_checkpoint(path, device="cpu")
        m = ck.meta
        assert m["act_fn"] == act_fn and m["complete"] and not (path / "train_state.pt").exists()
        assert m["corpus_dir"] == str(corpus)
        assert m["training"]["steps"] == m["metrics"]["step"] == PRESETS["tiny"].train.steps
        hist = [h["val_loss"] for h in m["history"]]
        assert hist[-1] < hist[0]  # validation loss falls during training
        assert m["metrics"]["val_loss"] < np.log(vocab) - 1.0  # far below a uniform guess
        assert m["metrics"]["tokens_per_s"] > 0
    gelu, solu = read_config(paths["gelu"]), read_config(paths["solu_ln"])
    assert gelu["training"] == solu["training"] and gelu["corpus_manifest_hash"] == solu["corpus_manifest_hash"]


def test_finished_models_are_skipped_and_other_settings_refused(tiny_pair, corpus):
    paths = tiny_pair
    out = paths["gelu"].parent
    before = read_config(paths["gelu"])
    files = {p: p.stat().st_mtime_ns for a in paths.values() for p in a.iterdir()}
    again = train_pair(corpus, out, preset="tiny", progress=False, threads=1)
    assert read_config(again["gelu"]) == before
    assert {p: p.stat().st_mtime_ns for a in paths.values() for p in a.iterdir()} == files  # nothing rewritten
    with pytest.raises(CheckpointError, match=r"another training config.*--force"):
        train_pair(corpus, out, preset="tiny", steps=50, progress=False)


def test_unknown_preset_and_act_fn_list_the_choices():
    with pytest.raises(NeurobrowseError, match="tiny, demo, solu-1l"):
        get_preset("huge")
    with pytest.raises(NeurobrowseError, match="choose from gelu, solu, solu_ln"):
        parse_act_fns("gelu,relu")
    assert parse_act_fns("gelu, solu-ln,gelu") == ("gelu", "solu_ln")


def test_killed_run_resumes_from_its_last_checkpoint(tiny_pair, corpus, tmp_path):
    out = tmp_path / "models"
    cmd = [sys.executable, "-m", "neurobrowse.cli", "train", "--corpus", str(corpus), "--out", str(out),
           "--preset", "tiny", "--act-fns", "gelu", "--ckpt-every", "25", "--threads", "1", "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # killed (no chance to save anything more) once the first checkpoint is on disk
    kill_9_when(proc, lambda: (out / "gelu" / "config.json").exists(), 600, "the first checkpoint")
    killed_at = read_config(out / "gelu")
    assert not killed_at["complete"] and (out / "gelu" / "train_state.pt").exists()
    step = killed_at["metrics"]["step"]
    assert step % 25 == 0 and 0 < step < PRESETS["tiny"].train.steps

    # the same command, resumed in this process (only the kill needs a child); the checkpoint cadence may
    # change: the weights do not depend on it
    rerun = [("100" if a == "25" else a) for a in cmd[3:]]
    r = run_cli(rerun)
    assert r.returncode == 0, r.stderr
    done = load_checkpoint(out / "gelu", device="cpu")
    assert done.meta["complete"] and done.meta["resumed_at"] == [step]
    assert done.meta["training"]["ckpt_every"] == 100
    assert [p.name for p in out.iterdir()] == ["gelu"]  # no temp dirs left behind
    # resuming is exact: the same weights as the uninterrupted run of the same settings
    reference = load_checkpoint(tiny_pair["gelu"], device="cpu")
    for k, v in reference.model.state_dict().items():
        torch.testing.assert_close(done.model.state_dict()[k], v, atol=1e-6, rtol=1e-5, msg=k)


def test_cli_train_errors_exit_2(tmp_path, corpus, capsys):
    assert main(["train", "--corpus", str(tmp_path / "nope"), "--out", str(tmp_path / "m"), "--quiet"]) == 2
    assert "manifest.json not found" in capsys.readouterr().err
    assert main(["train", "--corpus", str(corpus), "--out", str(tmp_path / "m"), "--preset", "big"]) == 2
    assert "choose one of tiny, demo" in capsys.readouterr().err
    assert main(["train", "--corpus", str(corpus), "--out", str(tmp_path / "m"), "--act-fns", "swish"]) == 2
    assert "gelu, solu, solu_ln" in capsys.readouterr().err
    bad = tmp_path / "m" / "gelu"
    bad.mkdir(parents=True)
    (bad / "config.json").write_text("{truncated")
    assert main(["train", "--corpus", str(corpus), "--out", str(tmp_path / "m"), "--preset", "tiny", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(bad / "config.json") in err
