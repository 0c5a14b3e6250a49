"""Indexing while recording: throughput against the bare forward pass, disk per token, peak memory.

    .venv/bin/python benchmarks/bench_record_index.py                    # all figures
    .venv/bin/python benchmarks/bench_record_index.py --parts throughput --tokens 16384

Models are randomly initialised solu_core models (the speed and the sizes do not depend on the
weights): ``demo`` (the demo preset's shape: 1 layer, d_model 128, d_mlp 512, vocab 2048, context
64, hook_post) and ``gpt2`` (GPT-2 small's shape: 12 layers, d_model 768, d_mlp 3072, vocab 50257,
context 1024; every layer's hook_post). Tokens are random ids (the same for every run).

  throughput  per model, the same work groups and batches (solu_core.record.compute_group) run
              (a) bare: the forward pass with the hooks, activations copied to host float16, nothing
              else; (b) record --index --dense none: the same, each group handed to the recording
              pipeline (store.format.pipeline.ChunkPipeline: tokens written, store.index.StreamIndexer on its
              background thread) into a store without dense activations, until every chunk is written
              and indexed; the fixed costs per store are reported apart: the logit effects before the
              tokens (W_out @ W_U per layer: ~3 s per GPT-2 layer) and the final write of the index
              arrays (per hook, explanations included). Interleaved repeat by repeat; ratio = bare time / record
              time (target >= 0.9).
  disk        bytes on disk per 1M tokens per 1,000 neurons of a store recorded with --dense keep and
              with --index --dense none (--disk-model shape, --disk-tokens tokens), their ratio, the
              --dense none store's breakdown per array, and the neuron page load of its index (token
              windows derived from the tokens) against the same index with the windows stored, and
              the float16 activation windows under other codecs (byte / bit shuffle, zstd levels).
  memory      peak resident memory (ru_maxrss, a fresh process each) of record --index --dense none
              of one hook of 2048 and of 3072 neurons (1 layer, d_model 512, vocab --mem-vocab,
              --mem-tokens tokens) and of GPT-2 small's shape (12 hooks x 3072, vocab 50257,
              --mem-gpt2-tokens tokens), minus the same process's peak for the bare forward pass: what
              the index adds; next to it store.index.run.index_memory_bytes's estimate (for the
              distinct tokens seen, and once every token of the vocabulary is seen).

The dev box has 2 cores shared with other work: compare ratios within one run. Writes
benchmarks/out/bench_record_index.json.
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
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROOT = Path(__file__).resolve().parent
SHAPES = {
    "demo": dict(n_layers=1, d_model=128, n_heads=4, d_head=32, d_mlp=512, n_ctx=64, d_vocab=2048),
    "gpt2": dict(n_layers=12, d_model=768, n_heads=12, d_head=64, d_mlp=3072, n_ctx=1024, d_vocab=50257),
}


def _model(shape: dict, act_fn: str = "gelu"):
    import torch

    from solu_core.model import ModelConfig, Transformer
    from solu_core.loading import CheckpointRecorder

    torch.manual_seed(0)
    return CheckpointRecorder(Transformer(ModelConfig(**shape, act_fn=act_fn)).eval())


class _Split:
    """Token ids and document starts, as solu_core.corpus.folder.TokenSplit offers them."""

    def __init__(self, n: int, vocab: int):
        rng = np.random.default_rng(0)
        self.tokens = rng.integers(0, vocab, n).astype(np.int64)
        self.doc_starts = np.zeros(n, np.uint8)

    def __len__(self):
        return len(self.tokens)


def _writer(path: Path, shape: dict, hooks: list[str], n: int, dense: bool):
    from tokenizers import Tokenizer, models

    from store.format.writer import StoreWriter

    tok = Tokenizer(models.WordLevel({f"w{i}": i for i in range(shape["d_vocab"])}, unk_token="w0"))
    cfg = {**shape, "act_fn": "gelu"}
    return StoreWriter.create_or_resume(path, model_config=cfg, hooks=hooks, n_tokens=n, context_len=shape["n_ctx"],
                                        tokenizer_json=tok.to_str(), manifest={"checkpoint_hash": "bench"},
                                        fsync=False, dense=dense)


def _logits(w, model) -> None:
    from solu_core.record import logit_effects

    for layer in w.layers:
        w.write_logit_effects(layer, *logit_effects(model, layer))


LOGIT_S: list[float] = []  # seconds of each recording's logit effects (timed apart from the tokens)


def run_record(model, shape: dict, hooks: list[str], n: int, path: Path, *, index: bool, dense: bool,
               bare: bool = False, token_rows: int = 0) -> tuple[float, float]:
    """(seconds until every chunk is written and indexed, seconds including the final index write) to
    run every work group of ``n`` tokens: bare (forward only; both the same) or recorded into ``path``."""
    from solu_core.record import RecordStats, compute_group, plan_batches
    from store.index import StreamIndexer
    from store.format.pipeline import ChunkPipeline

    split = _Split(n, shape["d_vocab"])
    shutil.rmtree(path, ignore_errors=True)
    w = _writer(path, shape, hooks, n, dense)
    per_group, batch_ctx = plan_batches(w.chunk_tokens, shape["n_ctx"], None)
    stats = RecordStats()
    groups = range(-(-w.n_chunks // per_group))
    if not bare:  # a fixed cost per layer (W_out @ W_U), not per token: written before the tokens, timed apart
        t = time.perf_counter()
        _logits(w, model)
        LOGIT_S.append(time.perf_counter() - t)
    t = time.perf_counter()
    if bare:
        for g in groups:
            compute_group(model, w, split, hooks, g, per_group, batch_ctx, stats)
        return (time.perf_counter() - t,) * 2
    pending = {name: set(w.pending_chunks(name)) for name in w.per_token_arrays}
    if index and token_rows:  # bounded per-token sums (record --token-rows)
        from store.index import IndexConfig

        consumers = [StreamIndexer(path, IndexConfig(token_rows=token_rows))]
    else:
        consumers = [StreamIndexer(path)] if index else []
    with ChunkPipeline(w, pending, consumers) as pipe:
        for g in groups:
            pipe.put(compute_group(model, w, split, hooks, g, per_group, batch_ctx, stats))
        pipe.close()  # every chunk written and folded into the index
        streamed = time.perf_counter() - t
        pipe.finish()  # the store's finish, then the index arrays (and explanations) written
    return streamed, time.perf_counter() - t


def throughput(name: str, n: int, repeats: int, tmp: Path) -> dict:
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    shape = SHAPES[name]
    model = _model(shape)
    hooks = [f"blocks.{layer}.mlp.hook_post" for layer in range(shape["n_layers"])]
    n = n // shape["n_ctx"] * shape["n_ctx"]
    run_record(model, shape, hooks, min(n, 4 * shape["n_ctx"]), tmp / "warm", index=True, dense=False)  # compile
    bare, rec, total = [], [], []
    for rep in range(repeats):
        bare.append(run_record(model, shape, hooks, n, tmp / "bare", index=False, dense=True, bare=True)[0])
        streamed, whole = run_record(model, shape, hooks, n, tmp / "rec", index=True, dense=False)
        rec.append(streamed)
        total.append(whole)
        print(f"  {name} repeat {rep + 1}: bare {bare[-1]:.2f} s, record --index --dense none {rec[-1]:.2f} s "
              f"(+ {whole - streamed:.2f} s writing the index; the logit effects before it {LOGIT_S[-1]:.2f} s) "
              f"(load {os.getloadavg()[0]:.1f})", flush=True)
    mb, mr, mt = statistics.median(bare), statistics.median(rec), statistics.median(total)
    return {"tokens": n, "hooks": len(hooks), "d_mlp": shape["d_mlp"], "bare_s": bare, "record_index_s": rec,
            "record_index_total_s": total, "bare_tok_per_s": n / mb, "record_index_tok_per_s": n / mr,
            "ratio": mb / mr, "ratio_with_final_write": mb / mt, "final_write_s": mt - mr,
            "logit_effects_s": statistics.median(LOGIT_S[-repeats:])}


def _per_1m_1k(nbytes: int, n: int, neurons: int) -> float:
    """Bytes per 1M tokens per 1,000 neurons."""
    return nbytes / (n / 1e6) / (neurons / 1e3)


def _breakdown(st, n: int, neurons: int) -> dict:
    """Bytes per 1M tokens per 1,000 neurons of each root array / group and of each index array."""
    out = {}
    for entry in sorted(p.name for p in st.path.iterdir() if p.is_dir()):
        if entry == "index":
            for hook in st.hooks:
                folder = st.path / "index" / hook
                for a in sorted(p.name for p in folder.iterdir() if p.is_dir()):
                    out[f"index/{hook}/{a}"] = _per_1m_1k(st.size_on_disk(f"index/{hook}/{a}"), n, neurons)
        else:
            out[entry] = _per_1m_1k(st.size_on_disk(entry), n, neurons)
    return out


def _page_times(path: Path, hook: str, neurons: np.ndarray) -> list[float]:
    """Seconds per neuron page (Store.neuron) of each neuron, as the app reads them: one reader whose
    neuron table is loaded, pages of neurons far apart (no shared index chunk), chunk caches as they fill."""
    from store.format.reader import Store

    st = Store.open(path)
    st.neuron_table(hook)
    out = []
    for j in neurons:
        t = time.perf_counter()
        st.neuron(hook, int(j))
        out.append(time.perf_counter() - t)
    return out


def page_load(path: Path, hook: str, tmp: Path, repeats: int = 5, pages: int = 20) -> dict:
    """Neuron page load of an index that derives its token windows from the tokens (as written) against
    the same index with the windows stored (as indexes before schema.INDEX_DERIVED were), interleaved."""
    from bench_store import copy_with_stored_windows
    from store import schema
    from store.format.reader import Store

    stored = tmp / "page_stored"
    copy_with_stored_windows(path, stored, hook)
    st = Store.open(path)
    assert all(Store.open(stored)._index_stores(hook, a) for a in schema.INDEX_DERIVED)
    rng = np.random.default_rng(0)
    derived_t, stored_t = [], []
    for _ in range(repeats):
        js = rng.choice(st.d_mlp, pages, replace=False)
        derived_t += _page_times(path, hook, js)
        stored_t += _page_times(stored, hook, js)
    md, ms = statistics.median(derived_t), statistics.median(stored_t)
    print(f"  neuron page (median of {len(derived_t)}): windows derived {md * 1e3:.1f} ms, stored "
          f"{ms * 1e3:.1f} ms (load {os.getloadavg()[0]:.1f})", flush=True)
    return {"derived_ms_median": md * 1e3, "stored_ms_median": ms * 1e3, "ratio_derived_over_stored": md / ms,
            "pages": len(derived_t)}


def window_codecs(path: Path, hook: str) -> dict:
    """Compressed bytes of the stored float16 activation windows of ``hook`` under other codecs (chunks of
    schema.INDEX_NEURON_CHUNK neurons, as the index stores them): is the index's zstd-1 the right one?"""
    from numcodecs import Blosc, Zstd

    from store import schema
    from store.format.reader import Store

    st = Store.open(path)
    names = [n for n, (dt, _d) in schema.INDEX_ARRAYS.items() if dt == "float16"]
    codecs = {"zstd-1 (stored)": Zstd(1), "zstd-9": Zstd(9),
              "blosc zstd-1 byte shuffle": Blosc("zstd", 1, Blosc.SHUFFLE),
              "blosc zstd-5 byte shuffle": Blosc("zstd", 5, Blosc.SHUFFLE),
              "blosc zstd-1 bit shuffle": Blosc("zstd", 1, Blosc.BITSHUFFLE),
              "blosc lz4 byte shuffle": Blosc("lz4", 5, Blosc.SHUFFLE)}
    raw, out = 0, dict.fromkeys(codecs, 0)
    for name in names:
        a = np.asarray(st.index_array(hook, name)[...])
        raw += a.nbytes
        for j in range(0, a.shape[0], schema.INDEX_NEURON_CHUNK):
            part = np.ascontiguousarray(a[j:j + schema.INDEX_NEURON_CHUNK])
            for label, codec in codecs.items():
                out[label] += len(codec.encode(part))
    print("  float16 windows (" + ", ".join(names) + f"), {raw / 1e6:.1f} MB raw:", flush=True)
    for label, b in out.items():
        print(f"    {label:28s} {b / 1e6:6.2f} MB (ratio {raw / b:.2f})", flush=True)
    return {"raw_bytes": raw, "bytes": out}


def disk(n: int, tmp: Path, model: str = "demo") -> dict:
    from store.format.reader import Store

    shape = SHAPES[model]
    torch_model = _model(shape)
    hooks = [f"blocks.{layer}.mlp.hook_post" for layer in range(shape["n_layers"])]
    neurons = shape["d_mlp"] * len(hooks)
    n = n // shape["n_ctx"] * shape["n_ctx"]
    out = {"model": model, "tokens": n, "neurons": neurons}
    for label, index, dense in (("dense", False, True), ("dense_none", True, False)):
        path = tmp / f"disk_{label}"
        run_record(torch_model, shape, hooks, n, path, index=index, dense=dense)
        st = Store.open(path)
        size = st.size_on_disk()
        out[label] = {"bytes": size, "bytes_per_1M_tokens_per_1000_neurons": _per_1m_1k(size, n, neurons)}
        if label == "dense_none":
            out[label]["breakdown_bytes_per_1M_tokens_per_1000_neurons"] = _breakdown(st, n, neurons)
            out[label]["index_bytes"] = st.size_on_disk("index")
            out["page_load"] = page_load(path, hooks[0], tmp)
            out["window_codecs"] = window_codecs(path, hooks[0])
        else:
            shutil.rmtree(path)
    out["ratio"] = out["dense_none"]["bytes"] / out["dense"]["bytes"]
    out["index_share_of_dense_none"] = out["dense_none"]["index_bytes"] / out["dense_none"]["bytes"]
    return out


_MEM_CHILD = """
import resource, sys
from pathlib import Path
sys.path.insert(0, {root!r})
import bench_record_index as b
sys.path.insert(0, {src!r})  # the code measured (store, solu_core): this tree or --mem-baseline-src
shape = {shape!r}
model = b._model(shape)
hooks = [f"blocks.{{layer}}.mlp.hook_post" for layer in range(shape["n_layers"])]
kw = dict(token_rows={token_rows}) if {token_rows} else {{}}  # (a baseline tree may not know the argument)
b.run_record(model, shape, hooks, {n}, Path({path!r}), index={index}, dense={dense}, bare={bare}, **kw)
# VmHWM, not ru_maxrss: on Linux a child's ru_maxrss keeps the parent's resident size at the fork, so
# after the throughput part (a parent of ~8.6 GiB) every child read 8.57 GiB
print(next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:")))
"""


def _peak(shape: dict, n: int, path: Path, src: str, **kw) -> int:
    """Peak resident bytes (VmHWM) of a fresh process recording ``n`` tokens of a random ``shape`` model."""
    code = _MEM_CHILD.format(root=str(ROOT), src=src, shape=shape, n=n, path=str(path), **{"token_rows": 0, **kw})
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": src})
    if r.returncode:
        raise SystemExit(r.stderr)
    shutil.rmtree(path, ignore_errors=True)
    return int(r.stdout.split()[-1]) * 1024  # VmHWM is in KiB


def memory(vocab: int, n: int, gpt2_tokens: int, tmp: Path, baseline_src: str | None = None,
           token_rows: tuple = (), one_hook: bool = True) -> dict:
    """Peak memory of record --index --dense none minus the bare forward pass, per case: one hook of 2048
    and of 3072 neurons (vocab ``vocab``, ``n`` tokens) and GPT-2 small's shape (12 hooks x 3072,
    ``gpt2_tokens`` tokens); with ``baseline_src`` the one-hook cases also run that source tree's code;
    ``token_rows``: GPT-2's shape also with the per-token sums bounded to each of these rows (--token-rows)."""
    from store.index.run import index_memory_bytes

    here = str(ROOT.parent)
    one = dict(n_layers=1, d_model=512, n_heads=8, d_head=64, n_ctx=256, d_vocab=vocab)
    cases = {f"1 hook x {d}": ({**one, "d_mlp": d}, n) for d in (2048, 3072)} if one_hook else {}
    if gpt2_tokens:
        ctx = SHAPES["gpt2"]["n_ctx"]
        cases["gpt2 12 hooks x 3072"] = (SHAPES["gpt2"], gpt2_tokens // ctx * ctx)
    bare_kw = dict(index=False, dense=True, bare=True)
    rec_kw = dict(index=True, dense=False, bare=False)
    out = {}
    for name, (shape, tokens) in cases.items():
        path = tmp / "mem"
        peaks = {"bare": _peak(shape, tokens, path, here, **bare_kw),
                 "record_index": _peak(shape, tokens, path, here, **rec_kw)}
        if baseline_src and not name.startswith("gpt2"):
            peaks["record_index_baseline"] = _peak(shape, tokens, path, baseline_src, **rec_kw)
        for rows in token_rows if name.startswith("gpt2") else ():
            peaks[f"record_index_token_rows_{rows}"] = _peak(shape, tokens, path, here, **rec_kw, token_rows=rows)
        seen = int(np.count_nonzero(np.bincount(_Split(tokens, shape["d_vocab"]).tokens, minlength=shape["d_vocab"])))
        est = index_memory_bytes(shape["d_mlp"], 32, shape["d_vocab"], seen, hooks=shape["n_layers"])
        worst = index_memory_bytes(shape["d_mlp"], 32, shape["d_vocab"], hooks=shape["n_layers"])
        r = {**peaks, "tokens": tokens, "index_adds_bytes": peaks["record_index"] - peaks["bare"],
             "estimate_bytes": est, "estimate_every_token_seen_bytes": worst, "distinct_tokens": seen}
        for rows in token_rows if name.startswith("gpt2") else ():
            r[f"estimate_token_rows_{rows}_bytes"] = index_memory_bytes(
                shape["d_mlp"], 32, shape["d_vocab"], seen, hooks=shape["n_layers"], token_rows=rows)
            r[f"estimate_token_rows_{rows}_every_token_seen_bytes"] = index_memory_bytes(
                shape["d_mlp"], 32, shape["d_vocab"], hooks=shape["n_layers"], token_rows=rows)
            print(f"  memory {name}, --token-rows {rows}: record --index --dense none "
                  f"{peaks[f'record_index_token_rows_{rows}'] / 2**30:.2f} GiB (index_memory_bytes says "
                  f"{r[f'estimate_token_rows_{rows}_bytes'] / 2**30:.2f} GiB, "
                  f"{r[f'estimate_token_rows_{rows}_every_token_seen_bytes'] / 2**30:.2f} GiB once every token "
                  f"is seen)", flush=True)
        if "record_index_baseline" in peaks:
            r["baseline_index_adds_bytes"] = peaks["record_index_baseline"] - peaks["bare"]
        out[name] = r
        base = (f", before this change +{r['baseline_index_adds_bytes'] / 2**30:.2f} GiB"
                if "baseline_index_adds_bytes" in r else "")
        print(f"  memory {name}, {tokens:,} tokens ({seen:,} distinct): bare {peaks['bare'] / 2**30:.2f} GiB, "
              f"record --index --dense none {peaks['record_index'] / 2**30:.2f} GiB "
              f"(+{r['index_adds_bytes'] / 2**30:.2f} GiB{base}; index_memory_bytes says {est / 2**30:.2f} GiB, "
              f"{worst / 2**30:.2f} GiB once every "
              f"token of the vocabulary is seen) (load {os.getloadavg()[0]:.1f})", flush=True)
    return {"vocab": vocab, "cases": out}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default="throughput,disk,memory")
    ap.add_argument("--models", default="demo,gpt2")
    ap.add_argument("--tokens", type=int, default=65536, help="tokens per throughput run (demo)")
    ap.add_argument("--gpt2-tokens", type=int, default=8192, help="tokens per throughput run (gpt2)")
    ap.add_argument("--disk-tokens", type=int, default=1 << 20)
    ap.add_argument("--disk-model", default="demo", choices=sorted(SHAPES))
    ap.add_argument("--mem-vocab", type=int, default=50257)
    ap.add_argument("--mem-tokens", type=int, default=16384)
    ap.add_argument("--mem-gpt2-tokens", type=int, default=4096,
                    help="tokens of the 12-hook GPT-2-shaped case (0: skip)")
    ap.add_argument("--mem-token-rows", default="", help="comma-separated bounds (--token-rows) to measure GPT-2's "
                    "shape with as well, e.g. 4096")
    ap.add_argument("--mem-gpt2-only", action="store_true", help="memory: only GPT-2's shape, not the one-hook cases")
    ap.add_argument("--mem-baseline-src", default=None,
                    help="a source tree (e.g. `git archive` of an older commit) whose one-hook peaks to measure too")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=str(ROOT / "out" / "bench_record_index.json"))
    args = ap.parse_args()
    parts = args.parts.split(",")
    out: dict = {"args": vars(args), "machine": f"{os.cpu_count()} cores, shared with other work while measured",
                 "load_avg_1min": [os.getloadavg()[0]]}
    with tempfile.TemporaryDirectory(prefix="bench_record_index_") as d:
        tmp = Path(d)
        if "throughput" in parts:
            out["throughput"] = {m: throughput(m, args.tokens if m == "demo" else args.gpt2_tokens, args.repeats, tmp)
                                 for m in args.models.split(",")}
        if "disk" in parts:
            out["disk"] = disk(args.disk_tokens, tmp, args.disk_model)
        if "memory" in parts:
            rows = tuple(int(x) for x in args.mem_token_rows.split(",") if x)
            out["memory"] = memory(args.mem_vocab, args.mem_tokens, args.mem_gpt2_tokens, tmp, args.mem_baseline_src,
                                   token_rows=rows, one_hook=not args.mem_gpt2_only)
    out["load_avg_1min"].append(os.getloadavg()[0])
    for m, r in out.get("throughput", {}).items():
        print(f"{m}: bare {r['bare_tok_per_s']:,.0f} tok/s, record --index --dense none "
              f"{r['record_index_tok_per_s']:,.0f} tok/s, ratio {r['ratio']:.2f} (target >= 0.9); the index "
              f"write at the end {r['final_write_s']:.1f} s more (ratio {r['ratio_with_final_write']:.2f} with it), "
              f"the logit effects before the tokens {r['logit_effects_s']:.1f} s")
    if "disk" in out:
        dk = out["disk"]
        print(f"disk per 1M tokens per 1000 neurons ({dk['model']} shape, {dk['tokens']:,} tokens): dense "
              f"{dk['dense']['bytes_per_1M_tokens_per_1000_neurons'] / 1e6:,.1f} MB, --dense none "
              f"{dk['dense_none']['bytes_per_1M_tokens_per_1000_neurons'] / 1e6:,.2f} MB ({dk['ratio']:.2%} of dense; "
              f"target < 1%), of which the index {dk['index_share_of_dense_none']:.0%}")
        for name, b in sorted(dk["dense_none"]["breakdown_bytes_per_1M_tokens_per_1000_neurons"].items(),
                              key=lambda kv: -kv[1]):
            if b >= 0.005e6:
                print(f"  {name:60s} {b / 1e6:8.2f} MB")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=1))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
