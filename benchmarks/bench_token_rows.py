"""The error of bounded per-token sums (`record --index --dense none --token-rows N`) on real text.

    .venv/bin/python benchmarks/bench_token_rows.py artifacts/demo/models/solu_ln --tokens 131072 --rows 256

Records the checkpoint's corpus twice into stores without dense activations, once with a row of exact sums for
every token (the default) and once with at most ``--rows`` rows per hook (the rest folded into float16 means,
store.index.partial.PartialIndex.token_rows_max), then compares what the per-token sums feed: the top tokens by
mean activation (ids, means) and the token lookup correlation (sim_score). Every other index array must be equal
(checked). Prints and writes benchmarks/out/bench_token_rows.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TOKEN_ARRAYS = ("top_token_ids", "top_token_means", "top_token_counts", "sim_score")


def _record(model: str, out: Path, tokens: int, chunk: int, rows: int | None) -> float:
    cmd = [sys.executable, "-m", "neurobrowse", "record", model, "--out", str(out), "--tokens", str(tokens),
           "--chunk-tokens", str(chunk), "--device", "cpu", "--quiet", "--index", "--dense", "none"]
    if rows:
        cmd += ["--token-rows", str(rows)]
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if r.returncode:
        raise SystemExit(r.stderr)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--tokens", type=int, default=131072)
    ap.add_argument("--chunk-tokens", type=int, default=512)
    ap.add_argument("--rows", type=int, default=256)
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "out" / "bench_token_rows.json"))
    args = ap.parse_args()
    from store import schema
    from store.format.reader import Store

    with tempfile.TemporaryDirectory(prefix="bench_token_rows_") as d:
        exact, bounded = Path(d) / "exact", Path(d) / "bounded"
        t_exact = _record(args.model, exact, args.tokens, args.chunk_tokens, None)
        t_bounded = _record(args.model, bounded, args.tokens, args.chunk_tokens, args.rows)
        a, b = Store.open(exact), Store.open(bounded)
        vocab = int(np.asarray(a.index_array(a.hooks[0], "token_count")[...]).size)
        seen = int(np.count_nonzero(np.asarray(a.index_array(a.hooks[0], "token_count")[...])))
        out = {"model": args.model, "tokens": args.tokens, "chunk_tokens": args.chunk_tokens, "rows": args.rows,
               "vocab": vocab, "distinct_tokens": seen, "record_s": {"exact": t_exact, "bounded": t_bounded},
               "load": os.getloadavg(), "hooks": {}}
        for hook in a.hooks:
            for name in schema.INDEX_ARRAYS:
                if name not in TOKEN_ARRAYS:
                    x, y = np.asarray(a.index_array(hook, name)[...]), np.asarray(b.index_array(hook, name)[...])
                    assert np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), (hook, name)
            g = {n: (np.asarray(a.index_array(hook, n)[...]), np.asarray(b.index_array(hook, n)[...]))
                 for n in TOKEN_ARRAYS}
            ids_a, ids_b = g["top_token_ids"]
            mean_a, mean_b = g["top_token_means"]
            ok = ids_a >= 0
            same_ids = ids_a == ids_b
            scale = np.nanmax(np.abs(mean_a), axis=1, keepdims=True)  # the neuron's largest top-token mean
            rel = np.abs(mean_a - mean_b)[ok] / np.broadcast_to(scale, mean_a.shape)[ok]
            sa, sb = g["sim_score"]
            fin = np.isfinite(sa) & np.isfinite(sb)
            h = {"top1_same_share": float(same_ids[:, 0][ok[:, 0]].mean()),
                 "top16_same_set_share": float(np.mean([set(p[p >= 0]) == set(q[q >= 0])
                                                        for p, q in zip(ids_a, ids_b)])),
                 "top16_same_slots_share": float(same_ids[ok].mean()),
                 "mean_err_rel_to_top_median": float(np.median(rel)), "mean_err_rel_to_top_max": float(rel.max()),
                 "sim_score_abs_err_median": float(np.median(np.abs(sa - sb)[fin])),
                 "sim_score_abs_err_max": float(np.abs(sa - sb)[fin].max()),
                 "sim_score_nan_mismatch": int((np.isfinite(sa) != np.isfinite(sb)).sum())}
            out["hooks"][hook] = h
            print(f"{hook}: top-1 token the same for {h['top1_same_share']:.1%} of neurons, the 16 top tokens the "
                  f"same set for {h['top16_same_set_share']:.1%} (slot by slot {h['top16_same_slots_share']:.1%}); "
                  f"top-token means off by {h['mean_err_rel_to_top_median']:.2e} median, "
                  f"{h['mean_err_rel_to_top_max']:.2e} max (of the neuron's largest); sim_score off by "
                  f"{h['sim_score_abs_err_median']:.1e} median, {h['sim_score_abs_err_max']:.1e} max")
        print(f"{args.tokens:,} tokens ({seen:,} of {vocab:,} vocabulary tokens seen), chunks of {args.chunk_tokens}, "
              f"--token-rows {args.rows}; every other index array equal; record {t_exact:.1f} s exact vs "
              f"{t_bounded:.1f} s bounded; load {os.getloadavg()[0]:.1f}")
        Path(args.json).parent.mkdir(exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1))
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
