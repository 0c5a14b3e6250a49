"""Peak memory of `record --index --dense none --token-rows 4096` of GPT-2 small's shape (issue 23 "Memory").

    .venv/bin/python benchmarks/bench_gpt2_memory.py --baseline-src /tmp/base   # this tree and an older one
    .venv/bin/python benchmarks/bench_gpt2_memory.py --tokens 16384,32768

A randomly initialised solu_core model of GPT-2 small's shape (12 layers, d_model 768, d_mlp 3072, vocab 50257,
context 1024; every layer's hook_post indexed at once, as `record --index` does), over random token ids drawn
uniformly from the whole vocabulary: the worst case for the per-token tables (each chunk brings ~1,000 tokens
the 4,096 exact rows do not hold, so folding starts in the first chunks and the folded means grow by about
that every chunk, where real text repeats its tokens). Each case is a fresh process (benchmarks/
bench_record_index.py's recorder: the same work groups, chunk pipeline and StreamIndexer as `record`), its
peak resident memory read from /proc/self/status (VmHWM) at the end, after the index of every hook is written:

  bare        the forward pass with the hooks, activations copied to host float16, nothing else
  record      record --index --dense none --token-rows 4096 of this tree, at each --tokens count
  baseline    the same with the code of --baseline-src (e.g. `git archive` of the commit before this change)

Next to each: store.index.run.index_memory_bytes's estimate for the distinct tokens seen, and for 10M tokens
of text (every vocabulary token seen). Before the measured cases, one small recording per tree fills the
Numba caches (so no case pays the compiler's memory). Writes benchmarks/out/bench_gpt2_memory.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT.parent))

import bench_record_index as b  # noqa: E402

ROWS = 4096
WARM = dict(n_layers=1, d_model=128, n_heads=4, d_head=32, d_mlp=512, n_ctx=64, d_vocab=2048)


def _est(seen: int, n_tokens: int) -> int:
    from store.index.run import index_memory_bytes

    s = b.SHAPES["gpt2"]
    return index_memory_bytes(s["d_mlp"], 32, s["d_vocab"], seen, hooks=s["n_layers"], token_rows=ROWS,
                              n_tokens=n_tokens)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", default="16384,32768", help="comma-separated token counts (multiples of 1024)")
    ap.add_argument("--baseline-src", default=None, help="a source tree to measure the same cases with")
    ap.add_argument("--json", default=str(ROOT / "out" / "bench_gpt2_memory.json"))
    args = ap.parse_args()
    counts = [int(x) for x in args.tokens.split(",")]
    here = str(ROOT.parent)
    trees = {"record": here, **({"baseline": args.baseline_src} if args.baseline_src else {})}
    shape = b.SHAPES["gpt2"]
    out: dict = {"machine": f"{os.cpu_count()} cores, shared with other work while measured", "token_rows": ROWS,
                 "load_avg_1min": [os.getloadavg()[0]], "cases": {}}
    rec = dict(index=True, dense=False, bare=False, token_rows=ROWS)
    with tempfile.TemporaryDirectory(prefix="bench_gpt2_memory_") as d:
        path = Path(d) / "store"
        for src in trees.values():  # fill the Numba caches of each tree
            b._peak(WARM, 2048, path, src, **{**rec, "token_rows": 256})
        t = time.perf_counter()
        out["cases"]["bare"] = {"tokens": counts[-1], "peak_bytes": b._peak(shape, counts[-1], path, here, index=False,
                                                                            dense=True, bare=True)}
        print(f"bare forward, {counts[-1]:,} tokens: {out['cases']['bare']['peak_bytes'] / 2**30:.2f} GiB "
              f"({time.perf_counter() - t:.0f} s, load {os.getloadavg()[0]:.1f})", flush=True)
        for n in counts:
            seen = int(np.count_nonzero(np.bincount(b._Split(n, shape["d_vocab"]).tokens, minlength=shape["d_vocab"])))
            for tree, src in trees.items():
                t = time.perf_counter()
                peak = b._peak(shape, n, path, src, **rec)
                r = {"tree": src, "tokens": n, "distinct_tokens": seen, "peak_bytes": peak,
                     "index_adds_bytes": peak - out["cases"]["bare"]["peak_bytes"],
                     "estimate_bytes": _est(seen, n), "seconds": time.perf_counter() - t}
                out["cases"][f"{tree}_{n}"] = r
                print(f"{tree} --token-rows {ROWS}, {n:,} tokens ({seen:,} distinct): peak {peak / 2**30:.2f} GiB "
                      f"(+{r['index_adds_bytes'] / 2**30:.2f} GiB over the bare forward; index_memory_bytes says "
                      f"{r['estimate_bytes'] / 2**30:.2f} GiB) ({r['seconds']:.0f} s, load {os.getloadavg()[0]:.1f})",
                      flush=True)
    ten = _est(shape["d_vocab"], 10**7)
    out["estimate_10M_tokens_bytes"] = ten
    out["estimate_10M_plus_bare_bytes"] = ten + out["cases"]["bare"]["peak_bytes"]
    out["load_avg_1min"].append(os.getloadavg()[0])
    print(f"10M tokens: index_memory_bytes {ten / 2**30:.2f} GiB + the bare forward's "
          f"{out['cases']['bare']['peak_bytes'] / 2**30:.2f} GiB = {out['estimate_10M_plus_bare_bytes'] / 1e9:.1f} GB "
          f"(target: within 16 GB, <= 14 GB)")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=1))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
