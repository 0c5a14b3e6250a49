"""Wall time of `neurobrowse replicate` per size and step, from a sweep folder's completion markers.

    python benchmarks/bench_replicate.py DIR                      # summarise a finished (or running) sweep
    python benchmarks/bench_replicate.py DIR --run --preset small --sizes 1,2,4   # run it first, then summarise

Each marker holds the wall time of the run that finished its step (a step resumed after a kill counts only
its last run; a training step's own wall time across resumes is in its checkpoint's config.json, shown as
`train s`). The load average is printed beside the figures: the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

KINDS = ("corpus", "train", "control", "record", "study", "width")


def summarise(out: Path) -> str:
    rows: dict = {}
    train_s: dict = {}
    for p in (out / "steps").glob("*.json"):
        m = json.loads(p.read_text())
        size = m.get("size") or 0
        rows.setdefault(size, {}).setdefault(m["kind"], 0.0)
        rows[size][m["kind"]] += m["seconds"]
        if m["kind"] in ("train", "width") and (m.get("info") or {}).get("train_wall_s"):
            train_s[size] = train_s.get(size, 0.0) + m["info"]["train_wall_s"]
    lines = ["| size | " + " | ".join(KINDS) + " | total | train s (optimizer only) |",
             "|---|" + "---|" * (len(KINDS) + 2)]
    grand = 0.0
    for size in sorted(rows):
        r = rows[size]
        tot = sum(r.values())
        grand += tot
        lines.append(f"| {'-' if size == 0 else f'{size} layer(s)'} | "
                     + " | ".join(f"{r[k]:.0f} s" if k in r else "" for k in KINDS)
                     + f" | {tot / 60:.1f} min | {train_s.get(size, 0):.0f} |")
    lines.append(f"| all | | | | | | | {grand / 60:.1f} min | |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--run", action="store_true", help="run (or continue) the sweep first")
    ap.add_argument("--preset", default="small")
    ap.add_argument("--sizes", default="1,2,4")
    ap.add_argument("--per-model", type=int, default=None)
    a = ap.parse_args()
    print(f"load before: {os.getloadavg()}")
    if a.run:
        from neurobrowse.replicate.pipeline import ReplicateConfig, run_sweep

        t, c = time.perf_counter(), os.times()
        run_sweep(ReplicateConfig(out=a.out, sizes=a.sizes, preset=a.preset, per_model=a.per_model))
        c2 = os.times()
        print(f"wall {time.perf_counter() - t:.0f} s, CPU {c2.user - c.user + c2.system - c.system:.0f} s, "
              f"load after: {os.getloadavg()}")
    print(summarise(a.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
