"""Record a model's MLP activations over held-out tokens into an activation store.

The model runs over the corpus's validation split cut into fixed contexts of ``n_ctx`` tokens
(the split's documents are concatenated; document starts are stored beside the tokens). Each
unit of work is a fixed group of whole store chunks, so the chunk boundaries, the batches and
therefore every float are the same on every run: a killed recording resumes by recomputing only
the groups that hold a chunk without its completion marker, and the finished store is identical
to one recorded in one go. Chunks are written through a ``store.pipeline.ChunkPipeline``: a background
thread writes group g (and hands it to any plugged-in consumers) while the model runs group g+1.

Logit effects (W_out @ W_U per layer: the K_LOGIT tokens each neuron's direct path raises and
lowers most) are computed here with torch and stored, so the browser needs no torch.
"""

from __future__ import annotations

import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from solu_core import corpus as corpus_mod
from solu_core.checkpoint import check_tokenizer_matches, code_version, load_checkpoint
from solu_core.model import ModelConfig
from store import schema
from store.errors import CorpusError, NeurobrowseError
from store.pipeline import Chunk, ChunkConsumer, ChunkPipeline, write_chunks
from store.writer import StoreWriter


class RecordError(NeurobrowseError):
    """Recording options that do not fit the model or the corpus."""


@dataclass
class RecordStats:
    """Where a recording's time went (model vs writer), filled by ``record(stats=...)``."""

    tokens: int = 0  # tokens recorded in this run (resumed chunks excluded)
    bytes: int = 0  # bytes of activations handed to the writer
    model_s: float = 0.0  # forward passes incl. copying activations to host memory
    write_s: float = 0.0  # StoreWriter.write_chunk (encode, checksum, write, fsync, marker) + consumers
    wait_s: float = 0.0  # the forward pass waiting for the background writer (its part not hidden)
    logit_s: float = 0.0  # logit effects
    wall_s: float = 0.0
    groups: list[int] = field(default_factory=list)  # work groups run


def default_hooks(cfg: ModelConfig, layers: list[int] | None = None, hooks: list[str] | None = None) -> list[str]:
    """Full hook names to record: every (chosen) layer's hook_post, plus hook_mid for SoLU-LN.

    ``hooks`` are short names ('hook_post', 'hook_mid', 'hook_pre') or full names."""
    layers = list(range(cfg.n_layers)) if layers is None else list(layers)
    bad = [layer for layer in layers if not 0 <= layer < cfg.n_layers]
    if bad:
        raise RecordError(f"layer(s) {bad} out of range: this model has layers 0..{cfg.n_layers - 1}")
    out: list[str] = []
    for layer in layers:
        have = cfg.hook_names(layer)
        if hooks is None:
            wanted = [schema.hook_name(layer, "hook_post")]
            if cfg.act_fn == "solu_ln":
                wanted.append(schema.hook_name(layer, "hook_mid"))
        else:
            wanted = [h if h.startswith("blocks.") else schema.hook_name(layer, h) for h in hooks]
            wanted = [h for h in wanted if schema.parse_hook_name(h)[0] == layer]
        for h in wanted:
            if h not in have:
                raise RecordError(f"this {cfg.act_fn} model has no hook {h!r}; layer {layer} has {', '.join(have)}")
            if h not in out:
                out.append(h)
    if not out:
        raise RecordError("nothing to record: the chosen layers and hooks select no hook")
    return out


@torch.no_grad()
def logit_effects(model, layer: int, k: int = schema.K_LOGIT) -> tuple[np.ndarray, ...]:
    """Direct logit effects of one layer's neurons: W_out [d_mlp, d_model] @ W_U [d_model, d_vocab].

    Returns up_tokens, up_values (k largest per neuron, descending), down_tokens, down_values
    (k smallest, ascending), each [d_mlp, k]. The final LayerNorm's scale is not folded in (the
    effect is in the units of the residual stream the unembedding sees)."""
    w_out = model.blocks[layer].mlp.W_out.float()  # [d_mlp, d_model]
    w_u = model.unembed.W_U.float()  # [d_model, d_vocab]
    eff = w_out @ w_u  # [d_mlp, d_vocab]
    k = min(k, eff.shape[1])
    up = torch.topk(eff, k, dim=1, largest=True, sorted=True)
    down = torch.topk(eff, k, dim=1, largest=False, sorted=True)
    return (up.indices.int().cpu().numpy(), up.values.cpu().numpy(),
            down.indices.int().cpu().numpy(), down.values.cpu().numpy())


def plan_batches(chunk_tokens: int, context_len: int, batch_size: int | None) -> tuple[int, int]:
    """(chunks per work group, contexts per forward batch) so batches fill whole chunks.

    batch_size >= contexts per chunk: a group is batch_size // cpc whole chunks, run in one batch.
    Smaller: a group is one chunk, run in batches of the largest divisor of cpc <= batch_size."""
    cpc = chunk_tokens // context_len  # contexts per chunk
    if batch_size is None or batch_size <= 0:
        return 1, cpc
    if batch_size >= cpc:
        per_group = batch_size // cpc
        return per_group, per_group * cpc
    div = max(d for d in range(1, batch_size + 1) if cpc % d == 0)
    return 1, div


@dataclass
class RecordPlan:
    """An opened recording (``open_recording``): the model, the writer and how the work is cut.

    The unit of work is a *group* of ``per_group`` whole chunks (``record_group``), the same for the
    single-process loop and for Dask workers, so both give the same batches and the same floats."""

    ck: object  # solu_core.checkpoint.Checkpoint
    writer: StoreWriter
    split: object  # corpus TokenSplit of the validation tokens
    hooks: list[str]  # full hook names recorded
    n_tokens: int  # tokens recorded (whole contexts, at most the split)
    per_group: int  # chunks per work group
    batch_ctx: int  # contexts per forward batch
    corpus_dir: Path
    out: Path

    def pending(self) -> dict[str, set[int]]:
        """Per-token array name -> chunk indices not yet safely on disk."""
        return {name: set(self.writer.pending_chunks(name)) for name in self.writer.per_token_arrays}

    def groups(self, pending: dict[str, set[int]]) -> list[int]:
        """Work groups holding at least one pending chunk."""
        return sorted({c // self.per_group for c in set().union(*pending.values())})


def open_recording(checkpoint_dir: str | Path, out: str | Path, *, n_tokens: int = 1 << 20,
                   layers: list[int] | None = None, hooks: list[str] | None = None, batch_size: int | None = None,
                   device: str = "auto", corpus_dir: str | Path | None = None, progress: bool = True,
                   chunk_tokens: int | None = None, fsync: bool = True, index: bool = False,
                   dense: bool = True) -> RecordPlan:
    """Load the checkpoint, check the corpus and create (or resume) the store; no chunk is run yet.
    Arguments as ``record``."""
    if not dense and not index:
        raise RecordError("--dense none keeps no activations: add --index to index them while recording")
    ck = load_checkpoint(checkpoint_dir, device=device)
    cfg = ck.config
    corpus_dir = Path(corpus_dir or ck.meta.get("corpus_dir") or "").expanduser()
    if not str(corpus_dir) or not (corpus_dir / "manifest.json").exists():
        raise CorpusError(f"corpus {corpus_dir or '(none)'} not found; pass --corpus DIR (the corpus the model "
                          f"was trained on)")
    corpus_dir = corpus_dir.resolve()
    check_tokenizer_matches(ck, corpus_dir)
    split = corpus_mod.load_split(corpus_dir, "val")
    ctx = cfg.n_ctx
    avail = len(split) // ctx * ctx
    want = int(n_tokens) // ctx * ctx
    if want <= 0:
        raise RecordError(f"--tokens {n_tokens} is less than one context of {ctx} tokens")
    if avail <= 0:
        raise CorpusError(f"{corpus_dir} has only {len(split)} validation tokens, less than one context of {ctx}")
    n = min(want, avail)
    if want != int(n_tokens):  # said even with --quiet: the store holds other tokens than asked
        print(f"note: --tokens {int(n_tokens):,} is rounded down to whole contexts of {ctx}: recording {want:,} tokens",
              file=sys.stderr)
    if n < want:
        print(f"note: {corpus_dir} has {len(split):,} validation tokens; recording {n:,} instead of {want:,}",
              file=sys.stderr)
    hook_list = default_hooks(cfg, layers, hooks)
    out = Path(out).expanduser().absolute()
    cmd = ["neurobrowse", "record", str(ck.path), "--out", str(out), "--tokens", str(n_tokens),
           "--hooks", ",".join(hook_list), "--corpus", str(corpus_dir)]
    if batch_size:
        cmd += ["--batch-size", str(batch_size)]
    if chunk_tokens:
        cmd += ["--chunk-tokens", str(chunk_tokens)]
    if index:
        cmd += ["--index", "--dense", "keep" if dense else "none"]
    w = StoreWriter.create_or_resume(
        out, model_config=cfg.to_dict(), hooks=hook_list, n_tokens=n, context_len=ctx,
        tokenizer_json=ck.tokenizer_json, chunk_tokens=chunk_tokens, fsync=fsync, dense=dense,
        manifest={
            "checkpoint_hash": ck.hash,
            "checkpoint_path": str(ck.path),
            "corpus_manifest_hash": corpus_mod.corpus_manifest_hash(corpus_dir),
            "corpus_dir": str(corpus_dir),
            "code_version": code_version(),
            "split": "val",
            "layers": sorted({schema.parse_hook_name(h)[0] for h in hook_list}),
            "record_command": shlex.join(cmd),
        },
    )
    per_group, batch_ctx = plan_batches(w.chunk_tokens, ctx, batch_size)
    return RecordPlan(ck=ck, writer=w, split=split, hooks=hook_list, n_tokens=n, per_group=per_group,
                      batch_ctx=batch_ctx, corpus_dir=corpus_dir, out=out)


def write_logit_effects(plan: RecordPlan, stats: RecordStats | None = None) -> None:
    """Logit effects of every recorded layer that does not have them yet (small; done first)."""
    t0 = time.perf_counter()
    for layer in plan.writer.layers:
        if plan.writer.logit_pending(layer):
            plan.writer.write_logit_effects(layer, *logit_effects(plan.ck.model, layer))
    if stats is not None:
        stats.logit_s += time.perf_counter() - t0


def compute_group(model, w: StoreWriter, split, hook_list: list[str], g: int, per_group: int, batch_ctx: int,
                  stats: RecordStats) -> list[Chunk]:
    """Run the model over work group ``g`` (chunks g*per_group ...) in batches of ``batch_ctx``
    contexts; returns the group's chunks (tokens, doc starts, float16 activations per hook)."""
    ctx = w.context_len
    dev = next(model.parameters()).device
    c0, c1 = g * per_group, min(w.n_chunks, (g + 1) * per_group)
    start, stop = w.chunk_rows(c0)[0], w.chunk_rows(c1 - 1)[1]
    toks = np.asarray(split.tokens[start:stop], dtype=np.int64)  # [rows]
    docs = np.asarray(split.doc_starts[start:stop], dtype=np.uint8)  # [rows]
    t0 = time.perf_counter()
    acts = {h: np.empty((stop - start, w.d_mlp), dtype=np.float16) for h in hook_list}  # [rows, d_mlp]
    contexts = torch.from_numpy(toks.reshape(-1, ctx))  # [n_contexts, ctx]
    for b in range(0, contexts.shape[0], batch_ctx):
        batch = contexts[b:b + batch_ctx].to(dev)
        cache = model.run_with_mlp_cache(batch, hook_list, dtype=torch.float16)
        for h in hook_list:
            acts[h][b * ctx:(b + batch.shape[0]) * ctx] = cache[h].reshape(-1, w.d_mlp).cpu().numpy()
    stats.model_s += time.perf_counter() - t0
    stats.tokens += stop - start
    stats.groups.append(g)
    toks32 = toks.astype(np.int32)
    chunks = []
    for c in range(c0, c1):
        lo, hi = w.chunk_rows(c)[0] - start, w.chunk_rows(c)[1] - start
        chunks.append(Chunk(c, toks32[lo:hi], docs[lo:hi], {h: acts[h][lo:hi] for h in hook_list}))
    return chunks


def record_group(model, w: StoreWriter, split, hook_list: list[str], g: int, per_group: int, batch_ctx: int,
                 pending: dict[str, set[int]], stats: RecordStats) -> int:
    """Run work group ``g`` and write its pending chunks inline, each followed by its completion
    marker. Returns the tokens run. Used by the Dask workers of solu_core.dask_record (each with its
    own writer on the same store); the single-process ``record`` writes through a ChunkPipeline."""
    chunks = compute_group(model, w, split, hook_list, g, per_group, batch_ctx, stats)
    t0 = time.perf_counter()
    stats.bytes += write_chunks(w, chunks, pending)
    stats.write_s += time.perf_counter() - t0
    return sum(len(c.tokens) for c in chunks)


def record(
    checkpoint_dir: str | Path,
    out: str | Path,
    *,
    n_tokens: int = 1 << 20,
    layers: list[int] | None = None,
    hooks: list[str] | None = None,
    batch_size: int | None = None,
    device: str = "auto",
    corpus_dir: str | Path | None = None,
    progress: bool = True,
    chunk_tokens: int | None = None,
    fsync: bool = True,
    stats: RecordStats | None = None,
    consumers: list[ChunkConsumer] = (),
    threaded: bool = True,
    index: bool = False,
    dense: bool = True,
    index_config=None,
) -> Path:
    """Record activations of ``checkpoint_dir``'s model into the store ``out`` (resumes one there).

    n_tokens: validation tokens to record (rounded down to whole contexts; at most the split).
    layers / hooks: which MLP hooks (default every layer's hook_post, plus hook_mid for SoLU-LN).
    batch_size: contexts per forward pass (default: one store chunk's worth).
    consumers: ChunkConsumers that see every chunk after it is on disk (store.pipeline).
    threaded: write chunks on a background thread while the next batch runs (False: inline).
    index: index the activations while recording (store.index.StreamIndexer on the writer thread,
    overlapping the next forward pass); the same index as ``neurobrowse index`` afterwards.
    dense: keep the dense activations (False needs ``index``: the store then holds tokens, logit
    effects and the index, under 1% of the dense size). index_config: store.index.IndexConfig.
    """
    t_start = time.perf_counter()
    stats = stats if stats is not None else RecordStats()
    plan = open_recording(checkpoint_dir, out, n_tokens=n_tokens, layers=layers, hooks=hooks, batch_size=batch_size,
                          device=device, corpus_dir=corpus_dir, progress=progress, chunk_tokens=chunk_tokens,
                          fsync=fsync, index=index, dense=dense)
    # logit effects first: small, and then every later step is about chunks
    write_logit_effects(plan, stats)
    consumers = list(consumers)
    if index:
        from store.index import StreamIndexer

        consumers.append(StreamIndexer(plan.out, index_config))
    run_plan(plan, plan.ck.model, stats, progress=progress, consumers=consumers, threaded=threaded)
    stats.wall_s += time.perf_counter() - t_start
    return plan.out


def run_plan(plan: RecordPlan, model, stats: RecordStats, *, progress: bool = True,
             consumers: list[ChunkConsumer] = (), threaded: bool = True) -> None:
    """Run every pending work group of ``plan`` through ``model`` and write it through a ChunkPipeline
    (the forward pass of group g+1 overlaps the writing of group g), then finish the store."""
    w, hook_list, n, out = plan.writer, plan.hooks, plan.n_tokens, plan.out
    pending = plan.pending()
    # chunks a consumer still needs (e.g. an index resumed from its last save) are computed again too
    needed = set().union(*(c.needed_chunks() for c in consumers if hasattr(c, "needed_chunks")))
    todo_chunks = sorted(set().union(*pending.values()) | needed)
    bar = None
    if progress:
        from tqdm import tqdm

        done_tokens = n - sum(w.chunk_rows(c)[1] - w.chunk_rows(c)[0] for c in todo_chunks)
        bar = tqdm(total=n, initial=done_tokens, unit="tok", unit_scale=True, desc=f"record {out.name}",
                   dynamic_ncols=True)
    bytes_per_token = 2 * w.d_mlp * len(hook_list)
    t_loop = time.perf_counter()
    pipe = ChunkPipeline(w, pending, consumers, threaded=threaded)
    try:
        with pipe:
            for g in sorted({c // plan.per_group for c in todo_chunks}):
                chunks = compute_group(model, w, plan.split, hook_list, g, plan.per_group, plan.batch_ctx, stats)
                pipe.put(chunks)
                if bar is not None:
                    bar.update(sum(len(c.tokens) for c in chunks))
                    el = time.perf_counter() - t_loop
                    bar.set_postfix_str(f"{stats.tokens * bytes_per_token / el / 1e6:.0f} MB/s, model "
                                        f"{stats.model_s / el:.0%}, waiting for the writer {pipe.wait_s / el:.0%}",
                                        refresh=False)
            pipe.finish()
    finally:
        if bar is not None:
            bar.close()
        stats.write_s += pipe.write_s
        stats.wait_s += pipe.wait_s
        stats.bytes += pipe.bytes
    if progress:
        el = time.perf_counter() - t_loop
        print(f"recorded {stats.tokens:,} tokens x {len(hook_list)} hooks into {out}: model "
              f"{stats.model_s:.1f} s, writer {stats.write_s:.1f} s in the background "
              f"({stats.bytes / max(stats.write_s, 1e-9) / 1e6:.0f} MB/s), waiting for it {stats.wait_s:.1f} s "
              f"({stats.wait_s / max(el, 1e-9):.0%} of {el:.1f} s)")
