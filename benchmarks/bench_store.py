"""Store figures, side by side in one run, medians of repeats.

    .venv/bin/python benchmarks/bench_store.py                      # all parts, defaults below
    .venv/bin/python benchmarks/bench_store.py --parts writer --rows 65536 --neurons 2048 --repeats 5

Parts:
  writer   StoreWriter.write_chunk (Crc32c, uncompressed; completion markers) vs np.save of the same
           chunks as .npy files, interleaved, for GeLU-like and SoLU-like float16 activations;
           with and without fsync (the writer fsyncs each chunk before its marker by default; the
           fsync comparison fsyncs each .npy too). Model time is not in these numbers.
  record   a real recording (solu_core.record) of a tiny trained model: the model's share of the
           time vs the writer's, tokens/s.
  page     Store.neuron latency (p50 / p95 over random neurons, after one warm-up page) on an index
           at full size: 10M tokens x 2048 neurons (index arrays synthesized with the indexer's own
           array writer, token ids written; the dense part is not written: a page never reads it),
           the token windows derived from the tokens (as the indexer writes it) vs stored, interleaved.
  size     size on disk per million tokens per 1k neurons and compression ratio of the dense
           activations, GeLU vs SoLU-LN (hook_post and hook_mid), from real recordings.
  chunks   the sweep that chose schema.TARGET_CHUNK_BYTES: write MB/s by chunk size and codec.

The tiny models come from tests/builders.py (built into --work once, reused).
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

from store import schema  # noqa: E402
from store.format.reader import Store  # noqa: E402
from store.format.writer import StoreWriter, fsync_path  # noqa: E402
from solu_core.record_config import RecordConfig

TOKENIZER = json.dumps({"version": "1.0", "truncation": None, "padding": None, "added_tokens": [],
                        "normalizer": None, "pre_tokenizer": None, "post_processor": None, "decoder": None,
                        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                                  "ignore_merges": False, "vocab": {"a": 0, "b": 1}, "merges": []}})



def copy_with_stored_windows(path: Path, stored: Path, hook: str) -> None:
    """A copy of the store at ``path`` in ``stored`` whose index of ``hook`` also stores the token windows
    (schema.INDEX_DERIVED, which readers otherwise gather from the tokens), as indexes before did."""
    from store.index import IndexGroup

    shutil.rmtree(stored, ignore_errors=True)
    shutil.copytree(path, stored)
    st = Store.open(path)
    wins = {a: np.asarray(st.index_array(hook, a)[...]) for a in schema.INDEX_DERIVED}
    grp = IndexGroup(stored, hook)
    grp.write_arrays(grp.group, wins, {a: schema.INDEX_ARRAYS[a][1] for a in wins})

def synthetic(kind: str, rows: int, d: int, seed: int = 0) -> np.ndarray:
    """float16 [rows, d]: GeLU of a Gaussian pre-activation, or SoLU-LN-like (x * softmax(3x), LN'd)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, d), dtype=np.float32)
    if kind == "gelu":
        return (0.5 * x * (1 + np.tanh(0.79788456 * (x + 0.044715 * x**3)))).astype(np.float16)
    e = np.exp(3 * x - (3 * x).max(1, keepdims=True))
    y = x * e / e.sum(1, keepdims=True)
    y = (y - y.mean(1, keepdims=True)) / (y.std(1, keepdims=True) + 1e-5)
    return y.astype(np.float16)


def bench_writer(work: Path, rows: int, d: int, repeats: int) -> dict:
    out = {}
    ct = schema.chunk_tokens_for(d, 64)
    for kind in ("gelu", "solu_ln"):
        data = synthetic(kind, rows, d)
        for fsync in (False, True):
            tw, tn = [], []
            for r in range(repeats):
                for which in ("writer", "npsave") if r % 2 == 0 else ("npsave", "writer"):
                    p = work / f"w_{which}"
                    shutil.rmtree(p, ignore_errors=True)
                    if which == "writer":
                        w = StoreWriter.create_or_resume(
                            p, model_config={"d_mlp": d, "d_vocab": 2}, hooks=["blocks.0.mlp.hook_post"],
                            n_tokens=rows, context_len=64, tokenizer_json=TOKENIZER, manifest={},
                            chunk_tokens=ct, fsync=fsync)
                        t = time.perf_counter()
                        for c in range(w.n_chunks):
                            a, b = w.chunk_rows(c)
                            w.write_chunk("blocks.0.mlp.hook_post", c, data[a:b])
                        tw.append(time.perf_counter() - t)
                    else:
                        p.mkdir(parents=True)
                        t = time.perf_counter()
                        for c in range(0, rows, ct):
                            f = p / f"{c}.npy"
                            np.save(f, data[c:c + ct])
                            if fsync:
                                fsync_path(f)  # the same flush (file + directory entry) as the writer
                        tn.append(time.perf_counter() - t)
                    shutil.rmtree(p, ignore_errors=True)
            mw, mn = statistics.median(tw), statistics.median(tn)
            out[f"{kind}{'_fsync' if fsync else ''}"] = {
                "MB": data.nbytes / 1e6, "writer_MBps": data.nbytes / mw / 1e6, "npsave_MBps": data.nbytes / mn / 1e6,
                "ratio_writer_over_npsave": mn / mw, "chunk_rows": ct}
    return out


def bench_record(work: Path, n_tokens: int) -> dict:
    from solu_core.record import RecordStats, record
    from tests.builders import build_tiny_models

    models = build_tiny_models(work / "tiny")
    out = {}
    for act_fn, ck in models.items():
        p = work / f"rec_{act_fn}"
        shutil.rmtree(p, ignore_errors=True)
        st = RecordStats()
        record(ck, p, RecordConfig(n_tokens=n_tokens, device="cpu"), progress=False, stats=st)
        busy = st.model_s + st.write_s
        out[act_fn] = {"tokens": st.tokens, "tokens_per_s": st.tokens / st.wall_s, "model_s": st.model_s,
                       "write_s": st.write_s, "model_share": st.model_s / busy, "writer_share": st.write_s / busy,
                       "writer_MBps": st.bytes / st.write_s / 1e6, "wall_s": st.wall_s}
        shutil.rmtree(p, ignore_errors=True)
    return out


def _full_size_index(path: Path, n_tokens: int, d: int, vocab: int, k: int) -> str:
    """A store manifest + index arrays of full size (random contents of the right shapes)."""
    from store.index import IndexGroup

    hook = "blocks.0.mlp.hook_post"
    n_tokens = -(-n_tokens // 1024) * 1024  # whole contexts of 1024
    w = StoreWriter.create_or_resume(path, model_config={"d_mlp": d, "d_vocab": vocab, "act_fn": "gelu",
                                                         "n_layers": 1}, hooks=[hook], n_tokens=n_tokens,
                                     context_len=1024, tokenizer_json=TOKENIZER, manifest={}, fsync=False)
    rng = np.random.default_rng(0)
    W = schema.CONTEXT_BEFORE + 1 + schema.CONTEXT_AFTER
    B, S, T = len(schema.SAMPLE_BINS), schema.SAMPLES_PER_BIN, schema.TOP_TOKENS
    from store.index.kernels.histogram import HIST_BINS

    H = HIST_BINS
    f16 = lambda *s: rng.standard_normal(s).astype(np.float16)  # noqa: E731
    arrays = {
        "top_values": -np.sort(-rng.random((d, k), dtype=np.float32), 1),
        "top_positions": rng.integers(0, n_tokens, (d, k)),
        "top_context_tokens": rng.integers(0, vocab, (d, k, W)).astype(np.int32),
        "top_context_acts": f16(d, k, W),
        "bottom_values": np.sort(-rng.random((d, k), dtype=np.float32), 1),
        "bottom_positions": rng.integers(0, n_tokens, (d, k)),
        "bottom_context_tokens": rng.integers(0, vocab, (d, k, W)).astype(np.int32),
        "bottom_context_acts": f16(d, k, W),
        "quantile_edges": rng.random((d, len(schema.SAMPLE_QUANTILES)), dtype=np.float32),
        "sample_positions": rng.integers(0, n_tokens, (d, B, S)),
        "sample_values": rng.random((d, B, S), dtype=np.float32),
        "sample_context_tokens": rng.integers(0, vocab, (d, B, S, W)).astype(np.int32),
        "sample_context_acts": f16(d, B, S, W),
        "hist_counts": rng.integers(0, n_tokens // 100, (d, H)),
        "hist_edges": np.linspace(-10, 10, H + 1, dtype=np.float32),
        "mean": rng.random(d), "var": rng.random(d), "skewness": rng.random(d), "kurtosis": rng.random(d),
        "density": rng.random(d, dtype=np.float32),
        "token_count": rng.integers(0, 1000, vocab),
        "top_token_ids": rng.integers(0, vocab, (d, T)).astype(np.int32),
        "top_token_means": rng.random((d, T), dtype=np.float32),
        "top_token_counts": rng.integers(5, 1000, (d, T)),
        "token_rule_score": rng.random(d, dtype=np.float32), "sim_score": rng.random(d, dtype=np.float32),
    }
    for kind in ("top", "bottom"):  # distinct passages: one firing per context of 1024
        arrays[f"distinct_{kind}_values"] = arrays[f"{kind}_values"]
        arrays[f"distinct_{kind}_positions"] = np.sort(rng.choice(n_tokens // 1024, (d, k)), 1) * 1024 + 500
        arrays[f"distinct_{kind}_context_tokens"] = rng.integers(0, vocab, (d, k, W)).astype(np.int32)
        arrays[f"distinct_{kind}_context_acts"] = f16(d, k, W)
        arrays[f"distinct_{kind}_more"] = rng.integers(0, 4, (d, k))
    assert set(arrays) == set(schema.INDEX_ARRAYS)
    # as the indexer stores them: the token windows derived (gathered from the tokens by the reader)
    arrays = {n: np.ascontiguousarray(a, dtype=schema.INDEX_ARRAYS[n][0]) for n, a in arrays.items()
              if n not in schema.INDEX_DERIVED}
    grp = IndexGroup(path, hook)
    grp.write_arrays(grp.group, arrays, {n: dims for n, (_t, dims) in schema.INDEX_ARRAYS.items()})
    for c in range(w.n_chunks):  # the token ids the windows are gathered from
        a, b = w.chunk_rows(c)
        w.write_chunk(schema.TOKENS, c, rng.integers(0, vocab, b - a).astype(np.int32))
    ks = schema.K_LOGIT
    w.write_logit_effects(0, rng.integers(0, vocab, (d, ks)), rng.random((d, ks)), rng.integers(0, vocab, (d, ks)),
                          -rng.random((d, ks)))
    grp.set_attrs(complete=True, k=k, n_tokens=n_tokens, run_uuid=w.manifest["run_uuid"],
                  context_before=schema.CONTEXT_BEFORE, context_after=schema.CONTEXT_AFTER, distinct_lists=True)
    return hook


def _page_run(path: Path, hook: str, d: int, pages: int) -> dict:
    t = time.perf_counter()
    s = Store.open(path)
    s.neuron(hook, 0)
    first = time.perf_counter() - t
    rng = np.random.default_rng(1)
    ts = []
    for n in rng.integers(0, d, pages):
        t = time.perf_counter()
        s.neuron(hook, int(n))
        ts.append(time.perf_counter() - t)
    ts = np.array(ts) * 1e3
    return {"first_page_ms": first * 1e3, "p50_ms": float(np.percentile(ts, 50)),
            "p95_ms": float(np.percentile(ts, 95)), "max_ms": float(ts.max()),
            "index_MB": Store.open(path).size_on_disk(schema.index_path(hook)) / 1e6}


def bench_page(work: Path, n_tokens: int, d: int, vocab: int, pages: int, repeats: int = 3) -> dict:
    """Page latency of the index as written (token windows derived from the tokens) and of a copy that
    stores the windows (as indexes did before schema.INDEX_DERIVED), interleaved, medians of repeats."""
    path = work / "page_store"
    hook = "blocks.0.mlp.hook_post"
    if not (path / schema.index_path(hook) / "top_values").exists():
        shutil.rmtree(path, ignore_errors=True)
        _full_size_index(path, n_tokens, d, vocab, schema.DEFAULT_K)
    stored = work / "page_store_windows"
    if not (stored / schema.index_path(hook) / "top_context_tokens").exists():
        copy_with_stored_windows(path, stored, hook)
    runs: dict = {"derived": [], "stored": []}
    for _ in range(repeats):
        for label, p in (("derived", path), ("stored", stored)):
            runs[label].append(_page_run(p, hook, d, pages))
    out = {"n_tokens": n_tokens, "neurons": d, "vocab": vocab, "pages": pages, "repeats": repeats}
    for label, rs in runs.items():
        out[label] = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
    med = out["derived"]
    print(f"page, {n_tokens:,} tokens x {d} neurons: token windows derived p50 {med['p50_ms']:.1f} ms, p95 "
          f"{med['p95_ms']:.1f} ms, first page {med['first_page_ms']:.0f} ms, index {med['index_MB']:.0f} MB; "
          f"stored p50 {out['stored']['p50_ms']:.1f} ms, p95 {out['stored']['p95_ms']:.1f} ms, first page "
          f"{out['stored']['first_page_ms']:.0f} ms, index {out['stored']['index_MB']:.0f} MB "
          f"(load {os.getloadavg()[0]:.1f})", flush=True)
    out.update(p50_ms=med["p50_ms"], p95_ms=med["p95_ms"], first_page_ms=med["first_page_ms"],
               max_ms=med["max_ms"], index_MB=med["index_MB"])
    return out


def bench_size(work: Path, n_tokens: int, checkpoints: dict[str, Path] | None) -> dict:
    from solu_core.record import record
    from tests.builders import build_tiny_models

    models = checkpoints or build_tiny_models(work / "tiny")
    out = {}
    for act_fn, ck in models.items():
        p = work / f"size_{act_fn}"
        shutil.rmtree(p, ignore_errors=True)
        record(ck, p, RecordConfig(n_tokens=n_tokens, device="cpu", fsync=False), progress=False)
        s = Store.open(p)
        from numcodecs import Blosc, Zstd

        for h in s.hooks:
            disk = s.size_on_disk(h)
            raw = s.n_tokens * s.d_mlp * 2
            dense = np.ascontiguousarray(s.activations(h)[:])
            out[f"{act_fn} {h.split('.')[-1]}"] = {
                "tokens": s.n_tokens, "d_mlp": s.d_mlp,
                "MB_per_Mtok_per_1k_neurons": disk / 1e6 / (s.n_tokens / 1e6) / (s.d_mlp / 1e3),
                "compression_ratio": raw / disk,  # as stored (uncompressed + crc, by design)
                "zstd1_ratio": dense.nbytes / len(Zstd(level=1).encode(dense)),  # what compression would give
                "blosc_zstd_bitshuffle_ratio": dense.nbytes / len(
                    Blosc(cname="zstd", clevel=1, shuffle=Blosc.BITSHUFFLE).encode(dense))}
        shutil.rmtree(p, ignore_errors=True)
    return out


def bench_chunks(work: Path, d: int, rows: int) -> dict:
    import zarr
    from zarr.codecs import BloscCodec, Crc32cCodec, ZstdCodec

    codecs = {"none": [Crc32cCodec()], "zstd1": [ZstdCodec(level=1), Crc32cCodec()],
              "blosc-lz4-shuffle": [BloscCodec(cname="lz4", clevel=5, shuffle="shuffle", typesize=2), Crc32cCodec()],
              "blosc-zstd1-bitshuffle": [BloscCodec(cname="zstd", clevel=1, shuffle="bitshuffle", typesize=2),
                                         Crc32cCodec()]}
    out = {}
    for kind in ("gelu", "solu_ln"):
        data = synthetic(kind, rows, d)
        for mib in (2, 8, 32):
            crow = mib * 2**20 // (2 * d)
            for name, cc in codecs.items():
                p = work / "sweep"
                shutil.rmtree(p, ignore_errors=True)
                a = zarr.create_array(p, shape=data.shape, dtype="float16", chunks=(crow, d), compressors=cc,
                                      config=schema.ARRAY_CONFIG)
                t = time.perf_counter()
                for i in range(0, rows, crow):
                    a[i:i + crow] = data[i:i + crow]
                dt = time.perf_counter() - t
                size = sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
                out[f"{kind} {mib}MiB {name}"] = {"write_MBps": data.nbytes / dt / 1e6, "ratio": data.nbytes / size}
        shutil.rmtree(work / "sweep", ignore_errors=True)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default="writer,record,page,size", help="comma list of: writer,record,page,size,chunks")
    ap.add_argument("--work", default=None, help="scratch directory (default: a temp dir, removed after)")
    ap.add_argument("--rows", type=int, default=65536, help="rows written per writer repeat")
    ap.add_argument("--neurons", type=int, default=2048, help="d_mlp for writer / page / chunk parts")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--record-tokens", type=int, default=32768)
    ap.add_argument("--page-tokens", type=int, default=10_000_000)
    ap.add_argument("--page-vocab", type=int, default=50_257)
    ap.add_argument("--pages", type=int, default=200)
    ap.add_argument("--size-tokens", type=int, default=32768)
    ap.add_argument("--gelu", default=None, help="GeLU checkpoint for the size part (default: the tiny one)")
    ap.add_argument("--solu", default=None, help="SoLU-LN checkpoint for the size part")
    ap.add_argument("--json-out", default=None)
    args = ap.parse_args(argv)
    parts = args.parts.split(",")
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench_store_"))
    work.mkdir(parents=True, exist_ok=True)
    results = {"machine": f"{os.cpu_count()} cores (shared machine: ratios are side by side, medians)"}
    try:
        if "chunks" in parts:
            results["chunks"] = bench_chunks(work, args.neurons, args.rows // 2)
        if "writer" in parts:
            results["writer"] = bench_writer(work, args.rows, args.neurons, args.repeats)
        if "record" in parts:
            results["record"] = bench_record(work, args.record_tokens)
        if "page" in parts:
            results["page"] = bench_page(work, args.page_tokens, args.neurons, args.page_vocab, args.pages)
        if "size" in parts:
            cks = {"gelu": Path(args.gelu), "solu_ln": Path(args.solu)} if args.gelu and args.solu else None
            results["size"] = bench_size(work, args.size_tokens, cks)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(results, indent=1))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
