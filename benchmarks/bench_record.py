"""Recording throughput vs the bare forward pass, and disk per token, in one run (medians of repeats).

    .venv/bin/python benchmarks/bench_record.py                    # GPT-2 small shape + the demo shape
    .venv/bin/python benchmarks/bench_record.py --models gpt2 --contexts 8 --repeats 3

For each model, interleaved per repeat, on the same token batches:
  forward   the bare forward pass with the recording hooks: solu_core.record.compute_group (forward up to
            the last recorded layer, float16 activations copied into host arrays), nothing written;
  inline    a recording whose writer runs after each batch on the same thread (the old recorder);
  overlap   the recording as it runs now: a background thread writes batch g while batch g+1 runs.
Reported: tokens/s of each, overlap / forward (the bar is >= 0.9), and the writer's share of the wall
time: inline = writer time / wall, overlap = time the forward pass waited for the writer / wall.

Models (random weights: speed does not depend on training; nothing is downloaded):
  gpt2  transformers GPT2LMHeadModel(GPT2Config()): 12 layers x 3072 neurons, contexts of 1024 tokens;
  demo  the `demo` preset's SoLU-LN shape (1 layer, d_mlp 512, hook_post + hook_mid, contexts of 64).
Disk: bytes of the finished store per million tokens (the per-token arrays: float16 activations, tokens,
document starts, markers; without the fixed logit effects and tokenizer), and the projection for 100M tokens.
Writes benchmarks/out/record.json.
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


def _tokenizer():
    """A small fast tokenizer (the store needs one; the token ids below are random)."""
    import sysconfig

    from transformers import PreTrainedTokenizerFast

    from solu_core.corpus.bpe import train_tokenizer

    text = (Path(sysconfig.get_paths()["stdlib"]) / "textwrap.py").read_text(encoding="utf-8")
    tok = train_tokenizer([text], 300, progress=False)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>")


def _loaded(name: str):
    """(LoadedModel, context, vocab) with random weights."""
    import torch

    from solu_core import loading

    torch.manual_seed(0)
    tok = _tokenizer()
    if name == "gpt2":
        from transformers import GPT2Config, GPT2LMHeadModel

        model = GPT2LMHeadModel(GPT2Config()).eval()
        return loading.from_memory(model, tok), 1024, 50257
    from solu_core.model import ModelConfig, Transformer
    from solu_core.presets import PRESETS

    cfg = ModelConfig(**{**PRESETS["demo"].model, "act_fn": "solu_ln"})
    rec = loading.CheckpointRecorder(Transformer(cfg).eval())
    loaded = loading.LoadedModel(kind="memory", source=None, recorder=rec, tokenizer=tok.backend_tokenizer,
                                tokenizer_json=tok.backend_tokenizer.to_str(), separator_id=0, hash="random",
                                config=cfg.to_dict())
    return loaded, cfg.n_ctx, cfg.d_vocab


def _du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def bench(name: str, n_contexts: int, repeats: int, work: Path) -> dict:
    import torch

    from solu_core.record import RecordStats, compute_group, open_recording, run_plan, write_logit_effects

    from solu_core.record_config import RecordConfig, TokenIds

    torch.set_num_threads(os.cpu_count() or 1)
    loaded, ctx, vocab = _loaded(name)
    rng = np.random.default_rng(0)
    tokens = rng.integers(1, min(vocab, loaded.tokenizer.get_vocab_size()), (n_contexts, ctx))
    runs: dict[str, list[float]] = {"forward": [], "inline": [], "overlap": []}
    shares: dict[str, list[float]] = {"inline": [], "overlap": []}
    disk = None
    for r in range(repeats):
        for mode in ("forward", "inline", "overlap"):
            out = work / f"{name}-{mode}-{r}"
            cfg = RecordConfig(text=TokenIds(tokens), n_tokens=tokens.size)
            plan = open_recording(loaded, out, cfg, progress=False)
            write_logit_effects(plan)
            st = RecordStats()
            t0 = time.perf_counter()
            if mode == "forward":
                for g in plan.groups(plan.pending()):
                    compute_group(loaded.recorder, plan.writer, plan.split, plan.hooks, g, plan.per_group,
                                  plan.batch_ctx, st)
            else:
                run_plan(plan, loaded.recorder, st, progress=False, threaded=mode == "overlap")
            wall = time.perf_counter() - t0
            runs[mode].append(tokens.size / wall)
            if mode == "inline":
                shares[mode].append(st.write_s / wall)
            elif mode == "overlap":
                shares[mode].append(st.wait_s / wall)
                if disk is None:  # per-token bytes: everything but the fixed logit effects and tokenizer
                    fixed = _du(out / "logit") + _du(out / "tokenizer_json") + _du(out / "done" / "tokenizer_json")
                    disk = (_du(out), fixed)
            shutil.rmtree(out)
            print(f"  {name} {mode:<8} repeat {r}: {tokens.size / wall:,.0f} tok/s", flush=True)
    med = {k: statistics.median(v) for k, v in runs.items()}
    res = {
        "model": name, "tokens_per_run": int(tokens.size), "context": ctx, "hooks": len(plan.hooks),
        "d_mlp": plan.writer.d_mlp, "chunk_tokens": plan.writer.chunk_tokens, "repeats": repeats,
        "tokens_per_s": med, "overlap_over_forward": med["overlap"] / med["forward"],
        "inline_over_forward": med["inline"] / med["forward"],
        "writer_share_inline": statistics.median(shares["inline"]),
        "writer_share_overlap_waited": statistics.median(shares["overlap"]),
        "store_bytes": disk[0], "store_fixed_bytes": disk[1],
        "raw_activation_bytes_per_token": 2 * plan.writer.d_mlp * len(plan.hooks),
    }
    res["disk_bytes_per_1M_tokens"] = (disk[0] - disk[1]) / tokens.size * 1e6
    res["disk_GB_per_100M_tokens"] = res["disk_bytes_per_1M_tokens"] * 100 / 1e9
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="gpt2,demo", help="comma-separated: gpt2, demo")
    ap.add_argument("--contexts", type=int, default=None, help="contexts per run (default: gpt2 8, demo 1024)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--work", default=None, help="scratch folder (default: a temp dir; needs ~1 GB)")
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-record-"))
    work.mkdir(parents=True, exist_ok=True)
    dest = Path(__file__).resolve().parent / "out" / "record.json"
    out = {"results": {}}
    if dest.exists():  # a run of some models keeps the others' last results
        out = json.loads(dest.read_text())
    load_start = os.getloadavg()[0]
    try:
        for name in [m.strip() for m in args.models.split(",") if m.strip()]:
            n = args.contexts or {"gpt2": 8, "demo": 1024}[name]
            res = bench(name, n, args.repeats, work)
            res.update(load_average_start=load_start, load_average_end=os.getloadavg()[0], cpus=os.cpu_count(),
                       measured=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
            out["results"][name] = res
            print(json.dumps(res, indent=1), flush=True)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    dest.parent.mkdir(exist_ok=True)
    dest.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {dest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
