"""A dictionary's features indexed with the same indexer as neurons (``index_features``), and their logit
effects through the decoder (W_dec @ W_out @ W_U)."""

from __future__ import annotations

import time

import numpy as np
import torch

from solu_core.dictionary.rows import HookRows, recorded_model
from store import schema
from store.format.dictionary import DictionaryError, list_dictionaries


def feature_logit_effects(loaded, hook: str, W_dec: np.ndarray, k: int = schema.K_LOGIT,
                          mid_scale: float | None = None) -> tuple[np.ndarray, ...]:
    """(up_tokens, up_values, down_tokens, down_values), each [d_sae, k]: the tokens whose logits each
    feature's decoder direction raises and lowers most along the direct path. A hook_post feature's
    direction d goes through W_out @ W_U; a SoLU-LN hook_mid feature's through the LayerNorm's
    linearisation at the typical scale (d - mean(d)) * ln.w / ``mid_scale`` first."""
    rec = loaded.recorder
    layer, kind = schema.parse_hook_name(hook)
    d = torch.from_numpy(np.asarray(W_dec, np.float32))
    w_out = rec.w_out(layer).detach().float().cpu()  # [d_mlp, d_model]
    w_u = rec.w_u().detach().float().cpu()  # [d_model, d_vocab]
    if kind == "hook_mid" and getattr(loaded, "kind", None) == "checkpoint":
        ln = rec.model.blocks[layer].mlp.ln
        d = (d - d.mean(1, keepdim=True)) * ln.w.detach().float().cpu() / float(mid_scale or 1.0)
    n_vocab = loaded.tokenizer.get_vocab_size() if getattr(loaded, "kind", None) != "checkpoint" else w_u.shape[1]
    eff = (d @ w_out) @ w_u[:, :n_vocab]  # [d_sae, d_vocab]
    k = min(k, eff.shape[1])
    up = torch.topk(eff, k, dim=1, largest=True, sorted=True)
    down = torch.topk(eff, k, dim=1, largest=False, sorted=True)
    return (up.indices.int().numpy(), up.values.numpy(), down.indices.int().numpy(), down.values.numpy())


def index_features(store, feature_hook: str | None = None, *, model: str | None = None, device: str = "auto",
                   k: int = schema.DEFAULT_K, force: bool = False, progress: bool = True,
                   index_config=None) -> dict:
    """Index the features of one dictionary of ``store`` (every one not indexed yet when None) with the same
    indexer as neurons: their activations are computed chunk by chunk from the source hook (or by the
    recorded model for a --dense none store); logit effects through the decoder when the model is found;
    the per-token peak of the source hook's neurons (for the hidden-feature candidates). Returns a summary
    per feature hook."""
    import dataclasses

    from store.format import features as feats
    from store.format.reader import as_store
    from store.index import IndexConfig
    from store.index.run import index_hook

    st = as_store(store)
    have = list_dictionaries(st.path)
    if feature_hook is None:
        hooks = [h for h in have if force or not st.is_indexed(h)]
    else:
        if feature_hook not in have:
            raise DictionaryError(f"{st.path} has no dictionary {feature_hook!r}; it has "
                                  f"{', '.join(have) or 'none (train one with `neurobrowse features train`)'}")
        hooks = [feature_hook]
    cfg = dataclasses.replace(index_config or IndexConfig(), k=k)
    out = {}
    loaded_cache: dict = {}
    for fh in hooks:
        src_hook, _ = schema.feature_source(fh)
        if src_hook not in st.recorded_hooks:
            raise DictionaryError(f"the dictionary {fh} reads {src_hook}, which {st.path} did not record")
        d = st.dictionary(fh)
        key = model or st.manifest.get("checkpoint_path")
        if key not in loaded_cache:
            loaded_cache[key] = recorded_model(st, model, device, need=not st.dense)
        loaded = loaded_cache[key]
        reader = None
        if not st.dense:
            rows = HookRows.__new__(HookRows)  # the source hook's rows, computed by the model (no dense chunks)
            rows.st, rows.hook, rows.n_chunks = st, src_hook, st.n_chunks
            rows.ct, rows.ctx, rows.d_in, rows.loaded = st.chunk_tokens, st.context_len, int(st.d_mlp), loaded

            def reader(c, rows=rows, d=d):
                return d.encode(rows.chunk(c)).astype(np.float16)
        t0 = time.perf_counter()
        if loaded is not None and (force or not feats.has_feature_logits(st, fh)):
            mid_scale = d.meta.get("mid_scale") if isinstance(d.meta, dict) else None
            if schema.parse_hook_name(src_hook)[1] == "hook_mid" and mid_scale is None:
                mid_scale = feats.typical_row_std(st, src_hook, reader=None if st.dense else
                                                  (lambda c, r=rows: r.chunk(c)))
            feats.write_feature_logits(st.path, fh, *feature_logit_effects(loaded, fh.rsplit(".sae.", 1)[0], d.W_dec,
                                                                            mid_scale=mid_scale))
        t_logit = time.perf_counter() - t0
        summary = index_hook(st, fh, cfg, force=force, progress=progress, reader=reader)
        t_index = time.perf_counter() - t0 - t_logit
        peak = feats.write_neuron_peak(st, fh, reader=None if st.dense else (lambda c, r=rows: r.chunk(c)),
                                       force=force)
        out[fh] = {**summary, "logit_s": t_logit, "index_s": t_index, "peak": peak}
    return out
