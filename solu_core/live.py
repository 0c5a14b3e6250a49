"""Run a recorded model on text a user types, for the app's "try your own text" editor.

The model the store names (a checkpoint or Hugging Face folder path, or a TransformerLens name) is
loaded lazily (the first run, in a worker thread) through ``solu_core.loading.load_model``, then kept.
Text is tokenised with the model's own tokenizer (no special tokens added, as the recorder does inside
a document); each token keeps its character span in the typed text so the editor can shade exactly
the characters that produced it. Text longer than the model's context runs in consecutive windows
(a checkpoint's ``n_ctx``, other models min(n_ctx, 1024); positions restart at each window, as the
recorder's contexts do).
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
    """The model a store names, loaded on first use; ``run(text, hook, neuron)`` is thread-safe.

    ``checkpoint_dir``: a checkpoint or Hugging Face model folder, or a TransformerLens model name."""

    def __init__(self, checkpoint_dir: str | Path, cfg: LiveConfig | None = None) -> None:
        self.checkpoint_dir = Path(checkpoint_dir)
        self.cfg = cfg or LiveConfig()
        self._model = None  # solu_core.loading.LoadedModel
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def load(self):
        """Load the model once (CheckpointError naming the folder or name when it is missing or damaged)."""
        with self._lock:
            if self._model is None:
                spec = self.checkpoint_dir
                if (spec.is_absolute() or len(spec.parts) > 2) and not spec.exists():
                    raise CheckpointError(
                        f"model {spec} not found (the store records where its model was); copy the checkpoint or "
                        "model folder there or point the app at it with File > Set checkpoint for try-your-text")
                from solu_core.loading import load_model

                self._model = load_model(spec, device=self.cfg.device)
            return self._model

    def hooks(self) -> list[str]:
        m = self.load()
        return [h for layer in range(m.n_layers) for h in m.hook_names(layer)]

    def run(self, text: str, hook: str, neuron: int) -> LiveResult:
        model = self.load()
        layer, _ = parse_hook_name(hook)
        if layer >= model.n_layers or hook not in model.hook_names(layer):
            raise CheckpointError(f"the model {self.checkpoint_dir} has no hook {hook!r}")
        d_mlp = model.recorder.d_mlp
        if not 0 <= neuron < d_mlp:
            raise CheckpointError(f"neuron {neuron} is out of range for {hook} (d_mlp = {d_mlp})")
        n_ctx = model.recorder.n_ctx if model.kind == "checkpoint" else min(model.recorder.n_ctx, 1024)
        enc = model.tokenizer.encode(text, add_special_tokens=False)
        ids = list(enc.ids)[: self.cfg.max_tokens]
        spans = [tuple(o) for o in enc.offsets][: len(ids)]
        if not ids:
            return LiveResult(text, hook, neuron, [], [], [], np.zeros(0, np.float32))
        acts = []
        with self._lock, torch.no_grad():
            for start in range(0, len(ids), n_ctx):
                window = torch.tensor([ids[start : start + n_ctx]], dtype=torch.long, device=model.device)
                out = model.recorder.run_with_mlp_cache(window, [hook], dtype=torch.float32)[hook]  # [1, pos, d_mlp]
                acts.append(out[0, :, neuron].cpu().numpy())
        tokens = [text[a:b] for a, b in spans]
        return LiveResult(text, hook, neuron, ids, tokens, spans, np.concatenate(acts).astype(np.float32))
