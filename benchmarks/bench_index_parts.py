"""Where the sweep's per-activation time goes: the indexer's kernels on synthetic chunks, in-process.

    NUMBA_NUM_THREADS=2 .venv/bin/python benchmarks/bench_index_parts.py --rows 2048 --neurons 3072

Per chunk of GeLU-like float16 values (token ids random over --vocab, or one id with --one-token): pass 1
(``PartialIndex.update``: top/bottom-k, distinct lists, histogram, moments, per-token sums), the samples per
unit (``UnitSamples.update``) and the histogram scatter alone (``kernels.histogram.key_block_counts``), medians over
--chunks chunks after two warm-up chunks.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=2048)
    ap.add_argument("--neurons", type=int, default=3072)
    ap.add_argument("--vocab", type=int, default=50257)
    ap.add_argument("--context", type=int, default=1024)
    ap.add_argument("--chunks", type=int, default=10)
    ap.add_argument("--one-token", action="store_true", help="every row the same token id")
    args = ap.parse_args()
    from store.index.kernels import ROW_BLOCK
    from store.index.kernels.histogram import HIST_SHIFT, key_block_counts
    from store.index.blocks import run_blocks
    from store.index.partial import PartialIndex
    from store.index.unit_samples import UnitSamples, chunk_hist, units_around

    R, N, V = args.rows, args.neurons, args.vocab
    rng = np.random.default_rng(0)
    chunks = []
    for _ in range(6):
        x = rng.standard_normal((R, N)).astype(np.float32)
        x = (x * 0.5 * (1 + np.tanh(0.8 * x))).astype(np.float16)
        toks = np.zeros(R, np.int32) if args.one_token else rng.integers(0, V, R).astype(np.int32)
        chunks.append((x.view(np.uint16), toks))
    p = PartialIndex.empty("h", 32, N, V)
    s = UnitSamples.empty("h", units_around(chunk_hist(chunks[0][0]), R))
    nb = -(-N // ROW_BLOCK)
    times: dict[str, list] = {"pass1": [], "unit_samples": [], "histogram_only": []}
    for i in range(args.chunks + 2):
        b, t = chunks[i % len(chunks)]
        t0 = time.perf_counter()
        p.update(b, t, i * R, args.context)
        t1 = time.perf_counter()
        s.update(b, i * R, args.context, 0)
        t2 = time.perf_counter()
        cnt = np.zeros((nb, 1 << (16 - HIST_SHIFT), ROW_BLOCK), np.int32)
        run_blocks(lambda b0, b1, b=b, cnt=cnt: key_block_counts(b, cnt, ROW_BLOCK, b0, b1), nb)
        t3 = time.perf_counter()
        if i >= 2:
            for name, dt in zip(times, (t1 - t0, t2 - t1, t3 - t2)):
                times[name].append(dt)
    acts = R * N / 1e6
    print(f"per {R} x {N} chunk ({'one token id' if args.one_token else f'random ids of {V:,}'}), "
          f"{os.environ.get('NUMBA_NUM_THREADS', 'all')} Numba threads, medians of {args.chunks}, load "
          f"{os.getloadavg()[0]:.1f}: " + ", ".join(
              f"{name} {statistics.median(v) * 1e3:.0f} ms ({acts / statistics.median(v):.0f} M act/s)"
              for name, v in times.items()))


if __name__ == "__main__":
    main()
