"""TransformerLens models (``solu-1l``, ``gelu-2l``, ``gpt2-small``, ``pythia-70m``, ...) for recording.

Loaded without weight processing (``from_pretrained_no_processing``: no LayerNorm folding, no weight
centring), so ``hook_mid`` and ``hook_post`` of a SoLU-LN model are the activations the model really
computes before and after its MLP LayerNorm. Weights come from the local Hugging Face cache only;
nothing is downloaded unless the caller allows it (``neurobrowse record --allow-download``).
"""

from __future__ import annotations

import os
from contextlib import contextmanager

import torch
import torch.nn as nn

from store import schema
from store.errors import CheckpointError

MLP_HOOKS = ("hook_pre", "hook_mid", "hook_post")


class TLRecorder(nn.Module):
    """A ``HookedTransformer`` with the recorder's interface (as solu_core.hf.HFRecorder)."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model.eval()
        cfg = model.cfg
        self.n_layers, self.d_model, self.d_mlp = int(cfg.n_layers), int(cfg.d_model), int(cfg.d_mlp)
        self.act_fn = str(cfg.act_fn)
        self.n_ctx = int(cfg.n_ctx)

    def hook_names(self, layer: int) -> list[str]:
        return [schema.hook_name(layer, h) for h in MLP_HOOKS if schema.hook_name(layer, h) in self.model.hook_dict]

    def config_dict(self, d_vocab: int) -> dict:
        cfg = self.model.cfg
        return {"n_layers": self.n_layers, "d_model": self.d_model, "d_mlp": self.d_mlp, "d_vocab": int(d_vocab),
                "n_ctx": self.n_ctx, "act_fn": self.act_fn, "n_heads": int(cfg.n_heads), "d_head": int(cfg.d_head),
                "normalization_type": cfg.normalization_type, "model_name": cfg.model_name}

    def w_out(self, layer: int) -> torch.Tensor:
        return self.model.blocks[layer].mlp.W_out  # [d_mlp, d_model]

    def w_u(self) -> torch.Tensor:
        return self.model.unembed.W_U  # [d_model, d_vocab]

    @torch.no_grad()
    def run_with_mlp_cache(self, tokens: torch.Tensor, names: list[str],
                           dtype: torch.dtype = torch.float16) -> dict[str, torch.Tensor]:
        """Run up to the last layer named; each named hook's activations [batch, pos, d_mlp] in ``dtype``."""
        have = {h for layer in range(self.n_layers) for h in self.hook_names(layer)}
        bad = [n for n in names if n not in have]
        if bad:
            raise ValueError(f"this {self.act_fn} model has no hook {bad[0]!r}; it has {', '.join(sorted(have))}")
        out: dict[str, torch.Tensor] = {}

        def keep(act, hook):
            out[hook.name] = act.detach().to(dtype)

        last = max(schema.parse_hook_name(n)[0] for n in names)
        self.model.run_with_hooks(tokens, fwd_hooks=[(n, keep) for n in names], stop_at_layer=last + 1,
                                  return_type=None)
        return {n: out[n] for n in names}


@contextmanager
def _offline(offline: bool):
    """HF_HUB_OFFLINE for the duration (huggingface_hub reads it at import, so set the constant too)."""
    if not offline:
        yield
        return
    import huggingface_hub.constants as hc

    old_env, old_const = os.environ.get("HF_HUB_OFFLINE"), hc.HF_HUB_OFFLINE
    os.environ["HF_HUB_OFFLINE"] = "1"
    hc.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        hc.HF_HUB_OFFLINE = old_const
        if old_env is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = old_env


def fetch_hint(name: str, repo: str) -> str:
    return (f"fetch the weights once on a machine with internet: `neurobrowse record {name} --allow-download ...`, "
            f"or `huggingface-cli download {repo}` and copy the Hugging Face cache (~/.cache/huggingface) here")


def load_tl_model(name: str, device: torch.device, allow_download: bool = False):
    """(TLRecorder on ``device``, its transformers tokenizer) for a TransformerLens model name."""
    from transformer_lens import HookedTransformer
    from transformer_lens.loading_from_pretrained import get_official_model_name

    try:
        repo = get_official_model_name(name)
    except ValueError:
        raise CheckpointError(f"{name!r} is not a checkpoint directory, a Hugging Face model folder or a "
                              "TransformerLens model name (e.g. solu-1l, gelu-2l, gpt2-small, pythia-70m)") from None
    if not allow_download:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError

        try:
            snapshot_download(repo, local_files_only=True)
        except (LocalEntryNotFoundError, OSError, ValueError):
            raise CheckpointError(f"the weights of {name} ({repo}) are not in the local Hugging Face cache; "
                                  f"{fetch_hint(name, repo)}") from None
    try:
        with _offline(not allow_download):
            model = HookedTransformer.from_pretrained_no_processing(name, device=str(device))
    except (OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"cannot load {name} ({repo}) from the local Hugging Face cache "
                              f"({str(e).splitlines()[0]}); {fetch_hint(name, repo)}") from e
    if model.tokenizer is None or not getattr(model.tokenizer, "is_fast", False):
        raise CheckpointError(f"{name} came without a fast tokenizer (tokenizer.json); neurobrowse needs one")
    return TLRecorder(model), model.tokenizer
