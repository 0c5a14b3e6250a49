"""`record --index` on Dask against recording and then indexing on Dask (a second read of the store).

    .venv/bin/python benchmarks/bench_dask_record_index.py                 # local:2, 131,072 tokens, 3 repeats
    .venv/bin/python benchmarks/bench_dask_record_index.py --tokens 65536 --repeats 1

A small real SoLU-LN model (bench_dask.py's: `tiny` preset with a wider MLP, trained 60 steps on stdlib
source; built once under --workdir) records --tokens validation tokens (2 hooks) on one `local:N`
cluster, four ways, interleaved repeat by repeat (medians):

  two-step     ``record_dask`` then ``index_store_dask`` (what `record --index --scheduler` did before:
               the workers record, then read the whole store back to index it);
  keep         ``record_dask(index=True)``: each task indexes the chunks it records (dense kept);
  none         ``record_dask(index=True, dense=False)``: the same without the dense activations;
  single none  ``record(index=True, dense=False)`` in this process, for reference.

Every store's index is checked against the two-step one (samples: the same for keep; none may differ
only for the neurons counted in ``samples_inexact_neurons``). The cluster is started and warmed by one
run of each first. The dev box has 2 cores shared with other work: compare the ratios of one run and
see the load average printed with them. Writes benchmarks/out/bench_dask_record_index.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

ROOT = Path(__file__).resolve().parent
SAMPLE_ARRAYS = ("sample_positions", "sample_values", "sample_context_tokens", "sample_context_acts")
FP_ARRAYS = ("mean", "var", "skewness", "kurtosis", "token_sum", "top_token_means", "sim_score")


def same_index(a: Path, b: Path, samples: bool) -> bool:
    from store import schema
    from store.format.reader import Store

    sa, sb = Store.open(a), Store.open(b)
    for hook in sa.hooks:
        for name in schema.INDEX_ARRAYS:
            if name in SAMPLE_ARRAYS and not samples:
                continue
            x, y = np.asarray(sa.index_array(hook, name)[...]), np.asarray(sb.index_array(hook, name)[...])
            ok = (np.allclose(x, y, rtol=1e-6, atol=1e-6, equal_nan=True) if name in FP_ARRAYS
                  else np.array_equal(x, y, equal_nan=x.dtype.kind == "f"))
            if not ok:
                print(f"  {b.name}: {hook} {name} differs")
                return False
    return True


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workdir", default=os.path.expanduser("~/.cache/neurobrowse-bench-dask"))
    ap.add_argument("--tokens", type=int, default=131072)
    ap.add_argument("--d-mlp", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    from bench_dask import build_model

    from solu_core.dask_record import record_dask
    from solu_core.record import record
    from solu_core.record_config import CorpusText, RecordConfig
    from store.index.dask_cluster import dask_client
    from store.index.dask_run import index_store_dask
    from store.format.reader import Store

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    corpus, ck = build_model(work, args.d_mlp)
    cfg = RecordConfig(text=CorpusText(corpus), n_tokens=args.tokens, device="cpu")
    # the one-process run first: it fills Numba's cache before a worker needs a kernel (see docs/dask.md)
    runs = {name: [] for name in ("single_none", "two_step", "keep", "none")}

    def run(name: str, client) -> float:
        out = work / f"ri_{name}"
        shutil.rmtree(out, ignore_errors=True)
        t = time.perf_counter()
        if name == "two_step":
            record_dask(ck, out, client, cfg, progress=False)
            index_store_dask(out, client, progress=False)
        elif name == "keep":
            record_dask(ck, out, client, cfg.replace(index=True), progress=False)
        elif name == "none":
            record_dask(ck, out, client, cfg.replace(index=True, dense=False), progress=False)
        else:
            record(ck, out, cfg.replace(index=True, dense=False), progress=False)
        return time.perf_counter() - t

    with dask_client(f"local:{args.workers}") as client:
        for name in runs:  # warm-up: imports, model loads and Numba caches in every worker
            run(name, client)
        for _ in range(args.repeats):
            for name in runs:
                runs[name].append(run(name, client))
    load = os.getloadavg()
    med = {name: statistics.median(ts) for name, ts in runs.items()}
    ref = work / "ri_two_step"
    checks = {"keep": same_index(ref, work / "ri_keep", samples=True),
              "none": same_index(ref, work / "ri_none", samples=False)}
    st = Store.open(work / "ri_none")
    res = {"tokens": args.tokens, "d_mlp": args.d_mlp, "workers": args.workers, "repeats": args.repeats,
           "hooks": st.hooks, "chunk_tokens": int(st.chunk_tokens), "median_s": med, "runs_s": runs,
           "keep_vs_two_step": med["keep"] / med["two_step"], "none_vs_two_step": med["none"] / med["two_step"],
           "none_vs_single_none": med["none"] / med["single_none"], "same_index": checks,
           "samples_inexact_neurons": {h: st.index_state(h)["samples_inexact_neurons"] for h in st.hooks},
           "load_average_at_end": load}
    print(json.dumps(res, indent=1))
    out_json = ROOT / "out" / "bench_dask_record_index.json"
    out_json.parent.mkdir(exist_ok=True)
    out_json.write_text(json.dumps(res, indent=1))
    print(f"wrote {out_json}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
