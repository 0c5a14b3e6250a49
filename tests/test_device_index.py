"""Pass 1 in torch (solu_core.device_index, the CUDA path) against the Numba kernels, on CPU torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from solu_core.device_index import chunk_partial
from store.index import PartialIndex, merge_partials

# CPU torch here; on a machine with a GPU (benchmarks/gpu_check.sh) the same tests run on CUDA too
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
EXACT = ["top_key", "top_pos", "top_win", "bot_key", "bot_pos", "bot_win", "dtop_key", "dtop_pos", "dtop_win",
         "dtop_more", "dbot_key", "dbot_pos", "dbot_win", "dbot_more", "hist", "npos", "token_count", "token_ids"]


def _chunk(rng, R, N, levels):
    """float16 [R, N] with many ties (values from a few levels), zeros, negatives and subnormals."""
    vals = np.concatenate([rng.standard_normal(levels) * 3, [0.0, -0.0, 1e-7, -2e-6, 60000.0]]).astype(np.float16)
    return vals[rng.integers(0, vals.size, (R, N))]


def _numba(acts, toks, row0, ctx, k, vocab, window, part=None):
    part = part or PartialIndex.empty("h", k, acts.shape[1], vocab, window)
    part.update(acts.view(np.uint16), toks, row0, ctx)
    return part.canonical()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("R,N,ctx,k,window,levels", [(256, 200, 16, 8, (4, 2), 7), (96, 130, 32, 40, (3, 3), 50)])
def test_one_chunk_equals_the_numba_kernels_bit_for_bit(R, N, ctx, k, window, levels, device):
    rng = np.random.default_rng(R + N)
    vocab = 50
    acts = _chunk(rng, R, N, levels)
    toks = rng.integers(0, vocab, R).astype(np.int32)
    row0 = 3 * R  # a chunk further into the store: positions and parities count from it
    want = _numba(acts, toks, row0, ctx, k, vocab, window)
    got = chunk_partial(torch.from_numpy(acts).to(device), toks, row0, ctx, k, vocab, window, hook="h").canonical()
    for name in EXACT:
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)
    assert got.token_sum.dtype == np.float32
    np.testing.assert_array_equal(got.token_sum, want.token_sum)  # float64 sums of float16 are exact
    assert got.n == want.n == R
    for name in ("mean", "m2", "m3", "m4"):
        np.testing.assert_allclose(getattr(got, name), getattr(want, name), rtol=1e-9, atol=1e-6, err_msg=name)


def test_device_partials_merge_exactly_with_numba_partials():
    """A store whose first chunk was folded by Numba and second by torch gives the lists, windows and counts
    of Numba over both (the same merge Dask and appends use)."""
    rng = np.random.default_rng(1)
    R, N, ctx, k, vocab, window = 128, 70, 16, 6, 30, (5, 1)
    a, b = _chunk(rng, R, N, 9), _chunk(rng, R, N, 9)
    ta, tb = rng.integers(0, vocab, R).astype(np.int32), rng.integers(0, vocab, R).astype(np.int32)
    both = _numba(a, ta, 0, ctx, k, vocab, window)
    both = _numba(b, tb, R, ctx, k, vocab, window, both)
    first = _numba(a, ta, 0, ctx, k, vocab, window)
    first.ranges = [(0, 1)]
    second = chunk_partial(torch.from_numpy(b), tb, R, ctx, k, vocab, window, hook="h")
    second.ranges = [(1, 2)]
    merged = merge_partials(first, second).canonical()
    for name in EXACT:
        np.testing.assert_array_equal(getattr(merged, name), getattr(both, name), err_msg=name)
    np.testing.assert_allclose(merged.token_sum, both.token_sum, rtol=1e-6, atol=1e-5)  # rounded once more
    np.testing.assert_allclose(merged.m2, both.m2, rtol=1e-9)


def test_refuses_other_dtypes():
    with pytest.raises(ValueError, match="float16"):
        chunk_partial(torch.zeros(4, 3), np.zeros(4, np.int32), 0, 4, 2, 10)


# ---- fold_partial: a chunk's partial folded in place is what update gives ---------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("token_rows,running", [(0, False), (12, False), (0, True), (12, True)])
def test_folding_device_partials_chunk_by_chunk_equals_update_bit_for_bit(token_rows, running, device):
    """Five chunks folded one by one from chunk_partial (the recorder's torch backend) give the partial the
    kernels' update gives, token sums included (exact float64 chunk sums, rounded once), bounded rows too;
    against the running lists (``running``, as DevicePass1 makes them) only the entries that enter them
    cross, fewer chunk after chunk."""
    from store.index.fold import fold_partial

    rng = np.random.default_rng(7)
    R, N, ctx, k, vocab, window = 128, 40, 32, 6, 60, (4, 2)
    ref = PartialIndex.empty("h", k, N, vocab, window, token_rows)
    run = PartialIndex.empty("h", k, N, vocab, window, token_rows)
    lists = {} if running else None
    crossed = []
    for c in range(5):
        acts = _chunk(rng, R, N, 11)
        toks = rng.integers(0, vocab if c % 2 else vocab // 3, R).astype(np.int32)  # new tokens in later chunks
        ref.update(acts.view(np.uint16), toks, c * R, ctx)
        part = chunk_partial(torch.from_numpy(acts).to(device), toks, c * R, ctx, k, vocab, window, hook="h",
                             running=lists)
        crossed.append(sum(int((getattr(part, f"{s}_pos") >= 0).sum()) for s in ("top", "bot", "dtop", "dbot")))
        fold_partial(run, part)
    ref.canonical()
    run.canonical()
    every = N * (2 * k + 2 * min(k, R // ctx))  # top and bottom k of each neuron, and one per context
    if running:
        assert crossed[0] == every and crossed[-1] < every / 2, crossed
    else:
        assert crossed == [every] * 5
    for name in EXACT:
        np.testing.assert_array_equal(getattr(run, name), getattr(ref, name), err_msg=name)
    np.testing.assert_array_equal(run.token_sum, ref.token_sum)
    if token_rows:
        assert run.token_folded == ref.token_folded > 0
        for name in ("token_cold", "token_cold_count", "token_cold_ids", "token_used"):
            np.testing.assert_array_equal(getattr(run, name), getattr(ref, name), err_msg=name)
    assert run.n == ref.n == 5 * R
    for name in ("mean", "m2", "m3", "m4"):
        np.testing.assert_allclose(getattr(run, name), getattr(ref, name), rtol=1e-9, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("device", DEVICES)
def test_device_pass1_with_tables_on_the_device_and_a_resume_equals_update_bit_for_bit(device):
    """DevicePass1 keeping the histogram and the per-token sums on the device, handed over once per work
    group of two chunks, then a resume: a new DevicePass1 going on from the folded state at chunk 3 (chunk 2
    handed again is skipped) gives the kernels' partial over the six chunks, per-token sums included."""
    from solu_core.device_index import DevicePass1
    from store.index.fold import fold_partial

    rng = np.random.default_rng(3)
    R, N, ctx, k, vocab, window = 128, 24, 32, 5, 40, (3, 1)
    chunks = [(_chunk(rng, R, N, 9), rng.integers(0, vocab, R).astype(np.int32)) for _ in range(6)]
    ref = PartialIndex.empty("h", k, N, vocab, window)
    for c, (acts, toks) in enumerate(chunks):
        ref.update(acts.view(np.uint16), toks, c * R, ctx)
    run = PartialIndex.empty("h", k, N, vocab, window)

    def fold(p1, c, last):
        acts, toks = chunks[c]
        parts = p1.chunk_partials({"h": torch.from_numpy(acts).to(device)}, toks, c * R, c, last)
        if c >= int(run.n // R):  # the indexer skips a chunk it holds
            fold_partial(run, parts["h"])
        return parts

    first = DevicePass1(k, vocab, window, ctx, ["h"], device=device, n_neurons={"h": N})
    assert first.token_tables
    for c in range(3):
        parts = fold(first, c, last=c in (1, 2))
        assert getattr(parts["h"], "token_deferred", False) and (c in (1, 2)) == hasattr(parts["h"], "token_sync")
    again = DevicePass1(k, vocab, window, ctx, ["h"], start={"h": 3}, device=device, n_neurons={"h": N},
                        resumed={"h": run})
    assert fold(again, 2, last=False) == {}  # before the resume point: not computed
    for c in range(3, 6):
        fold(again, c, last=c in (4, 5))
    ref.canonical()
    run.canonical()
    for name in EXACT:
        np.testing.assert_array_equal(getattr(run, name), getattr(ref, name), err_msg=name)
    np.testing.assert_array_equal(run.token_sum, ref.token_sum)
    np.testing.assert_allclose(run.m2, ref.m2, rtol=1e-9, atol=1e-6)


def test_fold_refuses_a_partial_of_another_shape():
    from store.index.fold import fold_partial

    with pytest.raises(ValueError, match="cannot fold"):
        fold_partial(PartialIndex.empty("h", 4, 3, 10), PartialIndex.empty("h", 5, 3, 10))


# ---- record --index with the torch backend: the same store, index and pages as numba -----------------


def _same(x, y) -> bool:
    """Equal, looking into snippets (dataclasses holding arrays), lists and dicts."""
    import dataclasses

    if dataclasses.is_dataclass(x):
        return type(x) is type(y) and all(_same(getattr(x, f.name), getattr(y, f.name)) for f in dataclasses.fields(x))
    if isinstance(x, (list, tuple)):
        return isinstance(y, (list, tuple)) and len(x) == len(y) and all(_same(a, b) for a, b in zip(x, y))
    if isinstance(x, dict):
        return isinstance(y, dict) and x.keys() == y.keys() and all(_same(x[key], y[key]) for key in x)
    if isinstance(x, np.ndarray):
        return np.array_equal(x, y)
    return x == y


def _record(tiny_root, out, backend, dense=False, stats=None, device="cpu", batch_size=None):
    from solu_core.record import record
    from solu_core.record_config import CorpusText, RecordConfig
    from tests.builders import TINY_CHUNK_TOKENS, TINY_TOKENS

    cfg = RecordConfig(text=CorpusText(tiny_root / "corpus"), n_tokens=TINY_TOKENS, chunk_tokens=TINY_CHUNK_TOKENS,
                       device=device, index=True, dense=dense, index_backend=backend, batch_size=batch_size)
    return record(tiny_root / "models" / "solu_ln", out, cfg, progress=False, stats=stats)


@pytest.mark.parametrize("device,dense,batch", [(d, dense, b) for d in DEVICES for dense, b in ((False, 128),
                                                                                             (True, None))])
def test_record_index_torch_backend_writes_the_index_of_the_numba_backend(tiny_root, tmp_path, device, dense, batch):
    """The same tiny real model over the same tokens, pass 1 in torch (CPU torch here: the CUDA path's
    code) and in the Numba kernels: every index array identical (moments to float rounding) and the
    neuron pages the browser shows the same. ``batch`` 128 contexts: work groups of two chunks (the
    histogram and the per-token rows kept on the device cross once per group)."""
    from solu_core.record import RecordStats
    from store.format.neuron_page import neuron_page
    from store.format.reader import Store
    from tests.helpers import assert_same_index

    s_numba, s_torch = RecordStats(), RecordStats()
    a = Store.open(_record(tiny_root, tmp_path / "numba", "numba", dense, s_numba, device, batch))
    b = Store.open(_record(tiny_root, tmp_path / "torch", "torch", dense, s_torch, device, batch))
    assert (s_numba.index_backend, s_torch.index_backend) == ("numba", "torch")
    assert s_torch.pass1_bytes > 0 and s_numba.pass1_bytes == 0
    assert b.complete and b.dense == dense
    assert np.array_equal(np.asarray(a.tokens[:]), np.asarray(b.tokens[:]))
    assert_same_index(a, b)
    for hook in a.hooks:
        assert a.index_state(hook)["samples_inexact_neurons"] == b.index_state(hook)["samples_inexact_neurons"]
        for n in (0, 7, a.n_units(hook) - 1):
            pa, pb = neuron_page(a, hook, n), neuron_page(b, hook, n)
            for f in ("top", "bottom", "samples", "top_tokens", "logit_up", "logit_down", "explanation", "window"):
                assert _same(getattr(pa, f), getattr(pb, f)), (hook, n, f)
            np.testing.assert_array_equal(pa.hist_counts, pb.hist_counts)
            assert pa.stats.keys() == pb.stats.keys()
            for key, v in pa.stats.items():
                if isinstance(v, float):
                    assert v == pytest.approx(pb.stats[key], rel=1e-6, abs=1e-9, nan_ok=True), (hook, n, key)
                else:
                    assert v == pb.stats[key], (hook, n, key)


def test_index_backend_without_index_or_cuda_without_a_gpu_is_refused(tiny_root, tmp_path):
    from solu_core.record import RecordError, record
    from solu_core.record_config import CorpusText, RecordConfig
    from tests.builders import run_cli

    ck = tiny_root / "models" / "solu_ln"
    base = ["record", str(ck), "--out", str(tmp_path / "s"), "--tokens", "4096", "--corpus", str(tiny_root / "corpus"),
            "--quiet"]
    r = run_cli(base + ["--index-backend", "torch"])
    assert r.returncode == 2 and "error: --index-backend torch" in r.stderr and "add --index" in r.stderr
    assert not (tmp_path / "s").exists()
    if not torch.cuda.is_available():
        r = run_cli(base + ["--index", "--device", "cuda"])
        assert r.returncode == 2 and "cuda" in r.stderr and "no CUDA GPU" in r.stderr
        assert not (tmp_path / "s").exists()
        with pytest.raises(RecordError, match="no CUDA GPU"):
            record(ck, tmp_path / "s", RecordConfig(text=CorpusText(tiny_root / "corpus"), device="cuda", index=True))
        assert not (tmp_path / "s").exists()
    with pytest.raises(RecordError, match="not a backend"):
        record(ck, tmp_path / "s", RecordConfig(text=CorpusText(tiny_root / "corpus"), index=True,
                                                index_backend="cupy"))
    with pytest.raises(RecordError, match="add --index"):
        record(ck, tmp_path / "s", RecordConfig(text=CorpusText(tiny_root / "corpus"), index_backend="numba"))
    from solu_core.dask_record import record_dask

    with pytest.raises(RecordError, match="process only"):  # before any cluster is asked for
        record_dask(ck, tmp_path / "s", None, RecordConfig(text=CorpusText(tiny_root / "corpus"), index=True,
                                                           index_backend="torch"))
    r = run_cli(base + ["--index", "--index-backend", "torch", "--scheduler", "local:1"])
    assert r.returncode == 2 and "process only" in r.stderr
    assert not (tmp_path / "s").exists()


def test_record_cli_with_the_torch_backend_indexes_and_its_resume_command_names_it(tiny_root, tmp_path):
    """`record --index --index-backend torch` from the command line: an indexed store whose saved record
    command (what resume and repair advice print) keeps the backend."""
    from store.format.reader import Store
    from tests.builders import TINY_CHUNK_TOKENS, run_cli

    out = tmp_path / "s"
    r = run_cli(["record", str(tiny_root / "models" / "solu_ln"), "--out", str(out), "--tokens", "8192",
                 "--chunk-tokens", str(TINY_CHUNK_TOKENS), "--corpus", str(tiny_root / "corpus"), "--device", "cpu",
                 "--index", "--dense", "none", "--index-backend", "torch", "--quiet"])
    assert r.returncode == 0, r.stderr
    st = Store.open(out)
    assert st.complete and all(st.is_indexed(h) for h in st.recorded_hooks)
    assert "--index-backend torch" in st.manifest["record_command"]
