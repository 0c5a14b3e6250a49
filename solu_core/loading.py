"""The models neurobrowse records, whatever their origin, behind one small interface.

``load_model(spec)`` takes what a user types after ``neurobrowse record`` (and what a store names in
its manifest, for try-your-text):

- a neurobrowse checkpoint directory (``neurobrowse train``; config.json with format
  neurobrowse-checkpoint);
- a Hugging Face model folder (what ``save_pretrained`` writes: config.json with a model_type, the
  weights, the tokenizer) of an architecture in solu_core.hf.ARCHITECTURES;
- a TransformerLens model name (``solu-1l``, ``gelu-2l``, ``gpt2-small``, ``pythia-70m``, ...), from the
  local Hugging Face cache.

``from_memory(model, tokenizer)`` wraps a ``HookedTransformer`` or a Hugging Face ``PreTrainedModel``
already loaded (the ``record_model`` entry point). Every recorder has ``run_with_mlp_cache(tokens,
names, dtype)``, ``hook_names(layer)``, ``n_layers``, ``act_fn``, ``n_ctx``, ``w_out(layer)`` [d_mlp,
d_model] and ``w_u()`` [d_model, d_vocab].
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from store.errors import CheckpointError

KINDS = ("checkpoint", "hf", "tl", "memory")


class CheckpointRecorder(nn.Module):
    """A neurobrowse checkpoint's Transformer with the recorder interface."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model
        cfg = model.cfg
        self.cfg, self.n_layers, self.act_fn = cfg, cfg.n_layers, cfg.act_fn
        self.n_ctx, self.d_mlp = cfg.n_ctx, cfg.d_mlp

    def hook_names(self, layer: int) -> list[str]:
        return self.cfg.hook_names(layer)

    def config_dict(self, d_vocab: int) -> dict:
        return self.cfg.to_dict()

    def w_out(self, layer: int) -> torch.Tensor:
        return self.model.blocks[layer].mlp.W_out  # [d_mlp, d_model]

    def w_u(self) -> torch.Tensor:
        return self.model.unembed.W_U  # [d_model, d_vocab]

    def run_with_mlp_cache(self, tokens, names, dtype=torch.float16):
        return self.model.run_with_mlp_cache(tokens, names, dtype=dtype)


@dataclass
class LoadedModel:
    """A model ready to record or to run on typed text."""

    kind: str  # one of KINDS
    source: str | None  # the checkpoint / HF folder path or TransformerLens name; None: only in memory
    recorder: nn.Module  # CheckpointRecorder, solu_core.hf.HFRecorder or solu_core.tl.TLRecorder
    tokenizer: object  # tokenizers.Tokenizer (for HF / TL: the fast tokenizer's backend)
    tokenizer_json: str
    separator_id: int  # token put before every document
    hash: str  # sha256 naming the exact weights
    config: dict = field(default_factory=dict)  # the store's model_config (TransformerLens field names)
    checkpoint: object = None  # solu_core.checkpoint.Checkpoint, for kind "checkpoint"

    @property
    def n_layers(self) -> int:
        return self.recorder.n_layers

    @property
    def act_fn(self) -> str:
        return self.recorder.act_fn

    def hook_names(self, layer: int) -> list[str]:
        return self.recorder.hook_names(layer)

    @property
    def device(self) -> torch.device:
        return next(self.recorder.parameters()).device


def looks_like_checkpoint(path: Path) -> bool:
    from solu_core.checkpoint import FORMAT

    try:
        return json.loads((path / "config.json").read_text(encoding="utf-8")).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def _from_hf_tokenizer(kind: str, source: str | None, recorder, tok, where: str) -> LoadedModel:
    from solu_core.hf import separator_id, state_dict_hash

    backend = tok.backend_tokenizer
    d_vocab = max(int(recorder.w_u().shape[1]), len(tok))
    return LoadedModel(kind=kind, source=source, recorder=recorder, tokenizer=backend,
                       tokenizer_json=backend.to_str(), separator_id=separator_id(tok, where),
                       hash=state_dict_hash(recorder.model), config=recorder.config_dict(d_vocab))


def load_model(spec: str | Path, device: str = "auto", allow_download: bool = False) -> LoadedModel:
    """Load a checkpoint directory, a Hugging Face model folder or a TransformerLens model name.

    Raises CheckpointError naming the path or name and what to do when it is none of them or broken."""
    from solu_core.model import pick_device

    path = Path(spec).expanduser()
    dev = pick_device(device)
    if path.is_dir():
        from solu_core.hf import is_hf_model_dir, load_hf_model

        if looks_like_checkpoint(path) or not is_hf_model_dir(path):
            from solu_core.checkpoint import load_checkpoint
            from solu_core.corpus.config import EOT

            ck = load_checkpoint(path, device=device)  # names what is missing in a non-model folder
            sep = ck.tokenizer.token_to_id(EOT)
            return LoadedModel(kind="checkpoint", source=str(ck.path), recorder=CheckpointRecorder(ck.model),
                               tokenizer=ck.tokenizer, tokenizer_json=ck.tokenizer_json,
                               separator_id=0 if sep is None else sep, hash=ck.hash, config=ck.config.to_dict(),
                               checkpoint=ck)
        recorder, tok = load_hf_model(path, dev)
        return _from_hf_tokenizer("hf", str(path.resolve()), recorder, tok, str(path))
    if path.exists():
        raise CheckpointError(f"{spec} is a file, not a model: pass a checkpoint directory, a Hugging Face model "
                              "folder or a TransformerLens model name (e.g. solu-1l, gpt2-small)")
    if str(spec).startswith(("/", ".", "~")) or str(spec).count("/") > 1:  # a path, not a TransformerLens name
        raise CheckpointError(f"{spec} does not exist; pass a checkpoint directory (`neurobrowse train`), a Hugging "
                              "Face model folder (save_pretrained) or a TransformerLens model name (e.g. solu-1l)")
    from solu_core.tl import load_tl_model

    recorder, tok = load_tl_model(str(spec), dev, allow_download=allow_download)
    return _from_hf_tokenizer("tl", str(spec), recorder, tok, str(spec))


def from_memory(model, tokenizer, source: str | None = None) -> LoadedModel:
    """Wrap a ``transformer_lens.HookedTransformer`` or a Hugging Face ``PreTrainedModel`` already loaded.

    ``tokenizer``: a transformers fast tokenizer (for a HookedTransformer, None takes ``model.tokenizer``).
    ``source``: a folder or TransformerLens name the store should name so try-your-text can load the same
    weights again (None: the store names no model)."""
    tok = tokenizer if tokenizer is not None else getattr(model, "tokenizer", None)
    if tok is None or not hasattr(tok, "backend_tokenizer"):
        raise CheckpointError("record_model needs the model's fast tokenizer (a transformers PreTrainedTokenizerFast, "
                              "e.g. AutoTokenizer.from_pretrained(NAME))")
    if type(model).__name__ == "HookedTransformer" or hasattr(model, "hook_dict") and hasattr(model, "cfg"):
        from solu_core.tl import TLRecorder

        return _from_hf_tokenizer("memory", source, TLRecorder(model), tok, "the model")
    if hasattr(model, "config") and hasattr(model.config, "model_type"):
        from solu_core.hf import HFRecorder

        return _from_hf_tokenizer("memory", source, HFRecorder(model, "the model"), tok, "the model")
    raise CheckpointError(f"record_model takes a transformer_lens.HookedTransformer or a Hugging Face "
                          f"PreTrainedModel, got {type(model).__name__}")
