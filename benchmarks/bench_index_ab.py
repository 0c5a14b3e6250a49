"""Before/after: the whole `index_store(force=True)` of one store by two source trees, alternating, medians.

    git archive OLD_COMMIT | tar -x -C /tmp/old_src
    .venv/bin/python benchmarks/bench_index_ab.py --before-src /tmp/old_src \\
        --store /tmp/neurobrowse_bench_index/store_524288x2048      # built by bench_index.py

Each run is a fresh process (its own imports, Numba cache loads) that indexes the store with --force, so
the two trees meet the same page cache and the same load; one warm-up run of each tree first (Numba caches).
Prints each run and the medians; the speed-up is before / after.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

CODE = ("import sys, time; sys.path.insert(0, {src!r}); from store.index import index_store; "
        "t = time.perf_counter(); index_store({store!r}, force=True, progress=False); print(time.perf_counter() - t)")


def run(src: str, store: str) -> tuple[float, float]:
    """(seconds of index_store in the process, CPU seconds of the whole process: user + sys, imports included)."""
    proc = subprocess.Popen([sys.executable, "-c", CODE.format(src=src, store=store)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=src,
                            env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    out, err = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"the run with {src} failed:\n{err}")
    return float(out.split()[-1]), _child_cpu()


_CPU = [0.0]


def _child_cpu() -> float:
    """CPU seconds (user + sys) of the children waited for since the last call."""
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = ru.ru_utime + ru.ru_stime
    spent, _CPU[0] = total - _CPU[0], total
    return spent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before-src", required=True, help="a source tree of the code before (git archive)")
    ap.add_argument("--after-src", default=str(Path(__file__).resolve().parents[1]), help="default: this tree")
    ap.add_argument("--store", default="/tmp/neurobrowse_bench_index/store_524288x2048")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    srcs = {"before": args.before_src, "after": args.after_src}
    for src in srcs.values():
        run(src, args.store)
    times: dict[str, list[float]] = {name: [] for name in srcs}
    cpus: dict[str, list[float]] = {name: [] for name in srcs}
    for _ in range(args.repeats):
        for name, src in srcs.items():
            t, c = run(src, args.store)
            times[name].append(t)
            cpus[name].append(c)
            print(f"{name} {t:.2f} s, process CPU {c:.2f} s (load {os.getloadavg()[0]:.1f})", flush=True)
    b, a = statistics.median(times["before"]), statistics.median(times["after"])
    cb, ca = statistics.median(cpus["before"]), statistics.median(cpus["after"])
    print(f"whole index, median of {args.repeats}: before {b:.2f} s, after {a:.2f} s, speed-up {b / a:.2f}x; "
          f"process CPU before {cb:.2f} s, after {ca:.2f} s, {cb / ca:.2f}x")


if __name__ == "__main__":
    main()
