"""Indexing a store: one read over each hook's chunks, resumable, and the final write.

One streaming read over each hook's dense ``[token, neuron]`` array, chunk by chunk, feeds:

* **pass 1** (``PartialIndex``): top-k and bottom-k with windows, histogram, moments, density,
  per-token sums;
* **the samples** (``UnitSamples``): for each neuron the ``SAMPLES_PER_BIN`` positions of lowest hash
  priority per *unit* of histogram bins around provisional quantile edges (from a few chunks read
  first), resolved at the end to the quantile bins of the whole histogram (schema.SAMPLE_BINS):
  the same samples a second read within the final bins would draw. Only when a final edge of some
  neuron lies outside its tracked units does the store get that second read (**pass 2**,
  ``SamplePartial``), so the result is always pass 2's.

The chunk-range functions ``compute_partial`` and ``compute_sample_partial`` (the two passes
apart) are what store.index.dask_run runs as tasks; all partial results merge exactly
(store.index.partial).

``index_store`` saves the running partial results in the index group every ``checkpoint_every_s``
seconds (store.index.group), so a process killed at any point resumes from the last save and,
because every step is deterministic in chunk order, produces bit-identical arrays.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from store.measures import explain
from store.index.kernels.histogram import HIST_BINS
from store import schema
from store.errors import StoreError
from store.index import explanations, folded_means
from store.index.arrays import index_arrays, index_attrs, stored_arrays
from store.index.group import IndexGroup
from store.index.partial import PartialIndex, WINDOW
from store.index.samples import SamplePartial, sample_thresholds
from store.index.unit_samples import N_UNITS, UnitSamples, chunk_hist, units_around
from store.index.source import ChunkSource, open_store, vocab_size

PROVISIONAL_CHUNKS = 16  # chunks read first for the provisional quantile edges (read again by the pass)


@dataclass
class IndexConfig:
    k: int = schema.DEFAULT_K  # top-k and bottom-k kept per neuron
    seed: int = schema.SAMPLE_SEED  # seed of the sample-drawing hash
    checkpoint_every_s: float = 60.0  # save the running partial result this often (resume point)
    prefetch: bool = True  # read the next READ_AHEAD chunks in threads while the kernels run
    window: tuple[int, int] = (schema.CONTEXT_BEFORE, schema.CONTEXT_AFTER)  # tokens kept before / after a firing
    stop_after_chunks: int | None = None  # testing aid: stop (as if killed) after this many chunks in all
    on_checkpoint: object = None  # callable(hook, pass name, chunk_stop) after each save (tests, logs)
    one_read: bool = True  # samples in pass 1's read (False: the two-pass route, for comparisons)
    token_rows: int = 0  # record --index: at most this many exact per-token rows per hook, the rest folded into
    # float16 means (PartialIndex.token_rows_max; 0: a row for every token, exact)


# ---- partial results of a chunk range (pure functions of the store; Dask tasks) ---------------------


def compute_partial(store, hook: str, chunk_start: int, chunk_stop: int, k: int = schema.DEFAULT_K,
                    prefetch: bool = True,
                    window: tuple[int, int] = (schema.CONTEXT_BEFORE, schema.CONTEXT_AFTER)) -> PartialIndex:
    """Pass 1 over chunks [chunk_start, chunk_stop) of ``hook``; a pure function of the store's data.
    ``store`` is a Store or a path (a path is what a Dask task should carry)."""
    src = ChunkSource(open_store(store), hook)
    src.check_range(chunk_start, chunk_stop)
    part = PartialIndex.empty(hook, k, src.n_neurons, src.vocab, window)
    for _, row0, bits, toks in src.chunks_with_tokens(chunk_start, chunk_stop, prefetch):
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
    for _, row0, bits in src.chunks(chunk_start, chunk_stop, prefetch):
        part.update(bits, row0, src.context_len, seed)
    part.ranges = [(chunk_start, chunk_stop)] if chunk_stop > chunk_start else []
    return part.canonical()


# ---- results kept in the store ----------------------------------------------------------------------


def pass1_result(store, hook: str) -> PartialIndex:
    """The pass-1 result an index keeps in ``index/{hook}/_state`` (top/bottom lists, histogram,
    moments, per-token sums by context parity): what appending tokens merges into, and the input of
    analyses that need the sums behind the index arrays, e.g. ``store.measures.scores.sim_score_all``."""
    st = open_store(store)
    if hook not in st.hooks:
        raise StoreError(f"{st.path} has no hook {hook!r}; it has {', '.join(st.hooks)}")
    part, prog = IndexGroup(st.path, hook).load_state("p1")
    n_chunks = schema.n_chunks(int(st.n_tokens), int(st.chunk_tokens))
    if part is None or prog.get("chunk_stop") != n_chunks:
        raise StoreError(f"{st.path}: {hook} has no finished pass-1 result; run `neurobrowse index {st.path}` first")
    return part


def finalize_index(store, hook: str, partial: PartialIndex, samples: SamplePartial | None = None,
                   seed: int = schema.SAMPLE_SEED, extra_attrs: dict | None = None,
                   saving: Future | None = None, source: ChunkSource | None = None) -> dict:
    """Write ``index/{hook}/...`` (schema.INDEX_ARRAYS) from a pass-1 partial result covering the
    whole store, running pass 2 here when ``samples`` is not given. The ``complete`` attribute is
    written last (with ``extra_attrs``). ``saving``: a save of the resume state still running on a
    thread: the index arrays are written meanwhile, its attributes after it (both write the group's
    attributes). Returns a summary dict."""
    st = open_store(store)
    src = source or ChunkSource(st, hook)
    if partial.ranges != [(0, src.n_chunks)]:
        raise StoreError(f"the partial index of {hook} covers chunks {partial.ranges}, not all of "
                         f"0..{src.n_chunks}; merge the missing ranges first")
    if samples is None:
        samples = compute_sample_partial(st, hook, 0, src.n_chunks, sample_thresholds(partial), seed)
    if samples.ranges != [(0, src.n_chunks)]:
        raise StoreError(f"the samples of {hook} cover chunks {samples.ranges}, not all of 0..{src.n_chunks}")
    tokens = src.tokens()
    arrays = index_arrays(tokens, src.context_len, partial, samples)
    voc = st.explain_vocab
    with ThreadPoolExecutor(1, thread_name_prefix="neurobrowse-explain") as pool:
        # the rule search runs while the index arrays are compressed and written (its Numba kernel,
        # zstd and the file writes release the GIL), and the index it replaces is removed meanwhile
        explained = pool.submit(explain.explain_arrays, tokens, src.context_len, voc,
                                {k: arrays[k] for k in explain.INPUTS}, before=partial.before)
        grp = IndexGroup(st.path, hook)
        removed = grp.write_index(  # swapped in whole; the arrays written while the resume state is saved
            stored_arrays(arrays), {**index_attrs(st.run_uuid, partial, seed), **(extra_attrs or {})}, wait=False,
            saving=saving)
        st.forget_index(hook)
        try:
            explanations.write_explanations(st, hook, explained.result(), grp)
        finally:
            if removed is not None:
                removed.result()
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


def _run_pass(src: ChunkSource, grp: IndexGroup, parts: dict, start: int, cfg: IndexConfig, step, bar,
              allowance: _ChunkAllowance, final=None) -> tuple[dict, Future]:
    """Stream chunks start..n_chunks into the partial results ``parts`` (which -> part) with
    ``step(c, row0, bits)``, saving them every cfg.checkpoint_every_s seconds, and at the end what
    ``final(parts)`` makes of them (default: the parts themselves). Returns that final dict and the
    future of its save, which runs on a thread while the caller goes on (wait for it before the
    group's attributes are written again)."""
    last_save = time.monotonic()
    t0 = time.monotonic()
    done_mb = 0.0

    def canonical() -> dict:
        return {which: part.canonical() for which, part in parts.items()}

    for c, row0, bits in src.chunks(start, src.n_chunks, cfg.prefetch):
        step(c, row0, bits)
        for part in parts.values():
            part.ranges = [(0, c + 1)]
        done_mb += bits.size * 2 / 1e6
        if bar is not None:
            bar.update(bits.shape[0])
            bar.set_postfix_str(f"{done_mb / max(time.monotonic() - t0, 1e-9):.0f} MB/s", refresh=False)
        if allowance.take():
            grp.save_states(canonical(), c + 1, quick=True)
            raise _Stopped()
        if c + 1 < src.n_chunks and time.monotonic() - last_save >= cfg.checkpoint_every_s:
            grp.save_states(canonical(), c + 1, quick=True)
            last_save = time.monotonic()
    out = (final or (lambda p: p))(canonical())
    pool = ThreadPoolExecutor(1, thread_name_prefix="neurobrowse-save")
    try:
        return out, pool.submit(grp.save_states, out, src.n_chunks)
    finally:
        pool.shutdown(wait=False)


def provisional_units(src: ChunkSource) -> np.ndarray:
    """The sample units of a hook (store.index.unit_samples.UnitSamples) from the histogram of up to
    PROVISIONAL_CHUNKS chunks spread evenly over the store: a first look at where its quantile
    edges lie."""
    picks = np.unique(np.linspace(0, max(src.n_chunks - 1, 0), min(PROVISIONAL_CHUNKS, src.n_chunks)).astype(int))
    hist = np.zeros((src.n_neurons, HIST_BINS), np.int64)
    n = 0
    for c in picks:
        bits = src.chunk(int(c))
        hist += chunk_hist(bits)
        n += bits.shape[0]
    return units_around(hist, n)


def index_hook(st, hook: str, cfg: IndexConfig, force: bool = False, progress: bool = True,
               allowance: _ChunkAllowance | None = None, reader=None) -> dict:
    """Index one hook of an open Store in one read, resuming a previous run when one was interrupted.

    The read feeds pass 1 (a PartialIndex) and the samples per unit (UnitSamples) together; at the
    end the samples are resolved to the quantile bins of the whole histogram. Only for a hook where
    a quantile edge lies outside the tracked units of some neuron (or a run resumed from a pass-1
    state saved without samples, e.g. by the Dask indexer) is the store read a second time (pass 2)."""
    from store.format import atomic

    with atomic.hook_lock(st.path, hook):  # one run per store and hook; a second one waits, saying so
        st.forget_index(hook)  # the run this one waited for may have finished (or swapped) the index
        return _index_hook_locked(st, hook, cfg, force, progress, allowance or _ChunkAllowance(cfg.stop_after_chunks),
                                  reader)


def _index_hook_locked(st, hook: str, cfg: IndexConfig, force: bool, progress: bool,
                       allowance: _ChunkAllowance, reader=None) -> dict:
    src = ChunkSource(st, hook, reader)
    grp = IndexGroup(st.path, hook, cfg.on_checkpoint)
    if not src.dense and (force or not grp.attrs.get("complete")):
        st.require_dense(f"indexing {hook} again")
    window = (int(cfg.window[0]), int(cfg.window[1]))
    skip = grp.begin(st.run_uuid, cfg.k, cfg.seed, force, window)
    if skip is not None:
        if not explain.is_explained(st, hook):  # an index from before explanations: add them
            explanations.explain_hook(st, hook, group=grp)
            return {**skip, "reason": "already indexed; added the rule explanations"}
        return skip
    tokens = src.tokens()
    bar = None
    if progress:
        from store.progress import progress_bar

        bar = progress_bar(total=src.n_tokens, unit="tok", unit_scale=True, desc=hook)

    def update_p1(part, row0, bits):
        part.update(bits, tokens[row0:row0 + bits.shape[0]], row0, src.context_len)

    saving = None  # the future of the last save of the resume state, while it runs on its thread
    try:
        p1, prog1 = grp.load_state("p1")
        s1, progs = grp.load_state("s1")
        if p1 is not None and not (p1.dtop_key is not None and (p1.before, p1.after) == window):
            p1 = None  # a state of other windows (or from before the distinct lists): start again
        stop = prog1["chunk_stop"] if p1 is not None else 0
        if s1 is None or progs["chunk_stop"] != stop or (s1.before, s1.after) != window:
            s1 = None
        if p1 is None:  # a fresh start: pass 1 and the unit samples in one read
            p1 = PartialIndex.empty(hook, cfg.k, src.n_neurons, src.vocab, window)
            s1 = UnitSamples.empty(hook, provisional_units(src), window) if cfg.one_read else None
            stop, prog1 = 0, None
        if bar is not None:
            bar.set_description(f"{hook} {'read' if s1 is not None else 'pass 1/2'}")
            bar.update(min(stop * src.ct, src.n_tokens))
        if stop < src.n_chunks or prog1 is None:
            parts = {"p1": p1} if s1 is None else {"p1": p1, "s1": s1}

            def step(c, row0, bits):
                update_p1(p1, row0, bits)
                if s1 is not None:
                    s1.update(bits, row0, src.context_len, cfg.seed)

            def final(parts: dict) -> dict:
                """At the end of the read: pass 1 and, where the units resolve exactly, the samples
                (what pass 2 would save), so a kill while writing the index loses nothing."""
                qbin = sample_thresholds(p1)
                if s1 is not None:
                    samples = s1.resolve(qbin)
                    if s1.certified(qbin, p1.hist, samples).all():
                        return {"p1": p1, "p2": samples}
                return {"p1": p1}

            resolved, saving = _run_pass(src, grp, parts, stop, cfg, step, bar, allowance, final)
        else:
            resolved = {}
        qbin = sample_thresholds(p1)
        if "p2" in resolved:  # the read resolved the samples: no need to read back what it is saving
            samples, start = resolved["p2"], src.n_chunks
        else:
            if saving is not None:
                saving.result()
            samples, prog2 = grp.load_state("p2")
            fits = (samples is not None and np.array_equal(samples.qbin, qbin)
                    and (samples.before, samples.after) == window)
            start = prog2["chunk_stop"] if fits else 0
        reads = 1
        if start < src.n_chunks:  # pass 2: a second read, for the samples within the final quantile bins
            if start == 0:
                samples = SamplePartial.empty(hook, qbin, window)
            if bar is not None:
                bar.reset(total=src.n_tokens)
                bar.set_description(f"{hook} pass 2/2 (samples)")
                bar.update(min(start * src.ct, src.n_tokens))
            if saving is not None:
                saving.result()
            _, saving = _run_pass(src, grp, {"p2": samples}, start, cfg,
                                  lambda c, row0, bits: samples.update(bits, row0, src.context_len, cfg.seed),
                                  bar, allowance)
            reads = 2
        fin = None
        if bar is not None:  # the read's line says what the read took; finalize gets its own line
            bar.close()
            from store.progress import progress_bar

            fin = progress_bar(total=src.n_neurons, unit="neuron", desc=f"{hook} finalize (index, explanations)")
        try:
            summary = finalize_index(st, hook, p1, samples, cfg.seed, saving=saving, source=src)
            if fin is not None:
                fin.update(src.n_neurons)
        finally:
            if fin is not None:
                fin.close()
    finally:
        if bar is not None:
            bar.close()
        if saving is not None:
            saving.result()
    grp.prune_state()
    return {**summary, "reads": reads}


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
    # default: the recorded hooks (a dictionary's features are indexed by `neurobrowse features index`, which
    # also writes their logit effects and neuron peaks; name one in ``hooks`` to index it here)
    wanted = list(hooks) if hooks else list(getattr(st, "recorded_hooks", st.hooks))
    unknown = [h for h in wanted if h not in st.hooks]
    if unknown:
        raise StoreError(f"{st.path} has no hook {', '.join(map(repr, unknown))}; it has {', '.join(st.hooks)}")
    return wanted


# finalize of a hook, per token of the store: the tokens (int32) and the rule search's counts over the whole
# stream (store.measures.explain_counts.StreamCounts.build: int64 arrays of the stream; 150 bytes per token at
# its peak, measured with tracemalloc at 1M and 4M random tokens of a 50,257-token vocabulary)
FINALIZE_BYTES_PER_TOKEN = 4 + 150


def index_memory_bytes(n_neurons: int, k: int, vocab: int, seen_tokens: int | None = None, hooks: int = 1,
                       window: int = WINDOW, token_rows: int = 0, n_tokens: int = 0) -> int:
    """About how much memory indexing ``hooks`` hooks at once takes (``record --index`` indexes every hook
    together; ``index`` one at a time): per hook the top-k and bottom-k lists with their windows (kept,
    merged and turned into index arrays: ~4 copies), histograms, the per-token sums (float32 [2, T,
    neurons] for the T distinct tokens seen: ``seen_tokens``, at most the vocabulary) and the samples;
    once, the index arrays of the hook being finished (token and activation windows of every list and
    sample). ``token_rows`` > 0 (bounded per-token sums, ``record --index --token-rows``): float32 rows for at
    most that many tokens; the float16 means of the folded ones are in a file, not in memory
    (store.index.folded_means; ``folded_means_disk_bytes``); once, the float32 table of the hook being
    finished. ``n_tokens``: the store's tokens, which finalize reads whole and the rule search counts over
    (FINALIZE_BYTES_PER_TOKEN, once). benchmarks/bench_gpt2_memory.py and bench_record_index.py --parts memory
    compare it with measured peaks."""
    lists = 2 * n_neurons * k * (4 + 8 + 2 * window)
    hist = 2 * n_neurons * HIST_BINS * 8
    seen = min(vocab, vocab if seen_tokens is None else seen_tokens)
    token = 2 * seen * n_neurons * 4
    finishing = 0
    if 0 < token_rows < seen:
        token, finishing = 2 * n_neurons * token_rows * 4, 2 * seen * n_neurons * 4
    samples = (2 * len(schema.SAMPLE_BINS) + N_UNITS) * n_neurons * schema.SAMPLES_PER_BIN * (8 + 8 + 4 + 2 * window)
    windows = (4 * k + len(schema.SAMPLE_BINS) * schema.SAMPLES_PER_BIN) * n_neurons * window * (4 + 2)
    return hooks * (4 * lists + hist + token + samples) + windows + finishing + FINALIZE_BYTES_PER_TOKEN * int(n_tokens)


def folded_means_disk_bytes(n_neurons: int, vocab: int, hooks: int = 1) -> int:
    """Disk the bounded per-token sums of ``record --index --token-rows`` take while recording: per hook a
    temporary file of float16 means for every token of the vocabulary (allocated up front, gone at the end)."""
    return hooks * folded_means.table_bytes(vocab, n_neurons)


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


def available_disk_bytes(path) -> int:
    """Bytes free on the disk holding ``path``."""
    return shutil.disk_usage(path).free


def check_index_memory(st, hooks: list[str], k: int, window: tuple[int, int] | None = None) -> None:
    """Refuse before any work when one hook's index would not fit in the memory available (the lists and
    samples keep a window of ``window`` = (before, after) tokens per entry)."""
    avail = available_memory_bytes()
    vocab = vocab_size(st)
    seen = int(np.count_nonzero(np.bincount(np.asarray(st.tokens[...], np.int64), minlength=vocab)))
    w = WINDOW if window is None else int(window[0]) + 1 + int(window[1])
    need = max(index_memory_bytes(int(st.n_units(h)) if hasattr(st, "n_units") else int(st.d_mlp), k, vocab, seen,
                                  window=w, n_tokens=int(st.n_tokens)) for h in hooks)
    if avail is not None and need > 0.8 * avail:
        wtxt = "" if window is None else f" and --window {int(window[0])},{int(window[1])}"
        raise StoreError(f"indexing {st.path} with --k {k}{wtxt} needs about {need / 1e9:.1f} GB of memory (the "
                         f"top-{k} and bottom-{k} lists and the samples with a {w}-token context window each, for "
                         f"every neuron), more than the {avail / 1e9:.1f} GB available; use a smaller --k (default "
                         f"{schema.DEFAULT_K}) or --window (default {schema.CONTEXT_BEFORE},{schema.CONTEXT_AFTER})")


def check_record_index_memory(st, k: int, token_rows: int = 0) -> None:
    """Refuse before recording when indexing every hook of ``st`` while recording (all hooks at once)
    would not fit in the memory available, counting the per-token sums for min(vocab, n_tokens) tokens,
    or, with bounded per-token sums, when the store's disk cannot hold their temporary files."""
    avail = available_memory_bytes()
    vocab = vocab_size(st)
    seen = min(vocab, int(st.n_tokens))
    hooks = len(st.recorded_hooks)
    if 0 < token_rows < vocab:
        disk = folded_means_disk_bytes(int(st.d_mlp), vocab, hooks)
        free = available_disk_bytes(st.path)
        if disk > free:
            raise StoreError(f"recording {st.path} with --index --token-rows {token_rows} keeps the folded per-token "
                             f"means of its {hooks} hooks in temporary files there: about {disk / 1e9:.1f} GB of "
                             f"disk, more than the {free / 1e9:.1f} GB free; free disk space there, record fewer "
                             f"layers per store (--layers), or record to another disk")
    need = index_memory_bytes(int(st.d_mlp), k, vocab, seen, hooks=hooks, token_rows=token_rows,
                              n_tokens=int(st.n_tokens))
    if avail is not None and need > 0.8 * avail:
        raise StoreError(f"recording {st.path} with --index needs about {need / 1e9:.1f} GB of memory for the "
                         f"{len(st.recorded_hooks)} hooks indexed at once (per hook the per-token sums of up to "
                         f"{seen:,} tokens x {st.d_mlp} neurons, the samples and the top-{k} lists), more than the "
                         f"{avail / 1e9:.1f} GB available; bound the per-token sums (--token-rows 4096: float16 means "
                         f"for the rarer tokens, kept on disk), record fewer layers per store (--layers), fewer tokens "
                         f"or a smaller --k")


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
    check_index_memory(st, wanted, cfg.k, cfg.window)
    allowance = _ChunkAllowance(cfg.stop_after_chunks)
    out = {}
    for hook in wanted:
        try:
            out[hook] = index_hook(st, hook, cfg, force=force, progress=progress, allowance=allowance)
        except _Stopped:
            out[hook] = {"hook": hook, "stopped": True}
            break
    return out


__all__ = ["IndexConfig", "check_record_index_memory", "check_window", "compute_partial", "compute_sample_partial",
           "finalize_index", "index_hook", "index_store", "indexable_hooks", "pass1_result"]
