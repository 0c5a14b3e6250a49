"""Recording Hugging Face causal LMs and TransformerLens models built in the test (random weights, a BPE
trained on a few KB of real text, save_pretrained): stored activations equal an independent capture."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr

from solu_core.hf import ARCHITECTURES, HFRecorder
from solu_core.record import record, record_model
from store import schema
from store.format.reader import Store
from tests.builders import run_cli
from tests.helpers import kill_9_when
from solu_core.record_config import RecordConfig, TextFiles

ROOT = Path(__file__).resolve().parents[1]
CTX = 32


def _cli(*args):
    return [sys.executable, "-m", "neurobrowse", *map(str, args)]


def _text_dir(root: Path) -> Path:
    """A few real text files (the stdlib's own source), one binary and one non-UTF-8 file."""
    import sysconfig

    src = Path(sysconfig.get_paths()["stdlib"])
    d = root / "text"
    d.mkdir()
    for name in ("textwrap.py", "colorsys.py", "bisect.py", "keyword.py"):
        (d / name).write_text((src / name).read_text(encoding="utf-8"), encoding="utf-8")
    (d / "blob.bin").write_bytes(b"\x00\x01\x02binary")
    (d / "latin1.txt").write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))
    return d


def _fast_tokenizer(texts: list[str], bos: str = "<|endoftext|>"):
    from transformers import PreTrainedTokenizerFast

    from solu_core.corpus.bpe import train_tokenizer

    tok = train_tokenizer(texts, 400, progress=False)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token=bos)


def _configs(vocab: int) -> dict:
    from transformers import GPT2Config, GPTNeoXConfig, LlamaConfig

    return {
        "gpt2": GPT2Config(vocab_size=vocab, n_positions=64, n_embd=32, n_layer=2, n_head=2, bos_token_id=0,
                           eos_token_id=0),
        "gpt_neox": GPTNeoXConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=80, max_position_embeddings=64),
        "llama": LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=48, num_hidden_layers=3,
                             num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64),
    }


@pytest.fixture(scope="module")
def hf_root(tmp_path_factory):
    """{"text": folder, "gpt2" | "gpt_neox" | "llama": save_pretrained folder} with random weights."""
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("hf")
    text = _text_dir(root)
    tok = _fast_tokenizer([p.read_text(encoding="utf-8") for p in sorted(text.glob("*.py"))])
    out = {"text": text}
    torch.manual_seed(0)
    for name, cfg in _configs(len(tok)).items():
        model = AutoModelForCausalLM.from_config(cfg)
        model.save_pretrained(root / name)
        tok.save_pretrained(root / name)
        out[name] = root / name
    return out


def _independent_capture(model, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
    """hook_post of every layer captured without solu_core.hf: the activation module's output (GPT-2,
    NeoX) or act_fn(gate_proj(x)) * up_proj(x) from the MLP's input (Llama)."""
    out, handles = {}, []
    mt = model.config.model_type
    blocks = {"gpt2": lambda: model.transformer.h, "gpt_neox": lambda: model.gpt_neox.layers,
              "llama": lambda: model.model.layers}[mt]()
    for i, block in enumerate(blocks):
        name = f"blocks.{i}.mlp.hook_post"
        if mt == "llama":
            def pre(mod, args, name=name):
                out[name] = mod.act_fn(mod.gate_proj(args[0])) * mod.up_proj(args[0])
            handles.append(block.mlp.register_forward_pre_hook(pre))
        else:
            def fwd(mod, args, result, name=name):
                out[name] = result
            handles.append(block.mlp.act.register_forward_hook(fwd))
    with torch.no_grad():
        model(input_ids=tokens)
    for h in handles:
        h.remove()
    return out


@pytest.mark.parametrize("arch", ["gpt2", "gpt_neox", "llama"])
def test_recorded_hf_store_equals_an_independent_forward_hook(hf_root, tmp_path, arch):
    from transformers import AutoModelForCausalLM

    out = tmp_path / "s"
    record(hf_root[arch], out, RecordConfig(text=TextFiles([hf_root["text"]]), n_tokens=900, context=CTX,
                                            device="cpu", chunk_tokens=128), progress=False)
    s = Store.open(out)
    n_layers = 3 if arch == "llama" else 2
    assert s.complete and s.n_tokens == 896 and s.context_len == CTX
    assert s.hooks == [f"blocks.{i}.mlp.hook_post" for i in range(n_layers)]
    m = s.manifest
    assert m["model_kind"] == "hf" and m["checkpoint_path"] == str(hf_root[arch].resolve())
    assert m["model_config"]["model_type"] == arch and m["text_documents"] >= 1
    skipped = {(x["skipped_binary"], x["skipped_non_utf8"]) for x in m["text_sources"]}
    assert skipped == {(1, 1)}
    # the tokenizer in the store is the model's: token strings decode to the text that was read
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(hf_root[arch])
    assert json.loads(s.tokenizer_json) == json.loads(tok.backend_tokenizer.to_str())
    toks = s.tokens[:]
    assert toks[0] == tok.bos_token_id and s.doc_starts[0] == 1
    first_doc = sorted(hf_root["text"].glob("*.py"))[0].read_text(encoding="utf-8")
    assert first_doc.startswith(tok.decode(toks[1:40].tolist()))
    # activations: an independent hook on the same tokens, whole contexts
    model = AutoModelForCausalLM.from_pretrained(hf_root[arch]).eval()
    ref = _independent_capture(model, torch.from_numpy(toks.astype(np.int64).reshape(-1, CTX)))
    for h in s.hooks:
        np.testing.assert_allclose(s.activations(h)[:].astype(np.float32),
                                   ref[h].reshape(-1, s.d_mlp).numpy(), atol=2e-3, rtol=1e-2, err_msg=h)
    # logit effects: top of W_out @ W_U
    rec = HFRecorder(model)
    eff = (rec.w_out(1) @ rec.w_u()).detach().numpy()  # [d_mlp, d_vocab]
    ups = s.group[f"{schema.logit_path(1)}/up_tokens"][3]
    np.testing.assert_array_equal(np.sort(ups), np.sort(np.argsort(-eff[3])[:schema.K_LOGIT]))


def test_every_table_entry_finds_its_blocks_and_output_projection():
    """A tiny random model of every architecture in the table: the paths resolve and the projection
    reads d_mlp = the config's intermediate width."""
    from transformers import AutoConfig, AutoModelForCausalLM

    small = dict(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                 intermediate_size=48, max_position_embeddings=64, n_embd=32, n_layer=2, n_head=2, n_inner=48,
                 ffn_dim=48, word_embed_proj_dim=32, n_positions=64, head_dim=16, num_layers=2, attention_types=[
                     [["global", "local"], 1]], rotary_dim=8, n_ctx=64, pad_token_id=0, bos_token_id=0, eos_token_id=0)
    for model_type in ARCHITECTURES:
        cfg = AutoConfig.for_model(model_type, **{k: v for k, v in small.items()
                                                  if not (model_type == "falcon" and k == "head_dim")})
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(cfg)
        rec = HFRecorder(model, model_type)
        assert rec.n_layers == 2, model_type
        wide = (4 * 32 if model_type in ("bloom", "falcon") else  # fixed 4 x hidden
                getattr(cfg, "intermediate_size", None) or getattr(cfg, "ffn_dim", None) or cfg.n_inner)
        assert rec.d_mlp == wide and rec.d_model == 32, model_type
        acts = rec.run_with_mlp_cache(torch.randint(0, 64, (2, 8)), ["blocks.1.mlp.hook_post"], torch.float32)
        assert acts["blocks.1.mlp.hook_post"].shape == (2, 8, wide), model_type


def test_transformer_lens_solu_ln_model_records_hook_mid_and_hook_post(hf_root, tmp_path):
    from transformer_lens import HookedTransformer, HookedTransformerConfig
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(hf_root["gpt2"])
    cfg = HookedTransformerConfig(n_layers=2, d_model=32, d_head=16, n_heads=2, d_mlp=64, d_vocab=len(tok),
                                  n_ctx=64, act_fn="solu_ln", normalization_type="LN", seed=0)
    model = HookedTransformer(cfg).eval()
    docs = [p.read_text(encoding="utf-8") for p in sorted(hf_root["text"].glob("*.py"))]
    out = record_model(model, tok, docs, tmp_path / "tl", RecordConfig(n_tokens=640, context=CTX, chunk_tokens=128))
    s = Store.open(out)
    assert s.complete and s.n_tokens == 640
    assert s.hooks == ["blocks.0.mlp.hook_post", "blocks.0.mlp.hook_mid", "blocks.1.mlp.hook_post",
                       "blocks.1.mlp.hook_mid"]
    assert s.manifest["model_kind"] == "memory" and s.manifest["model_config"]["act_fn"] == "solu_ln"
    tokens = torch.from_numpy(s.tokens[:].astype(np.int64).reshape(-1, CTX))
    _, cache = model.run_with_cache(tokens)
    for h in s.hooks:
        np.testing.assert_allclose(s.activations(h)[:].astype(np.float32),
                                   cache[h].reshape(-1, s.d_mlp).numpy(), atol=2e-3, rtol=1e-2, err_msg=h)
    # the same call again resumes the finished store (nothing to do); other tokens are refused
    record_model(model, tok, docs, out, RecordConfig(n_tokens=640, context=CTX, chunk_tokens=128))
    from store.errors import StoreError

    with pytest.raises(StoreError, match="text_sha256"):
        record_model(model, tok, docs[::-1], out, RecordConfig(n_tokens=640, context=CTX, chunk_tokens=128))


def test_record_model_takes_a_hf_model_and_token_ids(hf_root, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(hf_root["gpt_neox"]).eval()
    tok = AutoTokenizer.from_pretrained(hf_root["gpt_neox"])
    ids = torch.randint(0, len(tok), (12, CTX))
    out = record_model(model, tok, ids, tmp_path / "s", RecordConfig(chunk_tokens=128), source=str(hf_root["gpt_neox"]))
    s = Store.open(out)
    assert s.complete and s.n_tokens == 12 * CTX and s.context_len == CTX
    np.testing.assert_array_equal(s.tokens[:], ids.reshape(-1).numpy())
    ref = _independent_capture(model, ids)
    np.testing.assert_allclose(s.activations("blocks.1.mlp.hook_post")[:].astype(np.float32),
                               ref["blocks.1.mlp.hook_post"].reshape(-1, s.d_mlp).numpy(), atol=2e-3, rtol=1e-2)


def test_a_checkpoint_records_other_text_with_its_own_tokenizer(tiny_root, hf_root, tmp_path):
    from solu_core.checkpoint import load_checkpoint

    ck = load_checkpoint(tiny_root / "models" / "gelu", device="cpu")
    out = record(ck.path, tmp_path / "s", RecordConfig(text=TextFiles([hf_root["text"]]), n_tokens=640, device="cpu",
                                                       chunk_tokens=128), progress=False)
    s = Store.open(out)
    assert s.complete and s.context_len == ck.config.n_ctx and s.n_tokens == 640
    assert s.manifest["split"] == "text" and s.manifest["model_kind"] == "checkpoint"
    first = sorted(hf_root["text"].glob("*.py"))[0].read_text(encoding="utf-8")
    ids = ck.tokenizer.encode(first).ids
    np.testing.assert_array_equal(s.tokens[:1 + 50], [0] + ids[:50])  # <|endoftext|> (id 0), then the document
    ctx = torch.from_numpy(s.tokens[:].astype(np.int64).reshape(-1, s.context_len))
    ref = ck.model.run_with_mlp_cache(ctx, s.hooks, dtype=torch.float32)
    np.testing.assert_allclose(s.activations(s.hooks[0])[:].astype(np.float32),
                               ref[s.hooks[0]].reshape(-1, s.d_mlp).numpy(), atol=2e-3, rtol=1e-2)


def _count(d: Path) -> int:
    try:
        return len(os.listdir(d))
    except FileNotFoundError:
        return 0


@pytest.mark.slow
def test_hf_kill_9_then_resume_gives_an_identical_store(hf_root, tmp_path):
    args = [hf_root["llama"], "--text", hf_root["text"], "--tokens", 3072, "--context", CTX, "--chunk-tokens", 64,
            "--batch-size", 1, "--device", "cpu", "--quiet"]
    ref = tmp_path / "ref"  # the uninterrupted run and the resume run in this process: only the kill needs a child
    r = run_cli(["record", *args, "--out", ref])
    assert r.returncode == 0, r.stderr
    out = tmp_path / "killed"
    markers = out / schema.done_path("blocks.2.mlp.hook_post") / "c"
    proc = subprocess.Popen(_cli("record", *args, "--out", out), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    kill_9_when(proc, lambda: _count(markers) >= 8, 240, "8 chunks were written")
    s = Store.open(out)
    assert not s.complete, "the recording finished before it could be killed"
    r = run_cli(["record", *args, "--out", out])
    assert r.returncode == 0, r.stderr
    ga, gb = zarr.open_group(ref, mode="r"), zarr.open_group(out, mode="r")
    a = {k: v[:] for k, v in ga.members(max_depth=None) if isinstance(v, zarr.Array)}
    b = {k: v[:] for k, v in gb.members(max_depth=None) if isinstance(v, zarr.Array)}
    assert sorted(a) == sorted(b)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_bad_input_is_an_error_with_exit_2_and_nothing_written(hf_root, tmp_path):
    from transformers import AutoModelForCausalLM, BertConfig, BertLMHeadModel

    def run(*args):  # in this process: a new interpreter per case tests nothing more here
        return run_cli(["record", *args, "--quiet", "--device", "cpu"])

    text = hf_root["text"]
    # an architecture outside the table names itself and the supported list
    bert = tmp_path / "bert"
    BertLMHeadModel(BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=48, is_decoder=True)).save_pretrained(bert)
    r = run(bert, "--text", text, "--out", tmp_path / "o1")
    assert r.returncode == 2 and "'bert'" in r.stderr and "gpt2, gpt_neo" in r.stderr.replace("gpt_bigcode, ", "")
    # a model folder without a tokenizer
    bare = tmp_path / "bare"
    AutoModelForCausalLM.from_pretrained(hf_root["gpt2"]).save_pretrained(bare)
    r = run(bare, "--text", text, "--out", tmp_path / "o2")
    assert r.returncode == 2 and "error:" in r.stderr and "tokenizer" in r.stderr and str(bare) in r.stderr
    # a text path that does not exist; only binary / non-UTF-8 files
    r = run(hf_root["gpt2"], "--text", tmp_path / "missing.txt", "--out", tmp_path / "o3")
    assert r.returncode == 2 and "missing.txt does not exist" in r.stderr
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.bin").write_bytes(b"\x00\x00")
    r = run(hf_root["gpt2"], "--text", junk, "--out", tmp_path / "o4")
    assert r.returncode == 2 and "skipped 1 binary" in r.stderr
    # an HF model without --text
    r = run(hf_root["gpt2"], "--out", tmp_path / "o5")
    assert r.returncode == 2 and "--text" in r.stderr
    # resuming a store recorded from another model
    good = tmp_path / "good"
    r = run(hf_root["gpt2"], "--text", text, "--tokens", 256, "--context", CTX, "--out", good)
    assert r.returncode == 0, r.stderr
    before = sorted(p.relative_to(good) for p in good.rglob("*"))
    r = run(hf_root["gpt_neox"], "--text", text, "--tokens", 256, "--context", CTX, "--out", good)
    assert r.returncode == 2 and "recorded with other arguments" in r.stderr and "model_config" in r.stderr
    assert sorted(p.relative_to(good) for p in good.rglob("*")) == before
    # a TransformerLens name whose weights are not in the (empty) local cache
    # (a process of its own: huggingface_hub reads HF_HOME and HF_HUB_OFFLINE when it is imported)
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf-home"), "HF_HUB_OFFLINE": "1"}
    r = subprocess.run(_cli("record", "solu-1l", "--text", text, "--out", tmp_path / "o6", "--quiet", "--device",
                            "cpu"), cwd=ROOT, capture_output=True, text=True, env=env)
    assert r.returncode == 2 and "not in the local Hugging Face cache" in r.stderr and "--allow-download" in r.stderr
    assert not any((tmp_path / f"o{i}").exists() for i in range(1, 7))


def test_app_opens_a_hf_store_and_try_your_text_matches_the_stored_activations(qtbot, windows, hf_root, tmp_path):
    from store.index import index_store
    from tests.helpers import WAIT_MS, main_window, wait_page

    out = tmp_path / "s"
    record(hf_root["gpt2"], out, RecordConfig(text=TextFiles([hf_root["text"]]), n_tokens=1024, context=CTX,
                                              device="cpu", chunk_tokens=256), progress=False)
    index_store(out, progress=False)
    s = Store.open(out)
    tok = s.tokenizer  # the store's own copy of the model's tokenizer
    hook, neuron = "blocks.1.mlp.hook_post", 3
    # a context whose decoded text tokenizes back to the same ids (not cut inside a word)
    for c in range(1, s.n_tokens // CTX):
        ids = s.tokens[c * CTX:(c + 1) * CTX].tolist()
        text = tok.decode(ids)
        if tok.encode(text, add_special_tokens=False).ids == ids:
            break
    else:
        pytest.fail("no context re-tokenizes to itself")
    w = main_window(windows, out, hook=hook, neuron=neuron)
    wait_page(qtbot, w, neuron, hook)
    live = w.page.live
    with qtbot.waitSignal(live.shaded, timeout=WAIT_MS):
        live.set_text(text)
    res = live.result
    assert res.token_ids == ids and (res.hook, res.neuron) == (hook, neuron)
    stored = s.activations(hook)[c * CTX:(c + 1) * CTX, neuron].astype(np.float32)
    np.testing.assert_allclose(res.acts, stored, atol=2e-3, rtol=1e-2)
    # the browser opens the same store where transformers, TransformerLens and torch cannot be imported
    r = subprocess.run([sys.executable, "-c", BLOCKED_APP, str(out), str(tmp_path / "settings.ini")], cwd=ROOT,
                       capture_output=True, text=True, timeout=300,
                       env={**os.environ, "QT_QPA_PLATFORM": "offscreen",
                            "NEUROBROWSE_LABELS_DB": str(tmp_path / "labels.sqlite")})
    assert r.returncode == 0, r.stderr
    assert f"page {hook} {neuron}" in r.stdout and "info ok" in r.stdout and "blocked: transformers" in r.stdout


BLOCKED_APP = r"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("transformers", "transformer_lens", "torch"):
            raise ImportError(f"{name} is blocked in this test")
sys.meta_path.insert(0, Block())
try:
    import transformers
except ImportError:
    print("blocked: transformers")
from PySide6.QtCore import QEventLoop, QSettings, QTimer
from PySide6.QtWidgets import QApplication
from neurobrowse.cli import main
from neurobrowse.qt.main_window import MainWindow
assert main(["info", sys.argv[1]]) == 0
print("info ok")
app = QApplication([])
w = MainWindow(settings=QSettings(sys.argv[2], QSettings.Format.IniFormat))
loop = QEventLoop()
w.browser.pageReady.connect(loop.quit)
QTimer.singleShot(120_000, loop.quit)
w.open_store(sys.argv[1], hook="blocks.1.mlp.hook_post", neuron=3)
if w.browser.page is None:
    loop.exec()
print("page", w.browser.page.ref.hook, w.browser.page.ref.neuron)
w.close()
"""
