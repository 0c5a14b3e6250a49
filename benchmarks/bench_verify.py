"""`neurobrowse verify` time per GB of an indexed store, for two source trees side by side in one run.

    .venv/bin/python benchmarks/bench_verify.py STORE --trees BEFORE_TREE AFTER_TREE --repeats 5

Runs ``store.format.verify.verify_store(STORE)`` in a fresh process per run (timed on its second call: the
imports and the page cache are warm) with PYTHONPATH set to each tree in turn (alternating, so the
machine's load falls on both alike) and prints the median seconds per GB
read for each, their ratio and the load average. With the trees of before and after issue 25 it measures
what the index and resume-state checks (checksum records, the readers' metadata check) add to `verify`.
Writes benchmarks/out/bench_verify.json (or --json).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

CHILD = """
import json, sys, time
from store.format.verify import verify_store
verify_store(sys.argv[1])  # once untimed: imports and the page cache, alike for both trees
t0 = time.perf_counter()
rep = verify_store(sys.argv[1])
print(json.dumps({"s": time.perf_counter() - t0, "bytes": rep.bytes_read, "ok": rep.ok,
                  "arrays": len(rep.arrays)}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("store")
    ap.add_argument("--trees", nargs=2, required=True, metavar=("BEFORE", "AFTER"))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", default=str(Path(__file__).parent / "out" / "bench_verify.json"))
    args = ap.parse_args()
    runs: dict[str, list] = {t: [] for t in args.trees}
    for _ in range(args.repeats):
        for tree in args.trees:
            env = {**os.environ, "PYTHONPATH": str(Path(tree).absolute())}
            r = subprocess.run([sys.executable, "-c", CHILD, args.store], capture_output=True, text=True, env=env,
                               cwd=tree, check=True)
            runs[tree].append(json.loads(r.stdout.strip().splitlines()[-1]))
    out = {"store": args.store, "loadavg": os.getloadavg()[0], "repeats": args.repeats, "trees": {}}
    for tree, rs in runs.items():
        per_gb = statistics.median(r["s"] / (r["bytes"] / 1e9) for r in rs)
        out["trees"][tree] = {"s_per_gb": per_gb, "gb_read": rs[0]["bytes"] / 1e9, "arrays": rs[0]["arrays"],
                              "ok": all(r["ok"] for r in rs), "s": [round(r["s"], 3) for r in rs]}
        print(f"{tree}: verify {per_gb:.2f} s/GB (median of {len(rs)}; {rs[0]['bytes'] / 1e9:.3f} GB, "
              f"{rs[0]['arrays']} arrays reported, ok={out['trees'][tree]['ok']})")
    a, b = (out["trees"][t]["s_per_gb"] for t in args.trees)
    out["after_over_before"] = b / a
    print(f"after / before: {b / a:.2f}x   (load average {out['loadavg']:.1f})")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
