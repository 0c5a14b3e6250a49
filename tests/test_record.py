"""Recording real tiny models into stores: contents, resume after kill -9, CLI errors."""

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import zarr

from solu_core.checkpoint import load_checkpoint
from solu_core.corpus.folder import load_split
from solu_core.record import RecordStats, default_hooks, plan_batches, record
from store import schema
from store.format.reader import Store
from tests.builders import cli_command, run_cli
from tests.helpers import kill_9_when
from solu_core.record_config import CorpusText, RecordConfig

ROOT = Path(__file__).resolve().parents[1]


def _all_arrays(path):
    g = zarr.open_group(path, mode="r")
    return {k: v[:] for k, v in g.members(max_depth=None) if isinstance(v, zarr.Array)}


def test_recorded_store_holds_the_models_activations(tiny_root, tmp_path):
    ck_dir = tiny_root / "models" / "solu_ln"
    out = tmp_path / "s"
    stats = RecordStats()
    record(ck_dir, out, RecordConfig(text=CorpusText(tiny_root / "corpus"), n_tokens=2000, device="cpu",
                                     chunk_tokens=256), progress=False, stats=stats)
    s = Store.open(out)
    ck = load_checkpoint(ck_dir, device="cpu")
    assert s.complete and s.n_tokens == 1984 and s.context_len == 64  # rounded down to whole contexts
    assert s.hooks == ["blocks.0.mlp.hook_post", "blocks.0.mlp.hook_mid"]
    assert s.manifest["checkpoint_hash"] == ck.hash and s.manifest["checkpoint_path"] == str(ck.path)
    assert s.tokenizer_json == ck.tokenizer_json
    assert stats.tokens == 1984 and stats.model_s > 0 and stats.write_s > 0
    val = load_split(tiny_root / "corpus", "val")
    np.testing.assert_array_equal(s.tokens[:], val.tokens[:1984].astype(np.int32))
    np.testing.assert_array_equal(s.doc_starts[:], val.doc_starts[:1984].astype(np.uint8))
    # activations equal a direct forward pass over the same contexts
    import torch

    ctx = torch.from_numpy(val.tokens[:1984].astype(np.int64).reshape(-1, 64))
    cache = ck.model.run_with_mlp_cache(ctx, s.hooks, dtype=torch.float16)
    for h in s.hooks:
        np.testing.assert_allclose(s.activations(h)[:].astype(np.float32),
                                   cache[h].reshape(-1, s.d_mlp).numpy().astype(np.float32), atol=2e-3, rtol=1e-2)
    # logit effects = top / bottom of W_out @ W_U, per neuron
    eff = (ck.model.blocks[0].mlp.W_out @ ck.model.unembed.W_U).detach().numpy()  # [d_mlp, d_vocab]
    up, down = s.logit_effects(0, 7)
    assert len(up) == schema.K_LOGIT
    ups = s.group[f"{schema.logit_path(0)}/up_tokens"][7]
    np.testing.assert_array_equal(np.sort(ups), np.sort(np.argsort(-eff[7])[:schema.K_LOGIT]))
    assert up[0][1] == pytest.approx(eff[7].max(), rel=1e-5) and down[0][1] == pytest.approx(eff[7].min(), rel=1e-5)
    assert up[0][0] == s.token_strings([ups[0]])[0]


def test_hooks_and_batches_plan():
    from solu_core.model import ModelConfig

    cfg = ModelConfig(n_layers=2, act_fn="solu_ln")
    assert default_hooks(cfg) == ["blocks.0.mlp.hook_post", "blocks.0.mlp.hook_mid",
                                  "blocks.1.mlp.hook_post", "blocks.1.mlp.hook_mid"]
    assert default_hooks(cfg, [1], ["hook_pre"]) == ["blocks.1.mlp.hook_pre"]
    assert default_hooks(ModelConfig(act_fn="gelu")) == ["blocks.0.mlp.hook_post"]
    from solu_core.record import RecordError

    with pytest.raises(RecordError, match="no hook 'blocks.0.mlp.hook_mid'"):
        default_hooks(ModelConfig(act_fn="gelu"), None, ["hook_mid"])
    with pytest.raises(RecordError, match="out of range"):
        default_hooks(cfg, [5])
    assert plan_batches(4096, 64, None) == (1, 64)  # one chunk per batch
    assert plan_batches(4096, 64, 200) == (3, 192)  # whole chunks per batch
    assert plan_batches(4096, 64, 10) == (1, 8)  # a divisor of 64 contexts per chunk


def _count(dirpath: Path) -> int:
    try:
        return len(os.listdir(dirpath))
    except FileNotFoundError:
        return 0


@pytest.mark.slow
def test_kill_9_then_resume_gives_an_identical_store(tiny_root, tmp_path):
    ck = tiny_root / "models" / "solu_ln"
    args = [ck, "--tokens", 4096, "--chunk-tokens", 128, "--batch-size", 1, "--device", "cpu", "--quiet",
            "--corpus", tiny_root / "corpus"]
    ref = tmp_path / "ref"  # uninterrupted, in this process (same code path as the CLI)
    record(ck, ref, RecordConfig(text=CorpusText(tiny_root / "corpus"), n_tokens=4096, chunk_tokens=128,
                                 batch_size=1, device="cpu"), progress=False)

    out = tmp_path / "killed"
    markers = out / schema.done_path("blocks.0.mlp.hook_mid") / "c"
    proc = subprocess.Popen(cli_command("record", *args[:1], "--out", out, *args[1:]), cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kill_9_when(proc, lambda: _count(markers) >= 6, 120, "6 chunks were written")
    s = Store.open(out)
    assert not s.complete, "the recording finished before it could be killed"
    assert 0 < s.done_chunks() < s.n_chunks
    info = run_cli(["info", out])
    assert info.returncode == 0 and "INCOMPLETE" in info.stdout and "neurobrowse record" in info.stdout

    r = run_cli(["record", *args[:1], "--out", out, *args[1:]])  # resumed in this process
    assert r.returncode == 0, r.stderr
    a, b = _all_arrays(ref), _all_arrays(out)
    assert sorted(a) == sorted(b)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    assert Store.open(out).complete and Store.open(out).run_uuid != Store.open(ref).run_uuid


def test_cli_errors_exit_2_with_a_message(tiny_root, tmp_path):
    ck = tiny_root / "models" / "gelu"
    out = tmp_path / "s"
    common = ["--device", "cpu", "--quiet", "--corpus", tiny_root / "corpus", "--chunk-tokens", 512]
    assert run_cli(["record", ck, "--out", out, "--tokens", 1024, *common]).returncode == 0
    r = run_cli(["record", ck, "--out", out, "--tokens", 2048, *common])
    assert r.returncode == 2 and "error:" in r.stderr and "n_tokens: store has 1024" in r.stderr
    r = run_cli(["record", tmp_path / "nope", "--out", tmp_path / "x", *common])
    assert r.returncode == 2 and "error:" in r.stderr and "nope" in r.stderr
    r = run_cli(["record", ck, "--out", tmp_path / "y", "--hooks", "hook_mid", *common])
    assert r.returncode == 2 and "no hook 'blocks.0.mlp.hook_mid'" in r.stderr
    assert not (tmp_path / "y").exists()
