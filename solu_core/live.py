"""Run a recorded model on text a user types, for the app's "try your own text" editor.

The checkpoint is loaded lazily (the first run, in a worker thread) through
``solu_core.checkpoint.load_checkpoint``, then kept. Text is tokenised with the checkpoint's own
tokenizer; each token keeps its character span in the typed text so the editor can shade exactly
the characters that produced it. Text longer than the model's context runs in consecutive windows of
``n_ctx`` tokens (as the recorder does: positions restart at each window).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from store.errors import CheckpointError
from store.schema import parse_hook_name


@dataclass
class LiveResult:
    text: str  # the text that was run
    hook: str
    neuron: int
    token_ids: list[int]
    tokens: list[str]  # the text of each token (its span in ``text``)
    spans: list[tuple[int, int]]  # [start, end) character offsets of each token in ``text``
    acts: np.ndarray  # float32 [n_tokens]: the neuron's activation at each token


@dataclass
class LiveConfig:
    device: str = "auto"  # "auto" = CUDA when present, else CPU
    max_tokens: int = 4096  # longer text is cut here (typing a book into the editor should not hang it)


class LiveModel:
    """A checkpoint loaded on first use; ``run(text, hook, neuron)`` is thread-safe."""

    def __init__(self, checkpoint_dir: str | Path, cfg: LiveConfig | None = None) -> None:
        self.checkpoint_dir = Path(checkpoint_dir)
        self.cfg = cfg or LiveConfig()
        self._ckpt = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._ckpt is not None

    def load(self):
        """Load the checkpoint once (CheckpointError naming the directory when it is missing or damaged)."""
        with self._lock:
            if self._ckpt is None:
                if not self.checkpoint_dir.exists():
                    raise CheckpointError(
                        f"checkpoint {self.checkpoint_dir} not found (the store records where its model was "
                        "trained); copy the checkpoint there or point the app at it with "
                        "File > Set checkpoint for try-your-text")
                from solu_core.checkpoint import load_checkpoint

                self._ckpt = load_checkpoint(self.checkpoint_dir, device=self.cfg.device)
            return self._ckpt

    def hooks(self) -> list[str]:
        cfg = self.load().config
        return [h for layer in range(cfg.n_layers) for h in cfg.hook_names(layer)]

    def run(self, text: str, hook: str, neuron: int) -> LiveResult:
        ckpt = self.load()
        layer, _ = parse_hook_name(hook)
        cfg = ckpt.config
        if layer >= cfg.n_layers or hook not in cfg.hook_names(layer):
            raise CheckpointError(f"the model in {self.checkpoint_dir} has no hook {hook!r}")
        if not 0 <= neuron < cfg.d_mlp:
            raise CheckpointError(f"neuron {neuron} is out of range for {hook} (d_mlp = {cfg.d_mlp})")
        enc = ckpt.tokenizer.encode(text)
        ids = list(enc.ids)[: self.cfg.max_tokens]
        spans = [tuple(o) for o in enc.offsets][: len(ids)]
        if not ids:
            return LiveResult(text, hook, neuron, [], [], [], np.zeros(0, np.float32))
        device = next(ckpt.model.parameters()).device
        acts = []
        with self._lock, torch.no_grad():
            for start in range(0, len(ids), cfg.n_ctx):
                window = torch.tensor([ids[start : start + cfg.n_ctx]], dtype=torch.long, device=device)
                out = ckpt.model.run_with_mlp_cache(window, [hook], dtype=torch.float32)[hook]  # [1, pos, d_mlp]
                acts.append(out[0, :, neuron].cpu().numpy())
        tokens = [text[a:b] for a, b in spans]
        return LiveResult(text, hook, neuron, ids, tokens, spans, np.concatenate(acts).astype(np.float32))
