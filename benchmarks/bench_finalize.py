"""Where `neurobrowse index` of one hook spends its time: imports, provisional units, the read
(pass 1 + samples), the index arrays, the rule explanations, the array writes, the state saves.

    .venv/bin/python benchmarks/bench_finalize.py STORE [--hook HOOK] [--repeats 3]

STORE is copied to a temporary folder (it is not written); each repeat indexes the copy with
--force in this process, timing each piece by wrapping the functions that do it (thread wall time:
the explanations run on a thread while the arrays are written, so the pieces overlap and their sum
exceeds finalize). The imports are timed in a fresh process (`python -c "import neurobrowse.cli"`
and the `index` command's own imports). Prints medians; writes benchmarks/out/bench_finalize.json.

Each repeat indexes twice, alternating: "with" the rule search (as `index` runs) and "without" it
(the search's result from the warm-up handed back at once: what finalize costs besides the search,
store/measures/explain.py). The written explanations are the same either way.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def import_seconds(stmt: str) -> float:
    out = subprocess.run([sys.executable, "-c", f"import time; t = time.perf_counter(); {stmt}; "
                          "print(time.perf_counter() - t)"], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT)
    return float(out.stdout.split()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("store")
    ap.add_argument("--hook", default=None)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    imports = {
        "neurobrowse.cli": [import_seconds("import neurobrowse.cli") for _ in range(args.repeats)],
        "store.index.run": [import_seconds("import store.index.run") for _ in range(args.repeats)],
    }
    t = time.perf_counter()
    from store.index import explanations, run
    from store.index.group import IndexGroup
    from store.measures import explain
    from store.index.source import open_store
    imp_here = time.perf_counter() - t

    times: dict[str, list[float]] = defaultdict(list)
    mode = {"search": "with", "cached": None}

    def timed(owner, name: str, label: str):
        fn = getattr(owner, name)

        def wrapper(*a, **kw):
            t0 = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                times[f"{label} [{mode['search']} search]"].append(time.perf_counter() - t0)
        setattr(owner, name, wrapper)

    search = explain.explain_arrays

    def explain_or_cached(*a, **kw):
        if mode["search"] == "without" and mode["cached"] is not None:
            return {k: v.copy() for k, v in mode["cached"].items()}
        out = search(*a, **kw)
        mode["cached"] = out
        return out
    explain.explain_arrays = explain_or_cached

    timed(run, "provisional_units", "provisional units")
    timed(run, "index_arrays", "index arrays (in memory)")
    timed(run, "stored_arrays", "stored arrays (dtype casts)")
    timed(explain, "explain_arrays", "explanations (rule search, on a thread)")
    timed(explanations, "write_explanations", "explanations write (incl. waiting for the search)")
    timed(IndexGroup, "write_index", "array writes (write_index)")
    timed(IndexGroup, "save_states", "state saves (save_states)")
    timed(run, "finalize_index", "finalize (whole)")
    timed(run, "_run_pass", "the read (_run_pass)")
    timed(run, "index_hook", "index_hook (whole)")

    tmp = Path(tempfile.mkdtemp(prefix="bench_finalize_"))
    try:
        dst = tmp / "store"
        shutil.copytree(args.store, dst)
        st = open_store(dst)
        hook = args.hook or st.hooks[0]
        cfg = run.IndexConfig()
        run.index_hook(st, hook, cfg, force=True, progress=False)  # warm-up (Numba cache, page cache)
        times.clear()
        for rep in range(args.repeats):
            for m in (("with", "without") if rep % 2 == 0 else ("without", "with")):
                mode["search"] = m
                run.index_hook(st, hook, cfg, force=True, progress=False)
        n_neurons = int(st.activations(hook).shape[1])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    def per_repeat(v: list[float]) -> list[float]:
        """The calls of one repeat summed (a function called c times per index_hook: c consecutive entries)."""
        c = max(1, len(v) // args.repeats)
        return [sum(v[i * c:(i + 1) * c]) for i in range(len(v) // c)]

    med = {k: statistics.median(per_repeat(v)) for k, v in times.items()}
    out = {"store": args.store, "hook": hook, "n_neurons": n_neurons, "repeats": args.repeats,
           "load": os.getloadavg()[0],
           "imports_fresh_process_s": {k: statistics.median(v) for k, v in imports.items()},
           "imports_in_this_process_s": imp_here, "medians_s": med, "raw_s": times}
    for k, v in out["imports_fresh_process_s"].items():
        print(f"import {k} (fresh process): {v:.2f} s")
    for k, v in sorted(med.items(), key=lambda kv: -kv[1]):
        print(f"{k:55s} {v:6.2f} s")
    print(f"load {out['load']:.2f}")
    (ROOT / "benchmarks" / "out").mkdir(exist_ok=True)
    (ROOT / "benchmarks" / "out" / "bench_finalize.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
