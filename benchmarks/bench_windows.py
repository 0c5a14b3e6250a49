"""Index size and `index` time with the reading windows (64 before, 16 after, plus the distinct lists)
against the former 24 / 8, on the same store, in one run.

    python benchmarks/bench_windows.py STORE [--repeats 1] [--windows 24,8 64,16]

STORE is copied to a scratch folder first (the original is never touched); each window is indexed
there with --force, ``repeats`` times, in alternation. Writes benchmarks/out/bench_windows.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--windows", nargs="+", default=["24,8", "64,16"])
    args = ap.parse_args(argv)

    import numpy as np

    from store import schema
    from store.index import index_store
    from store.format.reader import Store

    work = Path(tempfile.mkdtemp(prefix="bench_windows_"))
    path = work / "store"
    shutil.copytree(args.store, path)
    st = Store.open(path)
    windows = [tuple(int(x) for x in w.split(",")) for w in args.windows]
    times: dict = {w: [] for w in windows}
    sizes: dict = {}
    for _ in range(args.repeats):
        for w in windows:
            t = time.perf_counter()
            index_store(path, force=True, progress=False, window=w)
            times[w].append(time.perf_counter() - t)
            sizes[w] = sum(Store.open(path).size_on_disk(schema.index_path(h)) for h in st.hooks)
    out = {"store": str(args.store), "n_tokens": st.n_tokens, "d_mlp": st.d_mlp, "hooks": st.hooks,
           "context_len": st.context_len, "machine": f"{os.cpu_count()} cores, shared with other work while measured",
           "windows": {f"{w[0]},{w[1]}": {"index_s_median": float(np.median(times[w])), "index_s_all": times[w],
                                           "index_bytes": sizes[w]} for w in windows}}
    a, b = (f"{w[0]},{w[1]}" for w in windows[:2])
    out["ratio_time"] = out["windows"][b]["index_s_median"] / out["windows"][a]["index_s_median"]
    out["ratio_size"] = out["windows"][b]["index_bytes"] / out["windows"][a]["index_bytes"]
    dest = ROOT / "benchmarks" / "out" / "bench_windows.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
