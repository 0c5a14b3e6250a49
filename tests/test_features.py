"""Dictionaries (TopK sparse autoencoders) over recorded hooks and their features as a hook of the store:
a planted dictionary is recovered, the alignment metric, the SAELens layout both ways, resume after a
real kill, and a feature served by show / export / the browsing model like a neuron. Real stores (the
session's tiny ones, copied so their hooks stay as other tests expect) and synthetic ones on disk."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import numpy as np
import pytest

from store import schema
from store.format.dictionary import (
    alignment, list_dictionaries, live_features, load_dictionary, saelens_cfg, save_dictionary,
)
from neurobrowse.study.folder import key_path
from store.format.reader import Store
from store.format.writer import StoreWriter
from tests.builders import cli_command, run_cli
from tests.helpers import kill_9_when

HOOK = "blocks.0.mlp.hook_post"
TOKENIZER = json.dumps({"version": "1.0", "model": {"type": "BPE", "vocab": {}, "merges": []}})


def _synthetic_store(path, X: np.ndarray, ctx: int = 64, chunk: int = 4096):
    """A complete store of one hook whose activations are ``X`` [tokens, d] (no model: checkpoint_path None)."""
    n, d = X.shape
    cfg = {"d_mlp": d, "n_layers": 1, "d_vocab": 300, "act_fn": "gelu", "d_model": 16, "n_ctx": ctx}
    w = StoreWriter.create_or_resume(path, model_config=cfg, hooks=[HOOK], n_tokens=n, context_len=ctx,
                                     tokenizer_json=TOKENIZER, manifest={"checkpoint_path": None},
                                     chunk_tokens=chunk, fsync=False)
    toks = np.random.default_rng(1).integers(0, 300, n).astype(np.int32)
    for c in range(w.n_chunks):
        a, b = w.chunk_rows(c)
        w.write_chunk(schema.TOKENS, c, toks[a:b])
        w.write_chunk(schema.DOC_STARTS, c, np.zeros(b - a, np.uint8))
        w.write_chunk(HOOK, c, X[a:b].astype(np.float16))
    k = schema.K_LOGIT
    w.write_logit_effects(0, np.zeros((d, k), np.int32), np.ones((d, k), np.float32), np.zeros((d, k), np.int32),
                          -np.ones((d, k), np.float32))
    w.finish()
    return path


def test_a_planted_sparse_dictionary_is_recovered(tmp_path):
    """Activations made of a known sparse dictionary (96 unit directions in 32 dimensions, 3 active per
    token): the trained TopK dictionary has a decoder row within cosine 0.9 of >= 90% of them."""
    from solu_core.dictionary.config import DictionaryConfig
    from solu_core.dictionary.train import train_dictionary

    d_in, n_true, active, n_tok = 32, 96, 3, 32768
    rng = np.random.default_rng(0)
    D = rng.standard_normal((n_true, d_in))
    D /= np.linalg.norm(D, axis=1, keepdims=True)
    X = np.zeros((n_tok, d_in))
    for _ in range(active):
        X += rng.uniform(0.5, 2.0, (n_tok, 1)) * D[rng.integers(0, n_true, n_tok)]
    path = _synthetic_store(tmp_path / "planted", X)
    r = train_dictionary(path, HOOK, width=8, k=3, progress=False, device="cpu",
                         config=DictionaryConfig(batch_tokens=1024, epochs=10, lr=3e-3))
    W = load_dictionary(r.folder).W_dec
    best = np.abs(D @ W.T).max(1)  # per true direction: the best decoder row
    assert np.mean(best >= 0.9) >= 0.9, f"recovered {np.mean(best >= 0.9):.0%} (median cos {np.median(best):.3f})"
    assert r.metrics["fvu"] < 0.3
    assert r.metrics["l0"] <= 3.0 + 1e-9
    assert r.metrics["loss_recovered"] is None  # no model behind a synthetic store
    # the folder is the store's features hook, and a second call keeps it
    assert list(list_dictionaries(path)) == [r.feature_hook]
    again = train_dictionary(path, HOOK, width=8, k=3, progress=False, device="cpu",
                             config=DictionaryConfig(batch_tokens=1024, epochs=10, lr=3e-3))
    assert again.skipped


def _dense_aux_reference(W_enc, b_enc, W_dec, b_dec, x, k, dead, aux_k):
    """Gao et al.'s AuxK loss written densely with autograd: e = x - x_hat (detached), e_aux = the top
    aux_k dead latents' signed pre-activations (no ReLU, as SAELens) @ W_dec, loss ||e - e_aux||^2 *
    min(n_dead / aux_k, 1)."""
    import torch

    pre = (x - b_dec) @ W_enc + b_enc
    top = pre.topk(k, dim=1)
    z = torch.zeros_like(pre).scatter(1, top.indices, torch.relu(top.values))
    e = (x - (z @ W_dec + b_dec)).detach()
    n_dead = int(dead.sum())
    ta = pre.masked_fill(~dead, float("-inf")).topk(min(aux_k, n_dead), dim=1)
    z_aux = torch.zeros_like(pre).scatter(1, ta.indices, ta.values)
    return (e - z_aux @ W_dec).pow(2).sum(1).mean() * min(n_dead / aux_k, 1.0)


@pytest.mark.parametrize("n_dead", [40, 5])
def test_the_auxk_loss_and_its_gradient_match_a_dense_reference(n_dead):
    """The trainer's AuxK loss (sparse forward and backward) against the dense autograd reference above, on
    small random tensors, with more dead latents than aux_k and with fewer (the scaled-down pull)."""
    import torch

    from solu_core.dictionary.sae import TopKSAE

    torch.manual_seed(0)
    d_in, d_sae, k, aux_k, B = 16, 64, 4, 8, 32
    sae = TopKSAE(d_in, d_sae, k)
    sae.init_weights(torch.Generator().manual_seed(1), torch.randn(d_in) * 0.1)
    with torch.no_grad():
        sae.W_enc.add_(torch.randn(d_in, d_sae) * 0.3)
        sae.b_enc.copy_(torch.randn(d_sae) * 0.5)
    x = torch.randn(B, d_in)
    dead = torch.zeros(d_sae, dtype=torch.bool)
    dead[torch.randperm(d_sae)[:n_dead]] = True
    params = [sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec]
    _, _, aux, _, _ = sae.step_losses(x, dead, aux_k, 1 / 32)
    got = torch.autograd.grad(aux, params, allow_unused=True)
    ref = _dense_aux_reference(*params, x, k, dead, aux_k)
    want = torch.autograd.grad(ref, params, allow_unused=True)
    a, r = aux.item(), ref.item()
    assert r > 0.1
    assert abs(a - r) <= 1e-5 * max(1.0, r), (a, r)
    for name, g, w in zip(("W_enc", "b_enc", "W_dec", "b_dec"), got, want):
        g = torch.zeros_like(w) if g is None else g
        assert float(w.abs().max()) > 0, name
        assert torch.allclose(g, w, rtol=1e-4, atol=1e-5), (name, float((g - w).abs().max()))
    # the total loss carries it with its coefficient
    loss, mse, _, _, _ = sae.step_losses(x, dead, aux_k, 0.5)
    assert abs(loss.item() - mse.item() - 0.5 * r) <= 1e-5 * max(1.0, loss.item())


def test_the_auxk_loss_pulls_dead_latents_whose_pre_activations_are_all_negative():
    """The point of AuxK is to revive dead latents; a latent is usually dead because its pre-activations are
    negative on every token. Its encoder column must still get a gradient from the AuxK loss (with a ReLU on
    the aux latents it got none, and 3,489 of the demo hook_mid dictionary's 4,096 latents stayed dead)."""
    import torch

    from solu_core.dictionary.sae import TopKSAE

    torch.manual_seed(0)
    d_in, d_sae, k, aux_k, B = 16, 64, 4, 8, 32
    sae = TopKSAE(d_in, d_sae, k)
    sae.init_weights(torch.Generator().manual_seed(1), torch.zeros(d_in))
    dead = torch.zeros(d_sae, dtype=torch.bool)
    dead[:20] = True
    with torch.no_grad():
        sae.b_enc[:20] = -50.0  # every pre-activation of the dead latents is negative
    x = torch.randn(B, d_in)
    assert bool((sae.pre(x)[:, :20] < 0).all())
    _, _, aux, _, _ = sae.step_losses(x, dead, aux_k, 1 / 32)
    (g_enc,) = torch.autograd.grad(aux, [sae.W_enc])
    assert float(g_enc[:, :20].abs().sum()) > 0
    assert float(g_enc[:, 20:].abs().sum()) == 0  # the live latents are not in this loss


def test_retraining_with_force_drops_the_old_dictionarys_index(tmp_path):
    """`features train --force` over an indexed dictionary: the new weights are never served with the old
    features' index (it is removed before the new folder goes into place); indexing again rebuilds it."""
    from solu_core.dictionary.config import DictionaryConfig
    from solu_core.dictionary.index import index_features
    from solu_core.dictionary.train import train_dictionary

    path = _synthetic_store(tmp_path / "retrain", np.random.default_rng(0).standard_normal((4096, 16)), chunk=1024)
    cfg = DictionaryConfig(batch_tokens=512, epochs=1)
    r = train_dictionary(path, HOOK, width=2, k=4, progress=False, device="cpu", config=cfg)
    index_features(path, r.feature_hook, progress=False, device="cpu")
    old_top = np.asarray(Store.open(path).index_array(r.feature_hook, "top_values")[...])
    assert Store.open(path).is_indexed(r.feature_hook)
    r2 = train_dictionary(path, HOOK, width=2, k=4, progress=False, device="cpu", force=True,
                          config=DictionaryConfig(batch_tokens=512, epochs=1, seed=7))
    assert not r2.skipped and not Store.open(path).is_indexed(r.feature_hook)
    assert not (path / schema.index_path(r.feature_hook)).exists()
    index_features(path, r.feature_hook, progress=False, device="cpu")
    st = Store.open(path)
    new_top = np.asarray(st.index_array(r.feature_hook, "top_values")[...])
    assert st.is_indexed(r.feature_hook) and not np.array_equal(old_top, new_top)
    # what the index holds is what the new dictionary computes
    f = st.dictionary(r.feature_hook).encode(np.asarray(st.read_chunk(HOOK, 0), np.float32))
    assert new_top[:, 0].max() >= f.max() - 1e-2


def test_alignment_is_all_aligned_for_a_neuron_aligned_dictionary_and_spread_for_a_rotated_one():
    rng = np.random.default_rng(0)
    n = 64
    perm = rng.permutation(n)
    W = np.eye(n)[np.concatenate([perm, perm])] * rng.choice([-1.0, 1.0], (2 * n, 1)) * rng.uniform(0.5, 3, (2 * n, 1))
    W[:, 0] += 1e-3  # not exactly one-hot: still aligned
    a = alignment(W)
    assert a["aligned_share"] == 1.0 and a["spread_share"] == 0.0
    H = np.array([[1.0]])
    while H.shape[0] < n:  # a Hadamard basis: every direction spread evenly over all neurons
        H = np.block([[H, H], [H, -H]])
    b = alignment(H)
    assert b["aligned_share"] == 0.0 and b["spread_share"] == 1.0
    assert np.allclose(b["max_cos"], 1 / np.sqrt(n))


def test_alignment_counts_live_features_only_and_reports_the_dead_apart():
    rng = np.random.default_rng(1)
    n = 64
    live_rows = np.eye(n)[rng.permutation(n)] * rng.uniform(0.5, 3, (n, 1))  # every live feature on one neuron
    dead_rows = rng.choice([-1.0, 1.0], (3 * n, n))  # dead features keep their random initial directions: spread
    W = np.concatenate([live_rows, dead_rows])
    live = np.arange(4 * n) < n
    everything = alignment(W)
    assert everything["aligned_share"] == 0.25 and everything["spread_share"] == 0.75
    a = alignment(W, live=live)
    assert a["aligned_share"] == 1.0 and a["spread_share"] == 0.0 and a["median_max_cos"] == pytest.approx(1.0)
    assert a["live_count"] == n and a["dead_count"] == 3 * n
    assert a["dead_aligned_share"] == 0.0 and a["dead_spread_share"] == 1.0
    # one more dead feature, even an aligned one, changes nothing of the live shares
    b = alignment(np.concatenate([W, np.eye(n)[:1]]), live=np.append(live, False))
    assert b["aligned_share"] == 1.0 and b["dead_count"] == 3 * n + 1 and b["dead_aligned_share"] > 0


# ---- a real store with a dictionary --------------------------------------------------------------------


@pytest.fixture(scope="module")
def featured(tiny_stores, tmp_path_factory):
    """A copy of the tiny SoLU-LN store with a small trained and indexed dictionary on hook_post."""
    from solu_core.dictionary.config import DictionaryConfig
    from solu_core.dictionary.index import index_features
    from solu_core.dictionary.train import train_dictionary

    path = tmp_path_factory.mktemp("features") / "solu_ln"
    shutil.copytree(tiny_stores["solu_ln"], path)
    r = train_dictionary(path, HOOK, width=2, k=8, progress=False, device="cpu",
                         config=DictionaryConfig(batch_tokens=1024, epochs=1))
    index_features(path, r.feature_hook, progress=False, device="cpu")
    return path, r


def test_a_feature_hook_is_served_like_a_neuron(featured):
    path, r = featured
    fh = r.feature_hook
    assert fh == f"{HOOK}.sae.2x-k8"
    st = Store.open(path)
    assert fh in st.hooks and fh not in st.recorded_hooks and st.n_units(fh) == 512
    assert st.is_indexed(fh)
    # the features' activations are computed from the source hook, chunk by chunk, as the dictionary says
    d = st.dictionary(fh)
    src = np.asarray(st.read_chunk(HOOK, 1)).astype(np.float32)
    f = np.asarray(st.read_chunk(fh, 1)).astype(np.float32)
    assert f.shape == (src.shape[0], 512) and (np.count_nonzero(f, axis=1) <= 8).all()
    assert np.allclose(f, d.encode(src), atol=2e-3, rtol=2e-3)
    # the index's top firing is the largest feature activation of the store
    table = st.neuron_table(fh)
    top = int(np.nanargmax(table["max_act"]))
    whole = np.concatenate([np.asarray(st.read_chunk(fh, c))[:, top] for c in range(st.n_chunks)])
    assert table["max_act"][top] == pytest.approx(float(whole.max()), rel=1e-3)
    assert np.isfinite(table["max_cos"]).all() and np.isfinite(table["hidden_share"][table["max_act"] > 0]).all()
    # show prints the feature's page: its neurons and its logit effects through the decoder
    out = run_cli(["show", path, "--layer", "0", "--hook", "hook_post.sae.2x-k8", "--feature", str(top),
                   "--snippets", "2", "--color", "never"])
    assert out.returncode == 0, out.stderr
    assert f"{fh} feature {top}" in out.stdout
    assert "decoder direction loads on neurons" in out.stdout and "W_dec @ W_out @ W_U" in out.stdout
    js = run_cli(["show", path, "--layer", "0", "--hook", fh, "--neuron", str(top), "--json"])
    page = json.loads(js.stdout)
    assert page["unit"] == "feature" and page["related"][0]["hook"] == HOOK
    strongest = int(np.argmax(np.abs(d.W_dec[top])))
    assert page["related"][0]["unit"] == strongest
    assert page["logit_up"] and page["top"][0]["value"] == pytest.approx(float(whole.max()), rel=1e-3)
    # a neuron's page lists the features that read from it
    n = int(np.argmax(d.W_enc[:, top]))
    view = st.neuron(HOOK, n)
    assert any(x["hook"] == fh and x["unit"] == top for x in view.related) or view.related[0]["hook"] == fh
    # export takes the feature hook like a neuron hook
    dest = path.parent / "features.jsonl"
    ex = run_cli(["export", path, "--hook", fh, "--all", "--out", dest, "--quiet"])
    assert ex.returncode == 0, ex.stderr
    rows = [json.loads(line) for line in dest.read_text().splitlines() if line.strip()]
    rows = [row for row in rows if row.get("kind") != "neurobrowse-export"]  # the header line
    assert len(rows) == 512 and all(row["hook"] == fh for row in rows)
    # info and features info name it; the summary gives the paper's figures
    info = run_cli(["features", "info", path, "--json"])
    s = json.loads(info.stdout)[0]
    assert s["hook"] == fh and 0 <= s["aligned_share"] <= 1 and s["metrics"]["l0"] <= 8
    # the alignment shares count the features that fired on the held-out tokens (the dead ones apart)
    live = live_features(d)
    assert s["alignment_over"] == "live features" and s["alignment_dead"] == s["metrics"]["dead"] == int((~live).sum())
    assert s["aligned_share"] == alignment(d.W_dec[live])["aligned_share"] == s["metrics"]["aligned_share"]
    assert s["spread_share"] == alignment(d.W_dec[live])["spread_share"] == s["metrics"]["spread_share"]
    assert s["metrics"]["loss_recovered"] is not None  # the tiny model was found: the reconstruction spliced in
    assert 0 <= s["explained_share"] <= 1 and 0 <= s["hidden_share"] <= 1
    assert 0 <= s["hidden_count"] <= s["live_features"]
    assert s["hidden_count"] == len(s["hidden_examples"]) or len(s["hidden_examples"]) == 5
    # the side-by-side table: dead and dense counts, hidden as count (share), examples open with the store's path
    summ = run_cli(["features", "summary", path])
    assert summ.returncode == 0, summ.stderr
    head = summ.stdout.splitlines()[0].split()
    assert head[:2] == ["model", "hook"] and "dead" in head and "dense" in head and head[-1] == "hidden"
    row = next(line for line in summ.stdout.splitlines() if fh in line)
    assert f"{s['hidden_count']:,} (" in row and f" {s['metrics']['dense']:,} " in row
    assert all(f"show {path} " in line for line in summ.stdout.splitlines() if "(neurobrowse show" in line)


def test_the_browsing_model_opens_a_feature_page(featured):
    from neurobrowse.browsing.pages import NeuronRef, load_page

    path, r = featured
    st = Store.open(path)
    page = load_page(st, NeuronRef(r.feature_hook, 3))
    assert page.view.hook == r.feature_hook and page.view.neuron == 3
    with pytest.raises(Exception, match="does not exist"):
        load_page(st, NeuronRef(r.feature_hook, 512))


def test_saelens_layout_round_trip_and_a_foreign_folder_loads(featured, tmp_path):
    """What train writes is the SAELens layout (cfg.json names, weight shapes); a folder written elsewhere in
    that layout loads into a store as features; the numpy encoder gives the torch model's features."""
    import torch

    from solu_core.dictionary.sae import TopKSAE

    path, r = featured
    cfg = json.loads((r.folder / "cfg.json").read_text())
    for key in ("d_in", "d_sae", "architecture", "k", "apply_b_dec_to_input", "normalize_activations", "meta"):
        assert key in cfg
    assert (cfg["d_in"], cfg["d_sae"], cfg["architecture"], cfg["k"]) == (256, 512, "topk", 8)
    assert cfg["meta"]["hook_name"] == HOOK and cfg["hook_name"] == HOOK
    from safetensors.numpy import load_file

    w = load_file(str(r.folder / "sae_weights.safetensors"))
    assert {k: v.shape for k, v in w.items()} == {"W_enc": (256, 512), "b_enc": (512,), "W_dec": (512, 256),
                                                   "b_dec": (256,)}
    # a dictionary "trained elsewhere": the torch model's weights, saved through the layout, loaded back
    sae = TopKSAE(256, 512, 8)
    sae.init_weights(torch.Generator().manual_seed(3), torch.zeros(256))
    with torch.no_grad():
        sae.b_enc.normal_(0, 0.1)
    weights = {k: getattr(sae, k).detach().numpy() for k in ("W_enc", "b_enc", "W_dec", "b_dec")}
    foreign = tmp_path / "elsewhere"
    save_dictionary(foreign, saelens_cfg(256, 512, 8, HOOK), weights, {})
    d = load_dictionary(foreign)
    x = np.random.default_rng(0).standard_normal((64, 256)).astype(np.float32)
    assert np.allclose(d.encode(x), sae.encode(torch.from_numpy(x)).numpy(), atol=1e-5)
    out = run_cli(["features", "load", path, foreign, "--name", "foreign"])
    assert out.returncode == 0, out.stderr
    assert f"{HOOK}.sae.foreign" in Store.open(path).feature_hooks
    # a folder for another width: refused, nothing written
    wide = tmp_path / "wide"
    save_dictionary(wide, saelens_cfg(128, 256, 8, HOOK),
                    {"W_enc": np.zeros((128, 256)), "b_enc": np.zeros(256), "W_dec": np.eye(256, 128),
                     "b_dec": np.zeros(128)}, {})
    bad = run_cli(["features", "load", path, wide, "--name", "wide"])
    assert bad.returncode == 2 and "d_in = 128" in bad.stderr and "256 neurons" in bad.stderr
    assert f"{HOOK}.sae.wide" not in list_dictionaries(path)


def test_bad_input_is_refused_with_exit_2(featured, tmp_path):
    path, _ = featured
    cases = [
        (["features", "train", path, "--hook", "blocks.0.mlp.hook_pre"], "no hook"),
        (["features", "train", path, "--hook", HOOK, "--width", "999x"], "out of range"),
        (["features", "train", path, "--hook", HOOK, "--width", "1x", "--k", "500"], "--k 500 is out of range"),
        (["features", "train", path, "--hook", f"{HOOK}.sae.2x-k8"], "dictionary's features"),
        (["features", "index", path, "--hook", f"{HOOK}.sae.nope"], "no dictionary"),
    ]
    for argv, words in cases:
        out = run_cli(argv)
        assert out.returncode == 2 and out.stderr.startswith("error:") and words in out.stderr, (argv, out.stderr)
    # NaN or infinite activations: refused, naming the chunk, and nothing left behind (no dictionary, no
    # resume state that a rerun would take for an interrupted run)
    for bad_value in (np.nan, np.inf, -np.inf):
        X = np.random.default_rng(0).standard_normal((4096, 16))
        X[1000, 3] = bad_value
        nan_store = _synthetic_store(tmp_path / f"bad-{bad_value}", X, chunk=1024)
        out = run_cli(["features", "train", nan_store, "--hook", HOOK, "--width", "2x", "--k", "4", "--quiet"])
        assert out.returncode == 2 and out.stderr.startswith("error:") and "NaN or infinite" in out.stderr, out.stderr
        assert "chunk 0" in out.stderr
        assert not list_dictionaries(nan_store)
        assert not [p for p in (nan_store / "dictionaries").rglob("*") if p.is_file()]
    # width and k at the edges of their ranges
    ok = _synthetic_store(tmp_path / "ok", np.random.default_rng(0).standard_normal((4096, 16)), chunk=1024)
    for argv, words in [(["--width", "0x", "--k", "4"], "--width 0x is out of range"),
                        (["--width=-2x", "--k", "4"], "--width -2x is out of range"),
                        (["--width", "2x", "--k", "0"], "--k: 0 must be at least 1"),
                        (["--width", "2x", "--k", "17"], "--k 17 is out of range: give 1 <= k <= 16")]:
        out = run_cli(["features", "train", ok, "--hook", HOOK, *argv, "--quiet"])
        assert out.returncode == 2 and "error:" in out.stderr and words in out.stderr, (argv, out.stderr)
        assert not (ok / "dictionaries").exists() or not any((ok / "dictionaries").rglob("*"))


def test_a_dense_free_store_whose_model_is_gone_is_refused_with_the_fix(tmp_path):
    """A store recorded with --dense none keeps no activations: training re-runs its model. When the manifest's
    model is gone (or the store names none) the error names it and the fix (--model), exit 2, nothing written."""
    n, d, ctx = 4096, 16, 64
    cfg = {"d_mlp": d, "n_layers": 1, "d_vocab": 300, "act_fn": "gelu", "d_model": 16, "n_ctx": ctx}
    for name, manifest, words in [("gone", {"checkpoint_path": str(tmp_path / "moved" / "model")}, "cannot be loaded"),
                                  ("unnamed", {"checkpoint_path": None}, "the store names no model")]:
        path = tmp_path / name
        w = StoreWriter.create_or_resume(path, model_config=cfg, hooks=[HOOK], n_tokens=n, context_len=ctx,
                                         tokenizer_json=TOKENIZER, manifest=manifest, chunk_tokens=1024,
                                         fsync=False, dense=False)
        toks = np.random.default_rng(1).integers(0, 300, n).astype(np.int32)
        for c in range(w.n_chunks):
            a, b = w.chunk_rows(c)
            w.write_chunk(schema.TOKENS, c, toks[a:b])
            w.write_chunk(schema.DOC_STARTS, c, np.zeros(b - a, np.uint8))
        k = schema.K_LOGIT
        w.write_logit_effects(0, np.zeros((d, k), np.int32), np.ones((d, k), np.float32),
                              np.zeros((d, k), np.int32), -np.ones((d, k), np.float32))
        w.finish()
        assert not Store.open(path).dense
        out = run_cli(["features", "train", path, "--hook", HOOK, "--width", "2x", "--k", "4", "--quiet"])
        assert out.returncode == 2 and out.stderr.startswith("error:"), out.stderr
        assert "--dense none" in out.stderr and words in out.stderr and "--model CHECKPOINT" in out.stderr
        assert not list_dictionaries(path)
        assert not (path / "dictionaries").exists() or not any((path / "dictionaries").rglob("*"))
    # a foreign folder that is not a dictionary
    (tmp_path / "junk").mkdir()
    out = run_cli(["features", "load", path, tmp_path / "junk", "--hook", HOOK])
    assert out.returncode == 2 and "cfg.json" in out.stderr


def test_training_resumes_after_kill_9_to_the_same_weights(tmp_path):
    """A real kill -9 mid-training, then the same command: the dictionary equals an uninterrupted run's."""
    from solu_core.dictionary.config import DictionaryConfig
    from solu_core.dictionary.train import train_dictionary

    rng = np.random.default_rng(0)
    X = rng.standard_normal((16384, 32)) * rng.uniform(0.1, 2, 32)
    a = _synthetic_store(tmp_path / "a", X, chunk=2048)
    b = tmp_path / "b"
    shutil.copytree(a, b)
    argv = ["features", "train", b, "--hook", HOOK, "--width", "4x", "--k", "4", "--epochs", "32", "--batch", "512",
            "--checkpoint-every", "0", "--quiet"]  # 1,024 steps: a kill right after the first save lands mid-run
    state = b / schema.DICTIONARY_GROUP / schema.DICTIONARY_TRAIN / f"{HOOK}.sae.4x-k4" / "state.pt"
    proc = subprocess.Popen(cli_command(*argv), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [
                                str(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                                os.environ.get("PYTHONPATH")]))})
    kill_9_when(proc, state.is_file, 600, "the first training state was saved", poll=0.05)
    assert not list_dictionaries(b), "a killed training must not leave a dictionary that looks complete"
    import torch

    saved_step = torch.load(state, weights_only=False)["step"]
    assert 0 < saved_step < torch.load(state, weights_only=False)["total"]
    out = run_cli(argv)
    assert out.returncode == 0, out.stderr
    cfg = DictionaryConfig(batch_tokens=512, epochs=32, checkpoint_every_s=1e9)
    ref = train_dictionary(a, HOOK, width=4, k=4, config=cfg, progress=False, device="cpu")
    got = load_dictionary(b / schema.dictionary_path(f"{HOOK}.sae.4x-k4"))
    want = load_dictionary(ref.folder)
    for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
        assert np.array_equal(getattr(got, name), getattr(want, name)), name
    assert not state.parent.exists()  # the resume state is removed once the dictionary is saved


def test_a_blind_study_draws_features_beside_neurons(featured, tiny_stores, tmp_path):
    path, r = featured
    kind = r.feature_hook.split(".", 3)[3]  # hook_post.sae.2x-k8
    out = run_cli(["study", "new", "--stores", tiny_stores["gelu"], path, "--per-model", "4", "--seed", "1",
                   "--hooks", f"hook_post,{kind}", "--out", tmp_path / "study"])
    assert out.returncode == 0, out.stderr
    key = json.loads(key_path(tmp_path / "study").read_text())["items"]
    hooks = sorted(k["hook"] for k in key.values())
    assert hooks.count(r.feature_hook) == 4 and hooks.count(HOOK) == 8  # 4 neurons per store, 4 features
    study = json.loads((tmp_path / "study" / "study.json").read_text())
    assert all("hook" not in it and "neuron" not in it for it in study["items"])  # blind
    feats = [k for k in key.values() if k["hook"] == r.feature_hook]
    st = Store.open(path)
    assert all(st.neuron_table(r.feature_hook)["max_act"][k["neuron"]] > 0 for k in feats)


def test_the_dictionaries_panel_shows_the_side_by_side_figures(featured, windows, qtbot):
    from neurobrowse.qt.features_panel import DictionariesPanel

    path, r = featured
    panel = windows(DictionariesPanel, [str(path)])
    with qtbot.waitSignal(panel.loaded, timeout=60000):
        pass  # the summaries are read in a worker and shown when they arrive
    assert panel.table.rowCount() == len(Store.open(path).feature_hooks)
    hooks = [panel.table.item(i, 1).text() for i in range(panel.table.rowCount())]
    assert r.feature_hook in hooks
    assert panel.hidden.count() == sum(len(s.get("hidden_examples") or []) for s in panel.summaries)
    if panel.hidden.count():
        with qtbot.waitSignal(panel.featureActivated, timeout=5000) as sig:
            panel.hidden.itemDoubleClicked.emit(panel.hidden.item(0))
        assert sig.args[0] == str(path) and sig.args[1] in hooks


def test_a_store_with_a_dictionary_still_opens_as_an_xarray_datatree(featured):
    import xarray as xr

    path, r = featured
    tree = xr.open_datatree(path, engine="zarr", consolidated=False)
    idx = tree[f"{schema.INDEX_GROUP}/{r.feature_hook}"]
    assert idx.sizes["feature"] == 512 and tree.sizes["neuron"] == 256
