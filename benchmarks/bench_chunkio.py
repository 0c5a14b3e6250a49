"""Chunk file I/O of the store against plain numpy on the same bytes, in one run, medians of repeats.

    .venv/bin/python benchmarks/bench_chunkio.py --chunks 16 --rows 4096 --neurons 2048 --repeats 5

write   StoreWriter.write_chunk of float16 [rows, neurons] chunks (Crc32c, completion marker recording
        the chunk's checksum; no fsync) vs np.save of the same arrays into .npy files
read    Store.read_chunk (file read into its array, Crc32c and the marker's checksum checked) vs
        np.fromfile of the same .npy files, both from the page cache
verify  store.format.verify.verify_store over the whole store: seconds per GB read

Run it against two source trees (PYTHONPATH=TREE) to compare before and after a change: the ratios
to numpy cancel most of the machine's load. Writes benchmarks/out/bench_chunkio.json (or --json).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

if "PYTHONPATH" not in os.environ:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from store import schema  # noqa: E402
from store.format.reader import Store  # noqa: E402
from store.format.writer import StoreWriter  # noqa: E402

HOOK = "blocks.0.mlp.hook_post"
TOKENIZER = json.dumps({"version": "1.0", "model": {"type": "BPE", "vocab": {}, "merges": []}})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--chunks", type=int, default=16)
    ap.add_argument("--rows", type=int, default=4096)
    ap.add_argument("--neurons", type=int, default=2048)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", default=str(Path(__file__).resolve().parent / "out" / "bench_chunkio.json"))
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    data = [rng.standard_normal((args.rows, args.neurons)).astype(np.float16) for _ in range(args.chunks)]
    mb = sum(d.nbytes for d in data) / 1e6
    res = {"write_s": [], "npsave_s": [], "read_s": [], "npload_s": [], "verify_s": []}
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        tmp = Path(tmp)
        for rep in range(args.repeats):
            path = tmp / f"s{rep}"
            n = args.rows * args.chunks
            w = StoreWriter.create_or_resume(
                path, model_config={"d_mlp": args.neurons, "d_vocab": 100}, hooks=[HOOK], n_tokens=n,
                context_len=64, tokenizer_json=TOKENIZER, manifest={}, chunk_tokens=args.rows, fsync=False)
            t0 = time.perf_counter()
            for i, d in enumerate(data):
                w.write_chunk(HOOK, i, d)
            res["write_s"].append(time.perf_counter() - t0)
            npy = tmp / f"npy{rep}"
            npy.mkdir()
            t0 = time.perf_counter()
            for i, d in enumerate(data):
                np.save(npy / f"{i}.npy", d)
            res["npsave_s"].append(time.perf_counter() - t0)
            st = Store.open(path)
            t0 = time.perf_counter()
            for i in range(args.chunks):
                st.read_chunk(HOOK, i)
            res["read_s"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            for i in range(args.chunks):
                np.load(npy / f"{i}.npy")
            res["npload_s"].append(time.perf_counter() - t0)
            import store

            # a tree from before `verify` has none
            if any((Path(store.__file__).parent / d / "verify.py").exists() for d in (".", "format")):
                from store.format.verify import verify_store

                for i in range(args.chunks):
                    w.write_chunk(schema.TOKENS, i, np.zeros(args.rows, np.int32))
                    w.write_chunk(schema.DOC_STARTS, i, np.zeros(args.rows, np.uint8))
                t0 = time.perf_counter()
                rep_ = verify_store(path)
                res["verify_s"].append((time.perf_counter() - t0) / (rep_.bytes_read / 1e9))
    med = {k: statistics.median(v) for k, v in res.items() if v}
    out = {
        "mb": mb, "chunks": args.chunks, "rows": args.rows, "neurons": args.neurons, "repeats": args.repeats,
        "write_mb_s": mb / med["write_s"], "npsave_mb_s": mb / med["npsave_s"],
        "write_vs_npsave": med["npsave_s"] / med["write_s"],
        "read_mb_s": mb / med["read_s"], "npload_mb_s": mb / med["npload_s"],
        "read_vs_npload": med["npload_s"] / med["read_s"],
        "read_ms_per_chunk": 1e3 * med["read_s"] / args.chunks,
        "verify_s_per_gb": med.get("verify_s"), "loadavg": os.getloadavg()[0],
    }
    print(f"write {out['write_mb_s']:.0f} MB/s ({out['write_vs_npsave']:.2f}x np.save), read "
          f"{out['read_mb_s']:.0f} MB/s, {out['read_ms_per_chunk']:.2f} ms/chunk ({out['read_vs_npload']:.2f}x np.load)"
          + (f", verify {out['verify_s_per_gb']:.2f} s/GB" if out["verify_s_per_gb"] else "")
          + f"; load average {out['loadavg']:.1f}")
    Path(args.json).parent.mkdir(exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
