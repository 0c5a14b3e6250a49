"""Indexing while recording: a chunk consumer (store.format.pipeline.ChunkConsumer) that folds every recorded
chunk into the index of its hook as the recorder produces it, so the dense activations need never be
read back, or kept (``neurobrowse record ... --index --dense none``).

Per hook it runs what ``store.index.run.index_hook`` runs over a store, chunk by chunk in order
(``ChunkFold``): pass 1 (``PartialIndex.update``) and the samples per unit (``UnitSamples.update``).
The units lie around the quantile edges of the first chunks: the first ``provisional_chunks``
chunks (PROVISIONAL_CHUNKS, at most PROVISIONAL_BYTES) are held back until their histogram is
known, then folded in. ``finish`` resolves the samples to the quantile bins of the whole histogram
and writes ``index/{hook}/`` exactly as ``neurobrowse index`` would (``finish_hook``): the same
arrays bit for bit, except where a neuron's final quantile edge lies outside its units. Then a store
with its dense activations is read once more for the samples (as ``index`` does); a store without
them keeps the samples of the nearest units (an approximation, counted per hook in the index
attribute ``samples_inexact_neurons`` and in the summary; its error is measured by
benchmarks/bench_sample_error.py, see docs/indexing-and-scores.md).

On Dask (solu_core.dask_record) each task folds the chunks it records into a ``ChunkFold`` of its
own; the task holding the first chunks fixes the units (the same ones as here) and hands them to
the others, and store.index.dask_run merges the results and calls ``finish_hook``.

Resume: ``save_state`` (the pipeline calls it after every work group) saves the running results in
the index group every ``checkpoint_every_s`` seconds, with the chunk they reach; ``needed_chunks``
tells the recorder which chunks to compute again after a kill (the chunks after the last save, even
when their tokens are on disk), and chunks handed over again below that point are skipped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from store import schema
from store.errors import StoreError
from store.index.fold import fold_partial
from store.index.group import IndexGroup
from store.index.partial import PartialIndex
from store.index.samples import SamplePartial, sample_thresholds
from store.index.unit_samples import UnitSamples, chunk_hist, units_around
from store.index.run import PROVISIONAL_CHUNKS, IndexConfig, compute_sample_partial, finalize_index
from store.index.source import open_store, vocab_size

PROVISIONAL_BYTES = 64 * 2**20  # per hook: the most activations held back for the provisional quantile edges


def provisional_chunks(n_chunks: int, chunk_tokens: int, d_mlp: int) -> int:
    """How many first chunks fix the sample units of a recording: PROVISIONAL_CHUNKS, at most
    PROVISIONAL_BYTES of one hook's float16 activations, at most the whole recording. The Dask
    recorder (solu_core.dask_record) uses the same count, so both draw the same samples."""
    return max(1, min(n_chunks, PROVISIONAL_CHUNKS, -(-PROVISIONAL_BYTES // max(1, chunk_tokens * d_mlp * 2))))


class ChunkFold:
    """One hook's running index over consecutive chunks ``chunk0``, ``chunk0 + 1``, ...: pass 1
    (``PartialIndex``) and the samples per unit (``UnitSamples``).

    ``umap`` the units (``store.index.unit_samples.sample_units``); None: the first ``hold`` chunks are
    kept back until their histogram fixes them (``units_around``), then folded in (``start``).
    ``p1`` / ``s1``: a saved running result to go on from (its chunk stop is ``chunk0``). ``spill_dir``: with
    bounded per-token sums, the folder whose temporary file holds the folded means (``spill_folded_means``)."""

    def __init__(self, hook: str, k: int, vocab: int, window: tuple[int, int], context_len: int, chunk_tokens: int,
                 seed: int, chunk0: int = 0, umap: np.ndarray | None = None, hold: int = 1,
                 p1: PartialIndex | None = None, s1: UnitSamples | None = None, token_rows: int = 0,
                 spill_dir=None):
        self.hook, self.k, self.vocab, self.window = hook, k, vocab, window
        self.token_rows = int(token_rows)  # PartialIndex.token_rows_max (0: every token)
        self.context_len, self.ct, self.seed = context_len, chunk_tokens, seed
        self.chunk0, self.stop, self.hold = chunk0, chunk0, hold
        self.range0 = chunk0 if p1 is None or not p1.ranges else int(p1.ranges[0][0])  # the chunk p1 starts at
        self.umap = umap if s1 is None else s1.umap
        self.p1, self.s1 = p1, s1
        self.spill_dir = spill_dir
        if p1 is not None and spill_dir is not None and p1.token_rows_max:
            p1.spill_folded_means(spill_dir)
        self.held: list = []  # [(row0, bits, tokens)] until the units are known

    @property
    def started(self) -> bool:
        return self.s1 is not None

    def add(self, chunk_index: int, bits: np.ndarray, tokens: np.ndarray, partial: PartialIndex | None = None) -> None:
        """Fold chunk ``chunk_index`` (the next one: ``self.stop``); bits uint16 [rows, N], tokens int32 [rows].
        ``partial``: the chunk's pass-1 partial when it was computed elsewhere (solu_core.device_index, on the
        model's device): folded in (store.index.fold.fold_partial) instead of running pass 1 here; the
        samples per unit still run on ``bits``."""
        row0 = chunk_index * self.ct
        self.stop = chunk_index + 1
        if self.s1 is None and self.umap is None:
            self.held.append((row0, bits.copy(), np.array(tokens, np.int32), partial))
            if len(self.held) >= self.hold:
                self.start()
            return
        if self.s1 is None:
            self._empty(bits.shape[1])
        self._fold(row0, bits, tokens, partial)

    def start(self) -> None:
        """Fix the units from the held-back chunks' histogram and fold those chunks in."""
        if self.s1 is not None or not self.held:
            return
        if self.umap is None:
            hist = sum(chunk_hist(b) for _r, b, _t, _p in self.held)  # (a partial may hand its histogram on later)
            self.umap = units_around(hist, sum(b.shape[0] for _r, b, _t, _p in self.held))
        self._empty(self.held[0][1].shape[1])
        held, self.held = self.held, []
        for row0, bits, toks, part in held:
            self._fold(row0, bits, toks, part)

    def _empty(self, n_neurons: int) -> None:
        self.p1 = PartialIndex.empty(self.hook, self.k, n_neurons, self.vocab, self.window, self.token_rows)
        if self.spill_dir is not None and self.p1.token_rows_max:
            self.p1.spill_folded_means(self.spill_dir)
        self.s1 = UnitSamples.empty(self.hook, self.umap, self.window)

    def _fold(self, row0: int, bits: np.ndarray, tokens: np.ndarray, partial: PartialIndex | None = None) -> None:
        if partial is None:
            self.p1.update(bits, np.asarray(tokens, dtype=np.int32), row0, self.context_len)
        else:
            fold_partial(self.p1, partial)
            self.p1.release_folded_pages()  # what its folds touched (file-backed means only), as update does
        self.s1.update(bits, row0, self.context_len, self.seed)
        self.p1.ranges = self.s1.ranges = [(self.range0, row0 // self.ct + 1)]


def finish_hook(st, hook: str, group: IndexGroup, p1: PartialIndex, s1: UnitSamples, seed: int,
                window: tuple[int, int], pass2: SamplePartial | None = None) -> dict:
    """Write ``index/{hook}/`` of the finished store ``st`` from a pass-1 result and the unit samples
    covering every chunk: the samples resolved to the final quantile bins (``UnitSamples.resolve``);
    where they are not certified to be pass 2's for some neuron (``UnitSamples.certified``), pass 2
    read back from a store with dense activations, else the resolved ones, each in its bin but not
    necessarily the lowest priorities (counted in the attribute ``samples_inexact_neurons``). Then the resume state is
    pruned to the final pass-1 result (dense: for appends) or dropped. ``pass2``: that second read's
    samples when the caller made them (the Dask driver, in parallel). Returns the hook's summary."""
    full = p1.canonical().full_token_sums()  # bounded per-token sums: the float32 rows of every token, this hook only
    if full is not p1:
        p1.release_token_sums()  # the bounded tables go before finalize makes its arrays
        p1 = full
    qbin = sample_thresholds(p1)
    samples = s1.canonical().resolve(qbin)
    exact = s1.certified(qbin, p1.hist, samples)
    n_chunks = schema.n_chunks(int(st.n_tokens), int(st.chunk_tokens))
    reads, inexact = 0, 0
    if exact.all():
        pass
    elif st.dense:  # the samples of pass 2, read back from the store
        samples = pass2 if pass2 is not None else compute_sample_partial(st, hook, 0, n_chunks, qbin, seed,
                                                                         window=window)
        reads = 1
    else:
        inexact = int((~exact).sum())
    summary = finalize_index(st, hook, p1, samples, seed, extra_attrs={"samples_inexact_neurons": inexact})
    if st.dense:
        group.prune_state()  # as `index` leaves it: the final pass-1 result stays for appends
    else:
        group.drop_state()  # nothing can be appended to or re-indexed in a store without activations
    return {**summary, "reads": reads, "samples_inexact_neurons": inexact}


@dataclass
class _HookState:
    group: IndexGroup
    fold: ChunkFold  # the running results (chunks 0..fold.stop - 1 folded in)
    saved: int  # the chunk stop of the last save
    done: bool  # the hook's index is already complete


class StreamIndexer:
    """Index the hooks of the store at ``path`` from the chunks handed to ``consume`` (in order).

    ``path``: a store being recorded (created by the recorder before this is made); ``config``:
    k, seed, checkpoint_every_s and on_checkpoint as for ``index_store``."""

    def __init__(self, path, config: IndexConfig | None = None):
        self.cfg = config or IndexConfig()
        if self.cfg.k < 1:
            raise StoreError(f"--k must be at least 1 (got {self.cfg.k})")
        self.st = open_store(path)
        st = self.st
        self.n_chunks = schema.n_chunks(int(st.n_tokens), int(st.chunk_tokens))
        self.ct = int(st.chunk_tokens)
        self.window = (int(self.cfg.window[0]), int(self.cfg.window[1]))
        self.last_save = time.monotonic()
        hold = provisional_chunks(self.n_chunks, self.ct, int(st.d_mlp))
        vocab = vocab_size(st)
        rows = int(getattr(self.cfg, "token_rows", 0) or 0)  # bounded per-token sums (0: every token)
        self.token_rows = rows if 0 < rows < vocab else 0
        self.hooks: dict[str, _HookState] = {}
        for hook in st.recorded_hooks:
            grp = IndexGroup(st.path, hook, self.cfg.on_checkpoint)
            done = grp.begin(st.run_uuid, self.cfg.k, self.cfg.seed, False, self.window) is not None
            p1, prog1 = (None, None) if done else grp.load_state("p1")
            s1, progs = (None, None) if done else grp.load_state("s1")
            stop = prog1["chunk_stop"] if p1 is not None else 0
            if (p1 is None or s1 is None or progs["chunk_stop"] != stop or p1.dtop_key is None
                    or (p1.before, p1.after) != self.window or (s1.before, s1.after) != self.window
                    or int(p1.token_rows_max) != self.token_rows):
                p1, s1, stop = None, None, 0
            fold = ChunkFold(hook, self.cfg.k, vocab, self.window, int(st.context_len), self.ct,
                             self.cfg.seed, chunk0=stop, hold=hold, p1=p1, s1=s1, token_rows=self.token_rows,
                             spill_dir=st.path if self.token_rows else None)
            self.hooks[hook] = _HookState(grp, fold, stop, done)

    def needed_chunks(self) -> set[int]:
        """Chunk indices this indexer still needs handed over (the recorder computes them again)."""
        return {c for h in self.hooks.values() if not h.done for c in range(h.fold.stop, self.n_chunks)}

    def consume(self, hook: str, chunk_index: int, acts: np.ndarray, tokens: np.ndarray,
                partial: PartialIndex | None = None) -> None:
        """Fold chunk ``chunk_index`` of ``hook`` (acts float16 [rows, d_mlp], tokens int32 [rows]); ``partial``:
        its pass-1 partial computed beside the model (``ChunkFold.add``), None: pass 1 runs here."""
        h = self.hooks.get(hook)
        if h is None or h.done or chunk_index < h.fold.stop:
            return  # not indexed here, already indexed, or already folded in before a resume
        if chunk_index != h.fold.stop:
            raise StoreError(f"the index of {hook} being built while recording {self.st.path} holds chunks "
                             f"0..{h.fold.stop - 1} and was handed chunk {chunk_index}; chunks must come in order")
        h.fold.add(chunk_index, np.ascontiguousarray(acts).view(np.uint16), tokens, partial)

    def _save(self, h: _HookState) -> None:
        h.group.save_states({"p1": h.fold.p1.canonical(), "s1": h.fold.s1.canonical()}, h.fold.stop, quick=True)
        h.fold.p1.release_folded_pages()  # the save read every folded mean: those pages go back to the page cache
        h.saved = h.fold.stop

    def save_state(self, force: bool = False) -> None:
        """Save the running results of every hook (at most every checkpoint_every_s seconds unless
        ``force``): the point a killed recording resumes its index from."""
        if not force and time.monotonic() - self.last_save < self.cfg.checkpoint_every_s:
            return
        for h in self.hooks.values():
            if not h.done and h.fold.started and h.fold.stop > h.saved:
                self._save(h)
        self.last_save = time.monotonic()

    def finish(self) -> dict:
        """Write the index of every hook (after the store's finish: every token chunk is on disk).
        Returns a summary per hook."""
        self.st = open_store(self.st.path)  # the finished store (its manifest says complete)
        out = {}
        for hook, h in self.hooks.items():
            if h.done:
                out[hook] = {"hook": hook, "skipped": True, "reason": "already indexed"}
                continue
            h.fold.start()  # a recording shorter than the held-back chunks
            if h.fold.stop != self.n_chunks:
                raise StoreError(f"the index of {hook} being built while recording {self.st.path} holds chunks "
                                 f"0..{h.fold.stop - 1} of {self.n_chunks}; run the same record command again")
            if h.saved != h.fold.stop:  # a kill while writing the index then costs no recomputation
                self._save(h)
            folded = h.fold.p1.token_folded
            out[hook] = finish_hook(self.st, hook, h.group, h.fold.p1, h.fold.s1, self.cfg.seed, self.window)
            out[hook]["token_values_folded"] = folded  # (parity, token) values whose sums went through float16
            h.done = True
            h.fold.p1 = h.fold.s1 = None  # this hook's running results are written: free them for the next hooks
        return out


__all__ = ["ChunkFold", "StreamIndexer", "finish_hook", "provisional_chunks"]
