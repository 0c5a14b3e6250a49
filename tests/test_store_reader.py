"""Store reading on real recorded + indexed tiny stores: neuron pages against the dense data, token
display, and the info / show verbs."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from store import schema
from store.errors import StoreError
from store.format.reader import Store
from store.measures.tokens_display import readable_piece
from tests.builders import run_cli
from solu_core.record_config import CorpusText, RecordConfig

ROOT = Path(__file__).resolve().parents[1]


def test_readable_pieces_of_byte_level_bpe():
    assert readable_piece("Ġthe") == " the"
    assert readable_piece("Ċ") == "⏎"
    assert readable_piece("ĊĠĠĠ") == "⏎   "
    assert readable_piece("ĉ") == "⇥"
    assert readable_piece("âĢĶ") == "—"  # a whole UTF-8 character
    assert readable_piece("âĢ") == "⟨e2⟩⟨80⟩"  # part of one
    assert readable_piece("▁word") == " word"  # SentencePiece style


def test_token_strings_decode_like_the_tokenizer(tiny_stores):
    s = Store.open(tiny_stores["gelu"])
    all_ids = s.tokens[:]
    checked = 0
    for start in range(0, len(all_ids) - 200, 200):
        ids = all_ids[start:start + 200]
        decoded = s.tokenizer.decode(ids.tolist(), skip_special_tokens=False)
        if not decoded.isascii():
            continue  # a multi-byte character may be split at the window's edge
        text = "".join(s.token_strings(ids))
        assert text == decoded.replace("\n", "⏎").replace("\t", "⇥").replace("\r", "␍")
        checked += 1
    assert checked > 10
    assert s.token_strings([-1]) == [""]


@pytest.mark.parametrize("act_fn", ["gelu", "solu_ln"])
def test_neuron_page_matches_the_dense_activations(tiny_stores, act_fn):
    s = Store.open(tiny_stores[act_fn])
    tokens = s.tokens[:]
    for hook in s.hooks:
        assert s.is_indexed(hook)
        dense = s.activations(hook)[:].astype(np.float32)  # [token, neuron]
        table = s.neuron_table(hook)
        assert set(table) == {"neuron", "max_act", "min_act", "mean", "var", "skewness", "kurtosis", "density",
                              "token_rule_score", "sim_score", "top_token_id", "top_token", "explain_score",
                              "explain_coverage", "explain_precision", "explanation", "ln_overlap",
                              "max_cos", "hidden_share"}  # the last two: a neuron's dictionary links (issue 19)
        np.testing.assert_allclose(table["max_act"], dense.max(0), rtol=1e-3)
        np.testing.assert_allclose(table["min_act"], dense.min(0), rtol=1e-3)
        np.testing.assert_allclose(table["mean"], dense.mean(0, dtype=np.float64), rtol=1e-3, atol=1e-5)
        for n in (0, 17, s.d_mlp - 1):
            raw = s.neuron(hook, n, distinct=False)
            v = s.neuron(hook, n)
            assert (v.hook, v.layer, v.neuron) == (hook, 0, n)
            assert len(raw.top) == schema.DEFAULT_K and len(raw.bottom) == schema.DEFAULT_K
            np.testing.assert_allclose([sn.value for sn in raw.top], -np.sort(-dense[:, n])[:schema.DEFAULT_K],
                                       rtol=1e-3)
            _check_distinct(v.top, dense[:, n], s.context_len, top=True)
            _check_distinct(v.bottom, dense[:, n], s.context_len, top=False)
            for sn in raw.top[:5] + v.top[:5] + raw.bottom[:5] + v.samples["random"][:3]:
                assert dense[sn.position, n] == pytest.approx(sn.value, rel=1e-3, abs=1e-6)
                assert sn.token_ids[sn.center] == tokens[sn.position]
                assert sn.tokens == s.token_strings(sn.token_ids)
                lo = sn.position - sn.center
                np.testing.assert_array_equal(sn.token_ids, tokens[lo:lo + len(sn.token_ids)])
                c0 = sn.position // s.context_len * s.context_len  # the model saw tokens[ctx_lo:ctx_hi] with it
                assert (lo + sn.ctx_lo, lo + sn.ctx_hi) == (max(c0, lo), min(c0 + s.context_len, lo + len(sn.tokens)))
                np.testing.assert_allclose(sn.acts[sn.ctx_lo:sn.ctx_hi], dense[lo + sn.ctx_lo:lo + sn.ctx_hi, n],
                                           rtol=1e-3, atol=1e-6)
                assert not sn.acts[:sn.ctx_lo].any() and not sn.acts[sn.ctx_hi:].any()  # greyed: no activation
                assert sn.center <= v.window[0] and len(sn.tokens) - sn.center - 1 <= v.window[1]
            assert v.hist_counts.sum() == s.n_tokens and len(v.hist_edges) == len(v.hist_counts) + 1
            assert v.stats["std"] == pytest.approx(np.sqrt(v.stats["var"]))
            assert list(v.samples) == list(schema.SAMPLE_BINS)
            assert len(v.logit_up) == schema.K_LOGIT and v.logit_up[0][1] >= v.logit_up[-1][1]
            assert v.logit_down[0][1] <= v.logit_down[-1][1]
            for tok, _, count in v.top_tokens:
                assert count >= schema.MIN_TOKEN_COUNT and isinstance(tok, str)
    with pytest.raises(StoreError, match="out of range"):
        s.neuron(s.hooks[0], s.d_mlp)
    with pytest.raises(StoreError, match="no hook"):
        s.neuron("blocks.3.mlp.hook_post", 0)


def _check_distinct(snippets, acts, context_len: int, top: bool) -> None:
    """One snippet per context, each its context's best firing (first position on ties), best first,
    with ``more`` = further tokens of that context at >= half of it (store.measures.snippets.MORE_SHARE)."""
    ctxs = [sn.position // context_len for sn in snippets]
    assert len(ctxs) == len(set(ctxs)) and len(snippets) > 0
    vals = [sn.value for sn in snippets]
    assert vals == sorted(vals, reverse=top)
    for sn in snippets:
        c0 = sn.position // context_len * context_len
        ctx = acts[c0:c0 + context_len]
        best = int(np.argmax(ctx) if top else np.argmin(ctx))
        assert sn.position == c0 + best
        assert sn.more <= int((ctx / ctx[best] >= 0.5).sum()) - 1 if ctx[best] != 0 else sn.more == 0


def test_unindexed_store_says_how_to_index(tiny_root, tmp_path):
    from solu_core.record import record

    path = tmp_path / "raw"
    record(tiny_root / "models" / "gelu", path, RecordConfig(text=CorpusText(tiny_root / "corpus"), n_tokens=1024,
                                                             device="cpu", chunk_tokens=512), progress=False)
    s = Store.open(path)
    assert not s.is_indexed(s.hooks[0])
    with pytest.raises(StoreError, match="neurobrowse index"):
        s.neuron(s.hooks[0], 0)
    r = run_cli(["show", path, "--layer", "0", "--neuron", "0"])
    assert r.returncode == 2 and "neurobrowse index" in r.stderr


def test_info_and_show_verbs(tiny_stores):
    path = tiny_stores["solu_ln"]
    r = run_cli(["info", path])
    assert r.returncode == 0, r.stderr
    assert "solu_ln" in r.stdout and "status      complete" in r.stdout and "blocks.0.mlp.hook_mid" in r.stdout
    assert "indexed" in r.stdout and "compression ratio" in r.stdout
    info = json.loads(run_cli(["info", path, "--json"]).stdout)
    assert info["complete"] and 0.9 < info["compression_ratio"] <= 1.0  # dense data is stored uncompressed
    assert info["hooks"]["blocks.0.mlp.hook_post"]["indexed"] and info["hooks"]["blocks.0.mlp.hook_mid"]["indexed"]

    s = Store.open(path)
    v = s.neuron("blocks.0.mlp.hook_post", 3)
    r = run_cli(["show", path, "--layer", 0, "--neuron", 3])  # not a tty: plain text, firing token in «»
    assert r.returncode == 0, r.stderr
    assert "\x1b[" not in r.stdout and "«" in r.stdout and "top snippets" in r.stdout and "logit effects" in r.stdout
    assert f"{v.top[0].value:.4g}" in r.stdout
    r = run_cli(["show", path, "--layer", 0, "--neuron", 3, "--color", "always"])
    assert "\x1b[48;5;" in r.stdout
    doc = json.loads(run_cli(["show", path, "--layer", 0, "--neuron", 3, "--hook", "hook_mid", "--json"]).stdout)
    vm = s.neuron("blocks.0.mlp.hook_mid", 3)
    assert doc["hook"] == "blocks.0.mlp.hook_mid" and doc["top"][0]["value"] == pytest.approx(vm.top[0].value)
    assert doc["top"][0]["tokens"][doc["top"][0]["center"]] == vm.top[0].tokens[vm.top[0].center]
    r = run_cli(["show", path, "--layer", 0, "--neuron", 3, "--hook", "hook_pre"])
    assert r.returncode == 2 and "no hook" in r.stderr


def test_damaged_index_chunk_is_refused_by_name(tiny_stores, tmp_path):
    import shutil

    from store.errors import CorruptChunkError

    path = tmp_path / "copy"
    shutil.copytree(tiny_stores["gelu"], path)
    hook = "blocks.0.mlp.hook_post"
    f = path / schema.index_path(hook) / "top_context_acts" / "c" / "1" / "0" / "0"
    f.write_bytes(np.random.default_rng(0).bytes(f.stat().st_size))
    s = Store.open(path)
    s.neuron(hook, 0)  # chunk 0 is intact
    with pytest.raises(CorruptChunkError, match=r"top_context_acts.*c/1/0/0.*Crc32c"):
        s.neuron(hook, schema.INDEX_NEURON_CHUNK)  # first neuron of chunk 1
    f.unlink()
    with pytest.raises(CorruptChunkError, match=r"top_context_acts.*missing"):
        Store.open(path).neuron(hook, schema.INDEX_NEURON_CHUNK + 1)


def test_a_moved_incomplete_store_is_resumed_where_it_is_now(tiny_stores, tmp_path):
    from neurobrowse.browsing.status_lines import store_problems
    from store.format.writer import StoreWriter

    src = Store.open(tiny_stores["gelu"])
    old = tmp_path / "recorded here"
    StoreWriter.create_or_resume(old, model_config=dict(src.model_config), hooks=list(src.hooks),
                                 n_tokens=src.n_tokens, context_len=src.context_len, tokenizer_json=src.tokenizer_json,
                                 manifest={"record_command": f"neurobrowse record /ck/gelu --out '{old}' --tokens 9"},
                                 fsync=False)
    new = tmp_path / "moved"
    shutil.move(old, new)
    s = Store.open(new)
    cmd = s.resume_command()
    assert cmd == f"neurobrowse record /ck/gelu --out {new} --tokens 9"
    assert str(old) not in " ".join(store_problems(s)) and cmd in " ".join(store_problems(s))
    r = run_cli(["info", new])
    assert cmd in r.stdout and str(old) not in r.stdout


def test_a_missing_index_chunk_names_the_command_with_the_store_path(tiny_stores, tmp_path):
    from store.errors import CorruptChunkError

    bad = tmp_path / "no chunk"
    shutil.copytree(tiny_stores["gelu"], bad)
    hook = Store.open(bad).hooks[0]
    (bad / "index" / hook / "top_values" / "c" / "0" / "0").unlink()
    with pytest.raises(CorruptChunkError) as e:
        Store.open(bad).neuron(hook, 0)
    assert f"neurobrowse index --force '{bad}'" in str(e.value)
