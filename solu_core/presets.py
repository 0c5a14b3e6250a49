"""Training presets and optimisation settings. Free of torch, so the CLI can list presets (and the
rest of neurobrowse can run) on a machine without the `model` extra."""

from __future__ import annotations

from dataclasses import dataclass

from store.errors import NeurobrowseError


class TrainConfigError(NeurobrowseError):
    """An unknown preset or act_fn, or settings that do not fit the corpus."""


@dataclass
class TrainConfig:
    """Optimisation settings. Defaults suit a small model on a CPU; presets override them."""

    steps: int = 1000  # optimizer steps
    batch_size: int = 32  # sequences per step
    lr: float = 3e-3  # peak learning rate
    min_lr_frac: float = 0.1  # cosine decays to lr * min_lr_frac
    warmup_steps: int = 50  # linear warm-up from 0
    weight_decay: float = 0.1  # AdamW decay on weight matrices only (not biases, LN, embeddings)
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0  # max global gradient norm
    eval_every: int = 200  # steps between validation losses
    eval_tokens: int = 32768  # held-out tokens scored per validation (the final one uses 4x)
    ckpt_every: int = 200  # steps between checkpoints
    seed: int = 0  # initial weights and data order


@dataclass
class Preset:
    description: str
    model: dict  # ModelConfig fields except d_vocab (from the corpus) and act_fn
    train: TrainConfig
    vocab_size: int  # the corpus vocabulary this preset was tuned with (`neurobrowse corpus --vocab`)
    corpus_max_mb: float | None = None  # the corpus size it was tuned with (None: all of it)


PRESETS: dict[str, Preset] = {
    "tiny": Preset(
        "test fixtures: a pair trains in ~10 s on 2 CPU cores",
        dict(n_layers=1, d_model=64, n_heads=2, d_head=32, d_mlp=256, n_ctx=64),
        TrainConfig(steps=300, batch_size=16, lr=5e-3, warmup_steps=20,
                    eval_every=100, eval_tokens=8192, ckpt_every=100),
        vocab_size=512,
        corpus_max_mb=1,
    ),
    "demo": Preset(
        "the laptop demo: a GeLU + SoLU-LN pair in <= 6 min on 2 CPU cores",
        dict(n_layers=1, d_model=128, n_heads=4, d_head=32, d_mlp=512, n_ctx=64),
        TrainConfig(steps=1200, batch_size=32, lr=4e-3, warmup_steps=60,
                    eval_every=300, eval_tokens=32768, ckpt_every=300),
        vocab_size=2048,
    ),
    "solu-1l": Preset(
        "the shape of TransformerLens's public solu-1l (d_model 512, d_mlp 2048, 8 heads); a GPU, or a patient CPU",
        dict(n_layers=1, d_model=512, n_heads=8, d_head=64, d_mlp=2048, n_ctx=256),
        TrainConfig(steps=20000, batch_size=64, lr=1e-3, warmup_steps=500,
                    eval_every=1000, eval_tokens=262144, ckpt_every=1000),
        vocab_size=8192,
    ),
    "solu-2l": Preset(
        "2 layers at the solu-1l width (GPU)",
        dict(n_layers=2, d_model=512, n_heads=8, d_head=64, d_mlp=2048, n_ctx=256),
        TrainConfig(steps=30000, batch_size=64, lr=1e-3, warmup_steps=500,
                    eval_every=1000, eval_tokens=262144, ckpt_every=1000),
        vocab_size=8192,
    ),
    "solu-4l": Preset(
        "4 layers at the solu-1l width (GPU)",
        dict(n_layers=4, d_model=512, n_heads=8, d_head=64, d_mlp=2048, n_ctx=256),
        TrainConfig(steps=40000, batch_size=64, lr=8e-4, warmup_steps=1000,
                    eval_every=2000, eval_tokens=262144, ckpt_every=2000),
        vocab_size=8192,
    ),
}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise TrainConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]
