"""Checkpoints: round trip, TransformerLens loading from the files, and damaged / foreign input."""

import hashlib
import os
import json
import shutil

import pytest
import torch

from solu_core.checkpoint import (
    check_tokenizer_matches,
    load_checkpoint,
    read_config,
    save_checkpoint,
)
from solu_core.corpus.config import CorpusConfig
from solu_core.corpus.build import build_corpus
from solu_core.model import ModelConfig, Transformer
from store.errors import CheckpointError

CFG = dict(n_layers=1, d_model=32, n_heads=2, d_head=16, d_mlp=64, n_ctx=16)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return _corpus(tmp_path_factory.mktemp("corpus") / "c", seed=0)


def _corpus(path, seed):
    build_corpus(path, CorpusConfig(max_mb=0.15, vocab_size=300, seed=seed), progress=False)
    return path


@pytest.fixture
def ckpt(tmp_path, corpus):
    torch.manual_seed(0)
    model = Transformer(ModelConfig(**CFG, d_vocab=300, act_fn="solu_ln"))
    meta = {"metrics": {"val_loss": 3.21}, "corpus_manifest_hash": "abc", "corpus_dir": str(corpus)}
    path = save_checkpoint(tmp_path / "ck", model, (corpus / "tokenizer.json").read_text(), meta)
    return path, model


def test_round_trip(ckpt, corpus):
    path, model = ckpt
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors", "tokenizer.json"]
    assert not list(path.parent.glob(".ck.*"))  # no temp dirs left
    ck = load_checkpoint(path, device="cpu")
    assert ck.path == path and ck.config == model.cfg
    assert not ck.model.training
    for k, v in model.state_dict().items():
        assert torch.equal(ck.model.state_dict()[k], v), k
    assert ck.hash == hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()
    assert ck.meta["metrics"]["val_loss"] == 3.21 and ck.meta["corpus_dir"] == str(corpus)
    for field in ("n_layers", "d_model", "d_head", "n_heads", "d_mlp", "d_vocab", "n_ctx", "act_fn",
                  "normalization_type", "positional_embedding_type", "code_version", "corpus_manifest_hash"):
        assert field in ck.meta, field
    assert ck.tokenizer.get_vocab_size() == 300
    check_tokenizer_matches(ck, corpus)  # same tokenizer: no error


def test_saving_again_replaces_atomically(ckpt, corpus):
    path, model = ckpt
    with torch.no_grad():
        model.unembed.b_U.add_(1.0)
    save_checkpoint(path, model, (corpus / "tokenizer.json").read_text(), {"metrics": {"val_loss": 1.0}})
    ck = load_checkpoint(path, device="cpu")
    assert torch.equal(ck.model.unembed.b_U, model.unembed.b_U)
    assert sorted(p.name for p in path.parent.iterdir()) == ["ck"]


def test_files_load_into_transformer_lens(ckpt):
    """What a user does with the files alone: config.json -> HookedTransformerConfig, safetensors -> weights."""
    from safetensors.torch import load_file
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    path, model = ckpt
    cfg = ModelConfig.from_dict(json.loads((path / "config.json").read_text()))
    tl = HookedTransformer(HookedTransformerConfig(**cfg.to_transformer_lens()))
    tl.load_and_process_state_dict(load_file(str(path / "model.safetensors")), fold_ln=False,
                                   center_writing_weights=False, center_unembed=False,
                                   fold_value_biases=False, refactor_factored_attn_matrices=False)
    x = torch.randint(0, 300, (2, 10))
    with torch.no_grad():
        torch.testing.assert_close(tl.eval()(x), model.eval()(x), atol=1e-4, rtol=1e-4)


def test_truncated_weights_name_the_file(ckpt):
    path, _ = ckpt
    w = path / "model.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"model\.safetensors is corrupt"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match=r"model\.safetensors is corrupt or truncated"):
        load_checkpoint(path, verify=False)  # caught by safetensors itself too


def test_flipped_byte_is_caught_by_the_hash(ckpt):
    path, _ = ckpt
    w = path / "model.safetensors"
    data = bytearray(w.read_bytes())
    data[-10] ^= 0xFF  # inside a weight: safetensors alone would not notice
    w.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"model\.safetensors is corrupt: its sha256 differs"):
        load_checkpoint(path)


def test_damaged_or_foreign_config(ckpt):
    path, _ = ckpt
    c = path / "config.json"
    good = c.read_text()
    c.write_text(good[:40])
    with pytest.raises(CheckpointError, match=r"config\.json is corrupt or truncated"):
        load_checkpoint(path)
    c.write_text(json.dumps({"architectures": ["GPT2LMHeadModel"], "n_embd": 768}))  # a Hugging Face config
    with pytest.raises(CheckpointError, match=r"config\.json is not a neurobrowse checkpoint"):
        load_checkpoint(path)
    meta = json.loads(good)
    c.write_text(json.dumps({**meta, "d_model": 64, "d_head": 32}))  # weights of another shape
    with pytest.raises(CheckpointError, match=r"model\.safetensors does not fit the config"):
        load_checkpoint(path, verify=False)
    c.write_text(json.dumps({**meta, "act_fn": "relu"}))
    with pytest.raises(CheckpointError, match="gelu, solu, solu_ln"):
        load_checkpoint(path)


def test_missing_pieces(ckpt, tmp_path):
    path, _ = ckpt
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nothing-here")
    (path / "tokenizer.json").write_text("{not a tokenizer")
    with pytest.raises(CheckpointError, match=r"tokenizer\.json is corrupt"):
        load_checkpoint(path)
    (path / "tokenizer.json").unlink()
    with pytest.raises(CheckpointError, match=r"tokenizer\.json is missing"):
        load_checkpoint(path)
    (path / "config.json").unlink()
    with pytest.raises(CheckpointError, match=r"config\.json is missing"):
        read_config(path)


def test_tokenizer_of_another_corpus_does_not_match(ckpt, tmp_path):
    path, _ = ckpt
    other = _corpus(tmp_path / "other", seed=1)  # another sample of text: another BPE
    ck = load_checkpoint(path)
    with pytest.raises(CheckpointError, match=r"tokenizer.*does not match the checkpoint"):
        check_tokenizer_matches(ck, other)
    shutil.copy(other / "tokenizer.json", path / "tokenizer.json")  # swapped into the checkpoint itself
    with pytest.raises(CheckpointError, match="not the tokenizer this model was trained with"):
        load_checkpoint(path)


def test_recovery_after_a_writer_killed_mid_swap(ckpt):
    """A writer killed between the two renames leaves only `.ck.old-PID`; one killed earlier leaves `.ck.tmp-PID`."""
    import subprocess
    import sys

    from solu_core.checkpoint import recover_checkpoint_dir

    path, model = ckpt
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)  # that process has exited
    path.rename(path.parent / f".ck.old-{pid}")
    (path.parent / f".ck.tmp-{pid}").mkdir()
    (path.parent / f".ck.tmp-{os.getpid()}-other").mkdir()  # not a pid: left alone
    recover_checkpoint_dir(path)
    assert sorted(p.name for p in path.parent.iterdir()) == sorted(["ck", f".ck.tmp-{os.getpid()}-other"])
    assert torch.equal(load_checkpoint(path).model.unembed.W_U, model.unembed.W_U)
