"""The parts of benchmarks/gpu_check.sh that are not a benchmark of their own (run by it; docs/speed.md "On a GPU").

    python3 benchmarks/gpu_check.py env --json $OUT/env.json
    python3 benchmarks/gpu_check.py demo --device cuda --json $OUT/demo.json
    python3 benchmarks/gpu_check.py precision --device cuda --json $OUT/precision.json

  env        the machine: GPU name and memory, torch / CUDA / numba versions, CPU count
  demo       the tiny demo (``neurobrowse demo --preset tiny --no-window --no-control``, its library call) on
             ``--device``: corpus, training (bf16 autocast on CUDA), recording with the index built while
             recording (on CUDA: pass 1 in torch beside the model), seconds per step; then checks that
             every hook is indexed and reads one neuron page of each store
  precision  where mixed precision helps: seconds per forward pass with the recording hooks (float32, TF32
             matrix products, bf16 autocast) and per training step (forward + backward + AdamW; float32 vs
             the bf16 autocast solu_core.train uses on CUDA) for the demo and GPT-2-small shapes, medians of
             a few repeats after a warm-up, and the largest difference of the recorded activations from
             float32's (what a lower-precision forward would change in a store)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_index_backend import SHAPES  # noqa: E402


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def env() -> dict:
    import numba
    import numpy as np
    import torch

    out = {"torch": torch.__version__, "cuda": torch.version.cuda, "numba": numba.__version__,
           "numpy": np.__version__, "cpus": os.cpu_count(), "load": os.getloadavg(), "python": sys.version.split()[0]}
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        out.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2**30, 1), multiprocessors=p.multi_processor_count)
    return out


def demo(device: str) -> dict:
    from neurobrowse.demo import DemoConfig, run_pipeline
    from store.format.neuron_page import neuron_page
    from store.format.reader import Store

    with tempfile.TemporaryDirectory(prefix="gpu_demo_") as work:
        t = time.perf_counter()
        res = run_pipeline(DemoConfig(preset="tiny", device=device, progress=False, controls=(), workdir=Path(work)))
        wall = time.perf_counter() - t
        stores = {}
        for act, path in res.stores.items():
            st = Store.open(path)
            indexed = {h: bool(st.is_indexed(h)) for h in st.recorded_hooks}
            page = neuron_page(st, st.recorded_hooks[0], 0)
            stores[act] = {"indexed": indexed, "tokens": int(st.n_tokens), "page_top": len(page.top),
                           "complete": bool(st.complete)}
        ok = all(all(s["indexed"].values()) and s["complete"] and s["page_top"] > 0 for s in stores.values())
    return {"device": device, "wall_s": wall, "steps_s": res.seconds, "stores": stores, "ok": ok}


def _median_s(fn, device: str, repeats: int = 5) -> float:
    fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _precision_one(name: str, device: str, contexts: int) -> dict:
    import torch

    from solu_core.model import ModelConfig, Transformer

    shape = SHAPES[name]
    torch.manual_seed(0)
    model = Transformer(ModelConfig(**shape, act_fn="solu_ln")).to(device)
    hooks = [f"blocks.{layer}.mlp.hook_post" for layer in range(shape["n_layers"])]
    x = torch.randint(0, shape["d_vocab"], (contexts, shape["n_ctx"]), device=device)
    dev_type = torch.device(device).type
    res: dict = {"contexts": contexts, "n_ctx": shape["n_ctx"]}

    def forward(mode):
        def run():
            with torch.no_grad(), torch.autocast(dev_type, dtype=torch.bfloat16, enabled=mode == "bf16"):
                return model.run_with_mlp_cache(x, hooks, dtype=torch.float16)
        return run

    model.eval()
    ref = forward("fp32")()
    for mode in ("fp32", "tf32", "bf16"):
        torch.backends.cuda.matmul.allow_tf32 = mode == "tf32"
        res[f"forward_{mode}_s"] = _median_s(forward(mode), device)
        got = forward(mode)()
        res[f"forward_{mode}_max_abs_diff"] = max(float((got[h].float() - ref[h].float()).abs().max()) for h in hooks)
    torch.backends.cuda.matmul.allow_tf32 = False
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    for mode in ("fp32", "bf16"):
        def step():
            with torch.autocast(dev_type, dtype=torch.bfloat16, enabled=mode == "bf16"):
                loss = model.loss(x)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        res[f"train_step_{mode}_s"] = _median_s(step, device, repeats=3)
    res["train_bf16_speedup"] = res["train_step_fp32_s"] / res["train_step_bf16_s"]
    res["forward_bf16_speedup"] = res["forward_fp32_s"] / res["forward_bf16_s"]
    res["forward_tf32_speedup"] = res["forward_fp32_s"] / res["forward_tf32_s"]
    return res


def precision(device: str, models: list[str], contexts: dict[str, int]) -> dict:
    return {name: _precision_one(name, device, contexts[name]) for name in models}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("part", choices=("env", "demo", "precision"))
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--models", default="demo,gpt2")
    ap.add_argument("--contexts", default="demo:256,gpt2:8", help="contexts per batch in `precision`, per model")
    ap.add_argument("--json", required=True)
    args = ap.parse_args()
    if args.part == "env":
        result = env()
    elif args.part == "demo":
        result = demo(args.device)
    else:
        ctx = {k: int(v) for k, v in (p.split(":") for p in args.contexts.split(","))}
        result = precision(args.device, [m for m in args.models.split(",") if m], ctx)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=1))
    print(json.dumps(result)[:2000])


if __name__ == "__main__":
    main()
