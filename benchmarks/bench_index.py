"""Index speed against its floor and the named baselines, side by side on one store, medians.

    .venv/bin/python benchmarks/bench_index.py --tokens 1048576 --neurons 2048 --repeats 3

Builds (once, reused) a store of GeLU-like float16 activations with store.writer.StoreWriter
(zstd-1 + Crc32c chunks, as `record` writes them), then times over the same hook:

  floor        read + decode every chunk through store.reader.Store (what any pass must do)
  pass1        the indexer's first pass (compute_partial: top-k + bottom-k with windows, histogram,
               moments, density, per-token sums)
  pass2        the second pass (quantile-bin samples with windows)
  index_store  both passes + finalize (writes the index arrays)
  topk         top-k alone: read + store.kernels.topk_chunk, streaming
  torch_topk   read + torch.topk(dim=0) per chunk, merged with the running top-k (same k)
  dask_topk    dask.array.from_zarr(...).topk(k, axis=0) and .argtopk(k, axis=0), computed together

and prints the ratios the issue asks for (pass1 / floor speed, torch / topk, dask / topk time).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from store import kernels, schema  # noqa: E402
from store.indexer import _ChunkSource, compute_partial, compute_sample_partial, index_store, sample_thresholds  # noqa: E402
from store.reader import Store  # noqa: E402

HOOK = "blocks.0.mlp.hook_post"


def build_store(path: Path, n_tokens: int, n_neurons: int, vocab: int = 8192, context_len: int = 128) -> Path:
    from tokenizers import Tokenizer, models

    from store.writer import StoreWriter

    if (path / "zarr.json").exists() and Store.open(path).complete:
        return path
    tok = Tokenizer(models.WordLevel({f"w{i}": i for i in range(vocab)}, unk_token="w0"))
    cfg = {"d_mlp": n_neurons, "n_layers": 1, "d_vocab": vocab, "act_fn": "gelu", "d_model": 512, "n_ctx": context_len}
    w = StoreWriter.create_or_resume(path, model_config=cfg, hooks=[HOOK], n_tokens=n_tokens, context_len=context_len,
                                     tokenizer_json=tok.to_str(), manifest={"checkpoint_hash": "bench"}, fsync=False)
    rng = np.random.default_rng(0)
    for c in w.pending_all():
        a, b = w.chunk_rows(c)
        z = rng.standard_normal((b - a, n_neurons), dtype=np.float32) - 1.0
        acts = (0.5 * z * (1 + np.tanh(0.7978845608 * (z + 0.044715 * z**3)))).astype(np.float16)  # GeLU-like
        w.write_chunk(schema.TOKENS, c, rng.integers(0, vocab, b - a).astype(np.int32))
        w.write_chunk(schema.DOC_STARTS, c, np.zeros(b - a, np.uint8))
        w.write_chunk(HOOK, c, acts)
    zero = np.zeros((n_neurons, schema.K_LOGIT), np.int32)
    w.write_logit_effects(0, zero, zero.astype(np.float32), zero, zero.astype(np.float32))
    w.finish()
    return path


def t_floor(path: Path) -> float:
    src = _ChunkSource(Store.open(path), HOOK)
    t = time.perf_counter()
    for c in range(src.n_chunks):
        src.chunk(c)
    return time.perf_counter() - t


def t_pass1(path: Path, k: int) -> float:
    t = time.perf_counter()
    compute_partial(path, HOOK, 0, Store.open(path).n_chunks, k)
    return time.perf_counter() - t


def t_pass2(path: Path, k: int) -> float:
    n = Store.open(path).n_chunks
    qb = sample_thresholds(compute_partial(path, HOOK, 0, 1, k))
    t = time.perf_counter()
    compute_sample_partial(path, HOOK, 0, n, qb)
    return time.perf_counter() - t


def t_index_store(path: Path, k: int) -> float:
    t = time.perf_counter()
    index_store(path, k=k, force=True, progress=False)
    return time.perf_counter() - t


def t_topk(path: Path, k: int) -> float:
    src = _ChunkSource(Store.open(path), HOOK)
    N = src.n_neurons
    t = time.perf_counter()
    key = np.full((N, k), -1, np.int32)
    pos = np.full((N, k), -1, np.int64)
    worst = np.zeros(N, np.int32)
    for c, row0, bits in src.chunks(0, src.n_chunks):
        kernels.topk_chunk(kernels.transposed(bits), row0, key, pos, worst)
    return time.perf_counter() - t


def t_torch(path: Path, k: int) -> float:
    import torch

    src = _ChunkSource(Store.open(path), HOOK)
    t = time.perf_counter()
    vals = idx = None
    for c, row0, bits in src.chunks(0, src.n_chunks):
        x = torch.from_numpy(bits.view(np.float16)).float()  # [R, N]
        v, i = torch.topk(x, k, dim=0)
        i = i + row0
        if vals is not None:
            v, j = torch.topk(torch.cat([vals, v]), k, dim=0)
            i = torch.gather(torch.cat([idx, i]), 0, j)
        vals, idx = v, i
    return time.perf_counter() - t


def t_dask(path: Path, k: int) -> float:
    import dask
    import dask.array as da

    t = time.perf_counter()
    x = da.from_zarr(str(path), component=HOOK)
    dask.compute(x.topk(k, axis=0), x.argtopk(k, axis=0))
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=1 << 20)
    ap.add_argument("--neurons", type=int, default=2048)
    ap.add_argument("--k", type=int, default=schema.DEFAULT_K)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--slow-repeats", type=int, default=1, help="repeats for torch and dask (slow)")
    ap.add_argument("--dir", default=None, help="where to build the store (default: a temp dir, removed after)")
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = ap.parse_args()

    tmp = None
    root = Path(args.dir) if args.dir else Path(tmp := tempfile.mkdtemp(prefix="bench_index_"))
    path = root / f"store_{args.tokens}x{args.neurons}"
    t = time.perf_counter()
    build_store(path, args.tokens, args.neurons)
    print(f"store {path}: {args.tokens:,} tokens x {args.neurons} neurons, built/reused in {time.perf_counter() - t:.1f} s")
    st = Store.open(path)
    raw_mb = st.n_tokens * st.d_mlp * 2 / 1e6
    disk_mb = st.size_on_disk(HOOK) / 1e6
    print(f"hook {HOOK}: {raw_mb:.0f} MB raw float16, {disk_mb:.0f} MB on disk, {st.n_chunks} chunks of "
          f"{st.chunk_tokens} rows; numba threads {os.environ.get('NUMBA_NUM_THREADS', 'default')}, k={args.k}")
    # warm: compile kernels, fill the page cache
    compute_partial(path, HOOK, 0, 1, args.k)
    t_floor(path)

    runs = {"floor": (t_floor, args.repeats), "pass1": (t_pass1, args.repeats), "topk": (t_topk, args.repeats),
            "pass2": (t_pass2, args.repeats), "index_store": (t_index_store, 1),
            "torch_topk": (t_torch, args.slow_repeats), "dask_topk": (t_dask, args.slow_repeats)}
    times: dict[str, list[float]] = {n: [] for n in runs}
    for rep in range(max(r for _, r in runs.values())):  # interleaved, so load changes hit all alike
        for name, (fn, reps) in runs.items():
            if rep < reps:
                times[name].append(fn(path) if name == "floor" else fn(path, args.k))
    med = {n: statistics.median(v) for n, v in times.items()}
    for n, v in med.items():
        print(f"  {n:<12} {v:8.2f} s   {raw_mb / v:8.0f} MB/s   {st.n_tokens / v / 1e6:6.2f} Mtok/s   runs {len(times[n])}")
    ratios = {
        "pass1_speed_vs_floor": med["floor"] / med["pass1"],
        "topk_speed_vs_floor": med["floor"] / med["topk"],
        "torch_topk_time_vs_topk": med["torch_topk"] / med["topk"],
        "dask_topk_time_vs_topk": med["dask_topk"] / med["topk"],
        "pass2_speed_vs_floor": med["floor"] / med["pass2"],
    }
    print("ratios (targets: pass1 >= 0.7x floor speed, torch >= 10x and dask >= 3x slower than top-k)")
    for n, v in ratios.items():
        print(f"  {n:<26} {v:6.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "median_s": med, "ratios": ratios}, indent=1))
    if tmp:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
