"""Indexing a store: the passes over its chunks, resumable, and the final write.

Two streaming passes over each hook's dense ``[token, neuron]`` array, chunk by chunk:

* **Pass 1** (``compute_partial``): a ``PartialIndex`` (top-k and bottom-k with windows, histogram,
  moments, density, per-token sums).
* **Pass 2** (``compute_sample_partial``): needs the quantile edges of the *whole* histogram, so it
  is a second read: for each neuron and quantile bin (schema.SAMPLE_BINS) it keeps the
  ``SAMPLES_PER_BIN`` positions of lowest hash priority among the values in the bin, with windows.

Both produce partial results over a chunk range that merge exactly (store.index.partial), which is
what lets Dask workers index pieces of a store (store.dask_index).

``index_store`` runs both passes resumably: it saves the running partial result in the index group
every ``checkpoint_every_s`` seconds (store.index.group), so a process killed at any point resumes
from the last save and, because every step is deterministic in chunk order, produces bit-identical
arrays.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass

import numpy as np

from store import explain, kernels, schema
from store.errors import StoreError
from store.index.arrays import index_arrays, index_attrs
from store.index.group import IndexGroup
from store.index.partial import WINDOW, PartialIndex, SamplePartial, sample_thresholds
from store.index.source import ChunkSource, open_store, vocab_size


@dataclass
class IndexConfig:
    k: int = schema.DEFAULT_K  # top-k and bottom-k kept per neuron
    seed: int = schema.SAMPLE_SEED  # seed of the sample-drawing hash
    checkpoint_every_s: float = 60.0  # save the running partial result this often (resume point)
    prefetch: bool = True  # read the next READ_AHEAD chunks in threads while the kernels run
    window: tuple[int, int] = (schema.CONTEXT_BEFORE, schema.CONTEXT_AFTER)  # tokens kept before / after a firing
    stop_after_chunks: int | None = None  # testing aid: stop (as if killed) after this many chunks in all
    on_checkpoint: object = None  # callable(hook, pass name, chunk_stop) after each save (tests, logs)


# ---- partial results of a chunk range (pure functions of the store; Dask tasks) ---------------------


def compute_partial(store, hook: str, chunk_start: int, chunk_stop: int, k: int = schema.DEFAULT_K,
                    prefetch: bool = True,
                    window: tuple[int, int] = (schema.CONTEXT_BEFORE, schema.CONTEXT_AFTER)) -> PartialIndex:
    """Pass 1 over chunks [chunk_start, chunk_stop) of ``hook``; a pure function of the store's data.
    ``store`` is a Store or a path (a path is what a Dask task should carry)."""
    src = ChunkSource(open_store(store), hook)
    src.check_range(chunk_start, chunk_stop)
    part = PartialIndex.empty(hook, k, src.n_neurons, src.vocab, window)
    for c, row0, bits, toks in src.chunks_with_tokens(chunk_start, chunk_stop, prefetch):
        part.update(bits, toks, row0, src.context_len)
    part.ranges = [(chunk_start, chunk_stop)] if chunk_stop > chunk_start else []
    return part.canonical()


def compute_sample_partial(store, hook: str, chunk_start: int, chunk_stop: int, qbin: np.ndarray,
                           seed: int = schema.SAMPLE_SEED, prefetch: bool = True,
                           window: tuple[int, int] = (schema.CONTEXT_BEFORE, schema.CONTEXT_AFTER)) -> SamplePartial:
    """Pass 2 over chunks [chunk_start, chunk_stop): random samples per quantile bin, given the
    thresholds ``qbin = sample_thresholds(merged pass-1 partial)``."""
    src = ChunkSource(open_store(store), hook)
    src.check_range(chunk_start, chunk_stop)
    part = SamplePartial.empty(hook, qbin, window)
    for c, row0, bits in src.chunks(chunk_start, chunk_stop, prefetch):
        part.update(bits, row0, src.context_len, seed)
    part.ranges = [(chunk_start, chunk_stop)] if chunk_stop > chunk_start else []
    return part.canonical()


# ---- results kept in the store ----------------------------------------------------------------------


def pass1_result(store, hook: str) -> PartialIndex:
    """The pass-1 result an index keeps in ``index/{hook}/_state`` (top/bottom lists, histogram,
    moments, per-token sums by context parity): what appending tokens merges into, and the input of
    analyses that need the sums behind the index arrays, e.g. ``store.scores.sim_score_all``."""
    st = open_store(store)
    if hook not in st.hooks:
        raise StoreError(f"{st.path} has no hook {hook!r}; it has {', '.join(st.hooks)}")
    part, prog = IndexGroup(st.path, hook).load_state("p1")
    n_chunks = schema.n_chunks(int(st.n_tokens), int(st.chunk_tokens))
    if part is None or prog.get("chunk_stop") != n_chunks:
        raise StoreError(f"{st.path}: {hook} has no finished pass-1 result; run `neurobrowse index {st.path}` first")
    return part


def finalize_index(store, hook: str, partial: PartialIndex, samples: SamplePartial | None = None,
                   seed: int = schema.SAMPLE_SEED) -> dict:
    """Write ``index/{hook}/...`` (schema.INDEX_ARRAYS) from a pass-1 partial result covering the
    whole store, running pass 2 here when ``samples`` is not given. The ``complete`` attribute is
    written last. Returns a summary dict."""
    st = open_store(store)
    src = ChunkSource(st, hook)
    if partial.ranges != [(0, src.n_chunks)]:
        raise StoreError(f"the partial index of {hook} covers chunks {partial.ranges}, not all of "
                         f"0..{src.n_chunks}; merge the missing ranges first")
    if samples is None:
        samples = compute_sample_partial(st, hook, 0, src.n_chunks, sample_thresholds(partial), seed)
    if samples.ranges != [(0, src.n_chunks)]:
        raise StoreError(f"the samples of {hook} cover chunks {samples.ranges}, not all of 0..{src.n_chunks}")
    tokens = src.tokens()
    arrays = index_arrays(tokens, src.context_len, partial, samples)
    IndexGroup(st.path, hook).write_index(arrays, index_attrs(st.run_uuid, partial, seed))  # swapped in whole
    st.forget_index(hook)
    explain.explain_hook(st, hook, arrays, tokens)
    sim = arrays["sim_score"]
    return {"hook": hook, "n_tokens": int(partial.n), "k": partial.k, "n_neurons": partial.n_neurons,
            "token_rule_score_mean": float(np.nanmean(arrays["token_rule_score"])),
            "sim_score_mean": float(np.nanmean(sim)) if np.isfinite(sim).any() else float("nan")}


# ---- the resumable driver ---------------------------------------------------------------------------


class _Stopped(Exception):
    """Raised when IndexConfig.stop_after_chunks is used up (behaves like a kill after a save)."""


class _ChunkAllowance:
    """How many more chunks this run may scan (IndexConfig.stop_after_chunks, shared by every hook
    of one index_store call); None: no limit."""

    def __init__(self, chunks: int | None):
        self.left = chunks

    def take(self) -> bool:
        """Count one scanned chunk; True when that used up the allowance (stop now)."""
        if self.left is None:
            return False
        self.left -= 1
        return self.left <= 0


def _run_pass(src: ChunkSource, grp: IndexGroup, which: str, part, start: int, cfg: IndexConfig,
              step, bar, allowance: _ChunkAllowance) -> object:
    """Stream chunks start..n_chunks into ``part`` with ``step(part, c, row0, bits)``, saving the
    running result every cfg.checkpoint_every_s seconds and at the end."""
    last_save = time.monotonic()
    t0 = time.monotonic()
    done_mb = 0.0
    for c, row0, bits in src.chunks(start, src.n_chunks, cfg.prefetch):
        step(part, c, row0, bits)
        part.ranges = [(0, c + 1)]
        done_mb += bits.size * 2 / 1e6
        if bar is not None:
            bar.update(bits.shape[0])
            bar.set_postfix_str(f"{done_mb / max(time.monotonic() - t0, 1e-9):.0f} MB/s", refresh=False)
        if allowance.take():
            grp.save_state(which, part.canonical(), c + 1, quick=True)
            raise _Stopped()
        if c + 1 < src.n_chunks and time.monotonic() - last_save >= cfg.checkpoint_every_s:
            grp.save_state(which, part.canonical(), c + 1, quick=True)
            last_save = time.monotonic()
    part.canonical()
    grp.save_state(which, part, src.n_chunks)
    return part


def index_hook(st, hook: str, cfg: IndexConfig, force: bool = False, progress: bool = True,
               allowance: _ChunkAllowance | None = None) -> dict:
    """Index one hook of an open Store, resuming a previous run when one was interrupted."""
    from store import atomic

    with atomic.hook_lock(st.path, hook):  # one run per store and hook; a second one waits, saying so
        st.forget_index(hook)  # the run this one waited for may have finished (or swapped) the index
        return _index_hook_locked(st, hook, cfg, force, progress, allowance or _ChunkAllowance(cfg.stop_after_chunks))


def _index_hook_locked(st, hook: str, cfg: IndexConfig, force: bool, progress: bool,
                       allowance: _ChunkAllowance) -> dict:
    src = ChunkSource(st, hook)
    grp = IndexGroup(st.path, hook, cfg.on_checkpoint)
    window = (int(cfg.window[0]), int(cfg.window[1]))
    skip = grp.begin(st.run_uuid, cfg.k, cfg.seed, force, window)
    if skip is not None:
        if not explain.is_explained(st, hook):  # an index from before explanations: add them
            explain.explain_hook(st, hook)
            return {**skip, "reason": "already indexed; added the rule explanations"}
        return skip
    tokens = src.tokens()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=2 * src.n_chunks * src.ct if src.n_chunks else 0, unit="tok", unit_scale=True,
                   desc=hook, dynamic_ncols=True)

    def resume_pass(which: str, label: str, fresh, fits, step):
        """Continue ``which`` from its saved state (or from ``fresh()`` when there is none or it
        does not ``fits``) over the chunks it has not seen yet."""
        part, prog = grp.load_state(which)
        start = prog["chunk_stop"] if part is not None else 0
        if part is None or not fits(part):
            part, start = fresh(), 0
        if bar is not None:
            bar.set_description(f"{hook} {label}")
            bar.update(min(start * src.ct, src.n_tokens))
        if start < src.n_chunks or prog is None:
            part = _run_pass(src, grp, which, part, start, cfg, step, bar, allowance)
        return part

    try:
        p1 = resume_pass("p1", "pass 1/2", lambda: PartialIndex.empty(hook, cfg.k, src.n_neurons, src.vocab, window),
                         lambda part: part.dtop_key is not None and (part.before, part.after) == window,
                         lambda part, c, row0, bits: part.update(bits, tokens[row0:row0 + bits.shape[0]], row0,
                                                                 src.context_len))
        # pass 2 samples within the quantile bins of the finished pass 1: a saved state counts only
        # if it was drawn with the same bins
        qbin = sample_thresholds(p1)
        p2 = resume_pass("p2", "pass 2/2", lambda: SamplePartial.empty(hook, qbin, window),
                         lambda part: np.array_equal(part.qbin, qbin) and (part.before, part.after) == window,
                         lambda part, c, row0, bits: part.update(bits, row0, src.context_len, cfg.seed))
    finally:
        if bar is not None:
            bar.close()
    summary = finalize_index(st, hook, p1, p2, cfg.seed)
    grp.prune_state()
    return summary


MAX_WINDOW = 4096  # tokens on either side of a firing (windows are stored per firing: k x (B + 1 + A) each)


def check_window(window) -> tuple[int, int]:
    """(before, after) as two whole numbers in 0..MAX_WINDOW, or a StoreError saying what to pass."""
    try:
        before, after = (int(x) for x in window)
    except (TypeError, ValueError):
        raise StoreError(f"--window takes two whole numbers BEFORE,AFTER (e.g. 64,16), not {window!r}") from None
    if not (0 <= before <= MAX_WINDOW and 0 <= after <= MAX_WINDOW):
        raise StoreError(f"--window {before},{after}: each side must be 0..{MAX_WINDOW} tokens")
    return before, after


def indexable_hooks(st, hooks: list[str] | None) -> list[str]:
    """The hooks to index (all recorded ones when None), or a StoreError for an incomplete recording
    or an unknown hook. Shared by the single-process and the Dask index."""
    if not st.complete:
        how = st.resume_command() if hasattr(st, "resume_command") else "the same `neurobrowse record` command"
        raise StoreError(f"{st.path} is an incomplete recording (it was interrupted); finish it by running "
                         f"{how} again, then index it")
    wanted = list(hooks) if hooks else list(st.hooks)
    unknown = [h for h in wanted if h not in st.hooks]
    if unknown:
        raise StoreError(f"{st.path} has no hook {', '.join(map(repr, unknown))}; it has {', '.join(st.hooks)}")
    return wanted


def index_memory_bytes(n_neurons: int, k: int, vocab: int) -> int:
    """About how much memory indexing one hook takes: the top-k and bottom-k lists with their windows (kept,
    merged and turned into index arrays: ~4 copies), histograms, per-token sums and the samples."""
    lists = 2 * n_neurons * k * (4 + 8 + 2 * WINDOW)
    hist = 2 * n_neurons * kernels.HIST_BINS * 8
    token = 2 * 2 * vocab * n_neurons * 8
    samples = 2 * n_neurons * len(schema.SAMPLE_BINS) * schema.SAMPLES_PER_BIN * (8 + 8 + 4 + 2 * WINDOW)
    return 4 * lists + hist + token + samples


def available_memory_bytes() -> int | None:
    """Memory the kernel says is available now (Linux MemAvailable), None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


def check_index_memory(st, hooks: list[str], k: int) -> None:
    """Refuse before any work when one hook's index would not fit in the memory available."""
    avail = available_memory_bytes()
    need = max(index_memory_bytes(int(st.activations(h).shape[1]), k, vocab_size(st)) for h in hooks)
    if avail is not None and need > 0.8 * avail:
        raise StoreError(f"indexing {st.path} with --k {k} needs about {need / 1e9:.1f} GB of memory (the top-{k} "
                         f"and bottom-{k} lists with their context windows for every neuron), more than the "
                         f"{avail / 1e9:.1f} GB available; use a smaller --k (default {schema.DEFAULT_K})")


def index_store(path, *, hooks: list[str] | None = None, k: int = schema.DEFAULT_K, force: bool = False,
                progress: bool = True, config: IndexConfig | None = None,
                window: tuple[int, int] | None = None) -> dict:
    """Index every (or the named) hook of the store at ``path``; resumable; returns a summary per hook.

    Refuses an incomplete store (the recording must finish first) and a store of another schema
    version (Store.open). ``force`` drops any existing index of those hooks and starts again.
    ``window``: (before, after) tokens kept around each firing (default schema.CONTEXT_BEFORE/AFTER).
    """
    cfg = dataclasses.replace(config or IndexConfig(), k=k)
    if window is not None:
        cfg = dataclasses.replace(cfg, window=check_window(window))
    if cfg.k < 1:
        raise StoreError(f"--k must be at least 1 (got {cfg.k})")
    st = open_store(path)
    wanted = indexable_hooks(st, hooks)
    check_index_memory(st, wanted, cfg.k)
    allowance = _ChunkAllowance(cfg.stop_after_chunks)
    out = {}
    for hook in wanted:
        try:
            out[hook] = index_hook(st, hook, cfg, force=force, progress=progress, allowance=allowance)
        except _Stopped:
            out[hook] = {"hook": hook, "stopped": True}
            break
    return out


__all__ = ["IndexConfig", "check_window", "compute_partial", "compute_sample_partial", "finalize_index", "index_hook",
           "index_store", "indexable_hooks", "pass1_result"]
