"""Export speed and size: 10k labeled neurons with 20 top snippets each, per format.

    .venv/bin/python benchmarks/bench_export.py --neurons 10240 --tokens 8192 --snippets 20

Builds (once, reused under --work) a store of GeLU-like float16 activations with
store.format.writer.StoreWriter and indexes it with store.index.index_store (so every index array is
the real one), labels every neuron in one transaction of the real label database, then times
``store.export.neurons.export_store`` for jsonl, csv and neuron-explainer, plain and gzipped (median of
--repeats), and ``labels import`` of the jsonl export into a fresh database. Prints a table and
writes benchmarks/out/bench_export.json.

The synthetic tokenizer's pieces are "w0".."w2047" (2-5 characters, about the length of real BPE
pieces), so sizes are close to a real store's; a neuron-explainer record also carries the 6
quantile-bin samples (10 windows each), hence its larger size.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from store import schema  # noqa: E402
from store.export.neurons import ExportConfig, export_store
from store.export.label_files import import_labels  # noqa: E402
from store.labels.label import Label, VERDICTS
from store.labels.db import LabelDB  # noqa: E402
from store.format.reader import Store  # noqa: E402

HOOK = "blocks.0.mlp.hook_post"


def build_store(path: Path, n_tokens: int, n_neurons: int, vocab: int = 2048, context_len: int = 128) -> Path:
    from tokenizers import Tokenizer, models

    from store.index import index_store
    from store.format.writer import StoreWriter

    if not ((path / "zarr.json").exists() and Store.open(path).complete):
        tok = Tokenizer(models.WordLevel({f"w{i}": i for i in range(vocab)}, unk_token="w0"))
        cfg = {"d_mlp": n_neurons, "n_layers": 1, "d_vocab": vocab, "act_fn": "gelu", "d_model": 512,
               "n_ctx": context_len}
        w = StoreWriter.create_or_resume(path, model_config=cfg, hooks=[HOOK], n_tokens=n_tokens,
                                         context_len=context_len, tokenizer_json=tok.to_str(),
                                         manifest={"checkpoint_hash": "bench"}, fsync=False)
        rng = np.random.default_rng(0)
        for c in w.pending_all():
            a, b = w.chunk_rows(c)
            z = rng.standard_normal((b - a, n_neurons), dtype=np.float32) - 1.0
            acts = (0.5 * z * (1 + np.tanh(0.7978845608 * (z + 0.044715 * z**3)))).astype(np.float16)  # GeLU-like
            w.write_chunk(schema.TOKENS, c, rng.integers(0, vocab, b - a).astype(np.int32))
            w.write_chunk(schema.DOC_STARTS, c, np.zeros(b - a, np.uint8))
            w.write_chunk(HOOK, c, acts)
        zero = np.zeros((n_neurons, schema.K_LOGIT), np.int32)
        w.write_logit_effects(0, zero, zero.astype(np.float32), zero, zero.astype(np.float32))
        w.finish()
    if not Store.open(path).is_indexed(HOOK):
        index_store(path, progress=True)
    return path


def label_all(db: LabelDB, store: Store) -> float:
    rng = np.random.default_rng(1)
    labs = [Label(store.run_uuid, HOOK, n, VERDICTS[int(rng.integers(3))], description=f"feature {n}",
                  tags=("bench", f"group{n % 7}"), notes="synthetic label", author="bench") for n in range(store.d_mlp)]
    t = time.perf_counter()
    db.set_many(labs, skip_unchanged=False)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--neurons", type=int, default=10240)
    ap.add_argument("--tokens", type=int, default=8192)
    ap.add_argument("--snippets", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--work", default=None, help="folder for the store and outputs (default: a temp folder)")
    args = ap.parse_args()

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench_export_"))
    work.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    path = build_store(work / f"store_{args.neurons}x{args.tokens}", args.tokens, args.neurons)
    build_s = time.perf_counter() - t
    store = Store.open(path)
    db_path = work / "labels.sqlite"
    db_path.unlink(missing_ok=True)
    db = LabelDB(db_path)
    label_s = label_all(db, store)
    print(f"store: {args.neurons} neurons x {args.tokens} tokens ({build_s:.1f} s to build + index, reused when "
          f"present); labeled {args.neurons} neurons in one transaction: {label_s:.2f} s")

    rows = []
    for fmt in ("jsonl", "csv", "neuron-explainer"):
        for gz in (False, True):
            out = work / f"export.{fmt}{'.gz' if gz else ''}"
            times = []
            for _ in range(args.repeats):
                store = Store.open(path)  # cold reader each time: no cached neuron table
                t = time.perf_counter()
                res = export_store(store, out, ExportConfig(fmt=fmt, snippets=args.snippets, gzip=gz), labels_db=db,
                                   tool_version="bench")
                times.append(time.perf_counter() - t)
            assert res["n_neurons"] == args.neurons
            med = statistics.median(times)
            rows.append({"format": fmt, "gzip": gz, "neurons": res["n_neurons"], "seconds": med,
                         "neurons_per_s": res["n_neurons"] / med, "bytes": res["bytes"],
                         "bytes_per_neuron": res["bytes"] / res["n_neurons"]})
            print(f"{fmt:<17} gzip={str(gz):<5} {med:7.2f} s  {res['n_neurons'] / med:8.0f} neurons/s  "
                  f"{res['bytes'] / 1e6:8.1f} MB  ({res['bytes'] / res['n_neurons'] / 1e3:.1f} kB/neuron)")
    (work / "import.sqlite").unlink(missing_ok=True)
    fresh = LabelDB(work / "import.sqlite")
    t = time.perf_counter()
    imp = import_labels(fresh, work / "export.jsonl", store=store)
    import_s = time.perf_counter() - t
    assert imp["written"] == args.neurons
    print(f"labels import of the jsonl export: {import_s:.2f} s for {imp['written']} labels")
    out_dir = Path(__file__).resolve().parent / "out"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "bench_export.json").write_text(json.dumps(
        {"neurons": args.neurons, "tokens": args.tokens, "snippets": args.snippets, "repeats": args.repeats,
         "label_seconds": label_s, "import_seconds": import_s, "exports": rows}, indent=1))


if __name__ == "__main__":
    main()
