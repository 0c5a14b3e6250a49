"""The metrics of a dictionary on the held-out contexts: FVU, mean L0, dead and dense features, the
feature-neuron alignment, and the loss recovered when the reconstruction is spliced into the model."""

from __future__ import annotations

import numpy as np
import torch

from solu_core.dictionary.rows import Plan
from solu_core.dictionary.sae import encode_topk
from store import schema
from store.format.dictionary import alignment

DENSE_FREQ = 0.1  # a feature firing on more than this share of tokens counts as dense


def evaluate(plan: Plan, weights: dict[str, np.ndarray], model=None, device=None, progress: bool = False):
    """The metrics of a dictionary on the held-out contexts: FVU, mean L0, dead and dense features, the
    feature-neuron alignment, and (with the recorded model) the loss recovered when the reconstruction is
    spliced in. Returns (metrics dict, sparsity [d_sae] = log10 firing frequency)."""
    dev = device or torch.device("cpu")
    W_enc, b_enc, W_dec, b_dec = (torch.from_numpy(weights[n]).to(dev) for n in ("W_enc", "b_enc", "W_dec", "b_dec"))
    k = plan.cfg.k
    d_sae = W_enc.shape[1]
    sse, sx, sxx, n, l0 = 0.0, torch.zeros(W_enc.shape[0], dtype=torch.float64), 0.0, 0, 0.0
    fired = torch.zeros(d_sae, dtype=torch.int64)
    for c in range(plan.rows.n_chunks):
        a = plan.held_block(c, plan.rows.chunk(c))
        if not a.shape[0]:
            continue
        x = torch.from_numpy(a.astype(np.float32)).to(dev)
        f = encode_topk(x, W_enc, b_enc, b_dec, k)
        rec = f @ W_dec + b_dec
        sse += float((rec - x).double().pow(2).sum())
        sx += x.double().sum(0).cpu()
        sxx += float(x.double().pow(2).sum())
        n += x.shape[0]
        nz = f > 0
        l0 += float(nz.sum())
        fired += nz.sum(0).cpu()
    sst = sxx - float((sx ** 2).sum()) / max(n, 1)
    freq = fired.double() / max(n, 1)
    al = alignment(weights["W_dec"], live=(fired > 0).numpy())  # the shares over the live features only
    metrics = {"heldout_tokens": n, "fvu": sse / sst if sst > 0 else float("nan"), "l0": l0 / max(n, 1),
               "dead": int((fired == 0).sum()), "dense": int((freq > DENSE_FREQ).sum()), "d_sae": int(d_sae),
               "dense_threshold": DENSE_FREQ, "aligned_share": al["aligned_share"], "spread_share": al["spread_share"],
               "median_max_cos": al["median_max_cos"], "alignment_over": "live features",
               **{key: al[key] for key in ("dead_aligned_share", "dead_spread_share", "dead_median_max_cos")}}
    mean = (sx / max(n, 1)).float().numpy()
    metrics.update(loss_recovered(plan, weights, model, mean, dev))
    sparsity = np.log10(np.maximum(freq.numpy(), 1e-10)).astype(np.float32)
    return metrics, sparsity


def splice(model, hook: str, fn):
    """Context manager: run ``model`` (a solu_core Transformer) with ``fn(activation)`` flowing on in place
    of the activation at ``hook``."""
    from contextlib import contextmanager

    layer, _ = schema.parse_hook_name(hook)

    @contextmanager
    def cm():
        mlp = model.blocks[layer].mlp
        mlp.replace = {hook: fn}
        try:
            yield
        finally:
            mlp.replace = None

    return cm()


def loss_recovered(plan: Plan, weights: dict, loaded, mean: np.ndarray, dev) -> dict:
    """Cross-entropy on up to cfg.eval_contexts held-out contexts with the hook as recorded, with the
    dictionary's reconstruction spliced in, and with zero and mean ablation; the share of the ablation's loss
    increase the reconstruction recovers. Needs a neurobrowse checkpoint (None values otherwise)."""
    none = {"ce_original": None, "ce_reconstruction": None, "ce_zero_ablation": None, "ce_mean_ablation": None,
            "loss_recovered": None, "loss_recovered_vs_mean": None}
    if loaded is None or getattr(loaded, "kind", None) != "checkpoint":
        return {**none, "loss_recovered_note": "needs the recorded neurobrowse checkpoint (pass --model)"}
    st, hook = plan.rows.st, plan.rows.hook
    model = loaded.recorder.model
    ctx = st.context_len
    held = np.flatnonzero(plan.held)[:plan.cfg.eval_contexts]
    toks = np.asarray(st.tokens[...], np.int64).reshape(-1, ctx)[held]
    W_enc, b_enc, W_dec, b_dec = (torch.from_numpy(weights[n]) for n in ("W_enc", "b_enc", "W_dec", "b_dec"))
    pdev = next(model.parameters()).device
    W_enc, b_enc, W_dec, b_dec = (t.to(pdev) for t in (W_enc, b_enc, W_dec, b_dec))
    mean_t = torch.from_numpy(mean).to(pdev)
    k = plan.cfg.k

    def recon(x):
        shp = x.shape
        xf = x.reshape(-1, shp[-1]).float()
        return (encode_topk(xf, W_enc, b_enc, b_dec, k) @ W_dec + b_dec).reshape(shp).to(x.dtype)

    fns = {"ce_original": None, "ce_reconstruction": recon, "ce_zero_ablation": lambda x: torch.zeros_like(x),
           "ce_mean_ablation": lambda x: mean_t.to(x.dtype).expand_as(x)}
    out = {}
    with torch.no_grad():
        for key, fn in fns.items():
            tot, cnt = 0.0, 0
            for b in range(0, toks.shape[0], 32):
                t = torch.from_numpy(toks[b:b + 32]).to(pdev)
                if fn is None:
                    ce = model.loss(t)
                else:
                    with splice(model, hook, fn):
                        ce = model.loss(t)
                tot += float(ce) * t.shape[0]
                cnt += t.shape[0]
            out[key] = tot / max(cnt, 1)
    o, r, z, m = out["ce_original"], out["ce_reconstruction"], out["ce_zero_ablation"], out["ce_mean_ablation"]
    out["loss_recovered"] = (z - r) / (z - o) if abs(z - o) > 1e-12 else None
    out["loss_recovered_vs_mean"] = (m - r) / (m - o) if abs(m - o) > 1e-12 else None
    out["eval_contexts"] = int(toks.shape[0])
    return out
