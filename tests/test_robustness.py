"""Faults that must never lose or silently corrupt data: damaged, missing and swapped chunk files, an
export written over the label database, chunk writes that fail half-way. Real stores on disk."""

import errno
import shutil

import numpy as np
import pytest

from store.format import chunkio
from store import schema
from store.errors import CorruptChunkError, StoreError
from store.format.reader import Store
from tests.helpers import HOOKS, brute_order, pass1, synthetic_data, synthetic_writer, write_all


@pytest.fixture()
def written(tmp_path):
    path = tmp_path / "s"
    tokens, docs, acts = synthetic_data(n_tokens=32 * 20)
    w = synthetic_writer(path, n_tokens=32 * 20)
    write_all(w, tokens, docs, acts)
    w.finish()
    return path, tokens, docs, acts


def _swap(a, b):
    tmp = a.with_name("swap-tmp")
    a.rename(tmp)
    b.rename(a)
    tmp.rename(b)


def test_swapped_dense_chunks_are_detected_on_every_read_path(written):
    path, _, _, acts = written
    d = path / HOOKS[0] / "c"
    _swap(d / "3" / "0", d / "4" / "0")  # both files pass their own checksum
    st = Store.open(path)
    assert np.array_equal(st.read_chunk(HOOKS[0], 2), acts[HOOKS[0]][256:384])  # the others still read
    with pytest.raises(CorruptChunkError, match=r"chunk 'c/3/0' is not the chunk its completion marker recorded"):
        st.read_chunk(HOOKS[0], 3)
    with pytest.raises(CorruptChunkError, match=r"not the chunk its completion marker recorded.*verify --repair"):
        Store.open(path).activations(HOOKS[0])[4 * 128 + 5]  # through zarr (xarray, dask)
    w = synthetic_writer(path, n_tokens=32 * 20)  # the record command again: those two chunks are rewritten
    assert w.pending_chunks(HOOKS[0]) == [3, 4] and not w.manifest["complete"]


def test_swapped_token_chunks_are_detected(written):
    path = written[0]
    _swap(path / schema.TOKENS / "c" / "1", path / schema.TOKENS / "c" / "2")
    with pytest.raises(CorruptChunkError, match="not the chunk its completion marker recorded"):
        Store.open(path).read_chunk(schema.TOKENS, 1)


def test_record_rechecks_a_finished_store_and_rewrites_a_damaged_chunk(written):
    path, tokens, docs, acts = written
    f = path / HOOKS[1] / "c" / "2" / "0"
    good = f.read_bytes()
    raw = bytearray(good)
    raw[1000] ^= 0xFF  # one flipped byte in the middle: same size, same trailing checksum
    f.write_bytes(bytes(raw))
    w = synthetic_writer(path, n_tokens=32 * 20)
    assert w.rechecked == {HOOKS[1]: [2]} and w.pending_chunks(HOOKS[1]) == [2]
    assert w.pending_all() == [2] and not Store.open(path).complete
    write_all(w, tokens, docs, acts, chunks=w.pending_all())
    w.finish()
    assert f.read_bytes() == good and Store.open(path).complete


def test_a_chunk_write_that_fails_half_way_leaves_no_marker(written, monkeypatch):
    """The marker is written after its chunk: a write that fails (disk full) after truncating the old
    file leaves the chunk pending, and finish() refuses."""
    path, tokens, docs, acts = written
    w = synthetic_writer(path, n_tokens=32 * 20)
    real = chunkio.write_file

    def half_then_full(f, payload, fsync=False):
        f.write_bytes(payload[: payload.size // 2].tobytes())
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(chunkio, "write_file", half_then_full)
    with pytest.raises(OSError):
        w.write_chunk(HOOKS[0], 1, acts[HOOKS[0]][128:256] + 1)
    monkeypatch.setattr(chunkio, "write_file", real)
    assert w.pending_chunks(HOOKS[0]) == [1]
    with pytest.raises(StoreError, match="run the record command again"):
        w.finish()


def test_pending_chunks_sees_a_truncated_file_with_its_marker(written):
    path = written[0]
    f = path / HOOKS[0] / "c" / "1" / "0"
    f.write_bytes(f.read_bytes()[:-100])
    assert synthetic_writer(path, n_tokens=32 * 20).pending_chunks(HOOKS[0]) == [1]


def test_a_manifest_only_store_accepts_the_corrected_command(tmp_path):
    path = tmp_path / "s"
    with pytest.raises(StoreError, match="positive multiple"):
        synthetic_writer(path, n_tokens=320, chunk_tokens=0)
    synthetic_writer(path, n_tokens=320, chunk_tokens=64)  # nothing recorded yet: other arguments are fine
    w = synthetic_writer(path, n_tokens=320, chunk_tokens=128)
    assert w.chunk_tokens == 128


def test_markers_record_the_chunk_checksum(written):
    path = written[0]
    st = Store.open(path)
    for i in range(st.n_chunks):
        crc = (path / HOOKS[0] / "c" / str(i) / "0").read_bytes()[-4:]
        assert chunkio.marker_crc(st._marker(HOOKS[0], i)) == crc
    assert st.done_chunks() == st.n_chunks


def test_vanished_index_folder_raises_instead_of_zeros(tiny_root, tiny_stores, tmp_path):
    """A reader holding an open store whose index folder disappears (index --force of an older
    neurobrowse, a user's rm) gets an error, never fill values."""
    path = tmp_path / "copy"
    shutil.copytree(tiny_stores["gelu"], path)
    st = Store.open(path)
    hook = st.hooks[0]
    table = st.neuron_table(hook)
    assert np.isfinite(table["max_act"]).all()
    arr = st.index_array(hook, "top_values")
    shutil.rmtree(path / schema.index_path(hook))
    with pytest.raises(CorruptChunkError, match="is missing"):
        arr[5]
    with pytest.raises((CorruptChunkError, StoreError)):
        Store.open(path).neuron(hook, 5)


# ---- the label database is never an output -----------------------------------------------------------
@pytest.mark.parametrize("side", ["", "-wal", "-shm"])
@pytest.mark.parametrize("verb", ["export", "labels export"])
def test_export_out_the_label_database_is_refused(tiny_stores, tmp_path, verb, side):
    from tests.builders import run_cli

    db = tmp_path / "labels.sqlite"
    store = str(tiny_stores["gelu"])
    assert run_cli(["labels", "set", store, "0", "3", "--verdict", "interpretable", "--db", str(db)]).returncode == 0
    before = db.read_bytes()
    out = str(db) + side
    argv = (["export", store, "--db", str(db), "--out", out] if verb == "export"
            else ["labels", "export", "--db", str(db), "--out", out])
    r = run_cli(argv)
    assert r.returncode == 2 and "is the label database" in r.stderr and "Traceback" not in r.stderr
    assert db.read_bytes() == before
    r = run_cli(["labels", "list", "--db", str(db)])
    assert "interpretable" in r.stdout


def test_export_into_a_store_is_refused(tiny_stores, tmp_path):
    from tests.builders import run_cli

    store = tiny_stores["gelu"]
    before = sorted(p.name for p in store.iterdir())
    r = run_cli(["export", str(store), "--db", str(tmp_path / "l.db"), "--all", "--out", str(store / "zarr.json")])
    assert r.returncode == 2 and "inside the Zarr store" in r.stderr
    assert sorted(p.name for p in store.iterdir()) == before and Store.open(store).complete


# ---- verify and repair --------------------------------------------------------------------------------
def _copy(src, tmp_path, name="copy"):
    dst = tmp_path / name
    shutil.copytree(src, dst)
    return dst


def test_verify_finds_damage_and_the_advised_commands_repair_it(tiny_stores, tmp_path):
    """Damage a dense chunk, swap two token chunks and garble an index chunk; verify names each; after
    --repair the advised record and index commands restore a store identical to the original."""
    import shlex

    from tests.builders import run_cli

    src = tiny_stores["solu_ln"]
    path = _copy(src, tmp_path)
    st = Store.open(path)
    hook = st.hooks[1]
    r = run_cli(["verify", "--quiet", str(path)])
    assert r.returncode == 0 and "every chunk is intact" in r.stdout
    dense = path / hook / "c" / "1" / "0"
    raw = bytearray(dense.read_bytes())
    raw[len(raw) // 2] ^= 0x40
    dense.write_bytes(bytes(raw))
    _swap(path / schema.TOKENS / "c" / "0", path / schema.TOKENS / "c" / "2")
    idx = path / schema.index_path(st.hooks[0]) / "top_values" / "c" / "3" / "0"
    idx.write_bytes(b"garbage")
    r = run_cli(["verify", "--quiet", str(path)])
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"{hook}" in r.stdout and "c/1/0: fails its Crc32c checksum" in r.stdout
    assert "c/0: not the chunk its marker recorded" in r.stdout and "c/2: not the chunk" in r.stdout
    assert "top_values/c/3/0: fails its Crc32c" in r.stdout
    assert f"neurobrowse verify --repair {path}" in r.stdout
    r = run_cli(["verify", "--repair", "--quiet", str(path)])
    assert r.returncode == 1 and "markers of the bad chunks cleared" in r.stdout
    cmds = [line.strip() for line in r.stdout.splitlines()[-2:]]
    assert cmds[0].startswith("neurobrowse record") and f"--out {path}" in cmds[0]
    assert cmds[1] == f"neurobrowse index {path}"
    assert not Store.open(path).complete and not Store.open(path).is_indexed(st.hooks[0])
    for cmd in cmds:
        r = run_cli(shlex.split(cmd)[1:] + ["--quiet"])
        assert r.returncode == 0, r.stderr
    assert run_cli(["verify", "--quiet", str(path)]).returncode == 0
    for rel in [f"{hook}/c/1/0", "tokens/c/0", "tokens/c/2", f"{schema.index_path(st.hooks[0])}/top_values/c/3/0"]:
        assert (path / rel).read_bytes() == (src / rel).read_bytes(), rel


def test_info_checks_that_marked_chunk_files_exist(tiny_stores, tmp_path):
    from tests.builders import run_cli

    path = _copy(tiny_stores["gelu"], tmp_path)
    hook = Store.open(path).hooks[0]
    assert run_cli(["info", str(path)]).returncode == 0
    (path / hook / "c" / "2" / "0").unlink()
    r = run_cli(["info", str(path)])
    assert r.returncode == 1 and "DAMAGED" in r.stdout and f"{hook}/c/2/0" in r.stdout
    assert f"neurobrowse verify --repair {path}" in r.stdout


def test_full_disk_during_record_is_a_clean_error_and_the_same_command_resumes(tiny_root, tiny_stores, tmp_path,
                                                                                 monkeypatch):
    """ENOSPC from the chunk writes (injected after two chunk files): `record` ends in `error: the disk is
    full`, exit 2; run again, it finishes a store whose chunks equal an uninterrupted recording's."""
    from tests.builders import TINY_CHUNK_TOKENS, TINY_TOKENS, run_cli

    out = tmp_path / "full"
    argv = ["record", str(tiny_root / "models" / "gelu"), "--out", str(out), "--tokens", str(TINY_TOKENS),
            "--corpus", str(tiny_root / "corpus"), "--chunk-tokens", str(TINY_CHUNK_TOKENS), "--device", "cpu",
            "--quiet"]
    real, calls = chunkio.write_file, []

    def fills_up(path, payload, fsync=False):
        calls.append(path)
        if len(calls) > 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, payload, fsync)

    monkeypatch.setattr(chunkio, "write_file", fills_up)
    r = run_cli(argv)
    assert r.returncode == 2 and "error: the disk is full" in r.stderr and "run the same command again" in r.stderr
    monkeypatch.setattr(chunkio, "write_file", real)
    assert run_cli(argv).returncode == 0
    ref = tiny_stores["gelu"]
    for f in (out / Store.open(out).hooks[0] / "c").rglob("*"):
        if f.is_file():
            assert f.read_bytes() == (ref / f.relative_to(out)).read_bytes()


# ---- tests that catch bugs the suite let through (mutation survivors) ------------------------------------
def test_neuron_explainer_quantile_bins_are_in_ascending_order_and_within_their_boundaries(solu, tmp_path):
    """Each of random_sample_by_quantile's five bins holds the samples of its own quantile bin (the same
    snippets as the page, in the same order), whose firing values lie between its two boundaries."""
    import json

    from store.export.neurons import ExportConfig, export_store
    from store.measures.tokens_display import raw_piece

    hook = solu.hook_for(0, "hook_post")
    out = tmp_path / "ne.jsonl"
    export_store(solu, out, ExportConfig(fmt="neuron-explainer", hooks=[hook], all_neurons=True, snippets=2))
    ascending = ["0-0.5", "0.5-0.9", "0.9-0.99", "0.99-0.999", "0.999-1"]
    checked = 0
    for line in out.read_text().splitlines()[:40]:
        rec = json.loads(line)
        n = rec["neuron_id"]["neuron_index"]
        view = solu.neuron(hook, n)
        bounds = rec["quantile_boundaries"]
        for i, name in enumerate(ascending):
            got, want = rec["random_sample_by_quantile"][i], view.samples[name]
            # exported: the tokens the model saw with each sample (the page also shows text around it, greyed)
            # (as raw token strings: a newline is a real newline in the export, issue 24)
            assert [r["tokens"] for r in got] == [[raw_piece(t) for t in s.tokens[s.ctx_lo:s.ctx_hi]]
                                                  for s in want], (n, name)
            for s in want:
                assert bounds[i] - 1e-6 <= s.value <= bounds[i + 1] + 1e-6, (n, name, s.value, bounds)
                checked += 1
    assert checked > 100


def test_resume_rewrites_exactly_the_lost_chunk_with_several_chunks_per_work_group(tiny_root, tmp_path):
    """Record with two chunks per work group; delete one hook chunk's file and another's marker: the same
    command runs only the groups holding them and rewrites those chunks byte for byte, touching no other."""
    from solu_core.record import RecordStats, record
    from solu_core.record_config import CorpusText, RecordConfig

    out = tmp_path / "s"
    # 32 contexts of 64 per chunk: batches of 64 contexts = 2 chunks per work group
    cfg = RecordConfig(text=CorpusText(tiny_root / "corpus"), n_tokens=8192 * 2, device="cpu", chunk_tokens=2048,
                       batch_size=64)
    first = RecordStats()
    record(tiny_root / "models" / "solu_ln", out, cfg, progress=False, stats=first)
    assert first.groups == [0, 1, 2, 3]
    st = Store.open(out)
    mid, post = st.hook_for(0, "hook_mid"), st.hook_for(0, "hook_post")
    files = {f: f.read_bytes() for f in out.rglob("c/*/0") if f.is_file()}
    stamps = {f: f.stat().st_mtime_ns for f in files}
    (out / mid / "c" / "5" / "0").unlink()
    chunkio.clear_marker(out, schema.done_path(post), 2)
    again = RecordStats()
    record(tiny_root / "models" / "solu_ln", out, cfg, progress=False, stats=again)
    assert again.groups == [1, 2]  # chunk 2 is in group 1, chunk 5 in group 2
    rewritten = {out / mid / "c" / "5" / "0", out / post / "c" / "2" / "0"}
    for f, data in files.items():
        assert f.read_bytes() == data, f
        if f not in rewritten:
            assert f.stat().st_mtime_ns == stamps[f], f"{f} was rewritten"
    assert Store.open(out).complete


def test_filter_splits_on_the_word_and_never_inside_words():
    from neurobrowse.browsing.filtering import Clause, parse_filter

    assert parse_filter("label ~ hand") == [Clause("label", "~", "hand")]
    assert parse_filter("label ~ brandy and top_token = sand, kurtosis > 3 && density < 0.5") == [
        Clause("label", "~", "brandy"), Clause("top_token", "==", "sand"), Clause("kurtosis", ">", 3.0),
        Clause("density", "<", 0.5)]


def test_top_and_bottom_k_break_ties_at_the_kth_slot_by_the_lower_position():
    """Equal values straddling the k-th slot, spread over chunks in reverse order: the kept ones are the
    lowest positions, the same whichever chunk they arrived in (the suite's only other tie sat at the top)."""
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((4 * 512, 20)) * 0.1).astype(np.float16)
    tied = [1900, 1300, 700, 100, 1500, 300]  # six equal values for the 8 - 5 = 3 free slots, latest chunks first
    x[[11, 600, 1200, 1700, 1999], 7] = np.float16(30), np.float16(29), np.float16(28), np.float16(27), np.float16(26)
    x[tied, 7] = np.float16(9)
    x[[13, 601, 1201, 1701, 1998], 8] = (-np.float16(30), -np.float16(29), -np.float16(28), -np.float16(27),
                                         -np.float16(26))
    x[tied, 8] = -np.float16(9)
    toks = rng.integers(0, 50, x.shape[0]).astype(np.int32)
    p = pass1(x, toks, 50, 0, 4, k=8)
    assert list(p.top_pos[7]) == [11, 600, 1200, 1700, 1999, 100, 300, 700]
    assert list(p.bot_pos[8]) == [13, 601, 1201, 1701, 1998, 100, 300, 700]
    order, _ = brute_order(x, True)
    assert np.array_equal(p.top_pos, order[:, :8])
    border, _ = brute_order(x, False)
    assert np.array_equal(p.bot_pos, border[:, :8])


def test_sim_score_equals_a_brute_force_cross_fitted_correlation():
    """sim_score against numpy on random data: prediction = the token's mean activation in the other half
    of the contexts (by context parity), the neuron's mean where the token is unseen there; score =
    Pearson r of prediction and truth over the valid evaluation positions. Exact to float rounding."""
    from store.measures.scores import sim_score

    rng = np.random.default_rng(5)
    L, n_pos, N, V = 4, 400, 6, 12
    toks = rng.integers(0, V, n_pos).astype(np.int32)
    toks[toks == 11] = 10  # token 11 never occurs: fallback path via a position below
    acts = rng.standard_normal((n_pos, N)) + (toks[:, None] % 3) * np.arange(N)[None] * 0.5
    parity = (np.arange(n_pos) // L) % 2
    ts = np.zeros((2, V, N))
    tc = np.zeros((2, V), np.int64)
    for p in range(n_pos):
        ts[parity[p], toks[p]] += acts[p]
        tc[parity[p], toks[p]] += 1
    only_even = 7  # make token 7 appear in even contexts only: odd positions of it do not exist,
    ts[1, only_even], tc[1, only_even] = 0, 0  # and even ones are predicted with the fallback mean
    pos = np.stack([rng.choice(n_pos, 40, replace=False) for _ in range(N)])
    pos[:, -3:] = -1
    val = np.take_along_axis(acts.T, np.clip(pos, 0, None), 1)
    mean_all = acts.mean(0) + 0.25
    got = sim_score(toks, L, ts, tc, pos, val, mean_all)
    for i in range(N):
        keep = pos[i] >= 0
        p, y = pos[i][keep], val[i][keep]
        other = 1 - parity[p]
        cnt = tc[other, toks[p]]
        pred = np.where(cnt > 0, ts[other, toks[p], i] / np.maximum(cnt, 1), mean_all[i])
        assert got[i] == pytest.approx(np.corrcoef(pred, y)[0, 1], abs=1e-6), i


def test_label_writes_are_all_or_nothing(tmp_path):
    """A write that fails inside SQLite (a trigger raising, as a constraint or I/O error would) leaves
    neither the event nor the current label behind, for one label and for a batch."""
    import sqlite3

    from store.labels.label import Label, LabelError
    from store.labels.db import LabelDB

    path = tmp_path / "l.sqlite"
    db = LabelDB(path)
    run, hook = "r" * 8, "blocks.0.mlp.hook_post"
    db.set_label(run, hook, 1, verdict="interpretable")
    raw = sqlite3.connect(path)
    raw.execute("CREATE TRIGGER fail_current BEFORE INSERT ON current WHEN NEW.neuron = 13 "
                "BEGIN SELECT RAISE(ABORT, 'injected failure'); END")
    raw.commit()
    raw.close()
    with pytest.raises(LabelError, match="injected failure"):
        db.set_label(run, hook, 13, verdict="interpretable")
    assert db.history(run, hook, 13) == [] and db.get(run, hook, 13) is None  # no orphan event
    batch = [Label(run_uuid=run, hook=hook, neuron=n, verdict="unsure") for n in (10, 11, 13, 14)]
    with pytest.raises(LabelError, match="injected failure"):
        db.set_many(batch)
    assert [n for n in (10, 11, 13, 14) if db.get(run, hook, n) or db.history(run, hook, n)] == []
    assert db.get(run, hook, 1).verdict == "interpretable"


# ---- rebuilding an index: beside the old one, swapped in whole, one run at a time --------------------------
def _page(st, hook, n):
    v = st.neuron(hook, n)
    return (tuple(s.position for s in v.top), tuple(s.position for s in v.samples["random"]))


def test_index_force_with_a_damaged_dense_chunk_keeps_the_old_index_browsable(tiny_stores, tmp_path):
    from tests.builders import run_cli

    path = _copy(tiny_stores["gelu"], tmp_path)
    st = Store.open(path)
    hook = st.hooks[0]
    before = {n: _page(st, hook, n) for n in (0, 5, 100)}
    table = st.neuron_table(hook)["max_act"].copy()
    f = path / hook / "c" / "3" / "0"
    raw = bytearray(f.read_bytes())
    raw[len(raw) // 3] ^= 0x10
    f.write_bytes(bytes(raw))
    r = run_cli(["index", str(path), "--force", "--quiet"])
    assert r.returncode == 2 and "fails its Crc32c checksum" in r.stderr and f"verify --repair {path}" in r.stderr
    fresh = Store.open(path)
    assert fresh.is_indexed(hook)
    assert {n: _page(fresh, hook, n) for n in before} == before
    assert np.array_equal(fresh.neuron_table(hook)["max_act"], table)
    r = run_cli(["verify", "--quiet", str(path)])
    assert r.returncode == 1 and f"{hook}/c/3/0" not in r.stdout and "c/3/0: fails its Crc32c" in r.stdout
    assert f"index/{hook}" in r.stdout and "index/_rebuild" not in r.stdout  # the old index is intact


def test_index_force_swaps_the_new_index_in_whole_under_a_reader(tiny_stores, tmp_path):
    """A reader paging through neurons while `index --force` rebuilds with another seed sees, for every
    page, the old index's page or the new one's: never a mix, never an error."""
    import threading

    from store.index import IndexConfig, index_store

    path = _copy(tiny_stores["gelu"], tmp_path)
    st = Store.open(path)
    hook = st.hooks[0]
    neurons = list(range(0, st.d_mlp, 16))
    old = {n: _page(st, hook, n) for n in neurons}
    seen, errors, stop = [], [], threading.Event()

    def reader():
        i = 0
        while not stop.is_set():
            n = neurons[i % len(neurons)]
            try:
                seen.append((n, _page(st, hook, n)))
            except Exception as e:  # noqa: BLE001 - the test reports any
                errors.append(e)
            i += 1

    t = threading.Thread(target=reader)
    t.start()
    try:
        index_store(path, force=True, progress=False, config=IndexConfig(seed=7))
    finally:
        stop.set()
        t.join()
    new = {n: _page(Store.open(path), hook, n) for n in neurons}
    assert errors == []
    assert any(new[n] != old[n] for n in neurons)  # another seed draws other samples
    assert all(page in (old[n], new[n]) for n, page in seen) and len(seen) > len(neurons)
    assert _page(st, hook, neurons[1]) == new[neurons[1]]  # the open reader moved on to the new index
    assert not (path / "index" / "_rebuild").exists() or not any((path / "index" / "_rebuild").iterdir())


def test_garbage_index_metadata_does_not_stop_index_force(tiny_stores, tmp_path):
    from tests.builders import run_cli

    path = _copy(tiny_stores["gelu"], tmp_path)
    hook = Store.open(path).hooks[0]
    (path / schema.index_path(hook) / "zarr.json").write_text("{not json")
    r = run_cli(["show", str(path), "--layer", "0", "--neuron", "3"])
    assert r.returncode == 2 and f"neurobrowse index --force {path}" in r.stderr
    r = run_cli(["index", str(path), "--force", "--quiet"])
    assert r.returncode == 0, r.stderr
    assert run_cli(["verify", "--quiet", str(path)]).returncode == 0
    assert run_cli(["show", str(path), "--layer", "0", "--neuron", "3"]).returncode == 0


def test_two_index_runs_at_once_take_turns(tiny_stores, tmp_path):
    """Two `neurobrowse index --force` processes on one store: the second waits for the first (and says
    so); both succeed and the index is whole."""
    import os
    import subprocess
    import sys

    path = _copy(tiny_stores["gelu"], tmp_path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    cmd = [sys.executable, "-m", "neurobrowse", "index", str(path), "--force", "--quiet"]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert any("is being indexed by process" in err and "waiting" in err for _, err in outs), outs
    from tests.builders import run_cli

    assert run_cli(["verify", "--quiet", str(path)]).returncode == 0


def test_every_group_of_a_store_opens_as_an_xarray_datatree(solu):
    import warnings

    import xarray as xr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zarr's notes on unconsolidated metadata and v3 extensions
        tree = xr.open_datatree(solu.path, engine="zarr", consolidated=False)
    groups = set(tree.groups)
    hook = solu.hooks[0]
    assert {"/", "/done", "/logit", f"/index/{hook}", f"/index/{hook}/_state"} <= groups
    assert tree[hook].dims == (schema.TOKEN_DIM, schema.NEURON_DIM) and tree[hook].shape == (solu.n_tokens, solu.d_mlp)
    assert tree["done"][schema.TOKENS].dims == (schema.MARKER_DIM,)
    assert tree[f"index/{hook}"]["top_values"].shape == (solu.d_mlp, solu.index_state(hook)["k"])
    np.testing.assert_array_equal(tree[f"index/{hook}"]["top_values"].values,
                                  np.asarray(solu.index_array(hook, "top_values")[...]))


def test_study_report_plots_shares_of_0_and_100_percent(tmp_path):
    """n = 60 with 60 (or 0) interpretable: the Wilson bound is 0.9999999999999998 next to a share of 1.0;
    the report's error bars must not go negative (matplotlib refuses them)."""
    from neurobrowse.stats import wilson_interval
    from neurobrowse.study.results import ModelResult
    from neurobrowse.study.report import plot_report

    res = []
    for name, k in (("GeLU", 0), ("SoLU-LN", 60)):
        lo, hi = wilson_interval(k, 60)
        res.append(ModelResult(name=name, act_fn=name.lower(), n_items=60, n_ratings=60, interpretable=k,
                               not_interpretable=60 - k, unsure=0, share=k / 60, ci_low=lo, ci_high=hi,
                               per_rater={"a": (k, 60)}))
    out = tmp_path / "report.png"
    plot_report({"models": res, "fisher": None}, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 1000


def test_a_marker_file_left_empty_by_a_kill_counts_as_not_written(written):
    """`kill -9` while a marker file is being written leaves it empty: the store reads as incomplete with
    that chunk pending (the writer rewrites it), never as a checksum error."""
    path = written[0]
    (path / schema.done_path(HOOKS[1]) / "c" / "3").write_bytes(b"")
    st = Store.open(path)
    assert st.done_chunks() == st.n_chunks - 1
    assert synthetic_writer(path, n_tokens=32 * 20).pending_chunks(HOOKS[1]) == [3]
