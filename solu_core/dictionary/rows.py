"""The rows a dictionary trains on: a hook's activations chunk by chunk, from the store's dense chunks, or,
for a store recorded with ``--dense none``, from the recorded model run again over the recorded tokens (the
same float16 rows the store would have held); the held-out contexts; the training plan (which chunks are
read together in each epoch, and how many batches each group gives)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from solu_core.dictionary.config import DictionaryConfig
from store import schema
from store.format.dictionary import DictionaryError


class HookRows:
    """A recorded hook's activations chunk by chunk: float16 [rows, d_in] from the store's dense chunks, or
    recomputed by the recorded model over the recorded tokens for a store recorded with --dense none."""

    def __init__(self, st, hook: str, model: str | None = None, device: str = "auto"):
        check_hook(st, hook)
        self.st, self.hook = st, hook
        self.n_chunks, self.ct, self.ctx = st.n_chunks, st.chunk_tokens, st.context_len
        self.d_in = int(st.d_mlp)
        # the recorded model: needed to compute the rows of a --dense none store; otherwise only for the
        # loss-recovered metric (None when it cannot be found)
        self.loaded = recorded_model(st, model, device, need=not st.dense or model is not None)

    @property
    def from_model(self) -> bool:
        return not self.st.dense

    def rows_of(self, c: int) -> int:
        return min(self.st.n_tokens, (c + 1) * self.ct) - c * self.ct

    def chunk(self, c: int) -> np.ndarray:
        """float16 [rows, d_in] of chunk ``c``; a DictionaryError for NaN or infinite activations."""
        if self.st.dense:
            a = np.asarray(self.st.read_chunk(self.hook, c))
        else:
            toks = np.asarray(self.st.read_chunk(schema.TOKENS, c), np.int64).reshape(-1, self.ctx)
            rec = self.loaded.recorder
            dev = next(rec.parameters()).device
            parts = []
            for b in range(0, toks.shape[0], 64):
                cache = rec.run_with_mlp_cache(torch.from_numpy(toks[b:b + 64]).to(dev), [self.hook],
                                               dtype=torch.float16)
                parts.append(cache[self.hook].reshape(-1, self.d_in).cpu().numpy())
            a = np.concatenate(parts)
        if not np.isfinite(a).all():
            bad = int(np.flatnonzero(~np.isfinite(a).all(1))[0]) + c * self.ct
            raise DictionaryError(f"{self.hook} of {self.st.path} holds NaN or infinite activations (chunk {c}, "
                                  f"token {bad}); a dictionary cannot be trained on them: re-record the store "
                                  f"(float16 overflow: the model's activations exceed 65504)")
        return a


def check_hook(st, hook: str) -> None:
    """A DictionaryError unless ``hook`` is a recorded hook of the complete store ``st``."""
    if schema.is_feature_hook(hook):
        raise DictionaryError(f"{hook!r} is a dictionary's features; train a dictionary on a recorded hook "
                              f"({', '.join(st.recorded_hooks)})")
    if hook not in st.recorded_hooks:
        raise DictionaryError(f"{st.path} has no hook {hook!r}; it has {', '.join(st.recorded_hooks)}")
    if not st.complete:
        raise DictionaryError(f"{st.path} is an incomplete recording; finish it first: {st.resume_command()}")


def recorded_model(st, model: str | None = None, device: str = "auto", need: bool = True):
    """The model a store was recorded from (its manifest's checkpoint_path, or ``model``), checked against
    the hash the store recorded; None when it cannot be found and ``need`` is False, else a DictionaryError."""
    from solu_core.loading import load_model
    from store.errors import NeurobrowseError

    spec = model or st.manifest.get("checkpoint_path")
    why = None
    if not spec:
        why = "the store names no model"
    else:
        try:
            loaded = load_model(spec, device=device)
        except NeurobrowseError as e:
            why = f"{spec} cannot be loaded ({e})"
        else:
            want = st.manifest.get("checkpoint_hash")
            if want and loaded.hash != want:
                why = f"{spec} holds other weights than the ones {st.path} was recorded from"
            else:
                loaded.recorder.eval()
                return loaded
    if not need:
        return None
    raise DictionaryError(f"{st.path} was recorded with --dense none, so its activations must be computed again by "
                          f"the recorded model, but {why}; pass --model CHECKPOINT (the model it was recorded from)")


def holdout_contexts(n_contexts: int, share: float, seed: int) -> np.ndarray:
    """bool [n_contexts]: the contexts held out for the metrics (a seeded draw, at least one)."""
    if n_contexts <= 1 or share <= 0:
        return np.zeros(n_contexts, bool)
    r = np.random.default_rng([int(seed), 1]).random(n_contexts)
    out = r < share
    if not out.any():
        out[int(np.argmin(r))] = True
    if out.all():
        out[int(np.argmax(r))] = False
    return out


@dataclass
class Plan:
    rows: HookRows
    cfg: DictionaryConfig
    held: np.ndarray  # bool [n_contexts]
    train_rows: np.ndarray  # int64 [n_chunks]: training rows per chunk
    group: int  # chunks per group
    d_sae: int
    steps_per_epoch: list[list[int]] = field(default_factory=list)  # per epoch: batches of each group

    def groups(self, epoch: int) -> list[np.ndarray]:
        perm = np.random.default_rng([self.cfg.seed, 2, epoch]).permutation(self.rows.n_chunks)
        return [perm[i:i + self.group] for i in range(0, len(perm), self.group)]

    def batches(self, n_rows: int) -> int:
        B = self.cfg.batch_tokens
        return n_rows // B if n_rows >= B else (1 if n_rows else 0)

    def schedule(self) -> list[tuple[int, int, int]]:
        """(epoch, group index, batches) for every group of every epoch (the last epoch may be partial)."""
        whole, frac = int(self.cfg.epochs), self.cfg.epochs - int(self.cfg.epochs)
        out = []
        for e in range(whole + (1 if frac > 1e-9 else 0)):
            gs = self.groups(e)
            if e == whole:  # a partial epoch: the first groups of its order
                gs = gs[:max(1, int(round(len(gs) * frac)))]
            for gi, g in enumerate(gs):
                out.append((e, gi, self.batches(int(self.train_rows[g].sum()))))
        return out

    def train_block(self, c: int, a: np.ndarray) -> np.ndarray:
        ctx = self.rows.ctx
        keep = np.repeat(~self.held[c * (self.rows.ct // ctx):c * (self.rows.ct // ctx) + a.shape[0] // ctx], ctx)
        return a[keep]

    def held_block(self, c: int, a: np.ndarray) -> np.ndarray:
        ctx = self.rows.ctx
        keep = np.repeat(self.held[c * (self.rows.ct // ctx):c * (self.rows.ct // ctx) + a.shape[0] // ctx], ctx)
        return a[keep]
