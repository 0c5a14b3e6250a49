"""Indexing while recording: a chunk consumer (store.pipeline.ChunkConsumer) that folds every recorded
chunk into the index of its hook as the recorder produces it, so the dense activations need never be
read back, or kept (``neurobrowse record ... --index --dense none``).

Per hook it runs what ``store.index.run.index_hook`` runs over a store, chunk by chunk in order:
pass 1 (``PartialIndex.update``) and the samples per unit (``UnitSamples.update``). The units lie
around the quantile edges of the first chunks: up to PROVISIONAL_CHUNKS chunks (at most
PROVISIONAL_BYTES) are held back until their histogram is known, then folded in. ``finish``
resolves the samples to the quantile bins of the whole histogram and writes ``index/{hook}/``
exactly as ``neurobrowse index`` would: the same arrays bit for bit, except where a neuron's final quantile edge lies outside its units. Then a store with
its dense activations is read once more for the samples (as ``index`` does); a store without them
keeps the samples of the nearest units (an approximation, counted per hook in the index attribute
``samples_inexact_neurons`` and in the summary).

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
from store.index.group import IndexGroup
from store.index.partial import PartialIndex, UnitSamples, chunk_hist, sample_thresholds, units_around
from store.index.run import PROVISIONAL_CHUNKS, IndexConfig, compute_sample_partial, finalize_index
from store.index.source import open_store, vocab_size

PROVISIONAL_BYTES = 64 * 2**20  # per hook: the most activations held back for the provisional quantile edges


@dataclass
class _HookState:
    group: IndexGroup
    stop: int  # chunks 0..stop-1 are folded in
    p1: PartialIndex | None
    s1: UnitSamples | None
    saved: int  # the chunk stop of the last save
    done: bool  # the hook's index is already complete
    held: list  # [(row0, bits, tokens)] chunks held back until the units are known (p1 is None)


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
        self.context_len = int(st.context_len)
        self.vocab = vocab_size(st)
        self.window = (int(self.cfg.window[0]), int(self.cfg.window[1]))
        self.last_save = time.monotonic()
        self.hooks: dict[str, _HookState] = {}
        for hook in st.hooks:
            grp = IndexGroup(st.path, hook, self.cfg.on_checkpoint)
            done = grp.begin(st.run_uuid, self.cfg.k, self.cfg.seed, False, self.window) is not None
            p1, prog1 = (None, None) if done else grp.load_state("p1")
            s1, progs = (None, None) if done else grp.load_state("s1")
            stop = prog1["chunk_stop"] if p1 is not None else 0
            if (p1 is None or s1 is None or progs["chunk_stop"] != stop or p1.dtop_key is None
                    or (p1.before, p1.after) != self.window or (s1.before, s1.after) != self.window):
                p1, s1, stop = None, None, 0
            self.hooks[hook] = _HookState(grp, stop, p1, s1, stop, done, [])

    def needed_chunks(self) -> set[int]:
        """Chunk indices this indexer still needs handed over (the recorder computes them again)."""
        return {c for h in self.hooks.values() if not h.done for c in range(h.stop, self.n_chunks)}

    def consume(self, hook: str, chunk_index: int, acts: np.ndarray, tokens: np.ndarray) -> None:
        """Fold chunk ``chunk_index`` of ``hook`` (acts float16 [rows, d_mlp], tokens int32 [rows])."""
        h = self.hooks.get(hook)
        if h is None or h.done or chunk_index < h.stop:
            return  # not indexed here, already indexed, or already folded in before a resume
        if chunk_index != h.stop:
            raise StoreError(f"the index of {hook} being built while recording {self.st.path} holds chunks "
                             f"0..{h.stop - 1} and was handed chunk {chunk_index}; chunks must come in order")
        bits = np.ascontiguousarray(acts).view(np.uint16)
        row0 = chunk_index * self.ct
        toks = np.asarray(tokens, dtype=np.int32)
        h.stop += 1
        if h.p1 is None:  # the first chunks: held back until their histogram gives the units
            h.held.append((row0, bits.copy(), toks.copy()))
            if len(h.held) >= PROVISIONAL_CHUNKS or len(h.held) * bits.nbytes >= PROVISIONAL_BYTES:
                self._start(hook, h)
            return
        self._fold(h, row0, bits, toks)

    def _start(self, hook: str, h: _HookState) -> None:
        """Fix the units from the held-back chunks' histogram and fold those chunks in."""
        hist = sum(chunk_hist(b) for _r, b, _t in h.held)
        n = sum(b.shape[0] for _r, b, _t in h.held)
        h.p1 = PartialIndex.empty(hook, self.cfg.k, h.held[0][1].shape[1], self.vocab, self.window)
        h.s1 = UnitSamples.empty(hook, units_around(hist, n), self.window)
        held, h.held = h.held, []
        for row0, bits, toks in held:
            self._fold(h, row0, bits, toks)

    def _fold(self, h: _HookState, row0: int, bits: np.ndarray, tokens: np.ndarray) -> None:
        h.p1.update(bits, tokens, row0, self.context_len)
        h.s1.update(bits, row0, self.context_len, self.cfg.seed)
        h.p1.ranges = h.s1.ranges = [(0, row0 // self.ct + 1)]

    def save_state(self, force: bool = False) -> None:
        """Save the running results of every hook (at most every checkpoint_every_s seconds unless
        ``force``): the point a killed recording resumes its index from."""
        if not force and time.monotonic() - self.last_save < self.cfg.checkpoint_every_s:
            return
        for h in self.hooks.values():
            if not h.done and h.p1 is not None and h.stop > h.saved:
                h.group.save_states({"p1": h.p1.canonical(), "s1": h.s1.canonical()}, h.stop, quick=True)
                h.saved = h.stop
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
            if h.p1 is None and h.held:  # a recording shorter than the held-back chunks
                self._start(hook, h)
            if h.stop != self.n_chunks:
                raise StoreError(f"the index of {hook} being built while recording {self.st.path} holds chunks "
                                 f"0..{h.stop - 1} of {self.n_chunks}; run the same record command again")
            if h.saved != h.stop:  # a kill while writing the index then costs no recomputation
                h.group.save_states({"p1": h.p1.canonical(), "s1": h.s1.canonical()}, h.stop, quick=True)
                h.saved = h.stop
            qbin = sample_thresholds(h.p1.canonical())
            exact = h.s1.canonical().exact_for(qbin)
            reads, inexact = 0, 0
            if exact.all():
                samples = h.s1.resolve(qbin)
            elif self.st.dense:  # the samples of pass 2, read back from the store
                samples = compute_sample_partial(self.st, hook, 0, self.n_chunks, qbin, self.cfg.seed,
                                                 window=self.window)
                reads = 1
            else:
                samples = h.s1.resolve(qbin)
                inexact = int((~exact).sum())
            summary = finalize_index(self.st, hook, h.p1, samples, self.cfg.seed,
                                     extra_attrs={"samples_inexact_neurons": inexact})
            if self.st.dense:
                h.group.prune_state()  # as `index` leaves it: the final pass-1 result stays for appends
            else:
                h.group.drop_state()  # nothing can be appended to or re-indexed in a store without activations
            h.done = True
            out[hook] = {**summary, "reads": reads, "samples_inexact_neurons": inexact}
        return out


__all__ = ["StreamIndexer"]
