"""Record a model's MLP activations over held-out tokens into an activation store.

The model runs over the corpus's validation split cut into fixed contexts of ``n_ctx`` tokens
(the split's documents are concatenated; document starts are stored beside the tokens). Each
unit of work is a fixed group of whole store chunks, so the chunk boundaries, the batches and
therefore every float are the same on every run: a killed recording resumes by recomputing only
the groups that hold a chunk without its completion marker, and the finished store is identical
to one recorded in one go. Chunks are written through a ``store.format.pipeline.ChunkPipeline``: a background
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

from solu_core.corpus.folder import TokenSplit, corpus_manifest_hash, load_split
from solu_core.corpus.text_streams import read_text_stream, stream_sha256, tokenize_documents
from solu_core.checkpoint import check_tokenizer_matches, code_version
from solu_core.loading import LoadedModel, from_memory, load_model
from solu_core.record_config import INDEX_BACKENDS, Documents, RecordConfig, TextFiles, TextSource, TokenIds
from store import schema
from store.errors import CorpusError, NeurobrowseError
from store.format.pipeline import Chunk, ChunkConsumer, ChunkPipeline, write_chunks
from store.format.writer import StoreWriter


MIN_CONTEXT = 2  # tokens per context at least (one token sees nothing before it)
DEFAULT_MAX_CONTEXT = 1024  # default context of Hugging Face / TransformerLens models: min(n_ctx, this)
ALL_TOKENS = 1 << 62  # record_model's default n_tokens: every token of the text, in whole contexts


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
    index_backend: str = ""  # where record --index ran pass 1: "torch" (beside the model) or "numba" ("" no index)
    pass1_s: float = 0.0  # torch backend: pass-1 reductions on the model's device, partials copied to the host
    pass1_bytes: int = 0  # torch backend: bytes of those partials (solu_core.device_index.partial_bytes)
    wall_s: float = 0.0
    groups: list[int] = field(default_factory=list)  # work groups run


def default_hooks(cfg, layers: list[int] | None = None, hooks: list[str] | None = None) -> list[str]:
    """Full hook names to record: every (chosen) layer's hook_post, plus hook_mid for SoLU-LN.

    ``cfg``: anything with ``n_layers``, ``act_fn`` and ``hook_names(layer)`` (a ModelConfig, a LoadedModel).
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
            if cfg.act_fn == "solu_ln" and schema.hook_name(layer, "hook_mid") in have:
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
def logit_effects(recorder, layer: int, k: int = schema.K_LOGIT, n_vocab: int | None = None) -> tuple[np.ndarray, ...]:
    """Direct logit effects of one layer's neurons: W_out [d_mlp, d_model] @ W_U [d_model, d_vocab].

    ``recorder``: a solu_core.loading recorder (``w_out(layer)``, ``w_u()``, whatever the architecture).
    ``n_vocab``: only the first n_vocab tokens (the tokenizer's; an unembedding may be padded wider).
    Returns up_tokens, up_values (k largest per neuron, descending), down_tokens, down_values
    (k smallest, ascending), each [d_mlp, k]. The final LayerNorm's scale is not folded in (the
    effect is in the units of the residual stream the unembedding sees)."""
    w_out = recorder.w_out(layer).float()  # [d_mlp, d_model]
    w_u = recorder.w_u().float()[:, :n_vocab]  # [d_model, d_vocab]
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

    loaded: LoadedModel  # the model, its tokenizer and where it comes from
    writer: StoreWriter
    split: object  # corpus TokenSplit of the tokens to record (validation split or --text stream)
    hooks: list[str]  # full hook names recorded
    n_tokens: int  # tokens recorded (whole contexts, at most the split)
    per_group: int  # chunks per work group
    batch_ctx: int  # contexts per forward batch
    corpus_dir: Path | None  # the checkpoint's corpus, when recording its validation split
    out: Path
    lock: object = None  # store.format.atomic.DirLock on ``out``: one recording into a folder at a time

    def release(self) -> None:
        """Release the lock on ``out`` (after the recording finished or failed)."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    @property
    def ck(self):
        """The solu_core.checkpoint.Checkpoint (neurobrowse checkpoints only; None otherwise)."""
        return self.loaded.checkpoint

    def pending(self) -> dict[str, set[int]]:
        """Per-token array name -> chunk indices not yet safely on disk."""
        return {name: set(self.writer.pending_chunks(name)) for name in self.writer.per_token_arrays}

    def groups(self, pending: dict[str, set[int]]) -> list[int]:
        """Work groups holding at least one pending chunk."""
        return sorted({c // self.per_group for c in set().union(*pending.values())})


def _corpus_tokens(loaded: LoadedModel, corpus_dir) -> tuple[object, Path, dict]:
    """A checkpoint's corpus validation split (recording without --text), with its manifest fields."""
    ck = loaded.checkpoint
    if ck is None:
        raise RecordError(f"{loaded.source} is a {'Hugging Face' if loaded.kind == 'hf' else 'TransformerLens'} "
                          "model: pass the text to record with --text PATH [PATH ...] (files, folders or .jsonl)")
    corpus_dir = Path(corpus_dir or ck.meta.get("corpus_dir") or "").expanduser()
    if not str(corpus_dir) or not (corpus_dir / "manifest.json").exists():
        raise CorpusError(f"corpus {corpus_dir or '(none)'} not found; pass --corpus DIR (the corpus the model "
                          f"was trained on) or --text PATH to record other text")
    corpus_dir = corpus_dir.resolve()
    check_tokenizer_matches(ck, corpus_dir)
    fields = {"corpus_manifest_hash": corpus_manifest_hash(corpus_dir), "corpus_dir": str(corpus_dir),
              "split": "val"}
    return load_split(corpus_dir, "val"), corpus_dir, fields


def _tokens_split(tokens, separator_id: int) -> object:
    """A TokenSplit from token ids: [n] one stream, or [n_contexts, ctx]; documents start at the separator."""
    arr = np.asarray(tokens.cpu() if hasattr(tokens, "cpu") else tokens).astype(np.int64).reshape(-1)
    return TokenSplit(arr, arr == separator_id)


def _read_text(text: TextSource, loaded: LoadedModel, want: int, progress: bool):
    """(split, manifest fields, where it came from in words, the corpus folder or None) of a text source."""
    if isinstance(text, TokenIds):
        split = _tokens_split(text.tokens, loaded.separator_id)
        return split, {"split": "tokens", "text_sha256": stream_sha256(split.tokens, split.doc_starts)}, \
            "the tokens given", None
    if isinstance(text, Documents):
        stream = tokenize_documents(list(text.docs), loaded.tokenizer, loaded.separator_id, max_tokens=want)
        return stream.split, {"split": "documents", "text_sha256": stream.sha256, "text_documents": stream.n_docs}, \
            "the documents given", None
    if isinstance(text, TextFiles):
        stream = read_text_stream(list(text.paths), loaded.tokenizer, loaded.separator_id, text.jsonl_field,
                                  max_tokens=want, progress=progress)
        fields = {"split": "text", "text_sha256": stream.sha256, "text_sources": stream.sources,
                  "text_documents": stream.n_docs}
        skipped = [f"{s['path']}: skipped {s['skipped_binary']} binary, {s['skipped_non_utf8']} non-UTF-8 files"
                   + (f", {s['skipped_special']} special files (FIFOs, devices, sockets)" if s["skipped_special"]
                      else "")
                   for s in stream.sources if s["skipped_binary"] or s["skipped_non_utf8"] or s["skipped_special"]]
        if skipped:  # said even with --quiet: the store holds less text than the paths name
            print("note: " + "; ".join(skipped), file=sys.stderr)
        return stream.split, fields, "the text given", None
    split, corpus_dir_used, fields = _corpus_tokens(loaded, text.dir)
    return split, fields, f"{corpus_dir_used}'s validation split", corpus_dir_used


def open_recording(model: str | Path | LoadedModel, out: str | Path, cfg: RecordConfig | None = None, *,
                   progress: bool = True) -> RecordPlan:
    """Load the model, read the text and create (or resume) the store; no chunk is run yet. ``cfg`` as
    for ``record``; ``model`` may also be a LoadedModel (its text then often Documents or TokenIds)."""
    cfg = cfg if cfg is not None else RecordConfig()
    if not cfg.dense and not cfg.index:
        raise RecordError("--dense none keeps no activations: add --index to index them while recording")
    check_index_backend(cfg)
    check_device(cfg.device)
    loaded = model if isinstance(model, LoadedModel) else load_model(model, device=cfg.device,
                                                                      allow_download=cfg.allow_download)
    n_ctx = int(loaded.recorder.n_ctx)
    context, n_tokens = cfg.context, cfg.n_tokens
    ctx = int(context) if context is not None else (n_ctx if loaded.kind == "checkpoint"
                                                    else min(n_ctx, DEFAULT_MAX_CONTEXT))
    if isinstance(cfg.text, TokenIds) and np.ndim(cfg.text.tokens) == 2 and context is None:
        ctx = int(np.shape(cfg.text.tokens)[1])
    if not MIN_CONTEXT <= ctx <= n_ctx:  # a context of 1 token has no context: every score would be about nothing
        raise RecordError(f"--context {ctx} does not fit the model: it takes {MIN_CONTEXT}..{n_ctx} tokens per context")
    want = int(n_tokens) // ctx * ctx
    if want <= 0:
        raise RecordError(f"--tokens {n_tokens} is less than one context of {ctx} tokens")
    hook_list = default_hooks(loaded, cfg.layers, cfg.hooks)  # before reading any text: a bad --hooks fails fast
    split, fields, where, corpus_dir_used = _read_text(cfg.text, loaded, want, progress)
    avail = len(split) // ctx * ctx
    if avail <= 0:
        raise CorpusError(f"{where} holds only {len(split)} tokens, less than one context of {ctx}; give more text "
                          f"or a smaller --context")
    n = min(want, avail)
    if loaded.kind != "memory":  # said even with --quiet: the store holds other tokens than asked
        if want != int(n_tokens):
            print(f"note: --tokens {int(n_tokens):,} is rounded down to whole contexts of {ctx}: recording "
                  f"{want:,} tokens", file=sys.stderr)
        if n < want:
            print(f"note: {where} holds {len(split):,} tokens; recording {n:,} instead of {want:,}", file=sys.stderr)
    out = Path(out).expanduser().absolute()
    cmd = _resume_command(loaded, out, cfg, hook_list, ctx, corpus_dir_used)
    from store.format.atomic import record_lock

    lock = record_lock(out)  # two recordings into one --out would mix their chunks
    try:
        w = _create_or_resume(out, loaded, hook_list, n, ctx, cfg.chunk_tokens, cfg.fsync, cfg.dense, fields, cmd)
    except BaseException:
        lock.release(remove_if_empty=True)
        raise
    per_group, batch_ctx = plan_batches(w.chunk_tokens, ctx, cfg.batch_size)
    return RecordPlan(loaded=loaded, writer=w, split=split, hooks=hook_list, n_tokens=n, per_group=per_group,
                      batch_ctx=batch_ctx, corpus_dir=corpus_dir_used, out=out, lock=lock)


def check_device(device: str) -> None:
    """Refuse a CUDA device torch cannot see (before any model is loaded)."""
    d = str(device)
    if d.startswith("cuda"):
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(d.split(":")[1]) if ":" in d else 0
        if index >= n:
            have = f"this machine has {n} CUDA device(s)" if n else "torch sees no CUDA GPU on this machine"
            raise RecordError(f"device {d}: {have}; record with device cpu (or auto)")


def check_index_backend(cfg: RecordConfig) -> None:
    """Refuse an unknown --index-backend, or one given without --index."""
    if cfg.index_backend not in INDEX_BACKENDS:
        raise RecordError(f"--index-backend {cfg.index_backend!r} is not a backend: use {', '.join(INDEX_BACKENDS)}")
    if cfg.index_backend != "auto" and not cfg.index:
        raise RecordError(f"--index-backend {cfg.index_backend} chooses where --index reduces the activations; "
                          "add --index, or leave out --index-backend")


def index_backend(cfg: RecordConfig, device: torch.device) -> str:
    """The pass-1 backend a recording with ``cfg.index`` uses on ``device``: the one named, or for "auto"
    torch on CUDA and numba elsewhere ("" without ``cfg.index``)."""
    if not cfg.index:
        return ""
    if cfg.index_backend == "auto":
        return "torch" if device.type == "cuda" else "numba"
    return cfg.index_backend


def _resume_command(loaded: LoadedModel, out: Path, cfg: RecordConfig, hook_list: list[str], ctx: int,
                    corpus_dir_used: Path | None) -> list[str]:
    """The `neurobrowse record` argv that records this again (the manifest's ``record_command``: what
    resume and repair advice print, store.schema.record_command), with what the recording resolved
    (hooks, context, corpus) so a rerun cuts the same contexts."""
    cmd = ["neurobrowse", "record", str(loaded.source), "--out", str(out), "--tokens", str(cfg.n_tokens),
           "--hooks", ",".join(hook_list)]
    if isinstance(cfg.text, TextFiles):
        cmd += ["--text", *[str(Path(t).expanduser().resolve()) for t in cfg.text.paths], "--context", str(ctx)]
        if cfg.text.jsonl_field != "text":
            cmd += ["--jsonl-field", cfg.text.jsonl_field]
    elif corpus_dir_used is not None:
        cmd += ["--corpus", str(corpus_dir_used)]
    if cfg.context and not isinstance(cfg.text, TextFiles):  # not the model's default: the rerun must cut the same
        cmd += ["--context", str(ctx)]
    if cfg.batch_size:
        cmd += ["--batch-size", str(cfg.batch_size)]
    if cfg.chunk_tokens:
        cmd += ["--chunk-tokens", str(cfg.chunk_tokens)]
    if cfg.index:
        cmd += ["--index", "--dense", "keep" if cfg.dense else "none"]
        if cfg.index_backend != "auto":
            cmd += ["--index-backend", cfg.index_backend]
    return cmd


def _create_or_resume(out, loaded, hook_list, n, ctx, chunk_tokens, fsync, dense, fields, cmd) -> StoreWriter:
    return StoreWriter.create_or_resume(
        out, model_config=loaded.config, hooks=hook_list, n_tokens=n, context_len=ctx,
        tokenizer_json=loaded.tokenizer_json, chunk_tokens=chunk_tokens, fsync=fsync, dense=dense,
        manifest={
            "checkpoint_hash": loaded.hash,
            "checkpoint_path": loaded.source,
            "model_kind": loaded.kind,
            # "trained", or a random-model control ("random", "shuffled"; solu_core.train.make_control)
            "model_init": str((getattr(loaded.checkpoint, "meta", None) or {}).get("init", "trained")),
            "code_version": code_version(),
            "layers": sorted({schema.parse_hook_name(h)[0] for h in hook_list}),
            "record_command": shlex.join(cmd) if loaded.kind != "memory" else None,
            **fields,
        },
    )


def write_logit_effects(plan: RecordPlan, stats: RecordStats | None = None) -> None:
    """Logit effects of every recorded layer that does not have them yet (small; done first)."""
    t0 = time.perf_counter()
    n_vocab = None if plan.loaded.kind == "checkpoint" else plan.loaded.tokenizer.get_vocab_size()
    for layer in plan.writer.layers:
        if plan.writer.logit_pending(layer):
            plan.writer.write_logit_effects(layer, *logit_effects(plan.loaded.recorder, layer, n_vocab=n_vocab))
    if stats is not None:
        stats.logit_s += time.perf_counter() - t0


def compute_group(model, w: StoreWriter, split, hook_list: list[str], g: int, per_group: int, batch_ctx: int,
                  stats: RecordStats, pass1=None) -> list[Chunk]:
    """Run the model over work group ``g`` (chunks g*per_group ...) in batches of ``batch_ctx``
    contexts; returns the group's chunks (tokens, doc starts, float16 activations per hook).

    ``pass1``: a solu_core.device_index.DevicePass1 (record --index, torch backend): the group's
    activations stay on the model's device until each chunk's pass-1 partial is computed there
    (``Chunk.partials``); then they are copied to the host once (for the store and the samples)."""
    ctx = w.context_len
    dev = next(model.parameters()).device
    c0, c1 = g * per_group, min(w.n_chunks, (g + 1) * per_group)
    start, stop = w.chunk_rows(c0)[0], w.chunk_rows(c1 - 1)[1]
    toks = np.asarray(split.tokens[start:stop], dtype=np.int64)  # [rows]
    docs = np.asarray(split.doc_starts[start:stop], dtype=np.uint8)  # [rows]
    t0 = time.perf_counter()
    acts = {h: np.empty((stop - start, w.d_mlp), dtype=np.float16) for h in hook_list}  # [rows, d_mlp]
    on_dev = {h: torch.empty((stop - start, w.d_mlp), dtype=torch.float16, device=dev)
              for h in hook_list if pass1 is not None and pass1.wants(h)}  # [rows, d_mlp] on the device
    contexts = torch.from_numpy(toks.reshape(-1, ctx))  # [n_contexts, ctx]
    for b in range(0, contexts.shape[0], batch_ctx):
        batch = contexts[b:b + batch_ctx].to(dev)
        cache = model.run_with_mlp_cache(batch, hook_list, dtype=torch.float16)
        for h in hook_list:
            rows = slice(b * ctx, (b + batch.shape[0]) * ctx)
            if h in on_dev:
                on_dev[h][rows] = cache[h].reshape(-1, w.d_mlp)
            else:
                acts[h][rows] = cache[h].reshape(-1, w.d_mlp).cpu().numpy()
    partials: dict[int, dict] = {c: {} for c in range(c0, c1)}
    if on_dev:
        t1 = time.perf_counter()
        for c in range(c0, c1):
            lo, hi = w.chunk_rows(c)[0] - start, w.chunk_rows(c)[1] - start
            partials[c] = pass1.chunk_partials({h: a[lo:hi] for h, a in on_dev.items()}, toks[lo:hi],
                                               w.chunk_rows(c)[0], c, c == c1 - 1)
        stats.pass1_s += time.perf_counter() - t1
        stats.pass1_bytes = pass1.bytes
        for h, a in on_dev.items():
            acts[h][:] = a.cpu().numpy()  # the store's chunks and the samples per unit (host kernel)
    stats.model_s += time.perf_counter() - t0
    stats.tokens += stop - start
    stats.groups.append(g)
    toks32 = toks.astype(np.int32)
    chunks = []
    for c in range(c0, c1):
        lo, hi = w.chunk_rows(c)[0] - start, w.chunk_rows(c)[1] - start
        chunks.append(Chunk(c, toks32[lo:hi], docs[lo:hi], {h: acts[h][lo:hi] for h in hook_list}, partials[c]))
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


def record(model: str | Path, out: str | Path, cfg: RecordConfig | None = None, *, progress: bool = True,
           stats: RecordStats | None = None, consumers: list[ChunkConsumer] = ()) -> Path:
    """Record the MLP activations of ``model`` into the store ``out`` (resumes one there), as ``cfg``
    (solu_core.record_config.RecordConfig: the text source, tokens, context, hooks, batches, device,
    index while recording, dense or not) says.

    model: a neurobrowse checkpoint directory, a Hugging Face model folder or a TransformerLens model name
    (solu_core.loading.load_model; TransformerLens weights from the local cache unless ``cfg.allow_download``).
    The text: ``TextFiles`` (files, folders, .jsonl) tokenized with the model's tokenizer, each document
    preceded by its separator token; the default ``CorpusText()``, for a checkpoint: its corpus's validation split.
    consumers: ChunkConsumers that see every chunk after it is on disk (store.format.pipeline).
    ``cfg.index``: index the activations while recording (store.index.StreamIndexer on the writer thread,
    overlapping the next forward pass); the same index as ``neurobrowse index`` afterwards.
    """
    cfg = cfg if cfg is not None else RecordConfig()
    t_start = time.perf_counter()
    stats = stats if stats is not None else RecordStats()
    plan = open_recording(model, out, cfg, progress=progress)
    try:
        # logit effects first: small, and then every later step is about chunks
        write_logit_effects(plan, stats)
        consumers = list(consumers)
        pass1 = None
        if cfg.index:
            from store.index import StreamIndexer, check_record_index_memory

            indexer = StreamIndexer(plan.out, cfg.index_config)
            # every hook is indexed at once: refuse early
            check_record_index_memory(indexer.st, indexer.cfg.k, indexer.token_rows)
            consumers.append(indexer)
            stats.index_backend = index_backend(cfg, plan.loaded.device)
            if stats.index_backend == "torch":
                from solu_core.device_index import DevicePass1

                pass1 = DevicePass1.for_indexer(indexer, plan.loaded.device)
        run_plan(plan, plan.loaded.recorder, stats, progress=progress, consumers=consumers, threaded=cfg.threaded,
                 pass1=pass1)
    finally:
        plan.release()
    stats.wall_s += time.perf_counter() - t_start
    return plan.out


def record_model(model, tokenizer, texts_or_tokens, out: str | Path, cfg: RecordConfig | None = None, *,
                 source: str | None = None, progress: bool = False, stats: RecordStats | None = None,
                 consumers: list[ChunkConsumer] = ()) -> Path:
    """Record a model already in memory: a ``transformer_lens.HookedTransformer`` or a Hugging Face
    ``PreTrainedModel`` (an architecture in solu_core.hf.ARCHITECTURES), on its current device.

    tokenizer: its transformers fast tokenizer (None: a HookedTransformer's own ``model.tokenizer``).
    texts_or_tokens: a list of documents (str), a list of Paths (files, folders, .jsonl), or token ids:
    [n] one stream or [n_contexts, ctx] contexts (documents start at the tokenizer's BOS/EOS token).
    ``cfg``: as for ``record`` (its text source is the one ``texts_or_tokens`` makes); ``cfg.n_tokens``
    None-like default: all the tokens, in whole contexts. cfg.context default: the width of a 2-D token
    array, else min(n_ctx, 1024). source: a model folder or TransformerLens name holding the same
    weights, so the app's try-your-text can load them (a HookedTransformer must then be loaded without
    weight processing). Returns the store path; resumes a store made by the same call."""
    t_start = time.perf_counter()
    stats = stats if stats is not None else RecordStats()
    loaded = from_memory(model, tokenizer, source=source)
    items = texts_or_tokens
    if isinstance(items, (list, tuple)) and items and all(isinstance(t, Path) for t in items):
        text = TextFiles(tuple(items))
    elif isinstance(items, (list, tuple)) and items and all(isinstance(t, str) for t in items):
        text = Documents(tuple(items))
    else:
        text = TokenIds(items)
    cfg = cfg if cfg is not None else RecordConfig(n_tokens=ALL_TOKENS)
    limit = cfg.n_tokens
    if limit == ALL_TOKENS and isinstance(text, TokenIds):
        limit = int(np.prod(np.shape(items)))
    plan = open_recording(loaded, out, cfg.replace(text=text, n_tokens=limit), progress=progress)
    try:
        write_logit_effects(plan, stats)
        run_plan(plan, plan.loaded.recorder, stats, progress=progress, consumers=consumers, threaded=cfg.threaded)
    finally:
        plan.release()
    stats.wall_s += time.perf_counter() - t_start
    return plan.out


def run_plan(plan: RecordPlan, model, stats: RecordStats, *, progress: bool = True,
             consumers: list[ChunkConsumer] = (), threaded: bool = True, pass1=None) -> None:
    """Run every pending work group of ``plan`` through ``model`` and write it through a ChunkPipeline
    (the forward pass of group g+1 overlaps the writing of group g), then finish the store. ``pass1``:
    pass 1 of the index on the model's device (``compute_group``)."""
    w, hook_list, n, out = plan.writer, plan.hooks, plan.n_tokens, plan.out
    pending = plan.pending()
    # chunks a consumer still needs (e.g. an index resumed from its last save) are computed again too
    needed = set().union(*(c.needed_chunks() for c in consumers if hasattr(c, "needed_chunks")))
    todo_chunks = sorted(set().union(*pending.values()) | needed)
    bar = None
    if progress:
        from store.progress import progress_bar

        done_tokens = n - sum(w.chunk_rows(c)[1] - w.chunk_rows(c)[0] for c in todo_chunks)
        bar = progress_bar(total=n, initial=done_tokens, unit="tok", unit_scale=True, desc=f"record {out.name}")
    bytes_per_token = 2 * w.d_mlp * len(hook_list)
    t_loop = time.perf_counter()
    pipe = ChunkPipeline(w, pending, consumers, threaded=threaded)
    try:
        with pipe:
            for g in sorted({c // plan.per_group for c in todo_chunks}):
                chunks = compute_group(model, w, plan.split, hook_list, g, plan.per_group, plan.batch_ctx, stats,
                                       pass1)
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
