"""Dask: `local:2` index and record equal the single-process ones on a real tiny store; a worker
SIGKILLed mid-task and a client SIGKILLed mid-recording still end in an identical store; a bad
--scheduler is a clear error within seconds. One LocalCluster(2) is shared by the module."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

from store import schema
from store.format.reader import Store
from tests.builders import LEAF_CHUNK_TOKENS, record_index_dask
from tests.helpers import assert_same_index

import distributed  # noqa: E402  (the `distributed` extra is part of the dev set-up)

from store.index.dask_cluster import SchedulerError, dask_client, parse_scheduler  # noqa: E402
from store.index.dask_run import DaskIndexConfig, index_store_dask  # noqa: E402
from solu_core.record_config import CorpusText, RecordConfig

# index arrays summed in floating point (another summation order -> rounding differences only)
FP_ARRAYS = {"mean", "var", "skewness", "kurtosis", "top_token_means", "sim_score"}


@pytest.fixture(scope="module")
def client():
    with dask_client("local:2") as c:
        yield c


def _unindexed_copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    shutil.rmtree(dst / schema.INDEX_GROUP, ignore_errors=True)
    # drop the index group from the root's listing too (zarr v3 discovers children from the tree)
    assert not Store.open(dst).is_indexed(Store.open(dst).hooks[0])
    return dst


SAMPLE_ARRAYS = ("sample_positions", "sample_values", "sample_context_tokens", "sample_context_acts")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- bad schedulers ---------------------------------------------------------------------------------


def test_bad_scheduler_is_a_clear_error_within_seconds(tmp_path, capsys, monkeypatch):
    from neurobrowse.cli import main

    for bad in ("local:0", "local:x", "tcp://", "cluster"):
        with pytest.raises(SchedulerError, match="--scheduler"):
            parse_scheduler(bad)
    assert parse_scheduler("local:3").n_workers == 3
    assert parse_scheduler("tcp://10.0.0.5:8786").address == "tcp://10.0.0.5:8786"

    addr = f"tcp://127.0.0.1:{_free_port()}"  # nothing listens there
    # refused and unknown addresses are answered by the probe before distributed is tried (its client
    # retries until connect_timeout_s and then says "no Dask scheduler answered at ... within")
    with pytest.raises(SchedulerError, match="no Dask scheduler at .*refused") as e:
        with dask_client(addr):
            pass
    assert "answered" not in str(e.value)
    with pytest.raises(SchedulerError, match="the host 'no-such-host.invalid' is unknown"):
        with dask_client("tcp://no-such-host.invalid:8786"):
            pass
    with pytest.raises(SchedulerError, match="does not exist"):
        with dask_client(str(tmp_path / "scheduler.json")):
            pass
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(SchedulerError, match="not a Dask scheduler file"):
        with dask_client(str(tmp_path / "bad.json")):
            pass

    # the CLI: `error: ...` and exit 2, for both verbs
    assert main(["index", str(tmp_path / "store"), "--scheduler", addr]) == 2
    assert main(["record", str(tmp_path / "ck"), "--out", str(tmp_path / "s"), "--scheduler", "local:zero"]) == 2
    err = capsys.readouterr().err
    assert f"error: no Dask scheduler at {addr}" in err and "error: --scheduler 'local:zero'" in err

    # Dask not installed: the message says how to get it
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(SchedulerError, match=r"pip install neurobrowse\[distributed\]"):
        with dask_client("local:1"):
            pass


def _wait_for(event_name: str) -> bool:
    return distributed.Event(event_name).wait(timeout=60)


def test_cancelled_work_is_a_clear_error_that_says_resume(client):
    from store.index.dask_cluster import dask_errors

    gate = distributed.Event("neurobrowse-test-gate", client=client)
    fut = client.submit(_wait_for, "neurobrowse-test-gate", pure=False)
    client.cancel(fut)  # what a lost scheduler does to every pending future
    try:
        with pytest.raises(SchedulerError, match="run the same command again to resume"):
            with dask_errors("indexing STORE"):
                fut.result()
    finally:
        gate.set()  # free the worker thread if the task had started


# ---- index --------------------------------------------------------------------------------------------


def test_local2_index_equals_single_process_index(tiny_stores, client, tmp_path):
    ref = tiny_stores["solu_ln"]  # indexed by store.index.index_store (single process)
    st = _unindexed_copy(ref, tmp_path / "dask")
    out = index_store_dask(st, client, progress=False)
    assert set(out) == set(Store.open(ref).hooks) and all(s["n_tokens"] == Store.open(ref).n_tokens
                                                         for s in out.values())
    assert_same_index(ref, st, close=FP_ARRAYS, atol=1e-9)
    # rerun: skipped; --force with another task size: same tree result for the exact arrays
    assert all(s.get("skipped") for s in index_store_dask(st, client, progress=False).values())
    index_store_dask(st, client, force=True, progress=False, config=DaskIndexConfig(chunks_per_task=2))
    assert_same_index(ref, st, close=FP_ARRAYS, atol=1e-9)


def test_dask_index_resumes_a_stopped_single_process_index(tiny_stores, client, tmp_path):
    from store.index import IndexConfig, index_store

    ref = tiny_stores["gelu"]
    st = _unindexed_copy(ref, tmp_path / "resume")
    r = index_store(st, progress=False, config=IndexConfig(stop_after_chunks=2))  # like a kill after a save
    assert any(s.get("stopped") for s in r.values())
    index_store_dask(st, client, progress=False)
    assert_same_index(ref, st, close=FP_ARRAYS, atol=1e-9)


class _KillOnce(distributed.WorkerPlugin):
    """SIGKILLs the worker process the first time a task whose key contains ``match`` starts
    executing on it (one shot across restarts, through an O_EXCL marker file)."""

    def __init__(self, marker: str, match: str):
        self.marker, self.match = marker, match

    def transition(self, key, start, finish, **kwargs):
        if finish == "executing" and self.match in str(key):
            try:
                fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                return
            os.write(fd, f"{os.getpid()} {key}".encode())
            os.close(fd)
            os.kill(os.getpid(), signal.SIGKILL)


def test_killed_worker_is_retried_and_the_index_is_identical(tiny_stores, client, tmp_path):
    ref = tiny_stores["solu_ln"]
    clean = _unindexed_copy(ref, tmp_path / "clean")
    index_store_dask(clean, client, progress=False, config=DaskIndexConfig(chunks_per_task=1))
    st = _unindexed_copy(ref, tmp_path / "killed")
    marker = tmp_path / "killed.txt"
    pids_before = set(client.run(os.getpid).values())
    client.register_plugin(_KillOnce(str(marker), "-p1-2:3"), name="kill-once")
    try:
        index_store_dask(st, client, progress=False, config=DaskIndexConfig(chunks_per_task=1))
    finally:
        client.unregister_worker_plugin("kill-once")
    killed_pid = int(marker.read_text().split()[0])
    assert killed_pid in pids_before  # a real worker process died mid-task ...
    client.wait_for_workers(2, timeout=60)
    assert killed_pid not in set(client.run(os.getpid).values())  # ... and the nanny replaced it
    assert_same_index(clean, st, close=())  # fixed merge tree: bit for bit, moments included
    assert_same_index(ref, st, close=FP_ARRAYS, atol=1e-9)


# ---- record -------------------------------------------------------------------------------------------


def _assert_same_recording(a: Path, b: Path) -> None:
    ga, gb = zarr.open_group(a, mode="r"), zarr.open_group(b, mode="r")
    sa = Store.open(a)
    names = [schema.TOKENS, schema.DOC_STARTS, schema.TOKENIZER_JSON, *sa.hooks]
    names += [f"{schema.logit_path(layer)}/{k}" for layer in sa.layers for k in schema.LOGIT_ARRAYS]
    for name in names:
        assert np.array_equal(ga[name][...], gb[name][...]), name
    assert Store.open(b).complete


def test_local2_record_equals_single_process_record(tiny_root, tiny_stores, client, tmp_path):
    from solu_core.dask_record import record_dask
    from tests.builders import TINY_CHUNK_TOKENS, TINY_TOKENS

    out = record_dask(tiny_root / "models" / "solu_ln", tmp_path / "rec", client,
                      RecordConfig(text=CorpusText(tiny_root / "corpus"), n_tokens=TINY_TOKENS, device="cpu",
                                   chunk_tokens=TINY_CHUNK_TOKENS), progress=False)
    _assert_same_recording(tiny_stores["solu_ln"], out)


class _KillClientOnce(distributed.WorkerPlugin):
    """SIGKILLs the client process (pid read from a file) the first time a recording task finishes."""

    def __init__(self, pid_file: str, marker: str):
        self.pid_file, self.marker = pid_file, marker

    def transition(self, key, start, finish, **kwargs):
        if finish == "memory" and str(key).startswith("neurobrowse-record-"):
            try:
                fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                return
            os.close(fd)
            os.kill(int(Path(self.pid_file).read_text()), signal.SIGKILL)


def test_killed_client_leaves_a_store_the_same_command_resumes(tiny_root, tiny_stores, client, tmp_path):
    from neurobrowse.cli import main
    from tests.builders import TINY_CHUNK_TOKENS, TINY_TOKENS

    out = tmp_path / "rec"
    args = ["record", str(tiny_root / "models" / "gelu"), "--out", str(out), "--tokens", str(TINY_TOKENS),
            "--corpus", str(tiny_root / "corpus"), "--chunk-tokens", str(TINY_CHUNK_TOKENS), "--device", "cpu",
            "--quiet", "--scheduler", client.scheduler.address]
    pid_file, marker = tmp_path / "client.pid", tmp_path / "killed"
    client.register_plugin(_KillClientOnce(str(pid_file), str(marker)), name="kill-client")
    try:
        # the client writes its own pid before it starts: the plugin can read it whenever a task finishes
        code = ("import os, sys; from pathlib import Path; Path(sys.argv[1]).write_text(str(os.getpid())); "
                "from neurobrowse.cli import main; sys.exit(main(sys.argv[2:]))")
        proc = subprocess.Popen([sys.executable, "-c", code, str(pid_file), *args], cwd=Path(__file__).parents[1],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, err = proc.communicate(timeout=120)
    finally:
        client.unregister_worker_plugin("kill-client")
    assert proc.returncode == -signal.SIGKILL, err.decode()[-2000:]
    assert marker.exists()
    killed = Store.open(out)
    assert not killed.complete  # the client died before finish(): markers are all there is
    # the same command resumes from the markers and ends in the single-process store
    assert main(args) == 0
    _assert_same_recording(tiny_stores["gelu"], out)


# ---- record --index on Dask: each task indexes the chunks it records -------------------------------------


@pytest.fixture(scope="module")
def streamed_dense_none(tiny_root, tmp_path_factory):
    """The tiny SoLU-LN model recorded with `record --index --dense none` in one process (the reference
    of the Dask recordings below: same chunks, same sample units)."""
    from solu_core.record import record
    from tests.builders import TINY_TOKENS

    out = tmp_path_factory.mktemp("streamed") / "store"
    record(tiny_root / "models" / "solu_ln", out,
           RecordConfig(text=CorpusText(tiny_root / "corpus"), n_tokens=TINY_TOKENS, chunk_tokens=LEAF_CHUNK_TOKENS,
                        device="cpu", index=True, dense=False), progress=False)
    return out


def test_local2_record_index_dense_none_equals_the_single_process_one(tiny_root, tiny_stores, streamed_dense_none,
                                                                      client, tmp_path):
    from solu_core.record import RecordStats

    stats = RecordStats()
    out = record_index_dask(tiny_root, tmp_path / "rec", client, stats=stats)
    st, ref = Store.open(out), Store.open(streamed_dense_none)
    assert st.complete and not st.dense and not any((out / h).exists() for h in st.hooks)
    assert np.array_equal(np.asarray(st.tokens[:]), np.asarray(ref.tokens[:]))
    assert sorted(stats.groups) == list(range(40))  # every group once, by the leaves
    # same samples (same units), moments to rounding
    assert_same_index(streamed_dense_none, out, close=FP_ARRAYS, atol=1e-9)
    # and the index of `record` then `index`, but for the samples of the neurons counted inexact
    assert_same_index(tiny_stores["solu_ln"], out, close=FP_ARRAYS, atol=1e-9, skip=SAMPLE_ARRAYS)
    exact = Store.open(tiny_stores["solu_ln"])
    for hook in st.hooks:
        inexact = st.index_state(hook)["samples_inexact_neurons"]
        assert inexact == ref.index_state(hook)["samples_inexact_neurons"]
        differs = ~np.all(np.asarray(st.index_array(hook, "sample_positions"))
                          == np.asarray(exact.index_array(hook, "sample_positions")), axis=(1, 2))
        assert differs.sum() <= inexact < st.d_mlp
        assert not (out / schema.index_path(hook) / schema.INDEX_STATE_GROUP).exists()  # leaves dropped


def test_local2_record_index_dense_keep_reads_back_only_for_uncertified_samples(tiny_root, tiny_stores,
                                                                               streamed_dense_none, client, tmp_path):
    """With --dense keep, a hook whose streamed samples are not certified for some neuron gets pass 2
    on the workers: the index is exactly that of `record` then `index`."""
    out = record_index_dask(tiny_root, tmp_path / "keep", client, dense=True)
    st = Store.open(out)
    assert st.dense
    assert_same_index(tiny_stores["solu_ln"], out, close=FP_ARRAYS, atol=1e-9)
    inexact = {h: Store.open(streamed_dense_none).index_state(h)["samples_inexact_neurons"] for h in st.hooks}
    assert any(inexact.values()), "this recording should leave some samples uncertified (else pass 2 is untested)"
    assert all(st.index_state(h)["samples_inexact_neurons"] == 0 for h in st.hooks)


def test_record_index_dense_keep_on_dask_via_the_cli(tiny_root, tiny_stores, client, tmp_path):
    from neurobrowse.cli import main
    from tests.builders import TINY_CHUNK_TOKENS, TINY_TOKENS

    out = tmp_path / "keep"
    args = ["record", str(tiny_root / "models" / "gelu"), "--out", str(out), "--tokens", str(TINY_TOKENS),
            "--corpus", str(tiny_root / "corpus"), "--chunk-tokens", str(TINY_CHUNK_TOKENS), "--device", "cpu",
            "--quiet", "--scheduler", client.scheduler.address, "--index", "--dense", "keep"]
    assert main(args) == 0
    _assert_same_recording(tiny_stores["gelu"], out)
    assert_same_index(tiny_stores["gelu"], out, close=FP_ARRAYS, atol=1e-9)
    st = Store.open(out)
    for hook in st.hooks:  # the final pass-1 result stays for appends, as `index` leaves it
        assert st.index_state(hook)["progress"]["p1"]["chunk_stop"] == schema.n_chunks(TINY_TOKENS, TINY_CHUNK_TOKENS)
    assert main([*args[:-2], "--dense", "none", "--out", str(tmp_path / "none")]) == 0
    assert_same_index(tiny_stores["gelu"], tmp_path / "none", close=FP_ARRAYS, atol=1e-9)


class _KillClientAfter(distributed.WorkerPlugin):
    """SIGKILLs the client process (pid read from a file) once ``n`` recording leaves have finished."""

    def __init__(self, pid_file: str, marker: str, n: int):
        self.pid_file, self.marker, self.n = pid_file, marker, n

    def transition(self, key, start, finish, **kwargs):
        if finish == "memory" and str(key).startswith("neurobrowse-record-") and "-leaf" in str(key):
            with open(self.marker, "a") as f:
                f.write(f"{key}\n")
            if len(Path(self.marker).read_text().splitlines()) == self.n:
                os.kill(int(Path(self.pid_file).read_text()), signal.SIGKILL)


def test_killed_record_index_client_resumes_without_recomputing_saved_leaves(tiny_root, streamed_dense_none,
                                                                             client, tmp_path):
    from solu_core.record import RecordStats

    out = tmp_path / "rec"
    pid_file, marker = tmp_path / "client.pid", tmp_path / "leaves.txt"
    code = ("import os, sys; from pathlib import Path; Path(sys.argv[1]).write_text(str(os.getpid())); "
            "import distributed; from tests.builders import record_index_dask; "
            "c = distributed.Client(sys.argv[3]); record_index_dask(Path(sys.argv[4]), Path(sys.argv[2]), c)")
    client.register_plugin(_KillClientAfter(str(pid_file), str(marker), 3), name="kill-client-leaves")
    try:
        proc = subprocess.Popen([sys.executable, "-c", code, str(pid_file), str(out), client.scheduler.address,
                                 str(tiny_root)], cwd=Path(__file__).parents[1], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        _, err = proc.communicate(timeout=180)
    finally:
        client.unregister_worker_plugin("kill-client-leaves")
    assert proc.returncode == -signal.SIGKILL, err.decode()[-2000:]
    deadline = time.monotonic() + 60  # the dead client's tasks still running finish (or are released)
    while any(client.processing().values()) and time.monotonic() < deadline:
        time.sleep(0.1)
    killed = Store.open(out)
    assert not killed.complete and not killed.is_indexed(killed.hooks[0])
    from store.index import IndexGroup

    saved = set.intersection(*(IndexGroup(out, h).part_names() for h in killed.hooks))
    assert "leaf_0_16" in saved and len(saved) >= 3  # leaf 0 and at least two more, saved whole
    stats = RecordStats()
    record_index_dask(tiny_root, out, client, stats=stats)
    done = {g for name in saved for g in range(int(name.split("_")[1]), int(name.split("_")[2]))}
    # the saved leaves were not recomputed (a leaf the dead client's last task saved meanwhile neither)
    assert stats.groups and set(stats.groups).isdisjoint(done) and len(set(stats.groups)) == len(stats.groups)
    assert_same_index(streamed_dense_none, out, close=FP_ARRAYS, atol=1e-9)
