"""A small decoder-only transformer with GeLU, SoLU or SoLU-LN MLPs.

Reads top to bottom like nanoGPT's model.py: a config dataclass, the blocks, the model.

Parameter names, shapes and hook names follow TransformerLens (``HookedTransformer``) exactly, so
``model.state_dict()`` loads into a ``transformer_lens.HookedTransformer`` built from
``config.to_transformer_lens()`` with no weight processing (``fold_ln=False``,
``center_writing_weights=False``, ``center_unembed=False``) and gives the same activations.

SoLU (Elhage et al. 2022, "Softmax Linear Units"): ``solu(x) = x * softmax(x)`` over the d_mlp
vector. SoLU-LN adds a LayerNorm over d_mlp after it: ``hook_mid`` is the activation before that
LayerNorm, ``hook_post`` after it. Features can hide in small ``hook_mid`` values that the LN
rescales, which is why neurobrowse records both.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F

from store.schema import hook_name, parse_hook_name

ACT_FNS = ("gelu", "solu", "solu_ln")


@dataclass
class ModelConfig:
    """Model shape, with TransformerLens field names."""

    n_layers: int = 1  # transformer blocks
    d_model: int = 128  # residual stream width
    n_heads: int = 4  # attention heads per block
    d_head: int = 32  # width of one head (d_model // n_heads by convention)
    d_mlp: int = 512  # MLP hidden width: the neurons we study
    d_vocab: int = 4096  # tokenizer vocabulary size
    n_ctx: int = 128  # maximum context length
    act_fn: str = "solu_ln"  # one of ACT_FNS
    normalization_type: str = "LN"  # TransformerLens name; we only implement LayerNorm
    positional_embedding_type: str = "standard"  # learned absolute positions
    eps: float = 1e-5  # LayerNorm epsilon (TransformerLens default)
    init_range: float = 0.02  # std of the normal initialisation (TransformerLens default)

    def __post_init__(self) -> None:
        if self.act_fn not in ACT_FNS:
            raise ValueError(f"unknown act_fn {self.act_fn!r}; choose one of {', '.join(ACT_FNS)}")
        if self.normalization_type != "LN":
            raise ValueError(f"normalization_type {self.normalization_type!r} is not supported; use 'LN'")
        if self.positional_embedding_type != "standard":
            raise ValueError(
                f"positional_embedding_type {self.positional_embedding_type!r} is not supported; use 'standard'"
            )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        """Build from a config.json dict; extra keys (training metrics, hashes) are ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def to_transformer_lens(self) -> dict:
        """Keyword arguments for ``transformer_lens.HookedTransformerConfig``."""
        d = self.to_dict()
        d.pop("init_range")
        return d

    def hook_names(self, layer: int) -> list[str]:
        """The MLP hooks this model has in one layer, in forward order."""
        names = ["hook_pre"] + (["hook_mid"] if self.act_fn == "solu_ln" else []) + ["hook_post"]
        return [hook_name(layer, n) for n in names]

    def n_params(self) -> int:
        per_block = 4 * self.d_model * self.n_heads * self.d_head + 2 * self.d_model * self.d_mlp
        return self.n_layers * per_block + 2 * self.d_model * self.d_vocab + self.n_ctx * self.d_model


class LayerNorm(nn.Module):
    def __init__(self, length: int, eps: float):
        super().__init__()
        self.eps = eps
        self.w = nn.Parameter(torch.ones(length))
        self.b = nn.Parameter(torch.zeros(length))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The same maths as TransformerLens's LayerNorm ((x - mean) / sqrt(var + eps) * w + b, biased
        # variance), fused into one kernel: cheaper in training, and it keeps SoLU-LN's extra LN cheap.
        return F.layer_norm(x, self.w.shape, self.w, self.b, self.eps)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        h, d, dh = cfg.n_heads, cfg.d_model, cfg.d_head
        self.W_Q = nn.Parameter(torch.empty(h, d, dh))  # [n_heads, d_model, d_head]
        self.W_K = nn.Parameter(torch.empty(h, d, dh))
        self.W_V = nn.Parameter(torch.empty(h, d, dh))
        self.W_O = nn.Parameter(torch.empty(h, dh, d))  # [n_heads, d_head, d_model]
        self.b_Q = nn.Parameter(torch.zeros(h, dh))
        self.b_K = nn.Parameter(torch.zeros(h, dh))
        self.b_V = nn.Parameter(torch.zeros(h, dh))
        self.b_O = nn.Parameter(torch.zeros(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [batch, pos, d_model]
        q = torch.einsum("bpd,hde->bhpe", x, self.W_Q) + self.b_Q[:, None]  # [batch, head, pos, d_head]
        k = torch.einsum("bpd,hde->bhpe", x, self.W_K) + self.b_K[:, None]
        v = torch.einsum("bpd,hde->bhpe", x, self.W_V) + self.b_V[:, None]
        z = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # scale 1/sqrt(d_head), as TL
        return torch.einsum("bhpe,hed->bpd", z, self.W_O) + self.b_O  # [batch, pos, d_model]


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        self.act_fn = cfg.act_fn
        self.W_in = nn.Parameter(torch.empty(cfg.d_model, cfg.d_mlp))  # [d_model, d_mlp]
        self.b_in = nn.Parameter(torch.zeros(cfg.d_mlp))
        self.W_out = nn.Parameter(torch.empty(cfg.d_mlp, cfg.d_model))  # [d_mlp, d_model]
        self.b_out = nn.Parameter(torch.zeros(cfg.d_model))
        if cfg.act_fn == "solu_ln":
            self.ln = LayerNorm(cfg.d_mlp, cfg.eps)
        self.prefix = f"blocks.{layer}.mlp."
        # name -> list to append captured activations to; set by Transformer.run_with_mlp_cache
        self.capture: dict[str, list] | None = None
        # name -> function of the activation whose result flows on instead (a dictionary's reconstruction
        # spliced in, an ablation); set by solu_core.dictionary.metrics.splice
        self.replace: dict[str, object] | None = None

    def _hook(self, name: str, x: torch.Tensor) -> torch.Tensor:
        if self.replace is not None and self.prefix + name in self.replace:
            x = self.replace[self.prefix + name](x)
        if self.capture is not None and self.prefix + name in self.capture:
            self.capture[self.prefix + name].append(x.detach())
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [batch, pos, d_model]
        pre = self._hook("hook_pre", x @ self.W_in + self.b_in)  # [batch, pos, d_mlp]
        if self.act_fn == "gelu":
            post = F.gelu(pre)
        else:
            mid = pre * F.softmax(pre, dim=-1)  # SoLU over the d_mlp vector
            if self.act_fn == "solu_ln":
                mid = self._hook("hook_mid", mid)
                post = self.ln(mid)
            else:
                post = mid
        post = self._hook("hook_post", post)  # [batch, pos, d_mlp]
        return post @ self.W_out + self.b_out  # [batch, pos, d_model]


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        self.ln1 = LayerNorm(cfg.d_model, cfg.eps)
        self.attn = Attention(cfg)
        self.ln2 = LayerNorm(cfg.d_model, cfg.eps)
        self.mlp = MLP(cfg, layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class Embed(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.W_E = nn.Parameter(torch.empty(cfg.d_vocab, cfg.d_model))  # [d_vocab, d_model]


class PosEmbed(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.W_pos = nn.Parameter(torch.empty(cfg.n_ctx, cfg.d_model))  # [n_ctx, d_model]


class Unembed(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.W_U = nn.Parameter(torch.empty(cfg.d_model, cfg.d_vocab))  # [d_model, d_vocab]
        self.b_U = nn.Parameter(torch.zeros(cfg.d_vocab))


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = Embed(cfg)
        self.pos_embed = PosEmbed(cfg)
        self.blocks = nn.ModuleList(Block(cfg, layer) for layer in range(cfg.n_layers))
        self.ln_final = LayerNorm(cfg.d_model, cfg.eps)
        self.unembed = Unembed(cfg)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Normal(0, init_range) for weight matrices, as TransformerLens's default init."""
        for name, p in self.named_parameters():
            if name.split(".")[-1].startswith("W_"):
                nn.init.normal_(p, std=self.cfg.init_range)

    def residual(self, tokens: torch.Tensor, stop_at_layer: int | None = None) -> torch.Tensor:
        """The residual stream after ``stop_at_layer`` blocks (all blocks when None)."""
        pos = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.embed.W_E[tokens] + self.pos_embed.W_pos[pos]  # [batch, pos, d_model]
        for block in self.blocks[:stop_at_layer]:
            x = block(x)
        return x

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [batch, pos] -> logits [batch, pos, d_vocab]."""
        return self.ln_final(self.residual(tokens)) @ self.unembed.W_U + self.unembed.b_U

    def loss(self, tokens: torch.Tensor) -> torch.Tensor:
        """Mean next-token cross-entropy in nats/token."""
        logits = self(tokens[:, :-1])
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), tokens[:, 1:].reshape(-1))

    @torch.no_grad()
    def run_with_mlp_cache(
        self, tokens: torch.Tensor, names: list[str], dtype: torch.dtype = torch.float16
    ) -> dict[str, torch.Tensor]:
        """Run the model and return only the named MLP hooks, each [batch, pos, d_mlp] in ``dtype``.

        Stops after the last layer that holds a requested hook and keeps nothing else.
        """
        layers = set()
        for name in names:
            layer = parse_hook_name(name)[0]  # a clear ValueError for what is not a hook name
            if layer >= self.cfg.n_layers or name not in self.cfg.hook_names(layer):
                raise ValueError(
                    f"this {self.cfg.act_fn} model with {self.cfg.n_layers} layer(s) has no hook {name!r}; "
                    f"choose from {', '.join(n for i in range(self.cfg.n_layers) for n in self.cfg.hook_names(i))}"
                )
            layers.add(layer)
        capture: dict[str, list] = {name: [] for name in names}
        for layer in layers:
            self.blocks[layer].mlp.capture = capture
        try:
            self.residual(tokens, stop_at_layer=max(layers) + 1)
        finally:
            for layer in layers:
                self.blocks[layer].mlp.capture = None
        return {name: capture[name][0].to(dtype) for name in names}


def pick_device(device: str = "auto") -> torch.device:
    """'auto' -> CUDA when present, else CPU; otherwise the named device."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())

