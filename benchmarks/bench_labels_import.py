"""`labels import` time must scale with the import, not with the database.

    .venv/bin/python benchmarks/bench_labels_import.py --labels 10000 --events 50000 --repeats 3

Writes a labels export file of --labels labels (one run, two hooks, random verdicts/tags), then
times ``store.export.label_files.import_labels`` of it into (a) an empty label database and (b) a database that
already holds --events events on the same run and neurons (several events of history per neuron, so
every lookup meets a populated table), each on a fresh copy, median of --repeats. Prints both and their ratio; writes
benchmarks/out/bench_labels_import.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from store.export.label_files import export_labels, import_labels  # noqa: E402
from store.labels.label import Label, VERDICTS
from store.labels.db import LabelDB  # noqa: E402

RUN = "00000000-0000-4000-8000-000000000000"
HOOKS = ("blocks.0.mlp.hook_post", "blocks.1.mlp.hook_post")


def labels(n: int, seed: int, neurons: int) -> list[Label]:
    rng = np.random.default_rng(seed)
    verdicts = [v for v in VERDICTS]
    out = []
    for i in range(n):
        out.append(Label(run_uuid=RUN, hook=HOOKS[i % 2], neuron=int(rng.integers(neurons)),
                         verdict=verdicts[int(rng.integers(len(verdicts)))], description=f"label {i}",
                         tags=("bench",) if i % 3 else (), notes="", author="bench", time="2026-01-01T00:00:00",
                         source="bench"))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--labels", type=int, default=10_000)
    ap.add_argument("--events", type=int, default=50_000)
    ap.add_argument("--neurons", type=int, default=8192,
                    help="neurons per hook the labels fall on (the database's events pile up as history on them)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = LabelDB(tmp / "src.sqlite")
        src.set_many(labels(args.labels, seed=1, neurons=args.neurons), source="bench")
        export_labels(src, tmp / "import.jsonl")
        src.close()
        big = LabelDB(tmp / "big.sqlite")
        big.set_many(labels(args.events, seed=2, neurons=args.neurons), source="bench", skip_unchanged=False)
        n_events = big._read(lambda c: c.execute("SELECT COUNT(*) FROM events").fetchone()[0])
        big.close()
        times = {"empty": [], "big": []}
        for _ in range(args.repeats):
            for kind in ("empty", "big"):
                db_path = tmp / f"{kind}-copy.sqlite"
                for side in ("", "-wal", "-shm"):
                    Path(str(db_path) + side).unlink(missing_ok=True)
                if kind == "big":
                    shutil.copy(tmp / "big.sqlite", db_path)
                db = LabelDB(db_path)
                t0 = time.perf_counter()
                res = import_labels(db, tmp / "import.jsonl")
                times[kind].append(time.perf_counter() - t0)
                db.close()
        med = {k: statistics.median(v) for k, v in times.items()}
        out = {"labels": args.labels, "events_in_big_db": int(n_events), "written": res["written"],
               "import_empty_s": med["empty"], "import_big_s": med["big"],
               "ratio_big_over_empty": med["big"] / med["empty"], "repeats": args.repeats}
    print(f"import {args.labels:,} labels: into an empty database {med['empty']:.2f} s, into one with "
          f"{n_events:,} events {med['big']:.2f} s (ratio {out['ratio_big_over_empty']:.2f}; "
          f"medians of {args.repeats})")
    dest = Path(__file__).resolve().parent / "out" / "bench_labels_import.json"
    dest.parent.mkdir(exist_ok=True)
    dest.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
