"""How a dictionary is trained: the settings, their checks and defaults.

Why TopK (Gao et al. 2024, "Scaling and evaluating sparse autoencoders"): the sparsity is set directly
by k (every token uses at most k features), so there is no L1 coefficient to tune per hook and no L1
shrinkage of the activations; it is what current SAE work trains by default. Dead features are
revived with Gao et al.'s AuxK loss (the top ``aux_k`` dead latents reconstruct the residual the live
ones leave, weight 1/32). Decoder rows are kept at unit norm (the gradient's component along each row
is removed before the step, the rows renormalised after it).

Why not SAELens as the trainer: ``pip install sae-lens`` pulls about 20 further packages (nltk,
statsmodels, plotly, py2store, babe, ...) into the shared environment and its trainer runs through its
own runner and config; the model here is ~150 lines of torch (solu_core.dictionary.sae) and writes the
SAELens on-disk layout (store.format.dictionary), so SAELens, SAEDashboard and Neuronpedia tooling load
what it trains.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from store.format.dictionary import DictionaryError

MAX_WIDTH = 256  # d_sae / d_in at most ("Towards Monosemanticity" went up to 256x)


@dataclass
class DictionaryConfig:
    """How a dictionary is trained. Defaults suit the demo's 512-neuron hooks on a CPU."""

    width: float = 8.0  # d_sae = width * d_in
    k: int = 32  # active features per token (TopK)
    batch_tokens: int = 1024  # rows per step (4x the steps of 4096 per epoch: the demo's runs are short)
    epochs: float = 4.0  # passes over the training rows
    # None: 2e-3 / sqrt(d_sae / 4096), Gao et al.'s 1/sqrt(d_sae) scaling, 5x their rate at 4,096 features:
    # theirs (2e-4 / sqrt(d_sae / 2**14)) is for runs of billions of tokens; on the demo's ~1M tokens it left
    # the decoder rows at a median cosine of 0.93-0.98 with their random initialisation (benchmarks/RESULTS.md)
    lr: float | None = None
    warmup_steps: int = 50  # linear warm-up of the learning rate
    decay_frac: float = 0.2  # linear decay to 0 over this last share of the steps
    aux_k: int | None = None  # dead latents in the AuxK loss (None: d_in // 2)
    aux_coeff: float = 1 / 32
    dead_tokens: int | None = None  # a latent is dead after this many tokens without firing (None: see below)
    holdout: float = 0.1  # share of whole contexts held out for the metrics
    chunks_per_group: int | None = None  # chunks read and shuffled together (None: enough for ~8 batches)
    seed: int = 0
    checkpoint_every_s: float = 30.0  # save the resume state this often
    eval_contexts: int = 256  # held-out contexts the loss-recovered splice runs over

    def key(self) -> dict:
        """The settings that decide the result (a resume must have the same ones)."""
        d = asdict(self)
        d.pop("checkpoint_every_s")
        return d


def check_settings(d_in: int, width: float, k: int, batch_tokens: int = 4096, epochs: float = 1.0) -> int:
    """d_sae for ``width``, or a DictionaryError naming the range."""
    try:
        width = float(width)
    except (TypeError, ValueError):
        raise DictionaryError(f"--width {width!r}: give a number of times the hook's width, e.g. 8x") from None
    if not math.isfinite(width) or not 0 < width <= MAX_WIDTH:
        raise DictionaryError(f"--width {width:g}x is out of range: give 0 < width <= {MAX_WIDTH} (x the hook's {d_in} "
                              f"neurons)")
    d_sae = int(round(width * d_in))
    if d_sae < 2:
        raise DictionaryError(f"--width {width:g}x gives {d_sae} features for {d_in} neurons; give a larger --width")
    if not isinstance(k, (int, np.integer)) or not 1 <= int(k) <= d_sae // 2:
        raise DictionaryError(f"--k {k} is out of range: give 1 <= k <= {d_sae // 2} (half the {d_sae} features)")
    if batch_tokens < 1:
        raise DictionaryError(f"--batch {batch_tokens} must be at least 1 token")
    if not 0 < float(epochs) <= 1000:
        raise DictionaryError(f"--epochs {epochs} must be in (0, 1000]")
    return d_sae


def default_lr(d_sae: int) -> float:
    """The learning rate when none is given: 2e-3 / sqrt(d_sae / 4096) (DictionaryConfig.lr)."""
    return 2e-3 / math.sqrt(d_sae / 4096)


def parse_width(text) -> float:
    """'8x', '8', '0.5x' -> 8.0, 8.0, 0.5 (a DictionaryError otherwise)."""
    s = str(text).strip().lower().rstrip("x")
    try:
        return float(s)
    except ValueError:
        raise DictionaryError(f"--width {text!r}: give a number of times the hook's width, e.g. 8x") from None


def default_name(width: float, k: int) -> str:
    return f"{width:g}x-k{int(k)}".replace(".", "_")
