"""Dask scale-out figures: single process vs `local:1` vs `local:2` on the same store, per-chunk
costs of record and index, and a projection to a 1B-token x 2048-neuron x 12-layer run.

    .venv/bin/python benchmarks/bench_dask.py                # ~5 min on the 2-core dev box
    .venv/bin/python benchmarks/bench_dask.py --tokens 65536 --repeats 1   # quicker

What it does, all with real parts:
1. builds a small real corpus (Python stdlib source) and trains a small SoLU-LN model for a few
   seconds (`tiny` preset, wider MLP), once, under --workdir;
2. records --tokens validation tokens single-process and on `local:1` / `local:2` (fresh store
   each time; medians of --repeats), checks the Dask stores equal the single-process one;
3. indexes one store single-process and on `local:1` / `local:2` (--force each time; medians),
   with the cluster already started and warmed by one run (start-up and that cold run are
   reported separately); recording likewise;
4. times a forward pass of a 12-layer d_model-512 d_mlp-2048 model on this CPU (per token) and a
   merge of two pass-1 partial results at that width, for the projection;
5. prints a JSON summary and writes it to --json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import time
from pathlib import Path
from solu_core.record_config import CorpusText, RecordConfig


def _median(xs):
    return statistics.median(xs) if xs else float("nan")


def build_model(work: Path, d_mlp: int) -> tuple[Path, Path]:
    from solu_core.corpus.config import CorpusConfig
    from solu_core.corpus.build import build_corpus
    from solu_core.train import train_pair

    corpus = work / "corpus"
    build_corpus(corpus, CorpusConfig(include_stdlib=True, vocab_size=512, max_mb=3.0, val_fraction=0.25, seed=0),
                 progress=False)
    models = train_pair(corpus, work / "models", preset="tiny", act_fns=("solu_ln",), steps=60, progress=False,
                        device="cpu", model_overrides={"d_mlp": d_mlp})
    return corpus, models["solu_ln"]


def store_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def time_record(ck, corpus, out, tokens, client=None) -> tuple[float, dict]:
    from solu_core.record import RecordStats, record

    shutil.rmtree(out, ignore_errors=True)
    stats = RecordStats()
    t = time.perf_counter()
    if client is None:
        record(ck, out, RecordConfig(text=CorpusText(corpus), n_tokens=tokens, device="cpu"), progress=False,
               stats=stats)
    else:
        from solu_core.dask_record import record_dask

        record_dask(ck, out, client, RecordConfig(text=CorpusText(corpus), n_tokens=tokens, device="cpu"),
                    progress=False, stats=stats)
    return time.perf_counter() - t, {"model_s": stats.model_s, "write_s": stats.write_s, "tokens": stats.tokens}


def time_index(store, client=None) -> float:
    t = time.perf_counter()
    if client is None:
        from store.index import index_store

        index_store(store, force=True, progress=False)
    else:
        from store.index.dask_run import index_store_dask

        index_store_dask(store, client, force=True, progress=False)
    return time.perf_counter() - t


def same_recording(a: Path, b: Path) -> bool:
    import numpy as np
    import zarr

    from store.format.reader import Store

    ga, gb = zarr.open_group(a, mode="r"), zarr.open_group(b, mode="r")
    return all(np.array_equal(ga[n][...], gb[n][...]) for n in ["tokens", "doc_starts", *Store.open(a).hooks])


def forward_cost_12l(batch: int = 4, ctx: int = 256, reps: int = 3) -> dict:
    """Seconds per token of a 12-layer d_model 512 / d_mlp 2048 forward with 12 hook_post caches, this CPU."""
    import torch

    from solu_core.model import ModelConfig, Transformer

    cfg = ModelConfig(n_layers=12, d_model=512, n_heads=8, d_head=64, d_mlp=2048, n_ctx=ctx, d_vocab=8192,
                      act_fn="gelu")
    model = Transformer(cfg).eval()
    hooks = [f"blocks.{i}.mlp.hook_post" for i in range(12)]
    x = torch.randint(0, cfg.d_vocab, (batch, ctx))
    with torch.no_grad():
        model.run_with_mlp_cache(x, hooks, dtype=torch.float16)  # warm-up
        ts = []
        for _ in range(reps):
            t = time.perf_counter()
            model.run_with_mlp_cache(x, hooks, dtype=torch.float16)
            ts.append(time.perf_counter() - t)
    n_params = sum(p.numel() for p in model.parameters())
    return {"s_per_token": _median(ts) / (batch * ctx), "params": n_params, "threads": torch.get_num_threads()}


def merge_cost(n_neurons: int = 2048, vocab: int = 8192, k: int = 32) -> dict:
    """Seconds and bytes of merging two pass-1 partials of one hook at this width."""
    import pickle

    from store.index import PartialIndex, merge_partials

    a = PartialIndex.empty("blocks.0.mlp.hook_post", k, n_neurons, vocab)
    b = PartialIndex.empty("blocks.0.mlp.hook_post", k, n_neurons, vocab)
    a.ranges, b.ranges = [(0, 1)], [(1, 2)]
    a.n = b.n = 1
    t = time.perf_counter()
    merge_partials(a, b)
    dt = time.perf_counter() - t
    return {"merge_s": dt, "partial_bytes": len(pickle.dumps(a, protocol=5))}


# ---- the projection: 1B tokens x 2048 neurons x 12 layers ----------------------------------------------

PROJ = dict(tokens=1e9, d_mlp=2048, layers=12, d_model=512, vocab=8192, n_ctx=256,
            fs_GBps=10.0,  # aggregate shared-file-system bandwidth assumed (a parallel FS; NFS is ~1)
            gpu_TFLOPs=300.0,  # sustained fp16 forward on one H100-class GPU (~30% of dense peak)
            compression_ratio=1.0)  # dense activations are stored uncompressed, Crc32c only (store/schema.py)


def steady_index_cost(path: Path = Path(__file__).resolve().parent / "out" / "bench_index.json") -> dict:
    """{"index_s_per_chunk_steady": s, ...} from bench_index.py's last run (index_store of its 512k x
    2048 store: both passes, saves, finalize, per 8 MiB chunk), or {} when it has not been run."""
    try:
        d = json.loads(path.read_text())
        n_chunks = d["args"]["tokens"] * d["args"]["neurons"] * 2 / (8 * 2**20)
        return {"index_s_per_chunk_steady": d["median_s"]["index/index_store"] / n_chunks,
                "index_steady_source": f"{path.name}: index_store {d['median_s']['index/index_store']:.2f} s "
                                       f"over {n_chunks:.0f} chunks of 8 MiB"}
    except (OSError, KeyError, ValueError):
        return {}


def projection(res: dict, p: dict = PROJ) -> dict:
    """Store size and time vs workers / GPUs, from this machine's measured per-chunk costs.

    Index: every 8 MiB chunk costs index_s_per_chunk (both passes, one single-threaded worker);
    workers scale linearly until the file system's bandwidth (two reads of the data) is the bound;
    the merge tree adds ~log2(tasks) merges of merge_s in sequence. Record: per GPU worker the
    forward is FLOP-bound (2 x params FLOP per token at gpu_TFLOPs) and the writer (Crc32c + fsync,
    one process per GPU) runs at this machine's measured MB/s; the slower of the two,
    bounded by the file system, sets the pace."""
    import math

    raw = p["tokens"] * p["d_mlp"] * 2 * p["layers"]  # bytes of float16 hook_post activations
    chunk_rows = max(p["n_ctx"], (8 * 2**20 // (2 * p["d_mlp"])) // p["n_ctx"] * p["n_ctx"])
    chunks = math.ceil(p["tokens"] / chunk_rows) * p["layers"]
    pc = res["per_chunk"]
    scale = (chunk_rows * p["d_mlp"] * 2) / pc["chunk_bytes"]  # per-chunk cost scales with its bytes
    # the steady per-chunk cost of a long index (bench_index.py's 256-chunk index_store) where measured:
    # this script's 16-chunk store is dominated by per-store costs (saves, finalize, start-up)
    idx_core_s = chunks * pc.get("index_s_per_chunk_steady", pc["index_s_per_chunk_both_passes"]) * scale
    fs_idx_s = 2 * raw / p["compression_ratio"] / (p["fs_GBps"] * 1e9)
    params = p["layers"] * (4 * p["d_model"] ** 2 + 2 * p["d_model"] * p["d_mlp"]) + p["d_model"] * p["vocab"]
    fwd_gpu_s = 2 * params * p["tokens"] / (p["gpu_TFLOPs"] * 1e12)
    write_s = raw / (pc["record_write_MBps"] * 1e6)
    fwd_cpu_s = res["forward_12l_2048"]["s_per_token"] * p["tokens"]
    fs_rec_s = raw / p["compression_ratio"] / (p["fs_GBps"] * 1e9)
    merge_s = res["merge_2048"]["merge_s"]
    out = {"assumptions": dict(p), "raw_TB": raw / 1e12, "stored_TB": raw / p["compression_ratio"] / 1e12,
           "solu_ln_with_hook_mid_TB": 2 * raw / p["compression_ratio"] / 1e12, "chunk_rows": chunk_rows,
           "chunk_files": chunks, "marker_files": chunks, "params": params,
           "index_core_hours": idx_core_s / 3600, "record_gpu_forward_hours_1gpu": fwd_gpu_s / 3600,
           "record_writer_hours_1proc": write_s / 3600, "record_cpu_forward_hours_1proc": fwd_cpu_s / 3600,
           "index_hours": {}, "record_hours_gpus": {}}
    for w in (1, 8, 64, 256):
        t = max(idx_core_s / w, fs_idx_s) + math.ceil(math.log2(max(2, 4 * w))) * 2 * merge_s
        out["index_hours"][w] = t / 3600
    for g in (1, 8, 32, 64):
        out["record_hours_gpus"][g] = max(fwd_gpu_s / g, write_s / g, fs_rec_s) / 3600
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", default=os.path.expanduser("~/.cache/neurobrowse-bench-dask"))
    ap.add_argument("--tokens", type=int, default=131072, help="tokens recorded (default 131072)")
    ap.add_argument("--d-mlp", type=int, default=1024, help="MLP width of the benchmark model (default 1024)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per configuration (medians)")
    ap.add_argument("--workers", default="1,2", help="local cluster sizes to time (default 1,2)")
    ap.add_argument("--json", default="benchmarks/out/bench_dask.json")
    ap.add_argument("--project-only", metavar="JSON", help="recompute the projection from a saved result file")
    args = ap.parse_args()
    if args.project_only:
        res = json.loads(Path(args.project_only).read_text())
        res["per_chunk"].update(steady_index_cost())
        res["projection"] = projection(res)
        print(json.dumps(res["projection"], indent=2))
        Path(args.project_only).write_text(json.dumps(res, indent=2))
        return 0

    from store.index.dask_cluster import dask_client
    from store.format.reader import Store

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    corpus, ck = build_model(work, args.d_mlp)
    res: dict = {"tokens": args.tokens, "d_mlp": args.d_mlp, "cpus": os.cpu_count(), "repeats": args.repeats}

    # ---- single process
    ref = work / "store_single"
    rec = [time_record(ck, corpus, ref, args.tokens) for _ in range(args.repeats)]
    st = Store.open(ref)
    n_chunks = -(-st.n_tokens // st.chunk_tokens)
    res["store"] = {"n_tokens": st.n_tokens, "hooks": st.hooks, "chunk_tokens": st.chunk_tokens,
                    "n_chunks_per_hook": n_chunks, "bytes_on_disk": store_bytes(ref),
                    "raw_activation_bytes": st.n_tokens * st.d_mlp * 2 * len(st.hooks)}
    res["record"] = {"single_s": _median([r[0] for r in rec]),
                     "single_model_s": _median([r[1]["model_s"] for r in rec]),
                     "single_write_s": _median([r[1]["write_s"] for r in rec])}
    time_index(ref)  # warm the Numba cache
    res["index"] = {"single_s": _median([time_index(ref) for _ in range(args.repeats)])}

    # ---- Dask
    for n in [int(x) for x in args.workers.split(",")]:
        t = time.perf_counter()
        with dask_client(f"local:{n}") as client:
            start_s = time.perf_counter() - t
            out = work / f"store_local{n}"
            # the first run on a fresh cluster pays for importing torch and loading the model in each worker
            res["record"][f"local{n}_cold_s"] = time_record(ck, corpus, out, args.tokens, client)[0]
            rec = [time_record(ck, corpus, out, args.tokens, client) for _ in range(args.repeats)]
            res["record"][f"local{n}_s"] = _median([r[0] for r in rec])
            # the workers' own model + writer time: wall minus this is Dask's (and the client's) share
            res["record"][f"local{n}_workers_busy_s"] = _median([r[1]["model_s"] + r[1]["write_s"] for r in rec])
            res["record"][f"local{n}_identical"] = same_recording(ref, out)
            res["index"][f"local{n}_cold_s"] = time_index(out, client)  # workers load Numba's cache, imports
            res["index"][f"local{n}_s"] = _median([time_index(out, client) for _ in range(args.repeats)])
        res[f"cluster_start_local{n}_s"] = start_s
    for key in ("record", "index"):
        r = res[key]
        for n in [int(x) for x in args.workers.split(",")]:
            r[f"local{n}_vs_single"] = r[f"local{n}_s"] / r["single_s"]

    # ---- per-chunk costs and the projection inputs
    n_hooks = len(res["store"]["hooks"])
    chunk_bytes = st.chunk_tokens * st.d_mlp * 2
    res["per_chunk"] = {
        "chunk_bytes": chunk_bytes,
        "index_s_per_chunk_both_passes": res["index"]["single_s"] / (n_chunks * n_hooks),
        "index_MBps_single": res["store"]["raw_activation_bytes"] / res["index"]["single_s"] / 1e6,
        "record_write_s_per_chunk": res["record"]["single_write_s"] / (n_chunks * n_hooks),
        "record_write_MBps": res["store"]["raw_activation_bytes"] / max(res["record"]["single_write_s"], 1e-9) / 1e6,
    }
    res["forward_12l_2048"] = forward_cost_12l()
    res["merge_2048"] = merge_cost()
    res["per_chunk"].update(steady_index_cost())
    res["projection"] = projection(res)
    print(json.dumps(res, indent=2))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
