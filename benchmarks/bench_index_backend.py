"""record --index: pass 1 in torch (beside the model, solu_core.device_index) against the Numba kernels,
and both against the bare forward pass.

    .venv/bin/python benchmarks/bench_index_backend.py                          # CPU, demo shape
    python3 benchmarks/bench_index_backend.py --device cuda --models demo,gpt2 --json $OUT/index_backend.json

Models are randomly initialised solu_core models of two shapes (as benchmarks/bench_record_index.py):
``demo`` (the demo preset's shape: 1 layer, d_model 128, d_mlp 512, vocab 2048, context 64, hook_post)
and ``gpt2`` (GPT-2 small's shape: 12 layers, d_model 768, d_mlp 3072, vocab 50257, context 1024, every
layer's hook_post); tokens are random ids, the same for every run. The same work groups
(solu_core.record.compute_group, default batches: one store chunk) run as

  bare   the forward pass with the hooks, activations copied to host float16, nothing else
  numba  record --index --dense none: tokens written and the activations folded into the index by
         store.index.StreamIndexer on the pipeline's writer thread, pass 1 in the Numba kernels
  torch  the same with pass 1 on the model's device in torch (``--index-backend torch``): each chunk's
         pass-1 partial computed there, only it (and the activations, for the samples per unit, which
         stay on the host kernel) copied to the host and folded in (store.index.fold.fold_partial)

interleaved repeat by repeat; medians. Times are until every chunk is written and folded into the
index (the fixed final write of the index arrays, the same for both backends, is reported apart, as
are the logit effects written before the tokens). ratio = bare time / backend time (issue 23's target:
>= 0.9). Also: the main thread's seconds in the device reductions, and the bytes of partials per
chunk against the chunk's float16 activations. Writes the JSON to --json (default
benchmarks/out/bench_index_backend.json).
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


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_record_index import _Split as RandomSplit  # noqa: E402  (token ids and doc starts, one copy)

ROOT = Path(__file__).resolve().parent
SHAPES = {
    "demo": dict(n_layers=1, d_model=128, n_heads=4, d_head=32, d_mlp=512, n_ctx=64, d_vocab=2048),
    "gpt2": dict(n_layers=12, d_model=768, n_heads=12, d_head=64, d_mlp=3072, n_ctx=1024, d_vocab=50257),
}
MODES = ("bare", "numba", "torch")


def _model(shape: dict, device: str):
    import torch

    from solu_core.loading import CheckpointRecorder
    from solu_core.model import ModelConfig, Transformer

    torch.manual_seed(0)
    return CheckpointRecorder(Transformer(ModelConfig(**shape, act_fn="gelu")).eval()).to(device)


def _writer(path: Path, shape: dict, hooks: list[str], n: int):
    from tokenizers import Tokenizer, models

    from store.format.writer import StoreWriter

    tok = Tokenizer(models.WordLevel({f"w{i}": i for i in range(shape["d_vocab"])}, unk_token="w0"))
    return StoreWriter.create_or_resume(path, model_config={**shape, "act_fn": "gelu"}, hooks=hooks, n_tokens=n,
                                        context_len=shape["n_ctx"], tokenizer_json=tok.to_str(),
                                        manifest={"checkpoint_hash": "bench"}, fsync=False, dense=False)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def run_once(model, shape: dict, hooks: list[str], n: int, path: Path, mode: str, device: str,
             batch_size: int | None = None, final: bool = True) -> dict:
    """One run of ``mode`` over ``n`` tokens: seconds streamed (every chunk written and folded), seconds of
    the final index write (``final``; else it is not run: GPT-2's 12 x 3072 neurons take a minute), and
    the recorder's stats. ``batch_size``: contexts per forward pass (None: one store chunk's worth)."""
    from solu_core.device_index import DevicePass1
    from solu_core.record import RecordStats, compute_group, logit_effects, plan_batches
    from store.format.pipeline import ChunkPipeline
    from store.index import StreamIndexer

    split = RandomSplit(n, shape["d_vocab"])
    shutil.rmtree(path, ignore_errors=True)
    w = _writer(path, shape, hooks, n)
    per_group, batch_ctx = plan_batches(w.chunk_tokens, shape["n_ctx"], batch_size)
    stats = RecordStats()
    groups = range(-(-w.n_chunks // per_group))
    out = {"chunk_rows": int(w.chunk_tokens), "chunks": int(w.n_chunks), "batch_contexts": batch_ctx}
    if mode != "bare":  # a fixed cost per layer, not per token: written before the tokens, timed apart
        t = time.perf_counter()
        for layer in w.layers:
            w.write_logit_effects(layer, *logit_effects(model, layer))
        out["logit_s"] = time.perf_counter() - t
    _sync(device)
    t = time.perf_counter()
    if mode == "bare":
        for g in groups:
            compute_group(model, w, split, hooks, g, per_group, batch_ctx, stats)
        _sync(device)
        out.update(streamed_s=time.perf_counter() - t, final_s=0.0)
        return out
    indexer = StreamIndexer(path)
    pass1 = DevicePass1.for_indexer(indexer, device) if mode == "torch" else None
    pending = {name: set(w.pending_chunks(name)) for name in w.per_token_arrays}
    with ChunkPipeline(w, pending, [indexer]) as pipe:
        for g in groups:
            pipe.put(compute_group(model, w, split, hooks, g, per_group, batch_ctx, stats, pass1))
        pipe.close()
        out["streamed_s"] = time.perf_counter() - t
        t = time.perf_counter()
        if final:
            pipe.finish()
        out["final_s"] = time.perf_counter() - t if final else None
    out.update(model_s=stats.model_s, pass1_s=stats.pass1_s, writer_busy_s=pipe.write_s, wait_s=pipe.wait_s)
    if pass1 is not None:
        out["partial_bytes_per_chunk_hook"] = pass1.bytes / max(1, pass1.chunks * len(hooks))
        out["partial_bytes_first_chunk_hook"] = pass1.chunk_bytes[0] / len(hooks)
        out["partial_bytes_last_chunk_hook"] = pass1.chunk_bytes[-1] / len(hooks)
        out["acts_bytes_per_chunk_hook"] = int(w.chunk_tokens) * shape["d_mlp"] * 2
    return out


def bench(name: str, n: int, repeats: int, device: str, modes: list[str], tmp: Path, batch_size: int | None = None,
          final: bool = True) -> dict:
    import torch

    shape = SHAPES[name]
    model = _model(shape, device)
    hooks = [f"blocks.{layer}.mlp.hook_post" for layer in range(shape["n_layers"])]
    n = max(shape["n_ctx"], n // shape["n_ctx"] * shape["n_ctx"])
    for mode in modes:  # compile the kernels, warm the allocator
        run_once(model, shape, hooks, min(n, 4 * shape["n_ctx"]), tmp / "warm", mode, device, batch_size, final)
    runs: dict[str, list[dict]] = {m: [] for m in modes}
    for rep in range(repeats):
        for mode in modes:
            runs[mode].append(run_once(model, shape, hooks, n, tmp / mode, mode, device, batch_size, final))
        print(f"  {name} repeat {rep + 1}: " + ", ".join(f"{m} {runs[m][-1]['streamed_s']:.2f} s" for m in modes)
              + f" (load {os.getloadavg()[0]:.1f})", flush=True)
    med = {m: statistics.median(r["streamed_s"] for r in runs[m]) for m in modes}
    out = {"tokens": n, "hooks": len(hooks), "d_mlp": shape["d_mlp"], "device": device,
           "torch_threads": torch.get_num_threads(), "median_s": med,
           "tok_per_s": {m: n / med[m] for m in modes}, "runs": runs}
    if "bare" in modes:
        out["ratio_to_bare"] = {m: med["bare"] / med[m] for m in modes if m != "bare"}
    if "numba" in modes and "torch" in modes:
        out["torch_over_numba_speed"] = med["numba"] / med["torch"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--models", default="demo")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--tokens", type=int, default=65536, help="tokens per run (demo)")
    ap.add_argument("--gpt2-tokens", type=int, default=8192, help="tokens per run (gpt2)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: every core)")
    ap.add_argument("--batch-size", type=int, default=0, help="contexts per forward pass (0: one store chunk's worth)")
    ap.add_argument("--gpt2-batch-size", type=int, default=0, help="the same for gpt2 (its chunk is one context)")
    ap.add_argument("--final", default="demo", help="models whose final index write is run and timed (gpt2's: ~1 min)")
    ap.add_argument("--json", default=str(ROOT / "out" / "bench_index_backend.json"))
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("error: --device cuda: torch sees no CUDA GPU on this machine")
    modes = [m for m in args.modes.split(",") if m]
    result = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "load_before": os.getloadavg(),
              "cpus": os.cpu_count(), "torch": torch.__version__,
              "gpu": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else None, "models": {}}
    with tempfile.TemporaryDirectory(prefix="bench_index_backend_") as tmp:
        for name in [m for m in args.models.split(",") if m]:
            n = args.gpt2_tokens if name == "gpt2" else args.tokens
            bs = (args.gpt2_batch_size if name == "gpt2" else args.batch_size) or None
            result["models"][name] = bench(name, n, args.repeats, args.device, modes, Path(tmp), bs,
                                           name in args.final.split(","))
            r = result["models"][name]
            print(f"{name}: " + ", ".join(f"{m} {r['tok_per_s'][m]:,.0f} tok/s" for m in modes)
                  + ("; " + ", ".join(f"{m} {v:.2f}x of bare" for m, v in r.get("ratio_to_bare", {}).items()))
                  + (f"; torch {r['torch_over_numba_speed']:.2f}x numba's speed" if "torch_over_numba_speed" in r
                     else ""), flush=True)
            result["load_after"] = os.getloadavg()
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(result, indent=1))  # after each model: a time limit keeps the rest
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
