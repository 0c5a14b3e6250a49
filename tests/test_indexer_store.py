"""The indexer on real stores on disk: brute-force agreement, merge == whole, kill -9 and resume,
damaged chunks, refused stores, the `index` verb."""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from neurobrowse.cli import main
from store.measures import explain
from store import schema
from store.errors import StoreError
from store.index import (
    IndexConfig, compute_partial, compute_sample_partial, index_arrays, index_store, merge_partials,
    merge_sample_partials, sample_thresholds,
)
from store.format.reader import Store
from tests.helpers import kill_9_after_lines, write_synthetic_store

ROOT = Path(__file__).resolve().parents[1]
# summed in floating point (the per-token sums are float32: another chunking rounds them otherwise)
EXACT = [n for n in schema.INDEX_ARRAYS if n not in ("mean", "var", "skewness", "kurtosis", "top_token_means",
                                                      "sim_score")]


def _index(store: Store, hook: str) -> dict[str, np.ndarray]:
    return {n: np.asarray(store.index_array(hook, n)[...]) for n in schema.INDEX_ARRAYS}


def _assert_same_index(a: dict, b: dict, exact_all: bool = True):
    for name in schema.INDEX_ARRAYS:
        if exact_all or name in EXACT:
            assert np.array_equal(a[name], b[name], equal_nan=True), name
        else:
            np.testing.assert_allclose(a[name], b[name], rtol=1e-6, atol=1e-6, err_msg=name)


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# ---- agreement with brute force on real (tiny-model) stores ----------------------------------------


@pytest.mark.parametrize("act_fn", ["gelu", "solu_ln"])
def test_index_equals_brute_force_numpy(tiny_stores, act_fn):
    st = Store.open(tiny_stores[act_fn])
    tokens = np.asarray(st.tokens[:])
    L = st.context_len
    for hook in st.hooks:
        assert st.is_indexed(hook)
        x = np.asarray(st.activations(hook)[:])  # [token, neuron] float16
        xf = x.astype(np.float32)
        idx = _index(st, hook)
        k = idx["top_values"].shape[1]
        pos = np.broadcast_to(np.arange(x.shape[0])[:, None], x.shape)
        top = np.lexsort((pos, -xf), axis=0)[:k].T  # [N, k] value desc, lower position on ties
        bot = np.lexsort((pos, xf), axis=0)[:k].T
        # values must match exactly; positions may differ only between -0 / +0 ties, never here
        assert np.array_equal(idx["top_values"], np.take_along_axis(xf.T, top, 1))
        assert np.array_equal(idx["bottom_values"], np.take_along_axis(xf.T, bot, 1))
        assert np.array_equal(idx["top_positions"], top)
        assert np.array_equal(idx["bottom_positions"], bot)
        # windows: token ids (past the context too, -1 only past the store) and this neuron's acts,
        # which are 0 outside the firing's context (the model did not see that text with it)
        n_tok = len(tokens)
        for j in (0, 7, x.shape[1] - 1):
            for s in (0, k - 1):
                p = top[j, s]
                c0 = p // L * L
                qs = range(p - schema.CONTEXT_BEFORE, p + schema.CONTEXT_AFTER + 1)
                assert idx["top_context_tokens"][j, s].tolist() == [
                    int(tokens[q]) if 0 <= q < n_tok else -1 for q in qs]
                assert np.array_equal(idx["top_context_acts"][j, s],
                                      np.array([x[q, j] if c0 <= q < c0 + L else 0 for q in qs], np.float16))
        # distinct passages: the brute-force best (lowest) firing of every context, k of them, with the
        # count of further tokens of that context at >= half of it
        n_ctx = -(-x.shape[0] // L)
        for j in (0, 7, x.shape[1] - 1):
            col = np.full(n_ctx * L, np.nan, np.float32)
            col[:x.shape[0]] = xf[:, j]
            for kind, sign in (("top", 1.0), ("bottom", -1.0)):
                per = np.where(np.isnan(col), -np.inf, sign * col).reshape(n_ctx, L)
                arg = per.argmax(1)  # first position of the context's best
                best = per[np.arange(n_ctx), arg]
                order = np.lexsort((np.arange(n_ctx), -best))[:k]
                want_pos = order * L + arg[order]
                assert idx[f"distinct_{kind}_positions"][j].tolist() == want_pos.tolist(), (kind, j)
                assert np.array_equal(idx[f"distinct_{kind}_values"][j], xf[want_pos, j])
                for s, p in enumerate(want_pos):
                    ctx = xf[p // L * L:p // L * L + L, j].astype(np.float64)
                    v = float(xf[p, j])
                    more = int((ctx >= 0.5 * v).sum() if v > 0 else (ctx <= 0.5 * v).sum() if v < 0 else 1) - 1
                    assert idx[f"distinct_{kind}_more"][j, s] == more
                q0 = want_pos[0] - schema.CONTEXT_BEFORE
                assert idx[f"distinct_{kind}_context_tokens"][j, 0].tolist() == [
                    int(tokens[q]) if 0 <= q < n_tok else -1
                    for q in range(q0, q0 + idx["top_context_tokens"].shape[-1])]
        xd = xf.astype(np.float64)
        np.testing.assert_allclose(idx["mean"], xd.mean(0), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(idx["var"], xd.var(0), rtol=1e-9, atol=1e-12)
        from scipy import stats

        np.testing.assert_allclose(idx["skewness"], stats.skew(xd, axis=0), rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(idx["kurtosis"], stats.kurtosis(xd, axis=0), rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(idx["density"], (xf > 0).mean(0), rtol=1e-6)
        assert (idx["hist_counts"].sum(1) == x.shape[0]).all()
        assert np.array_equal(idx["token_count"], np.bincount(tokens, minlength=st.model_config["d_vocab"]))
        # samples lie in their quantile bins' value ranges (edges from the histogram)
        sv, qe = idx["sample_values"], idx["quantile_edges"]  # [N, B, S], [N, 4]
        top_bin = sv[:, 0]
        assert np.all((top_bin >= qe[:, 3:4]) | np.isnan(top_bin))
        low_bin = sv[:, 4]
        assert np.all((low_bin <= qe[:, 0:1]) | np.isnan(low_bin))
        # top tokens: the highest mean activation among tokens seen often enough
        ts = np.zeros((st.model_config["d_vocab"], x.shape[1]))
        np.add.at(ts, tokens, xd)
        cnt = np.bincount(tokens, minlength=ts.shape[0])
        j = 3
        means = np.where(cnt >= schema.MIN_TOKEN_COUNT, ts[:, j] / np.maximum(cnt, 1), -np.inf)
        assert idx["top_token_ids"][j, 0] == int(np.argmax(means))


def test_two_halves_indexed_apart_merge_into_the_whole(tiny_stores):
    path = tiny_stores["solu_ln"]
    st = Store.open(path)
    n = st.n_chunks
    assert n >= 3
    for hook in st.hooks:
        whole = compute_partial(path, hook, 0, n)
        merged = merge_partials(compute_partial(path, hook, n // 2, n), compute_partial(path, hook, 0, n // 2))
        for f in ("top_key", "top_pos", "top_win", "bot_key", "bot_pos", "bot_win", "hist", "npos", "token_count",
                  "dtop_key", "dtop_pos", "dtop_win", "dtop_more", "dbot_key", "dbot_pos", "dbot_win", "dbot_more"):
            assert np.array_equal(getattr(whole, f), getattr(merged, f)), f
        for f in ("mean", "m2", "m3", "m4"):
            np.testing.assert_allclose(getattr(whole, f), getattr(merged, f), rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(whole.token_sums_by_id(), merged.token_sums_by_id(), rtol=1e-6, atol=1e-5)
        qb = sample_thresholds(merged)
        assert np.array_equal(qb, sample_thresholds(whole))
        s_whole = compute_sample_partial(path, hook, 0, n, qb)
        s_merged = merge_sample_partials(compute_sample_partial(path, hook, 1, n, qb),
                                         compute_sample_partial(path, hook, 0, 1, qb))
        got = index_arrays(np.asarray(st.tokens[:]), st.context_len, merged, s_merged)
        # ...and equal to what index_store wrote in one go
        _assert_same_index(got, _index(st, hook), exact_all=False)
        assert np.array_equal(s_whole.pos, s_merged.pos)


# ---- kill -9 and resume ---------------------------------------------------------------------------

_CHILD = """
import sys
from store.index import IndexConfig, index_store
cfg = IndexConfig(checkpoint_every_s=0.0, on_checkpoint=lambda h, w, c: print(h, w, c, flush=True))
index_store(sys.argv[1], force=True, progress=False, config=cfg)
print("finished", flush=True)
"""


def test_kill_9_mid_pass_then_resume_gives_identical_arrays(tiny_stores, tmp_path):
    src = tiny_stores["solu_ln"]
    path = _copy(src, tmp_path / "s")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(path)], stdout=subprocess.PIPE, text=True, env=env,
                            cwd=ROOT)
    seen = kill_9_after_lines(proc, lambda seen: len(seen) == 3)  # the third save: mid pass 1 of the first hook
    assert proc.returncode == -signal.SIGKILL and seen[-1][0] != "finished"
    st = Store.open(path)
    assert st.is_indexed(st.hooks[0])  # the old index stays readable until the rebuild beside it is whole
    saves = []
    index_store(path, progress=False, config=IndexConfig(checkpoint_every_s=0.0,
                                                           on_checkpoint=lambda h, w, c: saves.append((h, w, c))))
    assert saves[0][:2] != (st.hooks[0], "p1") or saves[0][2] > 1, "the second run must resume, not restart"
    ref = Store.open(src)
    st = Store.open(path)
    for hook in st.hooks:
        _assert_same_index(_index(st, hook), _index(ref, hook))


def _shifted_store(tmp_path, name="shift"):
    """A store whose neuron 0 is 100x larger in the chunks the provisional look skips, so its
    quantile edges move far from the provisional ones: the samples need a second read."""
    from store.index.run import PROVISIONAL_CHUNKS

    rng = np.random.default_rng(3)
    n_chunks = 3 * PROVISIONAL_CHUNKS
    n, N, vocab, ct = n_chunks * 128, 24, 30, 128
    x = rng.standard_normal((n, N)).astype(np.float32)
    looked = set(np.unique(np.linspace(0, n_chunks - 1, PROVISIONAL_CHUNKS).astype(int)).tolist())
    for c in set(range(n_chunks)) - looked:
        x[c * ct:(c + 1) * ct, 0] *= 100
    acts = {"blocks.0.mlp.hook_post": x.astype(np.float16)}
    return write_synthetic_store(tmp_path / name, acts, rng.integers(0, vocab, n).astype(np.int32), vocab,
                                 chunk_tokens=ct)


def _two_pass(path, hook, k=schema.DEFAULT_K) -> dict:
    """The index arrays of the two-pass route: pass 1, then pass 2 within the final quantile bins."""
    st = Store.open(path)
    p1 = compute_partial(path, hook, 0, st.n_chunks, k)
    p2 = compute_sample_partial(path, hook, 0, st.n_chunks, sample_thresholds(p1))
    return index_arrays(np.asarray(st.tokens[:]), st.context_len, p1, p2)


@pytest.mark.parametrize("act_fn", ["gelu", "solu_ln"])
def test_one_read_gives_the_samples_of_two_passes(tiny_stores, tmp_path, act_fn):
    """index_store reads a store once: the samples per unit resolve to exactly pass 2's samples."""
    path = _copy(tiny_stores[act_fn], tmp_path / act_fn)
    out = index_store(path, force=True, progress=False)
    st = Store.open(path)
    for hook in st.hooks:
        assert out[hook]["reads"] == 1
        _assert_same_index(_index(st, hook), _two_pass(path, hook), exact_all=False)
        assert set(st.index_state(hook)["progress"]) == {"p1"}  # the samples' state is not kept


def test_edges_far_from_the_provisional_ones_take_a_second_read_and_stay_exact(tmp_path):
    path = _shifted_store(tmp_path)
    hook = "blocks.0.mlp.hook_post"
    out = index_store(path, progress=False)
    assert out[hook]["reads"] == 2
    _assert_same_index(_index(Store.open(path), hook), _two_pass(path, hook), exact_all=False)


def test_interrupted_in_pass_2_resumes_identically(tmp_path):
    path = _shifted_store(tmp_path)
    ref = _two_pass(path, "blocks.0.mlp.hook_post")
    n = Store.open(path).n_chunks
    out = index_store(path, force=True, progress=False,
                      config=IndexConfig(checkpoint_every_s=1e9, stop_after_chunks=n + 2))
    assert next(iter(out.values())).get("stopped")
    st = Store.open(path)
    assert st.index_state(st.hooks[0])["progress"]["p2"]["chunk_stop"] == 2  # never indexed: built in place
    index_store(path, progress=False)
    _assert_same_index(_index(Store.open(path), st.hooks[0]), ref, exact_all=False)


def test_interrupted_in_the_read_resumes_identically(tiny_stores, tmp_path):
    src = tiny_stores["gelu"]
    path = _copy(src, tmp_path / "g")
    out = index_store(path, force=True, progress=False, config=IndexConfig(checkpoint_every_s=1e9, stop_after_chunks=2))
    assert next(iter(out.values())).get("stopped")
    st = Store.open(path)
    rebuild = json.loads((path / schema.index_rebuild_path(st.hooks[0]) / "zarr.json").read_text())["attributes"]
    assert rebuild["progress"]["p1"]["chunk_stop"] == rebuild["progress"]["s1"]["chunk_stop"] == 2
    assert st.is_indexed(st.hooks[0])  # built beside the old index, which stays readable
    index_store(path, progress=False)
    st = Store.open(path)
    _assert_same_index(_index(st, st.hooks[0]), _index(Store.open(src), st.hooks[0]))


# ---- damaged and refused stores -----------------------------------------------------------------------


def _synthetic(tmp_path, name="syn", n=1024, N=40, vocab=30):
    rng = np.random.default_rng(1)
    acts = {"blocks.0.mlp.hook_post": rng.standard_normal((n, N)).astype(np.float16)}
    return write_synthetic_store(tmp_path / name, acts, rng.integers(0, vocab, n).astype(np.int32), vocab)


def test_corrupt_chunk_is_refused_by_name(tmp_path, capsys):
    path = _synthetic(tmp_path)
    hook = "blocks.0.mlp.hook_post"
    chunk = path / hook / "c" / "2" / "0"
    size = chunk.stat().st_size
    chunk.write_bytes(np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8).tobytes())
    assert main(["index", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert hook in err and "c/2/0" in err
    assert not Store.open(path).is_indexed(hook)
    chunk.write_bytes(b"\x00" * 7)  # truncated
    assert main(["index", str(path), "--quiet"]) == 2
    assert "c/2/0" in capsys.readouterr().err
    chunk.unlink()  # missing: zarr alone would read zeros
    assert main(["index", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "c/2/0" in err and "missing" in err


def test_refuses_incomplete_other_version_and_missing_stores(tmp_path, capsys):
    path = _synthetic(tmp_path)
    meta = path / "zarr.json"
    doc = json.loads(meta.read_text())
    doc["attributes"][schema.ATTRS_KEY]["complete"] = False
    doc["attributes"][schema.ATTRS_KEY]["record_command"] = "neurobrowse record CK --out X"
    meta.write_text(json.dumps(doc))
    assert main(["index", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "incomplete" in err and f"neurobrowse record CK --out {path}" in err  # resumed where the store is now
    doc["attributes"][schema.ATTRS_KEY]["complete"] = True
    doc["attributes"][schema.ATTRS_KEY]["schema_version"] = schema.SCHEMA_VERSION + 1
    meta.write_text(json.dumps(doc))
    assert main(["index", str(path), "--quiet"]) == 2
    assert "schema version" in capsys.readouterr().err
    assert main(["index", str(tmp_path / "nothing"), "--quiet"]) == 2
    assert "no store" in capsys.readouterr().err
    with pytest.raises(StoreError, match="no hook"):
        index_store(_synthetic(tmp_path, "b"), hooks=["blocks.9.mlp.hook_post"], progress=False)


_LIMITED = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (3000, 3000))
from neurobrowse.cli import main
raise SystemExit(main(["index", sys.argv[1], "--quiet"]))
"""


def test_a_full_disk_is_a_clear_error_and_loses_nothing(tmp_path):
    path = _synthetic(tmp_path, n=2048, N=64)
    before = {p: p.read_bytes() for p in path.rglob("*") if p.is_file()}
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-c", _LIMITED, str(path)], capture_output=True, text=True, env=env, cwd=ROOT)
    assert r.returncode == 2, r.stderr
    assert "error:" in r.stderr and ("disk is full" in r.stderr or "too large" in r.stderr), r.stderr
    assert all(p.read_bytes() == b for p, b in before.items() if "index" not in p.parts)  # recording intact
    out = index_store(path, progress=False)  # with space again, the same command completes
    assert not out["blocks.0.mlp.hook_post"].get("skipped")
    assert Store.open(path).is_indexed("blocks.0.mlp.hook_post")


def test_index_verb_skips_indexed_and_force_redoes(tmp_path, capsys):
    path = _synthetic(tmp_path)
    assert main(["index", str(path), "--quiet", "--k", "8"]) == 0
    out = capsys.readouterr().out
    assert "indexed 1,024 tokens x 40 neurons (k=8)" in out and "token_rule_score" in out
    first = _index(Store.open(path), "blocks.0.mlp.hook_post")
    assert first["top_values"].shape == (40, 8)
    assert main(["index", str(path), "--quiet", "--k", "8"]) == 0
    assert "already indexed" in capsys.readouterr().out
    assert main(["index", str(path), "--quiet", "--k", "8", "--force"]) == 0
    _assert_same_index(first, _index(Store.open(path), "blocks.0.mlp.hook_post"))
    # the rebuild was swapped in and the index it replaced removed (on a thread, before the command returned)
    assert not (path / "index" / "_rebuild").exists()
    assert explain.is_explained(Store.open(path), "blocks.0.mlp.hook_post")
    # index arrays are chunked along the neuron axis (a page reads one small chunk per array)
    arr = Store.open(path).index_array("blocks.0.mlp.hook_post", "top_context_acts")
    assert arr.chunks[0] == schema.INDEX_NEURON_CHUNK


@pytest.mark.parametrize("raw_floats", [False, True])
def test_index_arrays_written_as_chunk_files_read_back_through_zarr(tmp_path, raw_floats, monkeypatch):
    """IndexGroup.write_arrays writes the chunk files itself (zstd / raw + Crc32c, padded last chunks, any
    chunked axis); zarr - and so xarray and dask - must read back exactly what was given."""
    import zarr
    from zarr.storage import LocalStore

    from store.index import IndexGroup

    zarr.open_group(LocalStore(tmp_path), mode="w")
    rng = np.random.default_rng(0)
    arrays = {
        "f32": rng.standard_normal((40, 3)).astype(np.float32),  # chunked along axis 0, last chunk padded
        "i64": rng.integers(-9, 9, (2, 5, 40)),  # chunked along the last axis
        "u16": rng.integers(0, 60000, (40, 7), dtype=np.uint16),  # Crc32c only, no zstd
        "f64": rng.standard_normal(40),
        "empty": np.zeros((0, 4), np.float32),
        "whole": rng.standard_normal((3, 2)),  # no neuron axis: one chunk
    }
    dims = {"f32": ("neuron", "x"), "i64": ("p", "v", "neuron"), "u16": ("neuron", "w"), "f64": ("neuron",),
            "empty": ("neuron", "x"), "whole": ("a", "b")}
    g = IndexGroup(tmp_path, "h")
    through_zarr = []  # arrays written through zarr's setitem instead of as chunk files
    setitem = zarr.Array.__setitem__

    def watched_setitem(self, key, value):
        through_zarr.append(self.path)
        return setitem(self, key, value)

    monkeypatch.setattr(zarr.Array, "__setitem__", watched_setitem)
    g.write_arrays(g.group, arrays, dims, neuron_chunk=16, raw_floats=raw_floats)
    monkeypatch.undo()
    assert through_zarr == []  # the direct path wrote every array
    back = zarr.open_group(LocalStore(tmp_path), mode="r")[f"{schema.INDEX_GROUP}/h"]
    assert back["f32"].chunks == (16, 3) and back["i64"].chunks == (2, 5, 16)
    for name, a in arrays.items():
        np.testing.assert_array_equal(back[name][...], a, err_msg=name)
    folder = tmp_path / schema.INDEX_GROUP / "h"
    for name, n_files in (("f32", 3), ("i64", 3), ("u16", 3), ("f64", 3), ("whole", 1), ("empty", 0)):
        files = [f for f in (folder / name / "c").rglob("*") if f.is_file()] if (folder / name / "c").exists() else []
        assert len(files) == n_files, name  # one file per chunk, written by the direct path


def test_index_window_is_configurable_stored_and_used_by_readers(tiny_stores, tmp_path, capsys):
    from neurobrowse.cli import main

    path = _copy(tiny_stores["gelu"], tmp_path / "w")
    hook = Store.open(path).hooks[0]
    assert main(["index", str(path), "--window", "8", "--quiet"]) == 2
    assert "BEFORE,AFTER" in capsys.readouterr().err
    assert main(["index", str(path), "--window", "8,4", "--quiet"]) == 0  # indexed with 64,16: left as it is
    assert "add --force" in capsys.readouterr().out
    assert main(["index", str(path), "--window", "8,4", "--force", "--quiet"]) == 0
    st = Store.open(path)
    attrs = st.index_state(hook)
    assert (attrs["context_before"], attrs["context_after"], attrs["distinct_lists"]) == (8, 4, True)
    assert st.index_array(hook, "top_context_tokens").shape[-1] == 13
    assert st.index_array(hook, "distinct_top_context_acts").shape[-1] == 13
    v = st.neuron(hook, 3)
    assert v.window == (8, 4)
    tokens = np.asarray(st.tokens[:])
    dense = np.asarray(st.activations(hook)[:, 3]).astype(np.float32)
    for sn in v.top[:5] + v.samples["random"][:3]:
        lo = sn.position - sn.center
        assert sn.center == min(8, sn.position) and len(sn.tokens) <= 13
        assert sn.token_ids.tolist() == tokens[lo:lo + len(sn.tokens)].tolist()
        assert dense[sn.position] == pytest.approx(sn.value)


def test_index_derives_token_windows_and_shares_distinct_windows(tmp_path):
    """An index stores neither the token windows (schema.INDEX_DERIVED: readers gather them from the
    tokens) nor the distinct lists' windows the raw lists hold (schema.INDEX_SHARED_WINDOWS): readers
    give every array whole, by any selection, and an index that stores them all (as before) reads the same."""
    import zarr

    from store.index import IndexGroup

    path = _synthetic(tmp_path, n=2048)
    hook = "blocks.0.mlp.hook_post"
    assert main(["index", str(path), "--quiet", "--k", "8"]) == 0
    st = Store.open(path)
    folder = path / schema.index_path(hook)
    assert not any((folder / a).exists() for a in schema.INDEX_DERIVED)
    full = _index(st, hook)
    tokens, (before, after) = np.asarray(st.tokens[:]), st.index_window(hook)
    for name, pos_name in schema.INDEX_DERIVED.items():
        pos = full[pos_name]
        for idx in zip(*np.nonzero(pos >= 0)):
            q = pos[idx] + np.arange(-before, after + 1)
            want = np.where((q >= 0) & (q < tokens.size), tokens[np.clip(q, 0, tokens.size - 1)], -1)
            assert np.array_equal(full[name][idx], want), (name, idx)
    for name, (pos, raw_pos, _raw) in schema.INDEX_SHARED_WINDOWS.items():
        on_disk = np.asarray(zarr.open_array(str(folder / name), mode="r")[...])
        shared = (full[pos][:, :, None] == full[raw_pos][:, None, :]).any(-1) & (full[pos] >= 0)
        assert shared.any() and not on_disk[shared].any()
        assert np.array_equal(on_disk[~shared], full[name][~shared])
        assert np.abs(full[name][shared]).sum() > 0  # completed from the raw list's windows
    for name in ("distinct_top_context_acts", "top_context_tokens", "distinct_bottom_context_tokens"):
        arr, want = st.index_array(hook, name), full[name]
        assert arr.shape == want.shape and arr.dtype == want.dtype
        assert np.array_equal(arr[3], want[3]) and np.array_equal(arr[2:5], want[2:5])
        assert np.array_equal(arr[7, 1], want[7, 1]) and np.array_equal(np.asarray(arr), want)
        rows = np.array([1, 4, 9])
        assert np.array_equal(arr.get_orthogonal_selection((rows,)), want[rows])
        assert np.array_equal(arr.get_orthogonal_selection((rows, slice(None), np.array([0, 5]))),
                              want[rows][:, :, [0, 5]])
    # an index written before: every window stored, no shared_windows attribute
    old = tmp_path / "old"
    shutil.copytree(path, old)
    grp = IndexGroup(old, hook)
    names = [*schema.INDEX_DERIVED, *schema.INDEX_SHARED_WINDOWS]
    grp.write_arrays(grp.group, {a: full[a] for a in names}, {a: schema.INDEX_ARRAYS[a][1] for a in names})
    attrs = grp.attrs
    attrs.pop("shared_windows")
    grp.group.attrs.clear()
    grp.group.attrs.update(attrs)
    so = Store.open(old)
    assert isinstance(so.index_array(hook, "top_context_tokens"), zarr.Array)
    assert isinstance(so.index_array(hook, "distinct_top_context_acts"), zarr.Array)
    _assert_same_index(full, _index(so, hook))
    for j in (0, 3, 39):
        a, b = st.neuron(hook, j), so.neuron(hook, j)
        for x, y in zip(a.top + a.bottom + [s for v in a.samples.values() for s in v],
                        b.top + b.bottom + [s for v in b.samples.values() for s in v]):
            fields = ("position", "tokens", "ctx_lo", "ctx_hi", "more")
            assert [getattr(x, f) for f in fields] == [getattr(y, f) for f in fields]
            assert np.array_equal(x.token_ids, y.token_ids) and np.array_equal(x.acts, y.acts)
        assert len(a.top) == len(b.top) > 0


def test_memory_estimate_counts_the_tokens_seen_and_refuses_what_does_not_fit(tmp_path, monkeypatch):
    from store.index import run

    full = run.index_memory_bytes(3072, 32, 50257, hooks=12)  # GPT-2 small, every token seen
    assert 16 * 2**30 < full < 24 * 2**30
    assert run.index_memory_bytes(3072, 32, 50257, 4096, hooks=12) < 0.4 * full  # a short recording
    assert run.index_memory_bytes(3072, 32, 50257, 10**9) == run.index_memory_bytes(3072, 32, 50257)
    st = Store.open(_synthetic(tmp_path))
    run.check_record_index_memory(st, 32)  # fits
    run.check_index_memory(st, st.hooks, 32)
    monkeypatch.setattr(run, "available_memory_bytes", lambda: 10**6)
    with pytest.raises(StoreError, match=r"record fewer layers per store \(--layers\)"):
        run.check_record_index_memory(st, 32)
    with pytest.raises(StoreError, match="use a smaller --k"):
        run.check_index_memory(st, st.hooks, 32)
