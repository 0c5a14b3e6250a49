"""Training figures: SoLU-LN vs GeLU throughput, and the demo pair's losses against n-gram baselines.

    .venv/bin/python benchmarks/bench_train.py                 # both parts (demo pair: ~6-10 min on 2 cores)
    .venv/bin/python benchmarks/bench_train.py --skip-demo     # throughput only (~1 min)
    .venv/bin/python benchmarks/bench_train.py --preset tiny   # a quick smoke run of the whole script

1. Throughput: GeLU, SoLU-LN and plain SoLU models of the same shape take the same optimizer steps
   on the same batches, interleaved (gelu, solu_ln, solu, gelu, ...) so machine load hits all alike;
   the median step time over repeats gives tokens/s and the SoLU-LN / GeLU ratio.
2. Demo pair: builds the demo corpus (or reuses it), trains GeLU, SoLU-LN and plain SoLU with the
   preset, and scores each on the same held-out tokens as a unigram and an interpolated bigram
   model fitted on the train split (the bigram's interpolation weight is tuned on those same val
   tokens, which favours the baseline). All losses in nats/token.

Writes benchmarks/out/bench_train[_<preset>].json and prints a table. Record the machine load
printed with it: the development machine is a shared 2-core VM.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere: the repository's packages go first, so imports follow

from solu_core.corpus.config import CorpusConfig  # noqa: E402
from solu_core.corpus.build import build_corpus  # noqa: E402
from solu_core.corpus.folder import load_split, read_manifest  # noqa: E402
from solu_core.checkpoint import load_checkpoint  # noqa: E402
from solu_core.model import ModelConfig, Transformer  # noqa: E402
from solu_core.train import (  # noqa: E402
    _set_threads,
    batch_at,
    get_preset,
    make_optimizer,
    train_pair,
    val_windows,
)

OUT = ROOT / "benchmarks" / "out"


def throughput(shape: dict, batch_size: int, steps: int, repeats: int, threads: int | None) -> dict:
    """Median tokens/s of one optimizer step for each act_fn at the same shape and batches."""
    dev = torch.device("cpu")
    n = _set_threads(dev, threads)
    rng_tokens = np.random.default_rng(0).integers(0, shape["d_vocab"], 200_000).astype(np.uint16)
    acts = ("gelu", "solu_ln", "solu")
    models, opts = {}, {}
    for a in acts:
        torch.manual_seed(0)
        models[a] = Transformer(ModelConfig(**shape, act_fn=a)).train()
        opts[a] = make_optimizer(models[a], get_preset("demo").train)
    times = {a: [] for a in acts}  # wall seconds per step
    cpu = {a: [] for a in acts}  # process CPU seconds per step: robust to other processes when threads == 1

    def step(a, s):
        x = batch_at(rng_tokens, s, 0, batch_size, shape["n_ctx"])
        loss = models[a].loss(x)
        opts[a].zero_grad(set_to_none=True)
        loss.backward()
        opts[a].step()

    for a in acts:  # warm-up
        for s in range(3):
            step(a, s)
    for r in range(repeats):
        for a in acts[r % 3:] + acts[: r % 3]:  # rotate the order so no act_fn always runs first
            t0, c0 = time.perf_counter(), time.process_time()
            for s in range(steps):
                step(a, r * steps + s)
            times[a].append((time.perf_counter() - t0) / steps)
            cpu[a].append((time.process_time() - c0) / steps)
    tok = batch_size * shape["n_ctx"]
    res = {a: {"median_step_s": statistics.median(t), "tokens_per_s": tok / statistics.median(t),
               "best_tokens_per_s": tok / min(t), "tokens_per_cpu_s": tok / statistics.median(cpu[a]),
               "step_s_all": [round(x, 5) for x in t]}
           for a, t in times.items()}
    return {
        "shape": shape, "batch_size": batch_size, "steps_per_repeat": steps, "repeats": repeats, "threads": n,
        "per_act_fn": res,
        "solu_ln_over_gelu": res["solu_ln"]["tokens_per_s"] / res["gelu"]["tokens_per_s"],
        "solu_over_gelu": res["solu"]["tokens_per_s"] / res["gelu"]["tokens_per_s"],
        # best-of-repeats is less sensitive to other processes on a shared machine
        "solu_ln_over_gelu_best": res["solu_ln"]["best_tokens_per_s"] / res["gelu"]["best_tokens_per_s"],
        "solu_ln_over_gelu_cpu": res["solu_ln"]["tokens_per_cpu_s"] / res["gelu"]["tokens_per_cpu_s"],
    }


def ngram_baselines(train: np.ndarray, windows: torch.Tensor, vocab: int) -> dict:
    """Unigram (add-1) and interpolated bigram losses on exactly the tokens the models are scored on."""
    train = np.asarray(train, dtype=np.int64)
    uni = np.bincount(train, minlength=vocab).astype(np.float64) + 1.0
    uni /= uni.sum()
    w = windows.numpy()
    prev, nxt = w[:, :-1].ravel(), w[:, 1:].ravel()  # the model predicts nxt from a context ending in prev
    uni_loss = float(-np.log(uni[nxt]).mean())
    pair = train[:-1] * vocab + train[1:]
    codes, counts = np.unique(pair, return_counts=True)
    prev_counts = np.bincount(train[:-1], minlength=vocab).astype(np.float64)
    q = prev * vocab + nxt
    pos = np.searchsorted(codes, q)
    pos = np.minimum(pos, len(codes) - 1)
    c = np.where(codes[pos] == q, counts[pos], 0).astype(np.float64)
    ml = np.divide(c, prev_counts[prev], out=np.zeros_like(c), where=prev_counts[prev] > 0)
    best = None
    for lam in np.linspace(0.0, 0.98, 50):
        loss = float(-np.log(lam * ml + (1 - lam) * uni[nxt]).mean())
        if best is None or loss < best[0]:
            best = (loss, float(lam))
    return {"unigram": uni_loss, "bigram": best[0], "bigram_lambda": best[1], "tokens": int(len(nxt))}


def demo_pair(preset: str, threads: int | None, force: bool) -> dict:
    p = get_preset(preset)
    corpus = OUT / f"corpus_{preset}"
    t0 = time.perf_counter()
    build_corpus(corpus, CorpusConfig(vocab_size=p.vocab_size, max_mb=p.corpus_max_mb), progress=True, force=force)
    corpus_s = time.perf_counter() - t0
    models = OUT / f"models_{preset}"
    walls = {}
    for a in ("gelu", "solu_ln", "solu"):
        t0 = time.perf_counter()
        train_pair(corpus, models, preset=preset, act_fns=(a,), threads=threads, force=force)
        walls[a] = time.perf_counter() - t0
    m = read_manifest(corpus)
    vocab = m["tokenizer"]["vocab_size"]
    res = {"corpus_build_s": round(corpus_s, 1), "corpus_mb": m["counts"]["bytes"] / 1e6,
           "train_tokens": m["splits"]["train"]["n_tokens"], "val_tokens_total": m["splits"]["val"]["n_tokens"],
           "vocab": vocab, "models": {}}
    ck = None
    for a in walls:
        ck = load_checkpoint(models / a, device="cpu")
        met = ck.meta["metrics"]
        res["models"][a] = {
            "val_loss": met["val_loss"], "train_loss": met["train_loss"], "wall_s_total": round(walls[a], 1),
            "train_wall_s": met["wall_s"], "tokens_per_s": met["tokens_per_s"], "tokens_seen": met["tokens_seen"],
            "threads": met.get("threads"), "n_params": ck.meta["n_params"],
            "safetensors_bytes": (models / a / "model.safetensors").stat().st_size,
        }
    val = val_windows(load_split(corpus, "val").tokens, ck.config.n_ctx, p.train.eval_tokens * 4)
    res["baselines"] = ngram_baselines(load_split(corpus, "train").tokens, val, vocab)
    res["model_config"] = {k: v for k, v in ck.config.to_dict().items() if k != "act_fn"}
    res["training"] = ck.meta["training"]
    g = res["models"]["gelu"]["val_loss"]
    res["solu_ln_vs_gelu_loss_pct"] = 100 * (res["models"]["solu_ln"]["val_loss"] - g) / g
    res["pair_wall_s"] = round(walls["gelu"] + walls["solu_ln"], 1)
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="demo", help="preset for the pair and the throughput shape (default: demo)")
    ap.add_argument("--skip-demo", action="store_true", help="throughput only")
    ap.add_argument("--repeats", type=int, default=7, help="throughput repeats (median taken)")
    ap.add_argument("--steps", type=int, default=10, help="steps per throughput repeat")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (default: train.py's choice)")
    ap.add_argument("--batch-size", type=int, default=None, help="throughput batch (default: the preset's)")
    ap.add_argument("--ctx", type=int, default=None, help="throughput context length (default: the preset's)")
    ap.add_argument("--force", action="store_true", help="rebuild the corpus and retrain the models")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    p = get_preset(args.preset)
    shape = {**p.model, "d_vocab": p.vocab_size, **({"n_ctx": args.ctx} if args.ctx else {})}
    load_before = os.getloadavg()
    result = {"preset": args.preset, "machine": {"cpus": os.cpu_count(), "loadavg_before": load_before,
                                                 "torch": torch.__version__}}
    name = "bench_train.json" if args.preset == "demo" else f"bench_train_{args.preset}.json"
    result["throughput"] = throughput(shape, args.batch_size or p.train.batch_size, args.steps, args.repeats,
                                      args.threads)
    result["machine"]["loadavg_after"] = os.getloadavg()
    (OUT / name).write_text(json.dumps(result, indent=1))  # kept if the demo part is interrupted
    if not args.skip_demo:
        result["demo"] = demo_pair(args.preset, args.threads, args.force)
        result["machine"]["loadavg_after"] = os.getloadavg()
        (OUT / name).write_text(json.dumps(result, indent=1))

    t = result["throughput"]
    print(f"\nthroughput at {shape} batch {t['batch_size']}, {t['threads']} thread(s), median of {t['repeats']}:")
    for a, r in t["per_act_fn"].items():
        print(f"  {a:<8} {r['tokens_per_s']:>10,.0f} tokens/s (median wall)  "
              f"{r['tokens_per_cpu_s']:>10,.0f} tokens/CPU-s")
    print(f"  SoLU-LN / GeLU = {t['solu_ln_over_gelu']:.3f} (median wall; best-of-repeats "
          f"{t['solu_ln_over_gelu_best']:.3f}; per CPU-second {t['solu_ln_over_gelu_cpu']:.3f})   "
          f"SoLU / GeLU = {t['solu_over_gelu']:.3f}")
    if "demo" in result:
        d = result["demo"]
        b = d["baselines"]
        print(f"\n{args.preset} pair on {d['corpus_mb']:.1f} MB ({d['train_tokens']:,} train tokens, "
              f"vocab {d['vocab']}); "
              f"val loss on {b['tokens']:,} held-out tokens, nats/token:")
        print(f"  {'model':<14}{'val loss':>9}{'train s':>9}{'tok/s':>9}{'params':>10}{'file MB':>9}")
        for a, r in d["models"].items():
            print(f"  {a:<14}{r['val_loss']:>9.4f}{r['train_wall_s']:>9.0f}{r['tokens_per_s']:>9,.0f}"
                  f"{r['n_params']:>10,}{r['safetensors_bytes'] / 1e6:>9.2f}")
        print(f"  {'unigram':<14}{b['unigram']:>9.4f}")
        print(f"  {'bigram':<14}{b['bigram']:>9.4f}   (interpolation weight {b['bigram_lambda']:.2f})")
        print(f"  SoLU-LN vs GeLU: {d['solu_ln_vs_gelu_loss_pct']:+.2f}%   pair wall time (GeLU + SoLU-LN, incl. "
              f"load/eval): {d['pair_wall_s']:.0f} s; corpus build {d['corpus_build_s']:.0f} s")
    print(f"\nload average before {load_before[0]:.1f}, after {result['machine']['loadavg_after'][0]:.1f} "
          f"(the development machine is shared); JSON: {OUT / name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
