"""Recording on a Dask cluster: workers run disjoint work groups of whole chunks into one store.

The client opens the recording exactly as ``solu_core.record.record`` does (``open_recording``:
checks, manifest, store creation or resume, logit effects), reads the completion markers, and
submits one task per few *work groups* still pending. Each worker loads the checkpoint and the
corpus once (cached per worker process), attaches its own ``StoreWriter`` to the store, and runs
``record_group`` — the same function, batches and floats as the single-process loop — writing
each whole chunk and then its marker. Groups never share a chunk, and markers are one Zarr chunk
each, so concurrent writers never touch the same file.

Faults: a worker that dies mid-task loses nothing that has a marker; Dask reruns the task on
another worker and it rewrites the group's chunks (same bytes). A killed client or scheduler
leaves markers naming exactly the chunks on disk; the same command resumes with the rest. The
client calls ``StoreWriter.finish`` last (every marker and chunk file checked, ``complete`` set).

GPUs: with ``--scheduler local:N`` the cluster is a ``dask_cuda.LocalCUDACluster`` (one worker per
GPU, each seeing one device) when dask_cuda is installed and GPUs are present; without dask_cuda,
workers on a multi-GPU machine pick ``cuda:{worker index % GPUs}``.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from solu_core.record_config import RecordConfig
from solu_core.record import (
    RecordError, RecordStats, compute_group, open_recording, record_group, write_logit_effects,
)


@dataclass
class DaskRecordConfig:
    groups_per_task: int | None = None  # work groups per task; None: ~tasks_per_worker tasks per worker
    tasks_per_worker: int = 8  # when groups_per_task is None: load balance vs per-task overhead
    max_groups_per_task: int = 16  # cap, so a retried task redoes little work
    # with --index each task (leaf) also saves and merges its partial index, whose unit samples alone are
    # ~90 KB per neuron and hook (50 units x 10 samples x 81-token windows): fewer, longer tasks
    leaves_per_worker: int = 2


# ---- the worker side ------------------------------------------------------------------------------------

_WORKER_STATE: dict = {}  # per worker process: ("model", ...) -> (ck, split); ("writer", store, run uuid) -> writer


def _worker_device(device: str) -> str:
    """'auto' on a worker: its own GPU when several are visible to it (no dask_cuda pinning)."""
    if device != "auto":
        return device
    import torch

    if not torch.cuda.is_available():
        return "cpu"
    n = torch.cuda.device_count()
    if n <= 1:
        return "cuda"
    try:
        from distributed import get_worker

        name = get_worker().name
        index = int(name) if str(name).isdigit() else abs(hash(str(name)))
    except (ValueError, ImportError):
        index = 0
    return f"cuda:{index % n}"


def _worker_state(spec: dict):
    """(checkpoint, split, writer) for a task: the model and corpus are kept per worker process
    across recordings (keyed by checkpoint hash), the writer per store and run uuid."""
    from store.format.writer import StoreWriter

    mkey = ("model", spec["checkpoint"], spec["checkpoint_hash"], spec["device"], spec["corpus_dir"])
    model = _WORKER_STATE.get(mkey)
    if model is None:
        from solu_core.corpus.folder import load_split
        from solu_core.checkpoint import load_checkpoint

        ck = load_checkpoint(spec["checkpoint"], device=_worker_device(spec["device"]))
        if ck.hash != spec["checkpoint_hash"]:
            raise RecordError(f"the checkpoint at {spec['checkpoint']} on this worker is not the one the client "
                              f"loaded (hash {ck.hash[:12]} vs {spec['checkpoint_hash'][:12]}); workers must see "
                              f"the same files at the same paths")
        _WORKER_STATE.clear()  # one model at a time per worker: free an older one
        model = _WORKER_STATE[mkey] = (ck, load_split(spec["corpus_dir"], "val"))
    wkey = ("writer", spec["out"], spec["run_uuid"])
    writer = _WORKER_STATE.get(wkey)
    if writer is None:
        for k in [k for k in _WORKER_STATE if k[0] == "writer"]:
            del _WORKER_STATE[k]
        writer = _WORKER_STATE[wkey] = StoreWriter.attach(spec["out"], fsync=spec["fsync"])
    return model[0], model[1], writer


def _stats_dict(stats: RecordStats) -> dict:
    return {"tokens": stats.tokens, "bytes": stats.bytes, "model_s": stats.model_s, "write_s": stats.write_s}


def _record_leaf(spec: dict, ispec: dict, g0: int, g1: int, pending: dict[str, list[int]], units: dict | None
                 ) -> tuple[dict, dict]:
    """Task: run work groups g0..g1-1, write their pending chunks and fold every chunk into the
    index of each hook (store.index.stream.ChunkFold: units given, or fixed by this leaf's first
    ``hold`` chunks for leaf 0), then save the results in the index group when the leaf ran for at
    least ``save_after_s`` seconds. Returns ({hook: (p1, s1)}, timing stats)."""
    import numpy as np

    from store.index import IndexGroup
    from store.index.stream import ChunkFold
    from store.index.dask_run import leaf_name
    from store.format.pipeline import write_chunks

    t_start = time.perf_counter()
    ck, split, writer = _worker_state(spec)
    pend = {name: set(v) for name, v in pending.items()}
    stats = RecordStats()
    per_group = spec["per_group"]
    folds = {h: ChunkFold(h, ispec["k"], ispec["vocab"], tuple(ispec["window"]), ispec["context_len"],
                          ispec["chunk_tokens"], ispec["seed"], chunk0=g0 * per_group,
                          umap=None if units is None else units[h], hold=ispec["hold"])
             for h in ispec["hooks"]}
    for g in range(g0, g1):
        chunks = compute_group(ck.model, writer, split, spec["hooks"], g, per_group, spec["batch_ctx"], stats)
        t0 = time.perf_counter()
        stats.bytes += write_chunks(writer, chunks, pend)
        for c in chunks:
            for h, fold in folds.items():
                fold.add(c.index, np.ascontiguousarray(c.acts[h]).view(np.uint16), c.tokens)
        stats.write_s += time.perf_counter() - t0
    parts = {}
    save = time.perf_counter() - t_start >= ispec["save_after_s"]  # else cheaper to run again after a kill
    for h, fold in folds.items():
        fold.start()  # a leaf 0 shorter than the held-back chunks (a short recording)
        parts[h] = (fold.p1.canonical(), fold.s1.canonical())
        if save:
            IndexGroup(spec["out"], h).save_part(leaf_name(g0, g1), {"p1": parts[h][0], "s1": parts[h][1]})
    return parts, _stats_dict(stats)


def _record_groups(spec: dict, groups: list[int], pending: dict[str, list[int]]) -> dict:
    """Task: run work groups ``groups`` and write their pending chunks. Returns timing stats."""
    ck, split, writer = _worker_state(spec)
    pend = {name: set(v) for name, v in pending.items()}
    stats = RecordStats()
    for g in groups:
        record_group(ck.model, writer, split, spec["hooks"], g, spec["per_group"], spec["batch_ctx"], pend, stats)
    return _stats_dict(stats)


# ---- the client side ------------------------------------------------------------------------------------


def _leaf_stats(result) -> dict:
    return result[1]


def record_dask(checkpoint_dir: str | Path, out: str | Path, client, cfg: RecordConfig | None = None, *,
                config: DaskRecordConfig | None = None, progress: bool = True,
                stats: RecordStats | None = None) -> Path:
    """``solu_core.record.record`` with the chunks run by the workers of ``client``; same store.

    ``cfg.device`` is what each worker uses ("auto": its GPU when it has one, else CPU); the client
    itself loads the model on the CPU only to create the store and the logit effects (a checkpoint
    and its corpus: ``cfg.text`` is a CorpusText).
    ``cfg.index``: each task also indexes the chunks it records (store.index.dask_run.plan_stream_index: the
    same index as ``record`` then ``index``, without a read of the store); ``cfg.dense=False`` (needs
    ``cfg.index``) keeps no dense activations. ``cfg.index_config``: store.index.IndexConfig (k, seed, window).
    """
    from store.index.dask_cluster import dask_errors, n_workers, progress_bar

    rec = cfg if cfg is not None else RecordConfig()
    cfg = config or DaskRecordConfig()
    if rec.index_backend == "torch":  # each task folds its chunks with the host kernels (ChunkFold)
        raise RecordError("--index-backend torch runs in one process only; on Dask each task indexes with numba: "
                          "leave out --index-backend, or record without --scheduler")
    device, fsync, index, index_config = rec.device, rec.fsync, rec.index, rec.index_config
    t_start = time.perf_counter()
    stats = stats if stats is not None else RecordStats()
    plan = open_recording(checkpoint_dir, out, rec.replace(device="cpu"), progress=progress)
    w = plan.writer
    write_logit_effects(plan, stats)
    pending = plan.pending()
    groups = plan.groups(pending)
    spec = {"checkpoint": str(plan.ck.path), "checkpoint_hash": plan.ck.hash, "device": device,
            "corpus_dir": str(plan.corpus_dir), "out": str(plan.out), "run_uuid": w.manifest["run_uuid"],
            "fsync": fsync, "hooks": plan.hooks, "per_group": plan.per_group, "batch_ctx": plan.batch_ctx}
    nonce = uuid.uuid4().hex[:8]  # keys unique to this run
    splan = None
    if index:
        from store.index.dask_run import plan_stream_index

        n_groups = -(-w.n_chunks // plan.per_group)
        per_leaf = cfg.groups_per_task or min(cfg.max_groups_per_task,
                                              max(1, -(-n_groups // (n_workers(client) * cfg.leaves_per_worker))))
        splan = plan_stream_index(plan.out, plan.per_group, per_leaf, index_config)
    futures, weights, roots, tasks = [], {}, {}, []

    def chunk_set(gs) -> set[int]:
        return {c for g in gs for c in range(g * plan.per_group, min(w.n_chunks, (g + 1) * plan.per_group))}

    if splan is not None:  # every leaf not saved yet runs (records its groups and indexes their chunks)
        from store.index.dask_run import stream_index_leaves

        def run_leaf(i: int, g0: int, g1: int, units):
            chunks = chunk_set(range(g0, g1))
            sub = {name: sorted(v & chunks) for name, v in pending.items()}
            f = client.submit(_record_leaf, spec, splan.spec, g0, g1, sub, units, pure=False,
                              priority=1 if i == 0 else 0,
                              key=f"neurobrowse-record-{plan.out.name}-leaf{i}-{g0}-{g1 - 1}-{nonce}")
            tasks.append(f)
            stats.groups.extend(range(g0, g1))
            r = client.submit(_leaf_stats, f, key=f"neurobrowse-stats-{i}-{nonce}")
            futures.append(r)
            weights[r.key] = sum(w.chunk_rows(c)[1] - w.chunk_rows(c)[0] for c in chunks)
            return f

        roots, _run = stream_index_leaves(client, splan, run_leaf, f"neurobrowse-index-{plan.out.name}-{nonce}")
    elif groups:
        per_task = cfg.groups_per_task or min(cfg.max_groups_per_task,
                                              max(1, -(-len(groups) // (n_workers(client) * cfg.tasks_per_worker))))
        for i in range(0, len(groups), per_task):
            gs = groups[i:i + per_task]
            chunks = chunk_set(gs)
            sub = {name: sorted(v & chunks) for name, v in pending.items()}
            f = client.submit(_record_groups, spec, gs, sub, pure=False,
                              key=f"neurobrowse-record-{plan.out.name}-{gs[0]}-{gs[-1]}-{nonce}")
            futures.append(f)
            weights[f.key] = sum(w.chunk_rows(c)[1] - w.chunk_rows(c)[0] for c in chunks)
        stats.groups.extend(groups)
    done = plan.n_tokens - sum(weights.values())
    summary = {}
    with dask_errors(f"recording {plan.out}"):
        try:
            for fut in progress_bar(futures, total=plan.n_tokens, initial=done, unit="tok",
                                    enabled=progress and bool(futures), desc=f"record {plan.out.name} (dask)",
                                    weights=weights):
                r = fut.result()  # raises the task's error (a NeurobrowseError names the chunk or file)
                stats.tokens += r["tokens"]
                stats.bytes += r["bytes"]
                stats.model_s += r["model_s"]
                stats.write_s += r["write_s"]
            w.finish()
            if splan is not None:
                from store.index.dask_run import stream_index_finish

                summary = stream_index_finish(client, splan, roots, f"neurobrowse-index-{plan.out.name}-{nonce}")
        except BaseException:
            try:  # what has markers (and saved leaves) stays; the same command resumes the rest
                client.cancel(futures + tasks + list(roots.values()))
            except Exception:  # the scheduler is gone: nothing left to cancel
                pass
            raise
        finally:
            plan.release()  # the lock on --out (store.format.atomic.record_lock)
    stats.wall_s += time.perf_counter() - t_start
    if progress:
        print(f"recorded {stats.tokens:,} tokens x {len(plan.hooks)} hooks into {plan.out} on Dask: "
              f"{stats.wall_s:.1f} s wall, workers' model {stats.model_s:.1f} s, writer {stats.write_s:.1f} s"
              + (f"; indexed {len(summary)} hooks while recording" if summary else ""))
    return plan.out


__all__ = ["DaskRecordConfig", "record_dask"]


def record_on(scheduler: str | None, checkpoint_dir: str | Path, out: str | Path, cfg: RecordConfig | None = None,
              *, progress: bool = True, stats: RecordStats | None = None) -> Path:
    """Record in this process (``scheduler`` None: ``solu_core.record.record``) or on the Dask cluster
    ``scheduler`` names (``record_dask``, one worker per GPU for ``local:N`` unless ``cfg.device`` is cpu);
    the same store either way. ``cfg.index``: index while recording in this process or, on Dask, in each
    task for the chunks it records. ``cfg.dense=False``: keep no dense activations (needs ``cfg.index``)."""
    from solu_core.record import record
    from store.index.dask_cluster import ClusterConfig, local_or_dask

    cfg = cfg if cfg is not None else RecordConfig()

    def on_dask(client) -> Path:
        return record_dask(checkpoint_dir, out, client, cfg, progress=progress, stats=stats)

    gpus = cfg.device != "cpu"
    return local_or_dask(scheduler, lambda: record(checkpoint_dir, out, cfg, progress=progress, stats=stats),
                         on_dask, ClusterConfig(gpus=gpus))
