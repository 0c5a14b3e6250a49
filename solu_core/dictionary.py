"""Training sparse dictionaries (TopK sparse autoencoders) on a recorded MLP hook, and measuring them.

Why TopK (Gao et al. 2024, "Scaling and evaluating sparse autoencoders"): the sparsity is set directly
by k (every token uses at most k features), so there is no L1 coefficient to tune per hook and no L1
shrinkage of the activations; it is what current SAE work trains by default. Dead features are
revived with Gao et al.'s AuxK loss (the top ``aux_k`` dead latents reconstruct the residual the live
ones leave, weight 1/32). Decoder rows are kept at unit norm (the gradient's component along each row
is removed before the step, the rows renormalised after it).

Why not SAELens as the trainer: ``pip install sae-lens`` pulls about 20 further packages (nltk,
statsmodels, plotly, py2store, babe, ...) into the shared environment and its trainer runs through its
own runner and config; the model here is ~150 lines of torch and writes the SAELens on-disk layout
(store.format.dictionary), so SAELens, SAEDashboard and Neuronpedia tooling load what it trains.

Speed: the TopK step is computed sparsely. Only the encoder's forward matmul is dense (every
pre-activation is needed for the top-k); the decoder is an ``embedding_bag`` over the k chosen rows
and the encoder's gradient a sparse [d_sae, batch] x [batch, d_in] product over the k chosen latents,
instead of the dense [batch, d_sae] products of a plain implementation
(benchmarks/bench_features.py compares the two).

Data: the hook's rows, chunk by chunk from the store's dense chunks, or, for a store recorded with
``--dense none``, from the recorded model run again over the recorded tokens (the same float16 rows the
store would have held). A fixed share of whole contexts is held out for the metrics. Each epoch reads
the chunks in a seeded order, a few at a time, and shuffles their rows; every step is a pure function
of (seed, step), so training resumes from its last saved state (every ``checkpoint_every_s`` seconds,
and on Ctrl-C) and ends with the same weights as an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import warnings

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from store import schema
from store.format import atomic
from store.format.dictionary import (
    DictionaryError, alignment, list_dictionaries, load_dictionary, saelens_cfg, save_dictionary,
)

warnings.filterwarnings("ignore", message="Sparse (CSR tensor support|invariant checks)")

MAX_WIDTH = 256  # d_sae / d_in at most ("Towards Monosemanticity" went up to 256x)
DENSE_FREQ = 0.1  # a feature firing on more than this share of tokens counts as dense


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


# ---- the model ------------------------------------------------------------------------------------------


class _GatherPre(torch.autograd.Function):
    """pre[b, idx[b, j]] of pre = (x - b_dec) @ W_enc + b_enc, computed outside (no graph over the dense
    [batch, d_sae] matrix); the backward pass touches only the chosen latents."""

    @staticmethod
    def forward(ctx, W_enc, b_enc, b_dec, x, idx, pre):
        ctx.save_for_backward(W_enc, b_dec, x, idx)
        return pre.gather(1, idx)

    @staticmethod
    def backward(ctx, g):  # g: [batch, j]
        W_enc, b_dec, x, idx = ctx.saved_tensors
        d_sae = W_enc.shape[1]
        g_b_enc = torch.zeros(d_sae, dtype=g.dtype, device=g.device).index_add_(0, idx.reshape(-1), g.reshape(-1))
        G = _sparse_rows(idx, g, d_sae)  # [d_sae, batch]
        g_W_enc = torch.sparse.mm(G, x - b_dec).t()  # [d_in, d_sae]
        g_b_dec = -(W_enc @ g_b_enc)  # d/d b_dec of sum_bj g (x_b - b_dec) . W_enc[:, idx]
        return g_W_enc, g_b_enc, g_b_dec, None, None, None


class _SparseDecode(torch.autograd.Function):
    """sum_j vals[b, j] * W_dec[idx[b, j]] (an embedding_bag); the backward pass is two sparse products
    (torch's own embedding_bag backward is several times slower on the CPU)."""

    @staticmethod
    def forward(ctx, vals, W_dec, idx):
        ctx.save_for_backward(vals, W_dec, idx)
        return F.embedding_bag(idx, W_dec, per_sample_weights=vals, mode="sum")

    @staticmethod
    def backward(ctx, go):  # go: [batch, d_in]
        vals, W_dec, idx = ctx.saved_tensors
        g_W = torch.sparse.mm(_sparse_rows(idx, vals, W_dec.shape[0]), go)  # [d_sae, d_in]
        # g_vals[b, j] = go[b] . W_dec[idx[b, j]]: a sampled dense-dense product at the chosen latents only
        B, j = idx.shape
        crow = torch.arange(0, B * j + 1, j, device=idx.device)
        pattern = torch.sparse_csr_tensor(crow, idx.reshape(-1), torch.zeros(B * j, dtype=go.dtype, device=go.device),
                                          (B, W_dec.shape[0]), check_invariants=False)
        g_vals = torch.sparse.sampled_addmm(pattern, go, W_dec.t()).values().reshape(B, j)
        return g_vals, g_W, None


def _sparse_rows(idx: torch.Tensor, vals: torch.Tensor, d_sae: int) -> torch.Tensor:
    """The sparse [d_sae, batch] matrix with vals[b, j] at (idx[b, j], b)."""
    B, j = idx.shape
    rows = torch.arange(B, device=idx.device).repeat_interleave(j)
    return torch.sparse_coo_tensor(torch.stack([idx.reshape(-1), rows]), vals.reshape(-1), (d_sae, B),
                                   check_invariants=False)


class TopKSAE(nn.Module):
    """f = ReLU(TopK((x - b_dec) @ W_enc + b_enc)), x_hat = f @ W_dec + b_dec (SAELens names and shapes)."""

    def __init__(self, d_in: int, d_sae: int, k: int):
        super().__init__()
        self.d_in, self.d_sae, self.k = d_in, d_sae, k
        self.W_enc = nn.Parameter(torch.empty(d_in, d_sae))  # [d_in, d_sae]
        self.b_enc = nn.Parameter(torch.zeros(d_sae))
        self.W_dec = nn.Parameter(torch.empty(d_sae, d_in))  # [d_sae, d_in], unit rows
        self.b_dec = nn.Parameter(torch.zeros(d_in))

    @torch.no_grad()
    def init_weights(self, gen: torch.Generator, b_dec: torch.Tensor) -> None:
        self.W_dec.copy_(torch.randn(self.d_sae, self.d_in, generator=gen))
        self.normalize_decoder()
        self.W_enc.copy_(self.W_dec.t())  # tied initialisation (Gao et al.)
        self.b_enc.zero_()
        self.b_dec.copy_(b_dec)

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12))

    @torch.no_grad()
    def project_decoder_grad(self) -> None:
        """Remove the gradient's component along each decoder row (keeps the step on the unit sphere)."""
        if self.W_dec.grad is not None:
            g = self.W_dec.grad
            g.sub_((g * self.W_dec).sum(1, keepdim=True) * self.W_dec)

    def pre(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.b_dec) @ self.W_enc + self.b_enc  # [batch, d_sae]

    def decode_sparse(self, idx: torch.Tensor, vals: torch.Tensor) -> torch.Tensor:
        return _SparseDecode.apply(vals, self.W_dec, idx)  # [batch, d_in]

    def step_losses(self, x: torch.Tensor, dead: torch.Tensor | None, aux_k: int, aux_coeff: float):
        """(loss, mse, aux, idx, vals) of one batch ``x`` [batch, d_in]; ``dead`` bool [d_sae] or None."""
        with torch.no_grad():
            pre = self.pre(x)
            idx = pre.topk(self.k, dim=1, sorted=False).indices  # [batch, k]
        vals = F.relu(_GatherPre.apply(self.W_enc, self.b_enc, self.b_dec, x, idx, pre))
        recon = self.decode_sparse(idx, vals) + self.b_dec
        e = x - recon  # the main residual
        mse = e.pow(2).sum(1).mean()
        aux = self.aux_loss(x, pre, e.detach(), dead, aux_k)
        return mse + aux_coeff * aux, mse, aux, idx, vals

    def aux_loss(self, x: torch.Tensor, pre: torch.Tensor, e: torch.Tensor, dead: torch.Tensor | None,
                 aux_k: int) -> torch.Tensor:
        """Gao et al.'s AuxK loss: ||e - e_aux||^2 (summed over d_in, mean over the batch), where ``e`` =
        x - x_hat is the main residual (detached) and e_aux = ReLU(the top ``aux_k`` dead pre-activations)
        @ W_dec (no b_dec), scaled by min(n_dead / aux_k, 1) (fewer dead latents, a smaller pull)."""
        n_dead = int(dead.sum()) if dead is not None else 0
        if not n_dead:
            return x.new_zeros(())
        ka = min(aux_k, n_dead)
        with torch.no_grad():  # the top ka of the dead latents' pre-activations
            cols = torch.nonzero(dead).squeeze(1)
            aidx = cols[pre.index_select(1, cols).topk(ka, dim=1, sorted=False).indices]
        avals = F.relu(_GatherPre.apply(self.W_enc, self.b_enc, self.b_dec, x, aidx, pre))
        e_aux = self.decode_sparse(aidx, avals)
        return (e - e_aux).pow(2).sum(1).mean() * min(n_dead / aux_k, 1.0)

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.pre(x)
        top = pre.topk(self.k, dim=1)
        return torch.zeros_like(pre).scatter_(1, top.indices, F.relu(top.values))

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(x) @ self.W_dec + self.b_dec


def folded_weights(sae: TopKSAE, scale: float) -> dict[str, np.ndarray]:
    """The weights for raw (unscaled) activations. Trained on x * scale: TopK picks the same latents on
    x as on x * scale when b_enc and b_dec are divided by scale, and the features come out divided by
    scale; W_enc and the unit-norm W_dec stay as they are."""
    s = float(scale)
    return {"W_enc": sae.W_enc.detach().cpu().numpy().astype(np.float32),
            "b_enc": (sae.b_enc.detach().cpu().numpy() / s).astype(np.float32),
            "W_dec": sae.W_dec.detach().cpu().numpy().astype(np.float32),
            "b_dec": (sae.b_dec.detach().cpu().numpy() / s).astype(np.float32)}


# ---- the rows of a hook ----------------------------------------------------------------------------------


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


# ---- training -----------------------------------------------------------------------------------------


@dataclass
class _Plan:
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


def _state_dir(store_path: Path, fhook: str) -> Path:
    return Path(store_path) / schema.DICTIONARY_GROUP / schema.DICTIONARY_TRAIN / fhook


def _fingerprint(st, hook: str, cfg: DictionaryConfig) -> str:
    doc = {"run_uuid": st.run_uuid, "hook": hook, "cfg": cfg.key()}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def _save_state(path: Path, state: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic.writing(path, fsync=True) as tmp, open(tmp, "wb") as f:
        torch.save(state, f)


def _load_state(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception:  # a state torn by a kill mid-write is never renamed into place; anything else: start again
        return None


@dataclass
class TrainResult:
    feature_hook: str
    folder: Path
    metrics: dict
    steps: int
    resumed_at: int
    tokens_per_s: float
    skipped: bool = False


def train_dictionary(store, hook: str, *, width: float = 8.0, k: int = 32, name: str | None = None,
                     config: DictionaryConfig | None = None, model: str | None = None, device: str = "auto",
                     progress: bool = True, force: bool = False, stop_after_steps: int | None = None,
                     threads: int | None = None) -> TrainResult:
    """Train a TopK dictionary on ``hook`` of ``store`` (a path or a Store) and save it inside the store as
    the features ``{hook}.sae.{name}`` (default name e.g. ``8x-k32``). Resumes an interrupted run with the
    same settings; a finished dictionary of that name is kept unless ``force``. ``model``: the recorded
    model when the store's manifest does not find it (needed for a --dense none store; otherwise only for
    the loss-recovered metric). ``stop_after_steps``: stop (as if killed, after a save) once this many
    steps ran in all (tests). Returns the folder and the metrics."""
    from store.format.reader import as_store

    st = as_store(store)
    cfg = DictionaryConfig(**{**asdict(config or DictionaryConfig()), "width": float(width), "k": int(k)})
    check_hook(st, hook)
    d_sae = check_settings(int(st.d_mlp), cfg.width, cfg.k, cfg.batch_tokens, cfg.epochs)
    rows = HookRows(st, hook, model=model, device=device)
    name = name or default_name(cfg.width, cfg.k)
    try:
        fhook = schema.feature_hook_name(hook, name)
    except ValueError as e:
        raise DictionaryError(str(e)) from None
    folder = st.path / schema.dictionary_path(fhook)
    if folder.exists() and not force:
        d = load_dictionary(folder)
        return TrainResult(fhook, folder, d.meta.get("metrics", {}), int(d.meta.get("steps", 0)), 0,
                           float(d.meta.get("tokens_per_s", 0.0)), skipped=True)
    # a fixed thread count: the reduction order (and so every float) depends on it, and a resumed run must
    # end with the same weights as an uninterrupted one. Small dictionaries run faster on one thread.
    threads_before = torch.get_num_threads()
    torch.set_num_threads(int(threads or (1 if rows.d_in * d_sae <= 2 ** 20 else (os.cpu_count() or 1))))
    try:
        return _train(st, hook, cfg, rows, name, fhook, folder, d_sae, device, progress, force, stop_after_steps)
    finally:
        torch.set_num_threads(threads_before)


def _train(st, hook, cfg, rows, name, fhook, folder, d_sae, device, progress, force, stop_after_steps):
    from solu_core.model import pick_device

    dev = pick_device(device)
    n_ctx_total = st.n_tokens // st.context_len
    held = holdout_contexts(n_ctx_total, cfg.holdout, cfg.seed)
    per_chunk_ctx = st.chunk_tokens // st.context_len
    train_rows = np.array([int((~held[c * per_chunk_ctx:c * per_chunk_ctx + rows.rows_of(c) // st.context_len]).sum())
                           * st.context_len for c in range(rows.n_chunks)], np.int64)
    if train_rows.sum() < cfg.k:
        raise DictionaryError(f"{hook} of {st.path} has only {int(train_rows.sum())} training tokens; record more")
    group = cfg.chunks_per_group or max(1, math.ceil(8 * cfg.batch_tokens / max(1, int(train_rows.max()))))
    plan = _Plan(rows, cfg, held, train_rows, min(group, rows.n_chunks), d_sae)
    sched = plan.schedule()
    total = sum(b for _, _, b in sched)
    aux_k = cfg.aux_k or max(1, rows.d_in // 2)
    dead_tokens = cfg.dead_tokens or int(min(10_000_000, max(cfg.batch_tokens, train_rows.sum() // 4)))
    lr = cfg.lr or default_lr(d_sae)

    sdir = _state_dir(st.path, fhook)
    spath = sdir / "state.pt"
    fp = _fingerprint(st, hook, cfg)
    state = None if force else _load_state(spath)
    if state is not None and state.get("fingerprint") != fp:
        raise DictionaryError(f"an interrupted training of {fhook} with other settings is in {sdir}; rerun it with "
                              f"the same settings to resume it, or add --force to start again with these")
    sae = TopKSAE(rows.d_in, d_sae, cfg.k).to(dev)
    opt = torch.optim.Adam(sae.parameters(), lr=lr, betas=(0.9, 0.999), eps=6.25e-10)
    if state is None:
        scale, mean = _input_stats(plan)
        gen = torch.Generator().manual_seed(int(cfg.seed))
        sae.init_weights(gen, torch.from_numpy(mean * scale))
        sae.to(dev)
        since = torch.zeros(d_sae, dtype=torch.int64)
        step0, spent = 0, 0.0
    else:
        sae.load_state_dict(state["sae"])
        opt.load_state_dict(state["opt"])
        scale, since = float(state["scale"]), state["since_fired"]
        step0, spent = int(state["step"]), float(state["spent_s"])
    since = since.to(dev)

    def save(step: int, spent_s: float) -> None:
        _save_state(spath, {"fingerprint": fp, "sae": sae.state_dict(), "opt": opt.state_dict(), "scale": scale,
                            "since_fired": since.cpu(), "step": step, "spent_s": spent_s, "total": total})

    def lr_at(s: int) -> float:
        warm = min(1.0, (s + 1) / max(1, cfg.warmup_steps))
        decay_start = total * (1 - cfg.decay_frac)
        dec = 1.0 if s < decay_start else max(0.0, (total - s) / max(1.0, total - decay_start))
        return lr * warm * dec

    bar = None
    if progress:
        from store.progress import progress_bar

        bar = progress_bar(total=total, initial=step0, unit="step", desc=f"train {fhook}")
    step = 0
    t_run = time.perf_counter()
    last_save = time.monotonic()
    ran = 0
    pool = ThreadPoolExecutor(1, thread_name_prefix="neurobrowse-sae-read")

    def load_group(e: int, gi: int) -> torch.Tensor:
        chunks = plan.groups(e)[gi]
        parts = [plan.train_block(int(c), rows.chunk(int(c))) for c in chunks]
        x = np.concatenate(parts).astype(np.float32) * scale
        perm = np.random.default_rng([cfg.seed, 3, e, gi]).permutation(x.shape[0])
        return torch.from_numpy(x[perm])

    todo = []
    for e, gi, nb in sched:
        if step + nb > step0 and nb:
            todo.append((e, gi, nb, step))
        step += nb
    try:
        nxt = pool.submit(load_group, *todo[0][:2]) if todo else None
        for i, (_e, _gi, nb, first) in enumerate(todo):
            data = nxt.result()
            nxt = pool.submit(load_group, *todo[i + 1][:2]) if i + 1 < len(todo) else None
            B = min(cfg.batch_tokens, data.shape[0])
            for b in range(nb):
                s = first + b
                if s < step0:
                    continue
                x = data[b * B:(b + 1) * B].to(dev)
                for grp in opt.param_groups:
                    grp["lr"] = lr_at(s)
                dead = since >= dead_tokens
                loss, mse, aux, idx, vals = sae.step_losses(x, dead if bool(dead.any()) else None, aux_k, cfg.aux_coeff)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                sae.project_decoder_grad()
                opt.step()
                sae.normalize_decoder()
                with torch.no_grad():
                    fired = torch.zeros(d_sae, dtype=torch.bool, device=dev)
                    fired[idx[vals > 0]] = True
                    since += x.shape[0]
                    since[fired] = 0
                ran += 1
                if bar is not None:
                    el = time.perf_counter() - t_run
                    bar.update(1)
                    if ran % 5 == 0 or s + 1 == total:
                        var = float(x.var(0).sum())
                        bar.set_postfix_str(f"fvu {float(mse.detach()) / max(var, 1e-12):.3f}, dead {int(dead.sum())}, "
                                            f"{ran * B / el:,.0f} tok/s", refresh=False)
                done = s + 1
                if stop_after_steps is not None and done >= stop_after_steps and done < total:
                    save(done, spent + time.perf_counter() - t_run)
                    raise _Stopped(done)
                if time.monotonic() - last_save >= cfg.checkpoint_every_s and done < total:
                    save(done, spent + time.perf_counter() - t_run)
                    last_save = time.monotonic()
    except KeyboardInterrupt:
        cur = step0 + ran
        if 0 < ran:
            save(cur, spent + time.perf_counter() - t_run)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        if bar is not None:
            bar.close()
    train_s = spent + time.perf_counter() - t_run
    tokens_per_s = ran * cfg.batch_tokens / max(time.perf_counter() - t_run, 1e-9) if ran else 0.0
    weights = folded_weights(sae, scale)
    metrics, sparsity = evaluate(plan, weights, model=rows.loaded, device=dev, progress=progress)
    meta = {"source_hook": hook, "name": name, "feature_hook": fhook, "trained_here": True,
            "store_run_uuid": st.run_uuid, "config": asdict(cfg), "d_in": rows.d_in, "d_sae": d_sae, "lr": lr,
            "aux_k": aux_k, "dead_tokens": dead_tokens, "input_scale": scale, "steps": total,
            "train_tokens": int(total * cfg.batch_tokens), "train_s": train_s, "tokens_per_s": tokens_per_s,
            "device": str(dev), "from_model": rows.from_model, "metrics": metrics}
    cfg_json = saelens_cfg(rows.d_in, d_sae, cfg.k, hook, model_name=st.manifest.get("checkpoint_path"),
                           context_size=st.context_len, dataset_path=str(st.path))
    if folder.exists():  # --force over a dictionary: its features' index and logit effects describe the old one
        drop_feature_index(st.path, fhook)
    save_dictionary(folder, cfg_json, weights, meta, sparsity)
    shutil.rmtree(sdir, ignore_errors=True)
    return TrainResult(fhook, folder, metrics, total, step0, tokens_per_s)


def drop_feature_index(store_path, fhook: str) -> None:
    """Remove what indexing wrote for the features ``fhook`` (index, a rebuild in progress, logit effects), so
    that a retrained dictionary is never served with the index of the one it replaced. Called before the new
    folder is renamed into place: a kill in between leaves the old dictionary unindexed, never mismatched."""
    root = Path(store_path)
    for rel in (schema.index_path(fhook), schema.index_rebuild_path(fhook),
                schema.logit_path_for(fhook)):
        if (root / rel).exists():
            shutil.rmtree(root / rel)


class _Stopped(Exception):
    """train_dictionary(stop_after_steps=...) stopped after a save (behaves like a kill)."""

    def __init__(self, step: int):
        super().__init__(f"stopped after step {step}")
        self.step = step


def _input_stats(plan: _Plan) -> tuple[float, np.ndarray]:
    """(scale, mean): the constant that makes E||x||^2 = d_in on the training rows (SAELens's
    expected_average_only_in normalisation, folded back into the saved weights), from up to 8 chunks spread
    over the store, and their mean row (the decoder bias's start)."""
    n = plan.rows.n_chunks
    picks = np.unique(np.linspace(0, n - 1, min(8, n)).astype(int))
    sq, tot, rows = 0.0, np.zeros(plan.rows.d_in, np.float64), 0
    for c in picks:
        a = plan.train_block(int(c), plan.rows.chunk(int(c))).astype(np.float64)
        sq += float((a ** 2).sum())
        tot += a.sum(0)
        rows += a.shape[0]
    msq = sq / max(rows, 1)
    scale = math.sqrt(plan.rows.d_in / msq) if msq > 0 else 1.0
    return scale, (tot / max(rows, 1)).astype(np.float32)


# ---- metrics ----------------------------------------------------------------------------------------------


def evaluate(plan: _Plan, weights: dict[str, np.ndarray], model=None, device=None, progress: bool = False):
    """The metrics of a dictionary on the held-out contexts: FVU, mean L0, dead and dense features, the
    feature-neuron alignment, and (with the recorded model) the loss recovered when the reconstruction is
    spliced in. Returns (metrics dict, sparsity [d_sae] = log10 firing frequency)."""
    dev = device or torch.device("cpu")
    W_enc, b_enc, W_dec, b_dec = (torch.from_numpy(weights[n]).to(dev) for n in ("W_enc", "b_enc", "W_dec", "b_dec"))
    k = plan.cfg.k
    d_sae = W_enc.shape[1]
    sse, sx, sxx, n, l0 = 0.0, torch.zeros(W_enc.shape[0], dtype=torch.float64), 0.0, 0, 0.0
    fired = torch.zeros(d_sae, dtype=torch.int64)
    for c in range(plan.rows.n_chunks):
        a = plan.held_block(c, plan.rows.chunk(c))
        if not a.shape[0]:
            continue
        x = torch.from_numpy(a.astype(np.float32)).to(dev)
        f = _encode_t(x, W_enc, b_enc, b_dec, k)
        rec = f @ W_dec + b_dec
        sse += float((rec - x).double().pow(2).sum())
        sx += x.double().sum(0).cpu()
        sxx += float(x.double().pow(2).sum())
        n += x.shape[0]
        nz = f > 0
        l0 += float(nz.sum())
        fired += nz.sum(0).cpu()
    sst = sxx - float((sx ** 2).sum()) / max(n, 1)
    freq = fired.double() / max(n, 1)
    al = alignment(weights["W_dec"])
    metrics = {"heldout_tokens": n, "fvu": sse / sst if sst > 0 else float("nan"), "l0": l0 / max(n, 1),
               "dead": int((fired == 0).sum()), "dense": int((freq > DENSE_FREQ).sum()), "d_sae": int(d_sae),
               "dense_threshold": DENSE_FREQ, "aligned_share": al["aligned_share"], "spread_share": al["spread_share"],
               "median_max_cos": al["median_max_cos"]}
    mean = (sx / max(n, 1)).float().numpy()
    metrics.update(loss_recovered(plan, weights, model, mean, dev))
    sparsity = np.log10(np.maximum(freq.numpy(), 1e-10)).astype(np.float32)
    return metrics, sparsity


def _encode_t(x, W_enc, b_enc, b_dec, k):
    pre = (x - b_dec) @ W_enc + b_enc
    top = pre.topk(k, dim=1)
    return torch.zeros_like(pre).scatter_(1, top.indices, F.relu(top.values))


def splice(model, hook: str, fn):
    """Context manager: run ``model`` (a solu_core Transformer) with ``fn(activation)`` flowing on in place
    of the activation at ``hook``."""
    from contextlib import contextmanager

    layer, _ = schema.parse_hook_name(hook)

    @contextmanager
    def cm():
        mlp = model.blocks[layer].mlp
        mlp.replace = {hook: fn}
        try:
            yield
        finally:
            mlp.replace = None

    return cm()


def loss_recovered(plan: _Plan, weights: dict, loaded, mean: np.ndarray, dev) -> dict:
    """Cross-entropy on up to cfg.eval_contexts held-out contexts with the hook as recorded, with the
    dictionary's reconstruction spliced in, and with zero and mean ablation; the share of the ablation's loss
    increase the reconstruction recovers. Needs a neurobrowse checkpoint (None values otherwise)."""
    none = {"ce_original": None, "ce_reconstruction": None, "ce_zero_ablation": None, "ce_mean_ablation": None,
            "loss_recovered": None, "loss_recovered_vs_mean": None}
    if loaded is None or getattr(loaded, "kind", None) != "checkpoint":
        return {**none, "loss_recovered_note": "needs the recorded neurobrowse checkpoint (pass --model)"}
    st, hook = plan.rows.st, plan.rows.hook
    model = loaded.recorder.model
    ctx = st.context_len
    held = np.flatnonzero(plan.held)[:plan.cfg.eval_contexts]
    toks = np.asarray(st.tokens[...], np.int64).reshape(-1, ctx)[held]
    W_enc, b_enc, W_dec, b_dec = (torch.from_numpy(weights[n]) for n in ("W_enc", "b_enc", "W_dec", "b_dec"))
    pdev = next(model.parameters()).device
    W_enc, b_enc, W_dec, b_dec = (t.to(pdev) for t in (W_enc, b_enc, W_dec, b_dec))
    mean_t = torch.from_numpy(mean).to(pdev)
    k = plan.cfg.k

    def recon(x):
        shp = x.shape
        xf = x.reshape(-1, shp[-1]).float()
        return (_encode_t(xf, W_enc, b_enc, b_dec, k) @ W_dec + b_dec).reshape(shp).to(x.dtype)

    fns = {"ce_original": None, "ce_reconstruction": recon, "ce_zero_ablation": lambda x: torch.zeros_like(x),
           "ce_mean_ablation": lambda x: mean_t.to(x.dtype).expand_as(x)}
    out = {}
    with torch.no_grad():
        for key, fn in fns.items():
            tot, cnt = 0.0, 0
            for b in range(0, toks.shape[0], 32):
                t = torch.from_numpy(toks[b:b + 32]).to(pdev)
                if fn is None:
                    ce = model.loss(t)
                else:
                    with splice(model, hook, fn):
                        ce = model.loss(t)
                tot += float(ce) * t.shape[0]
                cnt += t.shape[0]
            out[key] = tot / max(cnt, 1)
    o, r, z, m = out["ce_original"], out["ce_reconstruction"], out["ce_zero_ablation"], out["ce_mean_ablation"]
    out["loss_recovered"] = (z - r) / (z - o) if abs(z - o) > 1e-12 else None
    out["loss_recovered_vs_mean"] = (m - r) / (m - o) if abs(m - o) > 1e-12 else None
    out["eval_contexts"] = int(toks.shape[0])
    return out


# ---- logit effects of features (W_dec @ W_out @ W_U) ------------------------------------------------------


def feature_logit_effects(loaded, hook: str, W_dec: np.ndarray, k: int = schema.K_LOGIT,
                          mid_scale: float | None = None) -> tuple[np.ndarray, ...]:
    """(up_tokens, up_values, down_tokens, down_values), each [d_sae, k]: the tokens whose logits each
    feature's decoder direction raises and lowers most along the direct path. A hook_post feature's
    direction d goes through W_out @ W_U; a SoLU-LN hook_mid feature's through the LayerNorm's
    linearisation at the typical scale (d - mean(d)) * ln.w / ``mid_scale`` first."""
    rec = loaded.recorder
    layer, kind = schema.parse_hook_name(hook)
    d = torch.from_numpy(np.asarray(W_dec, np.float32))
    w_out = rec.w_out(layer).detach().float().cpu()  # [d_mlp, d_model]
    w_u = rec.w_u().detach().float().cpu()  # [d_model, d_vocab]
    if kind == "hook_mid" and getattr(loaded, "kind", None) == "checkpoint":
        ln = rec.model.blocks[layer].mlp.ln
        d = (d - d.mean(1, keepdim=True)) * ln.w.detach().float().cpu() / float(mid_scale or 1.0)
    n_vocab = loaded.tokenizer.get_vocab_size() if getattr(loaded, "kind", None) != "checkpoint" else w_u.shape[1]
    eff = (d @ w_out) @ w_u[:, :n_vocab]  # [d_sae, d_vocab]
    k = min(k, eff.shape[1])
    up = torch.topk(eff, k, dim=1, largest=True, sorted=True)
    down = torch.topk(eff, k, dim=1, largest=False, sorted=True)
    return (up.indices.int().numpy(), up.values.numpy(), down.indices.int().numpy(), down.values.numpy())


def index_features(store, feature_hook: str | None = None, *, model: str | None = None, device: str = "auto",
                   k: int = schema.DEFAULT_K, force: bool = False, progress: bool = True,
                   index_config=None) -> dict:
    """Index the features of one dictionary of ``store`` (every one not indexed yet when None) with the same
    indexer as neurons: their activations are computed chunk by chunk from the source hook (or by the
    recorded model for a --dense none store); logit effects through the decoder when the model is found;
    the per-token peak of the source hook's neurons (for the hidden-feature candidates). Returns a summary
    per feature hook."""
    import dataclasses

    from store.format import features as feats
    from store.index import IndexConfig
    from store.index.run import index_hook
    from store.format.reader import as_store

    st = as_store(store)
    have = list_dictionaries(st.path)
    if feature_hook is None:
        hooks = [h for h in have if force or not st.is_indexed(h)]
    else:
        if feature_hook not in have:
            raise DictionaryError(f"{st.path} has no dictionary {feature_hook!r}; it has "
                                  f"{', '.join(have) or 'none (train one with `neurobrowse features train`)'}")
        hooks = [feature_hook]
    cfg = dataclasses.replace(index_config or IndexConfig(), k=k)
    out = {}
    loaded_cache: dict = {}
    for fh in hooks:
        src_hook, _ = schema.feature_source(fh)
        if src_hook not in st.recorded_hooks:
            raise DictionaryError(f"the dictionary {fh} reads {src_hook}, which {st.path} did not record")
        d = st.dictionary(fh)
        key = model or st.manifest.get("checkpoint_path")
        if key not in loaded_cache:
            loaded_cache[key] = recorded_model(st, model, device, need=not st.dense)
        loaded = loaded_cache[key]
        reader = None
        if not st.dense:
            rows = HookRows.__new__(HookRows)  # the source hook's rows, computed by the model (no dense chunks)
            rows.st, rows.hook, rows.n_chunks = st, src_hook, st.n_chunks
            rows.ct, rows.ctx, rows.d_in, rows.loaded = st.chunk_tokens, st.context_len, int(st.d_mlp), loaded

            def reader(c, rows=rows, d=d):
                return d.encode(rows.chunk(c)).astype(np.float16)
        t0 = time.perf_counter()
        if loaded is not None and (force or not feats.has_feature_logits(st, fh)):
            mid_scale = d.meta.get("mid_scale") if isinstance(d.meta, dict) else None
            if schema.parse_hook_name(src_hook)[1] == "hook_mid" and mid_scale is None:
                mid_scale = feats.typical_row_std(st, src_hook, reader=None if st.dense else
                                                  (lambda c, r=rows: r.chunk(c)))
            feats.write_feature_logits(st.path, fh, *feature_logit_effects(loaded, fh.rsplit(".sae.", 1)[0], d.W_dec,
                                                                            mid_scale=mid_scale))
        t_logit = time.perf_counter() - t0
        summary = index_hook(st, fh, cfg, force=force, progress=progress, reader=reader)
        t_index = time.perf_counter() - t0 - t_logit
        peak = feats.write_neuron_peak(st, fh, reader=None if st.dense else (lambda c, r=rows: r.chunk(c)),
                                       force=force)
        out[fh] = {**summary, "logit_s": t_logit, "index_s": t_index, "peak": peak}
    return out


__all__ = ["DictionaryConfig", "HookRows", "TopKSAE", "TrainResult", "check_settings", "default_lr", "default_name",
           "drop_feature_index", "evaluate", "feature_logit_effects", "folded_weights", "holdout_contexts",
           "index_features", "loss_recovered", "parse_width", "recorded_model", "splice", "train_dictionary"]
