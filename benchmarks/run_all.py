"""Run every benchmark in this folder, one after another, and print where their JSON results went.

    .venv/bin/python benchmarks/run_all.py            # the figures in benchmarks/RESULTS.md (long: ~1 h)
    .venv/bin/python benchmarks/run_all.py --only index,store

Each script measures its baselines side by side in one run (interleaved repeats, medians) and
writes benchmarks/out/<name>.json. Run on a quiet machine: `uptime` is printed before each script
because the load average changes the wall times (ratios are more robust).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = ["train", "store", "index", "app", "export", "dask"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default=",".join(ORDER), help=f"comma-separated subset of {','.join(ORDER)}")
    args = ap.parse_args()
    failed = []
    for name in [n.strip() for n in args.only.split(",") if n.strip()]:
        script = HERE / f"bench_{name}.py"
        if not script.exists():
            print(f"error: no benchmark {script.name}; choose from {', '.join(ORDER)}", file=sys.stderr)
            return 2
        print(f"\n=== {script.name}  (load average {os.getloadavg()[0]:.2f})", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call([sys.executable, str(script)], cwd=HERE.parent)
        print(f"=== {script.name}: exit {rc} after {time.perf_counter() - t0:.0f} s", flush=True)
        if rc:
            failed.append(name)
    print(f"\nresults: {HERE / 'out'}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
