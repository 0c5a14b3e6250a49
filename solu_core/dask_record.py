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

from solu_core.record import RecordError, RecordStats, open_recording, record_group, write_logit_effects


@dataclass
class DaskRecordConfig:
    groups_per_task: int | None = None  # work groups per task; None: ~tasks_per_worker tasks per worker
    tasks_per_worker: int = 8  # when groups_per_task is None: load balance vs per-task overhead
    max_groups_per_task: int = 16  # cap, so a retried task redoes little work


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
    from store.writer import StoreWriter

    mkey = ("model", spec["checkpoint"], spec["checkpoint_hash"], spec["device"], spec["corpus_dir"])
    model = _WORKER_STATE.get(mkey)
    if model is None:
        from solu_core import corpus as corpus_mod
        from solu_core.checkpoint import load_checkpoint

        ck = load_checkpoint(spec["checkpoint"], device=_worker_device(spec["device"]))
        if ck.hash != spec["checkpoint_hash"]:
            raise RecordError(f"the checkpoint at {spec['checkpoint']} on this worker is not the one the client "
                              f"loaded (hash {ck.hash[:12]} vs {spec['checkpoint_hash'][:12]}); workers must see "
                              f"the same files at the same paths")
        _WORKER_STATE.clear()  # one model at a time per worker: free an older one
        model = _WORKER_STATE[mkey] = (ck, corpus_mod.load_split(spec["corpus_dir"], "val"))
    wkey = ("writer", spec["out"], spec["run_uuid"])
    writer = _WORKER_STATE.get(wkey)
    if writer is None:
        for k in [k for k in _WORKER_STATE if k[0] == "writer"]:
            del _WORKER_STATE[k]
        writer = _WORKER_STATE[wkey] = StoreWriter.attach(spec["out"], fsync=spec["fsync"])
    return model[0], model[1], writer


def _record_groups(spec: dict, groups: list[int], pending: dict[str, list[int]]) -> dict:
    """Task: run work groups ``groups`` and write their pending chunks. Returns timing stats."""
    ck, split, writer = _worker_state(spec)
    pend = {name: set(v) for name, v in pending.items()}
    stats = RecordStats()
    for g in groups:
        record_group(ck.model, writer, split, spec["hooks"], g, spec["per_group"], spec["batch_ctx"], pend, stats)
    return {"tokens": stats.tokens, "bytes": stats.bytes, "model_s": stats.model_s, "write_s": stats.write_s}


# ---- the client side ------------------------------------------------------------------------------------


def record_dask(checkpoint_dir: str | Path, out: str | Path, client, *, n_tokens: int = 1 << 20,
                layers: list[int] | None = None, hooks: list[str] | None = None, batch_size: int | None = None,
                device: str = "auto", corpus_dir: str | Path | None = None, progress: bool = True,
                chunk_tokens: int | None = None, fsync: bool = True, config: DaskRecordConfig | None = None,
                stats: RecordStats | None = None) -> Path:
    """``solu_core.record.record`` with the chunks run by the workers of ``client``; same store.

    ``device`` is what each worker uses ("auto": its GPU when it has one, else CPU); the client
    itself loads the model on the CPU only to create the store and the logit effects.
    """
    from store.dask_cluster import dask_errors, n_workers, progress_bar

    cfg = config or DaskRecordConfig()
    t_start = time.perf_counter()
    stats = stats if stats is not None else RecordStats()
    plan = open_recording(checkpoint_dir, out, n_tokens=n_tokens, layers=layers, hooks=hooks, batch_size=batch_size,
                          device="cpu", corpus_dir=corpus_dir, progress=progress, chunk_tokens=chunk_tokens,
                          fsync=fsync)
    w = plan.writer
    write_logit_effects(plan, stats)
    pending = plan.pending()
    groups = plan.groups(pending)
    if groups:
        per_task = cfg.groups_per_task or min(cfg.max_groups_per_task,
                                              max(1, -(-len(groups) // (n_workers(client) * cfg.tasks_per_worker))))
        spec = {"checkpoint": str(plan.ck.path), "checkpoint_hash": plan.ck.hash, "device": device,
                "corpus_dir": str(plan.corpus_dir), "out": str(plan.out), "run_uuid": w.manifest["run_uuid"],
                "fsync": fsync, "hooks": plan.hooks,
                "per_group": plan.per_group, "batch_ctx": plan.batch_ctx}
        futures, weights = [], {}
        nonce = uuid.uuid4().hex[:8]  # keys unique to this run
        for i in range(0, len(groups), per_task):
            gs = groups[i:i + per_task]
            chunks = {c for g in gs for c in range(g * plan.per_group, min(w.n_chunks, (g + 1) * plan.per_group))}
            sub = {name: sorted(v & chunks) for name, v in pending.items()}
            f = client.submit(_record_groups, spec, gs, sub, pure=False,
                              key=f"neurobrowse-record-{plan.out.name}-{gs[0]}-{gs[-1]}-{nonce}")
            futures.append(f)
            weights[f.key] = sum(w.chunk_rows(c)[1] - w.chunk_rows(c)[0] for c in chunks)
        done = plan.n_tokens - sum(weights.values())
        with dask_errors(f"recording {plan.out}"):
            try:
                for fut in progress_bar(futures, total=plan.n_tokens, initial=done, unit="tok", enabled=progress,
                                        desc=f"record {plan.out.name} (dask)", weights=weights):
                    r = fut.result()  # raises the task's error (a NeurobrowseError names the chunk or file)
                    stats.tokens += r["tokens"]
                    stats.bytes += r["bytes"]
                    stats.model_s += r["model_s"]
                    stats.write_s += r["write_s"]
            except BaseException:
                try:
                    client.cancel(futures)  # what has markers stays; the same command resumes the rest
                except Exception:  # the scheduler is gone: nothing left to cancel
                    pass
                raise
        stats.groups.extend(groups)
    w.finish()
    stats.wall_s += time.perf_counter() - t_start
    if progress:
        print(f"recorded {stats.tokens:,} tokens x {len(plan.hooks)} hooks into {plan.out} on Dask: "
              f"{stats.wall_s:.1f} s wall, workers' model {stats.model_s:.1f} s, writer {stats.write_s:.1f} s")
    return plan.out


__all__ = ["DaskRecordConfig", "record_dask"]


def record_on(scheduler: str | None, checkpoint_dir: str | Path, out: str | Path, *, index: bool = False,
              dense: bool = True, **kwargs) -> Path:
    """Record in this process (``scheduler`` None: ``solu_core.record.record``) or on the Dask cluster
    ``scheduler`` names (``record_dask``, one worker per GPU for ``local:N`` unless device is cpu); the
    same store either way. ``kwargs`` as for ``record``. ``index``: index while recording in this
    process; on Dask the workers index the finished store (``index_store_dask``: a read of it).
    ``dense=False`` (no dense activations kept) is for this process only."""
    from solu_core.record import RecordError, record
    from store.dask_cluster import ClusterConfig, local_or_dask

    if scheduler and not dense:
        raise RecordError("--dense none is not available with --scheduler yet: record with --dense keep (with "
                          "--index the workers then index the store), or without --scheduler")

    def on_dask(client) -> Path:
        path = record_dask(checkpoint_dir, out, client, **kwargs)
        if index:
            from store.dask_index import index_store_dask

            index_store_dask(path, client, progress=kwargs.get("progress", True))
        return path

    gpus = kwargs.get("device", "auto") != "cpu"
    return local_or_dask(scheduler, lambda: record(checkpoint_dir, out, index=index, dense=dense, **kwargs),
                         on_dask, ClusterConfig(gpus=gpus))
