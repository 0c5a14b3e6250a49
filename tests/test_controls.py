"""Random-model controls (`train --init random,shuffled`) and a reproducible training run: real tiny models."""

from pathlib import Path

import numpy as np
import pytest
import torch

from solu_core.checkpoint import load_checkpoint, read_config, sha256_file
from solu_core.model import Transformer
from solu_core.train import control_dir, parse_inits, train_pair
from store.errors import NeurobrowseError
from store.format.reader import Store
from tests.builders import TINY_CHUNK_TOKENS, run_cli
from solu_core.record_config import CorpusText, RecordConfig


@pytest.fixture(scope="module")
def controls(tiny_root):
    out = tiny_root / "models"
    r = run_cli(["train", "--corpus", tiny_root / "corpus", "--out", out, "--preset", "tiny", "--act-fns",
                 "gelu,solu_ln", "--init", "random,shuffled", "--quiet"])
    assert r.returncode == 0, r.stderr
    return out, r.stdout


def test_random_control_is_the_trained_models_initial_weights(controls):
    out, stdout = controls
    assert "random control" in stdout and "shuffled control" in stdout
    for act in ("gelu", "solu_ln"):
        ck = load_checkpoint(control_dir(out, act, "random"), device="cpu")
        trained = read_config(out / act)
        assert ck.meta["init"] == "random" and trained["init"] == "trained"
        assert ck.config.to_dict() == load_checkpoint(out / act, device="cpu").config.to_dict()
        torch.manual_seed(trained["training"]["seed"])  # what training starts from
        start = Transformer(ck.config).state_dict()
        for k, v in start.items():
            assert torch.equal(ck.model.state_dict()[k], v), k
        # an untrained model predicts the text far worse than the trained one
        assert ck.meta["metrics"]["val_loss"] > trained["metrics"]["val_loss"] + 1.0


def test_shuffled_control_permutes_each_trained_tensor(controls):
    out, _ = controls
    trained = load_checkpoint(out / "solu_ln", device="cpu")
    sh = load_checkpoint(control_dir(out, "solu_ln", "shuffled"), device="cpu")
    assert sh.meta["init"] == "shuffled" and sh.meta["shuffled_from"] == trained.meta["model_sha256"]
    moved = 0
    for k, v in trained.model.state_dict().items():
        w = sh.model.state_dict()[k]
        assert torch.equal(torch.sort(w.reshape(-1)).values, torch.sort(v.reshape(-1)).values), k
        moved += not torch.equal(w, v)
    assert moved >= len(trained.model.state_dict()) - 4  # constant tensors (LN weights at 1) may look unmoved


def test_controls_are_kept_on_a_rerun_and_refuse_bad_kinds(controls, tiny_root):
    out, _ = controls
    before = {p: sha256_file(control_dir(out, "gelu", p) / "model.safetensors") for p in ("random", "shuffled")}
    paths = train_pair(tiny_root / "corpus", out, preset="tiny", act_fns="gelu", progress=False,
                       inits="random,shuffled")
    assert set(paths) == {"gelu-random", "gelu-shuffled"}
    assert {p: sha256_file(control_dir(out, "gelu", p) / "model.safetensors") for p in before} == before
    with pytest.raises(NeurobrowseError, match="choose from trained, random, shuffled"):
        parse_inits("trained,untrained")
    r = run_cli(["train", "--corpus", tiny_root / "corpus", "--out", out, "--preset", "tiny", "--init", "noise"])
    assert r.returncode == 2 and r.stderr.startswith("error: unknown --init noise")


def test_a_control_records_and_indexes_like_any_model(controls, tiny_root, tmp_path):
    from solu_core.record import record
    from store.index import index_store

    out, _ = controls
    st_path = tmp_path / "solu_ln-random"
    record(control_dir(out, "solu_ln", "random"), st_path,
           RecordConfig(text=CorpusText(tiny_root / "corpus"), n_tokens=8192, device="cpu",
                        chunk_tokens=TINY_CHUNK_TOKENS), progress=False)
    index_store(st_path, progress=False)
    st = Store.open(st_path)
    assert st.manifest["model_init"] == "random" and st.act_fn == "solu_ln"
    assert all(st.is_indexed(h) for h in st.hooks)
    assert np.isfinite(np.asarray(st.neuron_table(st.hooks[-1])["explain_score"], np.float64)).any()


def test_training_twice_gives_bit_identical_weights_and_activations(tiny_root, tiny_stores, tmp_path):
    """The default thread count is fixed (1), seeds and data order are fixed: a rerun is bit-identical,
    and so is what it records."""
    from solu_core.record import record

    again = train_pair(tiny_root / "corpus", tmp_path / "models", preset="tiny", act_fns="gelu", progress=False,
                       device="cpu")["gelu"]
    first = Path(tiny_root) / "models" / "gelu"
    assert sha256_file(again / "model.safetensors") == sha256_file(first / "model.safetensors")
    st_a = Store.open(tiny_stores["gelu"])
    st_path = tmp_path / "gelu-again"
    record(again, st_path, RecordConfig(text=CorpusText(tiny_root / "corpus"), n_tokens=st_a.n_tokens, device="cpu",
                                        chunk_tokens=st_a.chunk_tokens), progress=False)
    st_b = Store.open(st_path)
    assert np.array_equal(np.asarray(st_a.tokens[...]), np.asarray(st_b.tokens[...]))
    for h in st_a.hooks:
        assert np.array_equal(np.asarray(st_a.activations(h)[...]), np.asarray(st_b.activations(h)[...])), h


def _compare_demos():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "compare_demos.py"
    spec = importlib.util.spec_from_file_location("compare_demos", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_compare_demos_sets_run_ids_aside_and_names_a_changed_array(tiny_root, tiny_stores, tmp_path, capsys):
    """benchmarks/compare_demos.py (the reproducible-demo check): two copies of a workdir whose run UUID and
    paths differ are identical; one changed activation, or one changed index value, is found and named."""
    import shutil

    import zarr

    cmp = _compare_demos()
    work = {}
    for side in ("a", "b"):
        w = tmp_path / side
        (w / "models" / "gelu").mkdir(parents=True)
        shutil.copy(Path(tiny_root) / "models" / "gelu" / "model.safetensors", w / "models" / "gelu")
        shutil.copytree(Path(tiny_root) / "corpus", w / "corpus")
        shutil.copytree(tiny_stores["gelu"], w / "stores" / "gelu")
        work[side] = w
    root = zarr.open_group(str(work["b"] / "stores" / "gelu"), mode="r+")
    meta = dict(root.attrs["neurobrowse"])
    meta["run_uuid"], meta["created"] = "00000000-0000-0000-0000-000000000000", "2030-01-01T00:00:00+00:00"
    root.attrs["neurobrowse"] = meta
    out = tmp_path / "cmp.json"
    assert cmp.main([str(work["a"]), str(work["b"]), "--json", str(out)]) == 0
    assert "identical (" in capsys.readouterr().out
    st = Store.open(work["b"] / "stores" / "gelu")
    hook = st.hooks[0]
    acts = zarr.open_array(str(work["b"] / "stores" / "gelu" / hook), mode="r+")
    acts[3, 5] = float(acts[3, 5]) + 1.0
    kurt = zarr.open_array(str(work["b"] / "stores" / "gelu" / "index" / hook / "kurtosis"), mode="r+")
    kurt[7] = float(kurt[7]) + 0.5
    assert cmp.main([str(work["a"]), str(work["b"]), "--json", str(out)]) == 1
    text = capsys.readouterr().out
    assert f"gelu/{hook}: 1 of " in text and f"gelu/index/{hook}/kurtosis: 1 of " in text
    assert "NOT identical" in text
    assert cmp.main([str(tmp_path / "nowhere"), str(work["b"])]) == 2
