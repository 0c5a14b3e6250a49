"""Sweep presets for `neurobrowse replicate`, and the up-front memory estimate. Free of torch.

A preset fixes one model shape for every size of the sweep (only ``n_layers`` changes with the
size), the training schedule, the smaller GeLU MLP widths that draw GeLU's loss-vs-width curve,
the corpus it was tuned with and how many held-out tokens each model is recorded over.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from solu_core.presets import TrainConfig
from store.errors import NeurobrowseError


class ReplicateError(NeurobrowseError):
    """Bad sizes, a preset that does not fit, an output folder holding something else, moved stores."""


@dataclass
class SweepPreset:
    description: str
    model: dict  # ModelConfig fields except n_layers (the size), d_vocab (the corpus) and act_fn
    train: TrainConfig
    gelu_widths: tuple[int, ...]  # smaller GeLU MLP widths (d_mlp) trained for the loss-vs-width curve
    vocab_size: int  # corpus vocabulary it was tuned with
    corpus_max_mb: float | None  # corpus text it was tuned with (None: all text found)
    n_tokens: int  # held-out tokens recorded (and indexed) per model
    per_model: int = 60  # neurons per model in each size's blinded study (the paper: 60)
    include_prose: bool = True  # add the English prose found on this machine to the stdlib source
    chunk_tokens: int | None = None  # store chunk rows (None: the schema's default)
    notes: list[str] = field(default_factory=list)  # what it needs / what it was measured at


PRESETS: dict[str, SweepPreset] = {
    "test": SweepPreset(
        "tests: sizes 1,2 in about a minute on 2 CPU cores (the models learn little; the plumbing is real)",
        dict(d_model=32, n_heads=1, d_head=32, d_mlp=64, n_ctx=32),
        TrainConfig(steps=40, batch_size=8, lr=5e-3, warmup_steps=5, eval_every=20, eval_tokens=2048, ckpt_every=10),
        gelu_widths=(32,), vocab_size=512, corpus_max_mb=1.0, n_tokens=4096, per_model=8, include_prose=False,
        chunk_tokens=1024),
    "small": SweepPreset(
        "this 2-core machine: sizes 1,2,4 (18 trainings, 12 recordings, 3 studies) in about 11 min of CPU "
        "(49 min measured at load 15; about 30 at load 5, estimated)",
        dict(d_model=64, n_heads=2, d_head=32, d_mlp=256, n_ctx=64),
        TrainConfig(steps=400, batch_size=32, lr=4e-3, warmup_steps=40, eval_every=100, eval_tokens=16384,
                    ckpt_every=100),
        gelu_widths=(64, 128, 192), vocab_size=1024, corpus_max_mb=12.0, n_tokens=65_536),
    "small-long": SweepPreset(
        "the small shapes trained 4x longer (1,600 steps): about 45 min of CPU for sizes 1,2,4 (4x small's, "
        "estimated); the first preset here at which a wider GeLU is better (1 layer, measured)",
        dict(d_model=64, n_heads=2, d_head=32, d_mlp=256, n_ctx=64),
        TrainConfig(steps=1600, batch_size=32, lr=4e-3, warmup_steps=80, eval_every=400, eval_tokens=16384,
                    ckpt_every=400),
        gelu_widths=(64, 128, 192), vocab_size=1024, corpus_max_mb=12.0, n_tokens=65_536),
    "gpu": SweepPreset(
        "one GPU: the shape of TransformerLens's solu-1l (d_model 512, d_mlp 2048, context 256, 8,192-token "
        "vocabulary), 20k steps of 64 x 256 tokens per model; sizes up to 8 layers fit a 24 GB card",
        dict(d_model=512, n_heads=8, d_head=64, d_mlp=2048, n_ctx=256),
        TrainConfig(steps=20000, batch_size=64, lr=1e-3, warmup_steps=500, eval_every=1000, eval_tokens=262144,
                    ckpt_every=1000),
        gelu_widths=(512, 1024, 1536), vocab_size=8192, corpus_max_mb=None, n_tokens=1 << 20),
}


def get_preset(name: str) -> SweepPreset:
    if name not in PRESETS:
        raise ReplicateError(f"unknown --preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


MAX_LAYERS = 64


def parse_sizes(text: str | list) -> tuple[int, ...]:
    """'1,2,4' -> (1, 2, 4): layer counts, each 1..MAX_LAYERS, sorted, no duplicates."""
    parts = [p.strip() for p in text.split(",")] if isinstance(text, str) else [str(p) for p in text]
    if not parts or any(not p for p in parts):
        raise ReplicateError(f"--sizes {text!r}: give layer counts separated by commas, e.g. --sizes 1,2,4")
    out = []
    for p in parts:
        try:
            n = int(p)
        except ValueError:
            raise ReplicateError(f"--sizes {text!r}: {p!r} is not a whole number of layers; "
                                 f"e.g. --sizes 1,2,4") from None
        if not 1 <= n <= MAX_LAYERS:
            raise ReplicateError(f"--sizes {text!r}: {n} layers is out of range (1..{MAX_LAYERS})")
        out.append(n)
    if len(set(out)) != len(out):
        raise ReplicateError(f"--sizes {text!r}: a size is given twice")
    return tuple(sorted(out))


# ---- memory -----------------------------------------------------------------------------------------
def model_params(m: dict, n_layers: int, d_vocab: int, d_mlp: int | None = None) -> int:
    """Parameters of one model of the sweep (embeddings, attention, MLP, LayerNorms, unembedding)."""
    d, h, dh, ctx = m["d_model"], m["n_heads"], m["d_head"], m["n_ctx"]
    f = d_mlp or m["d_mlp"]
    attn = 4 * d * h * dh + 3 * h * dh + d
    mlp = 2 * d * f + f + d + 2 * f  # + the SoLU-LN's LayerNorm
    return d_vocab * d + ctx * d + n_layers * (attn + mlp + 4 * d) + 2 * d + d * d_vocab + d_vocab


def train_memory_bytes(p: SweepPreset, n_layers: int, d_vocab: int) -> int:
    """About the peak memory of training the largest model of one size: weights, gradients and two Adam
    moments (16 bytes per parameter) and float32 activations kept for the backward pass (per token and
    layer: the residual stream, attention, MLP pre/post activations and the SoLU softmax; the logits)."""
    m, b = p.model, p.train.batch_size
    tokens = b * m["n_ctx"]
    per_layer = 16 * m["d_model"] + 5 * m["d_mlp"] + 3 * m["n_heads"] * m["n_ctx"]
    acts = tokens * (n_layers * per_layer + 4 * d_vocab) * 4
    return 16 * model_params(m, n_layers, d_vocab) + acts


def record_memory_bytes(p: SweepPreset, n_layers: int, d_vocab: int, k: int | None = None) -> int:
    """Recording with indexing: every hook of a SoLU-LN model (hook_mid and hook_post per layer) indexed at
    once (store.index.index_memory_bytes), plus a batch of activations."""
    from store import schema
    from store.index.run import index_memory_bytes

    hooks = 2 * n_layers
    seen = min(d_vocab, p.n_tokens)
    idx = index_memory_bytes(p.model["d_mlp"], k or schema.DEFAULT_K, d_vocab, seen, hooks=hooks)
    return idx + 64 * p.model["n_ctx"] * hooks * p.model["d_mlp"] * 4


def memory_estimate(p: SweepPreset, sizes: tuple[int, ...], d_vocab: int) -> dict:
    """{"train": bytes, "record": bytes, "peak": bytes, "size": layers} for the largest size (steps run
    one at a time, so the largest size's largest step is the peak)."""
    n = max(sizes)
    tr, rec = train_memory_bytes(p, n, d_vocab), record_memory_bytes(p, n, d_vocab)
    return {"train": tr, "record": rec, "peak": max(tr, rec), "size": n}


def check_memory(p: SweepPreset, name: str, sizes: tuple[int, ...], d_vocab: int, device: str) -> dict:
    """Refuse up front when the largest size would not fit: training on ``device`` (its free GPU memory for
    CUDA, else the memory available), recording with indexing in host memory. Returns the estimate."""
    from store.index.run import available_memory_bytes

    est = memory_estimate(p, sizes, d_vocab)
    host = available_memory_bytes()
    where, train_avail = "memory available", host
    if device.startswith("cuda"):
        try:
            import torch

            free, _ = torch.cuda.mem_get_info(torch.device(device))
            where, train_avail = "free GPU memory", int(free)
        except Exception:  # noqa: BLE001 - no usable CUDA: --device is checked elsewhere
            pass
    gb = 1e9
    if train_avail is not None and est["train"] > 0.8 * train_avail:
        raise ReplicateError(
            f"--preset {name} --sizes {','.join(map(str, sizes))}: training the {est['size']}-layer models needs "
            f"about {est['train'] / gb:.1f} GB, more than the {train_avail / gb:.1f} GB of {where}; choose "
            f"smaller --sizes or the preset 'small' (nothing was written)")
    if host is not None and est["record"] > 0.8 * host:
        raise ReplicateError(
            f"--preset {name} --sizes {','.join(map(str, sizes))}: indexing the {est['size']}-layer SoLU-LN while "
            f"recording needs about {est['record'] / gb:.1f} GB, more than the {host / gb:.1f} GB available; "
            f"choose smaller --sizes (nothing was written)")
    return est
