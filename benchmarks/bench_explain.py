"""What the automatic rule explanations (store.measures.explain) cost: per 1,000 neurons, and in `neurobrowse index`.

    .venv/bin/python benchmarks/bench_explain.py --store artifacts/demo/stores/solu_ln --repeats 3

On a copy of the given indexed store (the original is not touched), interleaved repeat by repeat so
load changes hit both alike, medians:

  explain      store.index.explanations.explain_hook on every indexed hook: read the index arrays it needs and the
               token stream, count the rules over the stream, search the rule library, write the arrays;
               reported per 1,000 neurons
  search       the rule search alone (explain_arrays on arrays already in memory), per 1,000 neurons
  index_before index_store(force=True) with the explanation step replaced by nothing (the index as it
               was before explanations)
  index_after  index_store(force=True) as `neurobrowse index` runs it, explanations included
  rules        store.measures.rules.store_rules on every indexed hook (issue 20: the rules a rater would name, read
               off the distinct top snippets, that the calibrated verdict uses): read the windows, search;
               "explanations before / after" = explain / (explain + rules), per 1,000 neurons

Writes JSON to --json (default benchmarks/out/bench_explain.json) with the load average: the dev box
has 2 cores shared by other work, so compare the ratio within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from store.measures import explain, rules  # noqa: E402
from store.index import explanations, index_store  # noqa: E402
from store.format.reader import Store  # noqa: E402
from store.measures.snippets import index_window  # noqa: E402


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", default="artifacts/demo/stores/solu_ln", help="an indexed store (copied first)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-index", action="store_true", help="time the explanations only (no index_store runs)")
    ap.add_argument("--json", default=str(Path(__file__).parent / "out" / "bench_explain.json"))
    args = ap.parse_args()
    src = Path(args.store)
    if not Store.open(src).hooks:
        raise SystemExit(f"{src} has no hooks")
    work = Path(tempfile.mkdtemp(prefix="bench_explain_"))
    path = work / "store"
    shutil.copytree(src, path)
    try:
        st = Store.open(path)
        hooks = [h for h in st.hooks if st.is_indexed(h)]
        n_neurons = st.d_mlp * len(hooks)
        index_store(path, progress=False)  # explanations present (an older index gains them here)
        tokens = np.asarray(st.tokens[...])
        arrays = {h: {k: np.asarray(st.index_array(h, k)[...]) for k in explain.INPUTS} for h in hooks}
        voc = st.explain_vocab
        real_explain = explanations.explain_hook
        times: dict[str, list[float]] = {k: [] for k in ("explain", "search", "rules", "index_before", "index_after")}
        for _ in range(args.repeats):
            times["explain"].append(_timed(lambda: [real_explain(Store.open(path), h) for h in hooks]))
            times["rules"].append(_timed(lambda: [rules.store_rules(Store.open(path), h) for h in hooks]))
            if args.skip_index:
                continue
            times["search"].append(_timed(lambda: [explain.explain_arrays(
                tokens, st.context_len, voc, arrays[h], before=index_window(st.index_state(h))[0])
                for h in hooks]))
            explanations.explain_hook = lambda *a, **k: None  # the index as it was before explanations
            try:
                times["index_before"].append(_timed(lambda: index_store(path, force=True, progress=False)))
            finally:
                explanations.explain_hook = real_explain
            times["index_after"].append(_timed(lambda: index_store(path, force=True, progress=False)))
        med = {k: statistics.median(v) if v else float("nan") for k, v in times.items()}
        out = {
            "store": str(src), "n_tokens": int(st.n_tokens), "hooks": hooks, "neurons": n_neurons,
            "repeats": args.repeats, "load_average": os.getloadavg(), "times_s": times, "median_s": med,
            "explain_s_per_1000_neurons": med["explain"] / n_neurons * 1000,
            "search_s_per_1000_neurons": med["search"] / n_neurons * 1000,
            "index_after_over_before": med["index_after"] / med["index_before"],
            "rules_s_per_1000_neurons": med["rules"] / n_neurons * 1000,
            "explanations_after_over_before": (med["explain"] + med["rules"]) / med["explain"],
        }
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1))
        print(f"{src}: {st.n_tokens:,} tokens, {n_neurons} neurons in {len(hooks)} hook(s); "
              f"load {os.getloadavg()[0]:.1f}")
        print(f"  explanations (read + search + write): {out['explain_s_per_1000_neurons']:.2f} s per 1,000 neurons")
        print(f"  rule search alone:                    {out['search_s_per_1000_neurons']:.2f} s per 1,000 neurons")
        print(f"  rules a rater would name (store.measures.rules): {out['rules_s_per_1000_neurons']:.2f} s "
              "per 1,000 neurons; "
              f"explanations before {out['explain_s_per_1000_neurons']:.2f} s, after "
              f"{out['explain_s_per_1000_neurons'] + out['rules_s_per_1000_neurons']:.2f} s per 1,000 neurons "
              f"(x{out['explanations_after_over_before']:.2f})")
        print(f"  neurobrowse index: {med['index_before']:.1f} s before, {med['index_after']:.1f} s after "
              f"(x{out['index_after_over_before']:.2f})")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
