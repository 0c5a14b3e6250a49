"""Hugging Face causal LMs: where each architecture keeps its MLP neurons, and how to record them.

The MLP neurons of a layer are the input of the MLP's output projection (for GeLU MLPs the activation,
for gated MLPs the product ``act(gate) * up`` that the projection reads). They are captured with a
forward pre-hook on that projection and stored under TransformerLens's name
``blocks.{layer}.mlp.hook_post``, so everything downstream treats them like any other model's.

``ARCHITECTURES`` is the one table of supported ``config.model_type`` values: the path of the list of
blocks inside the ``AutoModelForCausalLM`` and the output projection inside a block. Adding an
architecture is adding a line (tests/test_hf.py builds a tiny random model of every entry and checks
both paths and the projection's width).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from store.errors import CheckpointError
from store.schema import hook_name, parse_hook_name


@dataclass(frozen=True)
class Arch:
    blocks: str  # the nn.ModuleList of transformer blocks, from the CausalLM model
    out_proj: str  # the MLP's output projection, from one block; its input is the neurons


ARCHITECTURES: dict[str, Arch] = {
    "gpt2": Arch("transformer.h", "mlp.c_proj"),  # transformers Conv1D, weight [d_mlp, d_model]
    "gpt_neo": Arch("transformer.h", "mlp.c_proj"),
    "gptj": Arch("transformer.h", "mlp.fc_out"),
    "gpt_bigcode": Arch("transformer.h", "mlp.c_proj"),
    "gpt_neox": Arch("gpt_neox.layers", "mlp.dense_4h_to_h"),  # Pythia
    "bloom": Arch("transformer.h", "mlp.dense_4h_to_h"),
    "falcon": Arch("transformer.h", "mlp.dense_4h_to_h"),
    "opt": Arch("model.decoder.layers", "fc2"),
    "phi": Arch("model.layers", "mlp.fc2"),
    "starcoder2": Arch("model.layers", "mlp.c_proj"),
    # gated MLPs: down_proj(act(gate_proj(x)) * up_proj(x)); the neurons are the product
    "llama": Arch("model.layers", "mlp.down_proj"),
    "mistral": Arch("model.layers", "mlp.down_proj"),
    "qwen2": Arch("model.layers", "mlp.down_proj"),
    "qwen3": Arch("model.layers", "mlp.down_proj"),
    "gemma": Arch("model.layers", "mlp.down_proj"),
    "gemma2": Arch("model.layers", "mlp.down_proj"),
    "olmo": Arch("model.layers", "mlp.down_proj"),
    "olmo2": Arch("model.layers", "mlp.down_proj"),
    "stablelm": Arch("model.layers", "mlp.down_proj"),
    "phi3": Arch("model.layers", "mlp.down_proj"),
    "granite": Arch("model.layers", "mlp.down_proj"),
}

HOOK = "hook_post"  # the one hook a Hugging Face model has per layer
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")


def is_hf_model_dir(path: Path) -> bool:
    """A folder ``save_pretrained`` wrote: a config.json with a ``model_type``."""
    cfg = Path(path) / "config.json"
    if not cfg.is_file():
        return False
    try:
        return "model_type" in json.loads(cfg.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False


def architecture(model_type: str, where: str) -> Arch:
    """The table entry for ``model_type``; a CheckpointError naming it and the supported list otherwise."""
    try:
        return ARCHITECTURES[model_type]
    except KeyError:
        raise CheckpointError(
            f"{where} is a {model_type!r} model, an architecture neurobrowse cannot record yet; supported: "
            f"{', '.join(sorted(ARCHITECTURES))} (add a line to ARCHITECTURES in solu_core/hf.py)") from None


class _Stop(Exception):
    """Raised by the last capture hook: nothing after the last recorded layer is computed."""


class HFRecorder(nn.Module):
    """A Hugging Face causal LM seen through TransformerLens hook names.

    ``run_with_mlp_cache(tokens, names, dtype)`` returns ``{'blocks.{l}.mlp.hook_post': [batch, pos, d_mlp]}``
    like solu_core.model.Transformer's; ``w_out(layer)`` [d_mlp, d_model] and ``w_u()`` [d_model, d_vocab]
    give the weights of the logit effects."""

    def __init__(self, model: nn.Module, where: str = "the model") -> None:
        super().__init__()
        self.model = model.eval()
        self.hf_config = model.config
        self.arch = architecture(getattr(model.config, "model_type", "?"), where)
        try:
            blocks = model.get_submodule(self.arch.blocks)
            self.out_projs = [block.get_submodule(self.arch.out_proj) for block in blocks]
        except AttributeError as e:
            raise CheckpointError(f"{where}: no {self.arch.blocks}[*].{self.arch.out_proj} in this "
                                  f"{self.hf_config.model_type} model ({e}); its layout differs from the table in "
                                  "solu_core/hf.py") from e
        self.n_layers = len(self.out_projs)
        self.d_mlp = int(self.w_out(0).shape[0])
        self.d_model = int(self.w_out(0).shape[1])
        c = model.config
        self.act_fn = str(getattr(c, "activation_function", None) or getattr(c, "hidden_act", None) or "?")

    # ---- the shape of a recorded model, as solu_core.model.ModelConfig spells it --------------------
    def hook_names(self, layer: int) -> list[str]:
        return [hook_name(layer, HOOK)]

    @property
    def n_ctx(self) -> int:
        c = self.hf_config
        for name in ("n_positions", "max_position_embeddings", "n_ctx", "seq_length"):
            if isinstance(getattr(c, name, None), int):
                return int(getattr(c, name))
        return 1024

    def config_dict(self, d_vocab: int) -> dict:
        """The store's model_config: TransformerLens field names, plus where the model comes from."""
        c = self.hf_config
        return {"n_layers": self.n_layers, "d_model": self.d_model, "d_mlp": self.d_mlp, "d_vocab": int(d_vocab),
                "n_ctx": self.n_ctx, "act_fn": self.act_fn, "n_heads": getattr(c, "num_attention_heads", None),
                "model_type": c.model_type, "architecture": (getattr(c, "architectures", None) or ["?"])[0]}

    # ---- weights ---------------------------------------------------------------------------------
    def w_out(self, layer: int) -> torch.Tensor:
        """[d_mlp, d_model]: nn.Linear keeps [out, in], transformers' Conv1D [in, out]."""
        proj = self.out_projs[layer]
        return proj.weight.T if isinstance(proj, nn.Linear) else proj.weight

    def w_u(self) -> torch.Tensor:
        """[d_model, d_vocab]: the output embedding (lm_head), transposed."""
        return self.model.get_output_embeddings().weight.T

    # ---- running ---------------------------------------------------------------------------------
    @torch.no_grad()
    def run_with_mlp_cache(self, tokens: torch.Tensor, names: list[str],
                           dtype: torch.dtype = torch.float16) -> dict[str, torch.Tensor]:
        """Run the model on ``tokens`` [batch, pos] up to the last layer named; each named hook's
        activations [batch, pos, d_mlp] in ``dtype``."""
        layers: dict[int, str] = {}
        for name in names:
            try:
                layer, kind = parse_hook_name(name)
            except ValueError:
                layer, kind = -1, ""
            if kind != HOOK or not 0 <= layer < self.n_layers:
                raise ValueError(f"this {self.hf_config.model_type} model has no hook {name!r}; it has "
                                 f"blocks.0..{self.n_layers - 1}.mlp.{HOOK}")
            layers[layer] = name
        last = max(layers)
        out: dict[str, torch.Tensor] = {}

        def capture(layer):
            def hook(module, args):  # OPT feeds fc2 [batch * pos, d_mlp]: back to [batch, pos, d_mlp]
                out[layers[layer]] = args[0].detach().reshape(*tokens.shape, -1).to(dtype)
                if layer == last:
                    raise _Stop

            return hook

        handles = [self.out_projs[layer].register_forward_pre_hook(capture(layer)) for layer in layers]
        try:
            self.model(input_ids=tokens, use_cache=False)
        except _Stop:
            pass
        finally:
            for h in handles:
                h.remove()
        return {name: out[name] for name in names}


def state_dict_hash(model: nn.Module) -> str:
    """sha256 over every parameter and buffer (names and bytes): names the exact weights recorded."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def load_hf_tokenizer(folder: Path):
    """The fast tokenizer saved with the model: (transformers tokenizer, its tokenizers.Tokenizer backend)."""
    from transformers import AutoTokenizer

    if not any((folder / f).is_file() for f in TOKENIZER_FILES):
        raise CheckpointError(
            f"{folder} has no tokenizer (none of {', '.join(TOKENIZER_FILES)}); save the model's tokenizer there "
            "with tokenizer.save_pretrained(FOLDER)")
    try:
        tok = AutoTokenizer.from_pretrained(str(folder), use_fast=True)
    except (OSError, ValueError, TypeError) as e:
        raise CheckpointError(
            f"{folder} has no usable tokenizer ({str(e).splitlines()[0]}); save the model's tokenizer there with "
            "tokenizer.save_pretrained(FOLDER) (a fast tokenizer: tokenizer.json)") from e
    if not getattr(tok, "is_fast", False):
        raise CheckpointError(f"{folder} has only a slow (Python) tokenizer; neurobrowse needs tokenizer.json: "
                              "save a fast tokenizer there with AutoTokenizer.from_pretrained(..., use_fast=True)"
                              ".save_pretrained(FOLDER)")
    return tok, tok.backend_tokenizer


def separator_id(tok, where: str) -> int:
    """The token put before every document: the tokenizer's BOS token, else its EOS (end-of-text) token."""
    for attr in ("bos_token_id", "eos_token_id"):
        i = getattr(tok, attr, None)
        if isinstance(i, int):
            return i
    raise CheckpointError(f"the tokenizer of {where} has neither a BOS nor an EOS token to separate documents; "
                          "set tokenizer.eos_token and save it again")


def load_hf_model(folder: str | Path, device: torch.device):
    """(HFRecorder on ``device``, transformers tokenizer) from a ``save_pretrained`` folder."""
    from transformers import AutoConfig, AutoModelForCausalLM

    folder = Path(folder).expanduser().resolve()
    try:
        config = AutoConfig.from_pretrained(str(folder))
    except (OSError, ValueError, KeyError) as e:
        raise CheckpointError(f"{folder / 'config.json'} is not a Hugging Face config transformers can read "
                              f"({str(e).splitlines()[0]})") from e
    architecture(config.model_type, str(folder))  # before loading any weights
    tok, _ = load_hf_tokenizer(folder)
    try:
        model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{folder}: cannot load the model weights ({str(e).splitlines()[0]})") from e
    return HFRecorder(model.to(device), str(folder)), tok
