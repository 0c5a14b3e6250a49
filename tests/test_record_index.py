"""Indexing while recording (`record --index`, with and without the dense activations), kill -9 and
resume of it, and stores without dense activations as first-class stores."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from store import schema
from store.format.reader import Store
from tests.builders import TINY_CHUNK_TOKENS, TINY_TOKENS, run_cli
from tests.helpers import assert_same_index, kill_9_after_lines
from solu_core.record_config import CorpusText, RecordConfig

ROOT = Path(__file__).resolve().parents[1]


def _record_args(tiny_root, out, *extra):
    ck = tiny_root / "models" / "solu_ln"
    return ["record", str(ck), "--out", str(out), "--tokens", str(TINY_TOKENS), "--chunk-tokens",
            str(TINY_CHUNK_TOKENS), "--corpus", str(tiny_root / "corpus"), "--device", "cpu", "--quiet", *extra]


@pytest.fixture(scope="module")
def dense_free(tiny_root, tiny_stores, tmp_path_factory):
    """The tiny SoLU-LN model recorded with `record --index --dense none`."""
    out = tmp_path_factory.mktemp("nodense") / "store"
    r = run_cli(_record_args(tiny_root, out, "--index", "--dense", "none"))
    assert r.returncode == 0, r.stderr
    return out


def test_record_index_dense_none_gives_the_index_of_record_then_index(dense_free, tiny_stores):
    st, ref = Store.open(dense_free), Store.open(tiny_stores["solu_ln"])
    assert st.complete and not st.dense
    assert np.array_equal(np.asarray(st.tokens[:]), np.asarray(ref.tokens[:]))
    assert_same_index(st, ref)
    for hook in st.hooks:
        assert not (dense_free / hook).exists()  # no dense array on disk
        assert st.index_state(hook)["samples_inexact_neurons"] == 0
    assert st.size_on_disk() < 0.5 * ref.size_on_disk()


def test_record_index_dense_keep_gives_the_same_store_and_index(tiny_root, tiny_stores, tmp_path):
    out = tmp_path / "keep"
    r = run_cli(_record_args(tiny_root, out, "--index"))
    assert r.returncode == 0, r.stderr
    st, ref = Store.open(out), Store.open(tiny_stores["solu_ln"])
    assert st.dense
    for hook in st.hooks:
        assert np.array_equal(np.asarray(st.activations(hook)[:]), np.asarray(ref.activations(hook)[:]))
    assert_same_index(st, ref)
    r = run_cli(["index", str(out), "--quiet"])
    assert r.returncode == 0 and "already indexed" in r.stdout


def test_dense_none_without_index_is_refused(tiny_root, tmp_path):
    r = run_cli(_record_args(tiny_root, tmp_path / "x", "--dense", "none"))
    assert r.returncode == 2 and "--index" in r.stderr
    assert not (tmp_path / "x").exists()


_CHILD = """
import sys
from solu_core.record import record
from solu_core.record_config import CorpusText, RecordConfig
from store.index import IndexConfig
ck, out, corpus, n, ct = sys.argv[1:6]
cfg = IndexConfig(checkpoint_every_s=0.0, on_checkpoint=lambda h, w, c: print("saved", h, w, c, flush=True))
record(ck, out, RecordConfig(text=CorpusText(corpus), n_tokens=int(n), chunk_tokens=int(ct), device="cpu",
                             batch_size=int(ct) // 64, index=True, dense=False, index_config=cfg), progress=False)
print("finished", flush=True)
"""


def test_kill_9_while_recording_with_index_then_the_same_command_resumes_identically(tiny_root, tiny_stores,
                                                                                    tmp_path):
    """A real kill -9 after the index state of some chunks was saved; the same call then finishes to
    the same store and index as an uninterrupted `record` + `index`."""
    out = tmp_path / "killed"
    ck = tiny_root / "models" / "solu_ln"
    # chunks of 1024 tokens: 20 chunks, so the index is saved several times before the end
    args = [str(ck), str(out), str(tiny_root / "corpus"), str(TINY_TOKENS), "1024"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, *args], stdout=subprocess.PIPE, text=True, env=env,
                            cwd=ROOT)
    hooks = Store.open(tiny_stores["solu_ln"]).hooks
    # a save of every hook past the held-back chunks, mid recording: kill -9
    seen = kill_9_after_lines(proc, lambda seen: seen[-1][:3] == ["saved", hooks[-1], "s1"] and int(seen[-1][3]) >= 16)
    assert proc.returncode == -signal.SIGKILL, seen
    st = Store.open(out)
    assert not st.complete and not st.is_indexed(hooks[0])
    saved = {h: st.index_state(h)["progress"]["p1"]["chunk_stop"] for h in hooks}
    assert all(16 <= c < 20 for c in saved.values()), saved
    # the same call again, in this process (only the kill needs a child)
    from solu_core.record import record
    from store.index import IndexConfig

    saves = []
    cfg = IndexConfig(checkpoint_every_s=0.0, on_checkpoint=lambda h, w, c: saves.append((h, w, c)))
    again = RecordConfig(text=CorpusText(tiny_root / "corpus"), n_tokens=TINY_TOKENS, chunk_tokens=1024, device="cpu",
                         batch_size=16, index=True, dense=False, index_config=cfg)
    record(ck, out, again, progress=False)
    for h in hooks:  # the index resumed from its saved state, it did not start again
        first = [s for s in saves if s[0] == h][0]
        assert int(first[2]) > saved[h], (h, first, saved)
    ref = tmp_path / "ref"  # the same command, never interrupted
    record(ck, ref, RecordConfig(text=CorpusText(tiny_root / "corpus"), n_tokens=TINY_TOKENS, chunk_tokens=1024,
                                 device="cpu", batch_size=16, index=True, dense=False), progress=False)
    a, b = Store.open(out), Store.open(ref)
    assert np.array_equal(np.asarray(a.tokens[:]), np.asarray(b.tokens[:]))
    assert_same_index(a, b)
    for h in hooks:
        assert a.index_state(h)["samples_inexact_neurons"] == b.index_state(h)["samples_inexact_neurons"]


# ---- a store without dense activations is a first-class store ------------------------------------------


def test_info_says_there_are_no_dense_activations(dense_free):
    r = run_cli(["info", str(dense_free)])
    assert r.returncode == 0, r.stderr
    assert "no dense activations" in r.stdout
    info = Store.open(dense_free).info()
    assert info["dense"] is False and info["dense_bytes_on_disk"] == 0


def test_index_force_on_a_dense_free_store_says_it_needs_dense_activations(dense_free):
    r = run_cli(["index", str(dense_free), "--force", "--quiet"])
    assert r.returncode == 2
    assert "no dense activations" in r.stderr and "--dense keep" in r.stderr
    assert Store.open(dense_free).is_indexed(Store.open(dense_free).hooks[0])  # the index is untouched
    r = run_cli(["index", str(dense_free), "--quiet"])  # without --force: already indexed
    assert r.returncode == 0 and "already indexed" in r.stdout


def test_reading_dense_activations_of_a_dense_free_store_is_a_clear_error(dense_free):
    from store.errors import StoreError

    st = Store.open(dense_free)
    with pytest.raises(StoreError, match="no dense activations.*--dense keep"):
        st.activations(st.hooks[0])


def test_show_and_export_work_on_a_dense_free_store(dense_free, tiny_stores, tmp_path):
    hook = Store.open(dense_free).hooks[0]
    layer, name = schema.parse_hook_name(hook)
    a = run_cli(["show", str(dense_free), "--layer", str(layer), "--hook", name, "--neuron", "3"])
    b = run_cli(["show", str(tiny_stores["solu_ln"]), "--layer", str(layer), "--hook", name, "--neuron", "3"])
    assert a.returncode == 0, a.stderr
    assert a.stdout.replace(str(dense_free), "S") == b.stdout.replace(str(tiny_stores["solu_ln"]), "S")
    out = tmp_path / "n.jsonl"
    r = run_cli(["export", str(dense_free), "--out", str(out), "--all", "--quiet"])
    assert r.returncode == 0, r.stderr
    assert out.stat().st_size > 0


def test_xarray_and_dask_open_what_a_dense_free_store_has(dense_free):
    import xarray as xr

    ds = xr.open_zarr(dense_free, consolidated=False)
    assert schema.TOKENS in ds and not any(h in ds for h in Store.open(dense_free).hooks)
    assert int(ds[schema.TOKENS].size) == TINY_TOKENS
    hook = Store.open(dense_free).hooks[0]
    idx = xr.open_zarr(dense_free, group=f"{schema.INDEX_GROUP}/{hook}", consolidated=False)
    assert idx["top_values"].shape[0] == Store.open(dense_free).d_mlp


def test_compare_and_study_work_on_a_dense_free_store(dense_free, tiny_stores, tmp_path):
    r = run_cli(["compare", str(tiny_stores["gelu"]), str(dense_free), "--summary"])
    assert r.returncode == 0, r.stderr
    ref = run_cli(["compare", str(tiny_stores["gelu"]), str(tiny_stores["solu_ln"]), "--summary"])
    assert r.stdout.replace(str(dense_free), "B") == ref.stdout.replace(str(tiny_stores["solu_ln"]), "B")
    r = run_cli(["study", "new", "--stores", str(tiny_stores["gelu"]), str(dense_free), "--per-model", "6",
                 "--seed", "1", "--out", str(tmp_path / "study")])
    assert r.returncode == 0, r.stderr
    assert any((tmp_path / "study").iterdir())


def test_the_app_opens_a_dense_free_store_and_tries_text_on_its_model(qtbot, windows, dense_free):
    from tests.helpers import WAIT_MS, main_window, wait_page

    w = main_window(windows, dense_free, neuron=4)
    page = wait_page(qtbot, w, 4)
    assert page.top and page.ref.neuron == 4
    live = w.page.live
    with qtbot.waitSignal(live.shaded, timeout=WAIT_MS):
        qtbot.keyClicks(live.editor, "def f(x): return x")
    assert live.result.neuron == 4 and len(live.result.acts) == len(live.result.token_ids) > 0
