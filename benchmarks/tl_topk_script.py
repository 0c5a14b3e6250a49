"""What a researcher writes instead of neurobrowse: a TransformerLens top-k script (issue 23's baseline).

    .venv/bin/python benchmarks/tl_topk_script.py CHECKPOINT_DIR --tokens 131072 --out /tmp/tl_topk

Loads a neurobrowse checkpoint (config.json + model.safetensors) into a ``HookedTransformer`` (no
weight processing, as docs/models.md says), runs ``run_with_hooks`` over the first ``--tokens`` tokens
of the checkpoint corpus's validation split in contexts of the model's n_ctx, keeps a running
``torch.topk`` (values and global positions) per neuron of every MLP hook neurobrowse records by
default (hook_post, and hook_mid for SoLU-LN), and ``np.save``s them. Nothing else: no bottom-k, no
windows, no samples, histograms, moments, per-token statistics or scores. ``benchmarks/bench_vs_tl.py``
times it as a whole process against ``neurobrowse record --index --dense none`` on the same tokens.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from transformer_lens import HookedTransformer, HookedTransformerConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("--tokens", type=int, default=131072)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--batch", type=int, default=32, help="contexts per forward pass")
    ap.add_argument("--out", default="/tmp/tl_topk")
    args = ap.parse_args()
    t0 = time.perf_counter()
    ck = Path(args.checkpoint)
    cfg = json.loads((ck / "config.json").read_text())
    tl_cfg = {k: v for k, v in cfg.items() if k in HookedTransformerConfig.__dataclass_fields__}
    model = HookedTransformer(HookedTransformerConfig(**tl_cfg))
    model.load_and_process_state_dict(load_file(str(ck / "model.safetensors")), fold_ln=False,
                                      center_writing_weights=False, center_unembed=False,
                                      fold_value_biases=False, refactor_factored_attn_matrices=False)
    model.eval()
    corpus = Path(cfg["corpus_dir"])  # the validation split's token shards, as `neurobrowse record` takes them
    tokens = np.concatenate([np.load(f) for f in sorted((corpus / "val").glob("tokens_*.npy"))]).astype(np.int64)
    ctx = int(model.cfg.n_ctx)
    n = args.tokens // ctx * ctx
    tokens = torch.from_numpy(tokens[:n].reshape(-1, ctx))
    names = [f"blocks.{layer}.mlp.{h}" for layer in range(model.cfg.n_layers) for h in ("hook_mid", "hook_post")
             if f"blocks.{layer}.mlp.{h}" in model.hook_dict]
    top = {h: (torch.full((args.k, model.cfg.d_mlp), -torch.inf),
               torch.zeros((args.k, model.cfg.d_mlp), dtype=torch.long))
           for h in names}

    def keep(act, hook, row0):
        a = act.reshape(-1, act.shape[-1]).float()  # [batch * ctx, d_mlp]
        vals, pos = top[hook.name]
        v = torch.cat([vals, a])
        p = torch.cat([pos, torch.arange(row0, row0 + a.shape[0]).unsqueeze(1).expand_as(a)])
        tv, ti = torch.topk(v, args.k, dim=0)
        top[hook.name] = (tv, torch.gather(p, 0, ti))

    with torch.no_grad():
        for b in range(0, tokens.shape[0], args.batch):
            batch = tokens[b:b + args.batch]
            row0 = b * ctx
            model.run_with_hooks(batch, return_type=None,
                                 fwd_hooks=[(h, lambda act, hook, row0=row0: keep(act, hook, row0)) for h in names])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for h, (v, p) in top.items():
        np.save(out / f"{h}.values.npy", v.T.numpy())
        np.save(out / f"{h}.positions.npy", p.T.numpy())
    print(f"top-{args.k} of {len(names)} hooks over {n:,} tokens in {time.perf_counter() - t0:.1f} s -> {out}")


if __name__ == "__main__":
    main()
