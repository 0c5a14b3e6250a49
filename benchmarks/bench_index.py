"""Index speed against its floor and the named baselines, side by side in one run, medians.

    .venv/bin/python benchmarks/bench_index.py                   # the figures in the README
    .venv/bin/python benchmarks/bench_index.py --tokens 131072 --topk-tokens 524288 --repeats 3  # quicker

Builds (once, reused under --dir) two stores of GeLU-like float16 activations with
store.format.writer.StoreWriter (Crc32c chunks, as `record` writes them) and a Zipf-distributed token
stream (like text: a few hundred tokens make up most occurrences):

  index store  --tokens x --neurons (default 512k x 2048, 2 GiB): a realistic hook of a 1-layer model
  top-k store  --topk-tokens x --topk-neurons (default 2M x 512, 2 GiB): the size of the torch.topk
               measurement in DESIGN.md (2M x 512 float32 topk(dim=0): 18 s), so the ratios show
               what the baselines cost at the sizes they are used at

and times, interleaved repeat by repeat so load changes hit all alike:

  floor        read + decode every chunk the way the passes read (Store.read_chunk: the chunk file read
               straight into its array, Crc32c checked; store.index.source.READ_AHEAD reads in flight)
  floor_cold   the same with the store's files dropped from the page cache first (posix_fadvise
               DONTNEED on every chunk file): what every pass over a store larger than RAM meets
  pass1_cold   pass 1 from a cold page cache, likewise
  pass1        the indexer's first pass (compute_partial: top-k + bottom-k with windows, histogram,
               moments, density, per-token sums), one sweep per chunk, next chunk read meanwhile
  pass2        the second pass (quantile-bin samples with windows)
  index_store  the whole index of a hook: one read (pass 1 + samples per unit) + checkpoint saves +
               finalize (writes the index arrays), as `neurobrowse index`
  index_two_pass  the same by the two-pass route (IndexConfig(one_read=False): pass 1, then pass 2
               for the quantile-bin samples)
  index_cold, index_two_pass_cold  both from a cold page cache
  topk         top-k alone: read + topk_kernels.topk_rows, streaming (the indexer's kernel style)
  topk_T       top-k alone with a transpose + column kernel (topk_kernels.topk_chunk)
  torch_topk   read + torch.topk(dim=0) per chunk (float32), merged with the running top-k (same k)
  torch_whole  read the whole hook, then one torch.topk(dim=0) over it (float32), as in DESIGN.md
  dask_topk    dask.array.from_zarr(...).topk(k, axis=0) and .argtopk(k, axis=0), computed together
  topk_mem     the top-k kernel alone over chunks already decoded in memory (no read)
  torch_mem    torch.topk(dim=0) over the whole hook already in memory as float32 (no read)

The headline of issue 12 (printed last, ratios in the JSON): the whole index from a cold page cache
against the cold read floor (index_cold_speed_vs_floor_cold, target >= 0.7) and the whole index warm
against the warm floor (index_store_speed_vs_floor). ``--only-index`` leaves out the top-k store and its
baselines, ``--no-two-pass`` the two-pass route.

Ratios (targets from issue 3): pass1 speed / floor speed >= 0.7 (warm: the store in the page
cache; cold: read from disk); torch time / topk time >= 10
(against the faster of the two torch ways); dask time / topk time >= 3. Every top-k above but the
two *_mem runs includes reading the store, so no ratio against torch can exceed
(floor + torch's compute) / floor; in_memory_torch_time_vs_topk compares the computations alone. The load average of the
machine is printed and stored: the dev box has 2 cores shared by other work, so compare ratios
within one run. Writes JSON to --json (default benchmarks/out/bench_index.json).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import topk_kernels  # noqa: E402  (benchmarks/topk_kernels.py)
from store import schema  # noqa: E402
from store.index import (  # noqa: E402
    ChunkSource, IndexConfig, compute_partial, compute_sample_partial, index_store, sample_thresholds,
)
from store.format.reader import Store  # noqa: E402

HOOK = "blocks.0.mlp.hook_post"
ROOT = Path(__file__).resolve().parent


def build_store(path: Path, n_tokens: int, n_neurons: int, vocab: int = 8192, context_len: int = 128) -> Path:
    """A complete store of one GeLU-like hook; reused when it already exists."""
    from scipy.special import ndtri
    from tokenizers import Tokenizer, models

    from store.format.writer import StoreWriter

    if (path / "zarr.json").exists() and Store.open(path).complete:
        return path
    tok = Tokenizer(models.WordLevel({f"w{i}": i for i in range(vocab)}, unk_token="w0"))
    cfg = {"d_mlp": n_neurons, "n_layers": 1, "d_vocab": vocab, "act_fn": "gelu", "d_model": 512, "n_ctx": context_len}
    w = StoreWriter.create_or_resume(path, model_config=cfg, hooks=[HOOK], n_tokens=n_tokens, context_len=context_len,
                                     tokenizer_json=tok.to_str(), manifest={"checkpoint_hash": "bench"}, fsync=False)
    rng = np.random.default_rng(0)
    # GeLU of N(-1, 1), drawn by inverse-CDF lookup from a 65536-entry table (cheap: the stores are GBs)
    z = ndtri((np.arange(65536) + 0.5) / 65536) - 1.0
    table = (0.5 * z * (1 + np.tanh(0.7978845608 * (z + 0.044715 * z**3)))).astype(np.float16)  # [65536]
    # Zipf(1.1) token ranks, mapped to shuffled ids (text-like frequencies)
    p = 1.0 / np.arange(1, vocab + 1) ** 1.1
    cdf = np.cumsum(p / p.sum())
    ids = rng.permutation(vocab).astype(np.int32)
    for c in w.pending_all():
        a, b = w.chunk_rows(c)
        acts = table[rng.integers(0, 65536, (b - a, n_neurons), dtype=np.uint16)]  # [R, N] float16, GeLU-like
        toks = ids[np.minimum(np.searchsorted(cdf, rng.random(b - a)), vocab - 1)]
        w.write_chunk(schema.TOKENS, c, toks)
        w.write_chunk(schema.DOC_STARTS, c, np.zeros(b - a, np.uint8))
        w.write_chunk(HOOK, c, acts)
    zero = np.zeros((n_neurons, schema.K_LOGIT), np.int32)
    w.write_logit_effects(0, zero, zero.astype(np.float32), zero, zero.astype(np.float32))
    w.finish()
    return path


def t_floor(path: Path, k: int) -> float:
    src = ChunkSource(Store.open(path), HOOK)
    t = time.perf_counter()
    for _c, _row0, _bits in src.chunks(0, src.n_chunks):  # the passes' own read path, read-ahead threads included
        pass
    return time.perf_counter() - t


def evict(path: Path) -> None:
    """Drop every file of the store from the page cache (clean pages only; the store was synced when
    built; os.sync() flushes any still dirty), so the next read comes from the disk."""
    os.sync()
    for root, _dirs, files in os.walk(path):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def t_floor_cold(path: Path, k: int) -> float:
    evict(path)
    return t_floor(path, k)


def t_pass1_cold(path: Path, k: int) -> float:
    evict(path)
    return t_pass1(path, k)


def t_pass1(path: Path, k: int) -> float:
    t = time.perf_counter()
    compute_partial(path, HOOK, 0, Store.open(path).n_chunks, k)
    return time.perf_counter() - t


_QBIN: dict = {}


def t_pass2(path: Path, k: int) -> float:
    n = Store.open(path).n_chunks
    if path not in _QBIN:
        _QBIN[path] = sample_thresholds(compute_partial(path, HOOK, 0, n, k))
    t = time.perf_counter()
    compute_sample_partial(path, HOOK, 0, n, _QBIN[path])
    return time.perf_counter() - t


def t_index_store(path: Path, k: int, one_read: bool = True) -> float:
    t = time.perf_counter()
    out = index_store(path, k=k, force=True, progress=False, config=IndexConfig(one_read=one_read))
    assert out[HOOK]["reads"] == (1 if one_read else 2), out
    return time.perf_counter() - t


def t_index_two_pass(path: Path, k: int) -> float:
    return t_index_store(path, k, one_read=False)


def t_index_cold(path: Path, k: int) -> float:
    evict(path)
    return t_index_store(path, k)


def t_index_two_pass_cold(path: Path, k: int) -> float:
    evict(path)
    return t_index_store(path, k, one_read=False)


def _topk(path: Path, k: int, transposed: bool) -> float:
    src = ChunkSource(Store.open(path), HOOK)
    N = src.n_neurons
    t = time.perf_counter()
    key = np.full((N, k), -1, np.int32)
    pos = np.full((N, k), -1, np.int64)
    worst = np.zeros(N, np.int32)
    for _, row0, bits in src.chunks(0, src.n_chunks):
        if transposed:
            topk_kernels.topk_chunk(topk_kernels.transposed(bits), row0, key, pos, worst)
        else:
            topk_kernels.topk_rows(bits, row0, key, pos, worst, topk_kernels.TOPK_BLOCK)
    return time.perf_counter() - t


def t_topk(path: Path, k: int) -> float:
    return _topk(path, k, False)


def t_topk_T(path: Path, k: int) -> float:
    return _topk(path, k, True)


def t_torch(path: Path, k: int) -> float:
    import torch

    src = ChunkSource(Store.open(path), HOOK)
    t = time.perf_counter()
    vals = idx = None
    for _, row0, bits in src.chunks(0, src.n_chunks):
        x = torch.from_numpy(bits.view(np.float16)).float()  # [R, N]
        v, i = torch.topk(x, k, dim=0)
        i = i + row0
        if vals is not None:
            v, j = torch.topk(torch.cat([vals, v]), k, dim=0)
            i = torch.gather(torch.cat([idx, i]), 0, j)
        vals, idx = v, i
    return time.perf_counter() - t


def t_torch_whole(path: Path, k: int) -> float:
    import torch

    src = ChunkSource(Store.open(path), HOOK)
    t = time.perf_counter()
    x = torch.empty((src.n_tokens, src.n_neurons), dtype=torch.float32)  # [T, N]
    for _, row0, bits in src.chunks(0, src.n_chunks):
        x[row0:row0 + bits.shape[0]] = torch.from_numpy(bits.view(np.float16))
    torch.topk(x, k, dim=0)
    del x
    return time.perf_counter() - t


_MEM: dict = {}


def _in_memory(path: Path):
    """Every chunk of the hook decoded into memory once: (list of (row0, uint16 [R, N]), float32 tensor [T, N])."""
    if path not in _MEM:
        import torch

        src = ChunkSource(Store.open(path), HOOK)
        chunks = [(row0, bits) for _c, row0, bits in src.chunks(0, src.n_chunks)]
        x = torch.empty((src.n_tokens, src.n_neurons), dtype=torch.float32)  # [T, N]
        for row0, bits in chunks:
            x[row0:row0 + bits.shape[0]] = torch.from_numpy(bits.view(np.float16))
        _MEM[path] = (chunks, x)
    return _MEM[path]


def t_topk_mem(path: Path, k: int) -> float:
    """Top-k kernel alone over chunks already in memory (no read): the compute part of ``topk``."""
    chunks, _x = _in_memory(path)
    N = chunks[0][1].shape[1]
    t = time.perf_counter()
    key = np.full((N, k), -1, np.int32)
    pos = np.full((N, k), -1, np.int64)
    worst = np.zeros(N, np.int32)
    for row0, bits in chunks:
        topk_kernels.topk_rows(bits, row0, key, pos, worst, topk_kernels.TOPK_BLOCK)
    return time.perf_counter() - t


def t_torch_mem(path: Path, k: int) -> float:
    """torch.topk(dim=0) + indices over the whole hook already in memory as float32 (DESIGN.md's measurement)."""
    import torch

    _chunks, x = _in_memory(path)
    t = time.perf_counter()
    torch.topk(x, k, dim=0)
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
    ap.add_argument("--tokens", type=int, default=1 << 19, help="tokens of the index store")
    ap.add_argument("--neurons", type=int, default=2048)
    ap.add_argument("--topk-tokens", type=int, default=1 << 21, help="tokens of the top-k store")
    ap.add_argument("--topk-neurons", type=int, default=512)
    ap.add_argument("--k", type=int, default=schema.DEFAULT_K)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--slow-repeats", type=int, default=3, help="repeats for torch, dask and index_store (slow)")
    ap.add_argument("--no-torch-whole", action="store_true",
                    help="skip the whole-array torch.topk (needs 4 B x tokens x neurons of RAM)")
    ap.add_argument("--dir", default="/tmp/neurobrowse_bench_index", help="where the stores are built (kept, reused)")
    ap.add_argument("--json", default=str(ROOT / "out" / "bench_index.json"))
    ap.add_argument("--only-index", action="store_true",
                    help="only the whole-index runs against the floors (no top-k store, no baselines)")
    ap.add_argument("--no-two-pass", action="store_true",
                    help="leave out the two-pass route (index_two_pass, index_two_pass_cold): half the time")
    args = ap.parse_args()
    topk_kernels.check()  # the top-k kernels timed below keep exactly numpy's top-k

    root = Path(args.dir)
    root.mkdir(parents=True, exist_ok=True)
    stores = {}
    sizes = {"index": (args.tokens, args.neurons), "topk": (args.topk_tokens, args.topk_neurons)}
    if args.only_index:
        del sizes["topk"]
    for name, (n, N) in sizes.items():
        path = root / f"store_{n}x{N}"
        t = time.perf_counter()
        build_store(path, n, N)
        st = Store.open(path)
        stores[name] = path
        print(f"{name} store {path}: {n:,} tokens x {N} neurons ({n * N * 2 / 2**30:.2f} GiB float16, "
              f"{st.size_on_disk(HOOK) / 2**30:.2f} GiB on disk, {st.n_chunks} chunks of {st.chunk_tokens} rows), "
              f"ready in {time.perf_counter() - t:.1f} s")
    for path in stores.values():  # warm: compile kernels, fill the page cache
        compute_partial(path, HOOK, 0, 1, args.k)
        _topk(path, args.k, False)
        _topk(path, args.k, True)
        t_floor(path, args.k)

    R, S = args.repeats, args.slow_repeats
    runs = [  # (name, store, function, repeats)
        ("floor", "index", t_floor, R), ("pass1", "index", t_pass1, R), ("pass2", "index", t_pass2, R),
        ("index_store", "index", t_index_store, S), ("index_two_pass", "index", t_index_two_pass, S),
        ("index_cold", "index", t_index_cold, S), ("index_two_pass_cold", "index", t_index_two_pass_cold, S),
        ("floor_cold", "index", t_floor_cold, S), ("pass1_cold", "index", t_pass1_cold, S),
        ("floor", "topk", t_floor, R), ("topk", "topk", t_topk, R), ("topk_T", "topk", t_topk_T, R),
        ("torch_topk", "topk", t_torch, S), ("dask_topk", "topk", t_dask, S),
    ]
    if not args.no_torch_whole:
        runs += [("torch_whole", "topk", t_torch_whole, S),
                 ("topk_mem", "topk", t_topk_mem, R), ("torch_mem", "topk", t_torch_mem, S)]
    runs = [r for r in runs if r[1] in stores and not (args.no_two_pass and "two_pass" in r[0])]
    times: dict[str, list[float]] = {f"{s}/{n}": [] for n, s, _, _ in runs}
    loads = [os.getloadavg()[0]]
    for rep in range(max(r for *_, r in runs)):
        for name, store, fn, reps in runs:
            if rep < reps:
                times[f"{store}/{name}"].append(fn(stores[store], args.k))
                print(f"  repeat {rep + 1}: {store}/{name} {times[f'{store}/{name}'][-1]:.2f} s "
                      f"(load {os.getloadavg()[0]:.1f})", flush=True)
        loads.append(os.getloadavg()[0])
    med = {n: statistics.median(v) for n, v in times.items()}

    mb = {}
    for name, path in stores.items():
        st = Store.open(path)
        mb[name] = st.n_tokens * st.d_mlp * 2 / 1e6
    print(f"\nload average (1 min) during the run: {min(loads):.1f} .. {max(loads):.1f} on {os.cpu_count()} cores; "
          f"numba threads {os.environ.get('NUMBA_NUM_THREADS', 'default')}, k={args.k}")
    print(f"{'store/step':<20} {'median s':>9} {'MB/s':>8} {'runs':>5}")
    for n, v in med.items():
        print(f"{n:<20} {v:9.2f} {mb[n.split('/')[0]] / v:8.0f} {len(times[n]):5d}")
    ratios = {
        "pass1_speed_vs_floor": med["index/floor"] / med["index/pass1"],
        "pass1_cold_speed_vs_floor_cold": med["index/floor_cold"] / med["index/pass1_cold"],
        "pass2_speed_vs_floor": med["index/floor"] / med["index/pass2"],
        "index_store_speed_vs_floor": med["index/floor"] / med["index/index_store"],
        "index_cold_speed_vs_floor_cold": med["index/floor_cold"] / med["index/index_cold"],
    }
    if not args.no_two_pass:
        ratios.update({
            "index_two_pass_speed_vs_floor": med["index/floor"] / med["index/index_two_pass"],
            "index_two_pass_cold_speed_vs_floor_cold": med["index/floor_cold"] / med["index/index_two_pass_cold"],
            "index_one_read_speed_vs_two_pass": med["index/index_two_pass"] / med["index/index_store"],
            "index_one_read_cold_speed_vs_two_pass_cold": med["index/index_two_pass_cold"] / med["index/index_cold"],
        })
    if "topk" in stores:
        torch_best = min(v for n, v in med.items() if n in ("topk/torch_topk", "topk/torch_whole"))
        ratios.update({
            "topk_speed_vs_floor": med["topk/floor"] / med["topk/topk"],
            "torch_time_vs_topk": torch_best / med["topk/topk"],
            "torch_chunked_time_vs_topk": med["topk/torch_topk"] / med["topk/topk"],
            "dask_time_vs_topk": med["topk/dask_topk"] / med["topk/topk"],
            "topk_transposed_time_vs_topk": med["topk/topk_T"] / med["topk/topk"],
        })
    if "topk/torch_whole" in med:
        ratios["torch_whole_time_vs_topk"] = med["topk/torch_whole"] / med["topk/topk"]
        ratios["in_memory_torch_time_vs_topk"] = med["topk/torch_mem"] / med["topk/topk_mem"]
    targets = {"pass1_speed_vs_floor": ">= 0.7", "pass1_cold_speed_vs_floor_cold": ">= 0.7",
               "torch_time_vs_topk": ">= 10", "dask_time_vs_topk": ">= 3", "index_cold_speed_vs_floor_cold": ">= 0.7"}
    print(f"\n{'ratio':<30} {'value':>7}  target")
    for n, v in ratios.items():
        print(f"{n:<30} {v:7.2f}  {targets.get(n, '')}")
    # the headline (issue 12): the whole `neurobrowse index` of the dense hook against reading it once
    print(f"\nwhole index of {mb['index']:.0f} MB: {med['index/index_cold']:.2f} s from a cold page cache = "
          f"{ratios['index_cold_speed_vs_floor_cold']:.2f}x the cold read floor ({med['index/floor_cold']:.2f} s; "
          f"target >= 0.7x); {med['index/index_store']:.2f} s warm = {ratios['index_store_speed_vs_floor']:.2f}x the "
          f"warm floor ({med['index/floor']:.2f} s)")
    out = {"args": vars(args), "machine": f"{os.cpu_count()} cores, shared with other work while measured",
           "load_avg_1min": loads, "median_s": med, "runs_s": times, "ratios": ratios,
           "stores": {n: str(p) for n, p in stores.items()}}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=1))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
