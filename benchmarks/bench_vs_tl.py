"""Whole processes, paired: the TransformerLens top-k script vs `neurobrowse record --index --dense none`
vs `record` then `index`.

    .venv/bin/python benchmarks/bench_vs_tl.py CHECKPOINT_DIR --tokens 131072 --repeats 3

Both run as fresh processes over the same tokens (the first ``--tokens`` of the checkpoint corpus's
validation split, contexts of the model's n_ctx), alternating, after one warm-up run of each (Numba's
cache, the page cache). Reports per run the wall time and the CPU time (user + sys of the process
and its children, from os.wait4), and the medians; on a shared box the CPU time is the steadier
figure. Writes benchmarks/out/bench_vs_tl.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed(cmd: list[str], env: dict) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the process tree) of one command."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    _pid, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    err = proc.stderr.read().decode()
    if status:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{err}")
    return wall, ru.ru_utime + ru.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("--tokens", type=int, default=131072)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tmp", default="/tmp/neurobrowse_bench_vs_tl")
    args = ap.parse_args()
    tmp = Path(args.tmp)
    tmp.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    py = sys.executable
    cmds = {
        "tl_script": [py, str(ROOT / "benchmarks" / "tl_topk_script.py"), args.checkpoint, "--tokens",
                      str(args.tokens), "--out", str(tmp / "tl")],
        "record_index": [py, "-m", "neurobrowse", "record", args.checkpoint, "--out", str(tmp / "store"),
                         "--tokens", str(args.tokens), "--index", "--dense", "none", "--quiet"],
        "record": [py, "-m", "neurobrowse", "record", args.checkpoint, "--out", str(tmp / "store"),
                   "--tokens", str(args.tokens), "--quiet"],
        "index": [py, "-m", "neurobrowse", "index", str(tmp / "store"), "--quiet"],
    }
    runs: dict[str, list] = {name: [] for name in cmds}
    for rep in range(args.repeats + 1):
        for name, cmd in cmds.items():
            if name != "index":  # `index` runs on the store `record` just wrote
                shutil.rmtree(tmp / "store", ignore_errors=True)
            wall, cpu = timed(cmd, env)
            if rep:  # the first round warms up
                runs[name].append((wall, cpu))
            print(f"{'warm-up' if not rep else f'repeat {rep}'} {name}: {wall:.1f} s wall, {cpu:.1f} s CPU "
                  f"(load {os.getloadavg()[0]:.1f})", flush=True)
    out = {name: {"wall_s": [w for w, _ in r], "cpu_s": [c for _, c in r],
                  "wall_median": statistics.median(w for w, _ in r), "cpu_median": statistics.median(c for _, c in r)}
           for name, r in runs.items()}
    out["tokens"] = args.tokens
    a, b = out["tl_script"], out["record_index"]
    r, i = out["record"], out["index"]
    print(f"record then index: {r['wall_median']:.1f} s + {i['wall_median']:.1f} s wall "
          f"({r['cpu_median']:.1f} s + {i['cpu_median']:.1f} s CPU)")
    print(f"medians of {args.repeats}: TransformerLens script {a['wall_median']:.1f} s wall / "
          f"{a['cpu_median']:.1f} s CPU; "
          f"record --index --dense none {b['wall_median']:.1f} s / {b['cpu_median']:.1f} s: "
          f"{a['wall_median'] / b['wall_median']:.2f}x / {a['cpu_median'] / b['cpu_median']:.2f}x the script's speed")
    (ROOT / "benchmarks" / "out").mkdir(exist_ok=True)
    (ROOT / "benchmarks" / "out" / "bench_vs_tl.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
