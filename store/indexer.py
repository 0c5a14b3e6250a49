"""Indexing a store: per-neuron top-k, bottom-k, quantile samples, histogram, moments, density,
per-token statistics, context windows and interpretability scores, written to ``index/{hook}/``.

Two streaming passes over each hook's dense ``[token, neuron]`` array, chunk by chunk, with the
Numba kernels of store.kernels, parallel over blocks of neurons (``_run_blocks``):

* **Pass 1** (``compute_partial``): top-k and bottom-k (values, positions and this neuron's
  activations in the window around each, copied when an entry is kept), a histogram with
  data-independent bins (the float16 bit pattern), moments (count, mean, M2, M3, M4), a density
  count and per-token activation sums (split by context parity for the simulation score).
* **Pass 2** (``compute_sample_partial``): needs the quantile edges of the *whole* histogram, so
  it is a second read: for each neuron and quantile bin (schema.SAMPLE_BINS) it keeps the
  ``SAMPLES_PER_BIN`` positions of lowest hash priority among the values in the bin, with windows.

Both passes produce partial results over a chunk range that merge associatively and exactly
(``merge_partials``, ``merge_sample_partials``): top/bottom lists under one total order (key, then
lower position), integer counts, hash-priority samples; moments merge with the Chan/Pebay parallel
formulas (exact up to float rounding). That is what lets Dask workers index pieces of a store.

``index_store`` runs both passes resumably: it saves the running partial result in the index
group every ``checkpoint_every_s`` seconds (into alternating slots; a small attribute naming the
valid slot is written last), so a process killed at any point resumes from the last save and,
because every step is deterministic in chunk order, produces bit-identical arrays.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import google_crc32c
import numba
import numpy as np
import zarr
from zarr.storage import LocalStore

from store import explain, kernels, schema
from store.errors import CorruptChunkError, NeurobrowseError, StoreError

WINDOW = schema.CONTEXT_BEFORE + 1 + schema.CONTEXT_AFTER
N_QUANTILE_BINS = len(schema.SAMPLE_QUANTILES) + 1  # the quantile bins; SAMPLE_BINS adds "random"
_TOP_EMPTY = -1  # key of an empty top slot (below every real key)
_BOT_EMPTY = 65536  # key of an empty bottom slot (above every real key)
_PRIO_EMPTY = np.uint64(0xFFFFFFFFFFFFFFFF)


@dataclass
class IndexConfig:
    k: int = schema.DEFAULT_K  # top-k and bottom-k kept per neuron
    seed: int = schema.SAMPLE_SEED  # seed of the sample-drawing hash
    checkpoint_every_s: float = 60.0  # save the running partial result this often (resume point)
    prefetch: bool = True  # read the next READ_AHEAD chunks in threads while the kernels run
    stop_after_chunks: int | None = None  # testing aid: stop (as if killed) after this many chunks
    on_checkpoint: object = None  # callable(hook, pass name, chunk_stop) after each save (tests, logs)


# ---- partial results ----------------------------------------------------------------------------


_POOLS: dict = {}  # thread count -> pool, and "pid" -> the process that made them
_POOLS_LOCK = threading.Lock()


def _run_blocks(fn, n_blocks: int) -> None:
    """Run ``fn(b0, b1)`` over block ranges covering ``0 .. n_blocks - 1`` on ``numba.get_num_threads()``
    threads that take the ranges as they come free (a serial nogil kernel per range).

    Why not ``prange``: Numba hands each thread a fixed share of the blocks, so when the read-ahead
    thread (or anything else) takes a core, the chunk waits for the descheduled thread's share; here
    the other thread takes the remaining ranges. On the 2-core dev box this took pass 1 over a
    512k x 2048 hook from ~13.5 to ~9 ms per chunk (benchmarks/bench_index.py). Results do not
    depend on the split: each block's neurons are independent and see their rows in order."""
    threads = min(numba.get_num_threads(), n_blocks)
    if threads <= 1:
        fn(0, n_blocks)
        return
    with _POOLS_LOCK:
        if _POOLS.get("pid") != os.getpid():  # a forked child inherits the pools but not their threads
            _POOLS.clear()
            _POOLS["pid"] = os.getpid()
        pool = _POOLS.get(threads)
        if pool is None:
            pool = _POOLS[threads] = ThreadPoolExecutor(threads, thread_name_prefix="neurobrowse-index")
    per = max(1, n_blocks // (BLOCK_TASKS_PER_THREAD * threads))
    futures = [pool.submit(fn, b, min(n_blocks, b + per)) for b in range(0, n_blocks, per)]
    for f in futures:
        f.result()


BLOCK_TASKS_PER_THREAD = 2  # ranges handed out per thread and chunk (balance vs. hand-off cost)


@dataclass
class PartialIndex:
    """Pass-1 statistics of one hook over chunk ranges ``ranges`` (list of [start, stop)).

    Picklable (numpy arrays and plain values only), so Dask can ship it between workers.
    Top and bottom lists are kept in canonical order (best first) after every public call.
    """

    hook: str
    k: int
    ranges: list  # [(chunk_start, chunk_stop), ...] sorted, disjoint
    n: int  # tokens covered
    top_key: np.ndarray  # int32 [N, k] float16 order keys, best first; -1 = empty
    top_pos: np.ndarray  # int64 [N, k] global token positions; -1 = empty
    top_win: np.ndarray  # uint16 [N, k, W] float16 bits of the neuron's acts around each entry
    bot_key: np.ndarray  # int32 [N, k], ascending; 65536 = empty
    bot_pos: np.ndarray  # int64 [N, k]
    bot_win: np.ndarray  # uint16 [N, k, W]
    hist: np.ndarray  # int64 [N, HIST_BINS]
    npos: np.ndarray  # int64 [N] count of activations > DENSITY_THRESHOLD
    mean: np.ndarray  # float64 [N]
    m2: np.ndarray  # float64 [N] sum of squared deviations
    m3: np.ndarray  # float64 [N]
    m4: np.ndarray  # float64 [N]
    token_sum: np.ndarray  # float64 [2, V, N] activation sums per current token, by context parity
    token_count: np.ndarray  # int64 [2, V] token occurrences, by context parity

    @classmethod
    def empty(cls, hook: str, k: int, n_neurons: int, vocab: int) -> "PartialIndex":
        N = n_neurons
        return cls(
            hook=hook, k=k, ranges=[], n=0,
            top_key=np.full((N, k), _TOP_EMPTY, np.int32), top_pos=np.full((N, k), -1, np.int64),
            top_win=np.zeros((N, k, WINDOW), np.uint16),
            bot_key=np.full((N, k), _BOT_EMPTY, np.int32), bot_pos=np.full((N, k), -1, np.int64),
            bot_win=np.zeros((N, k, WINDOW), np.uint16),
            hist=np.zeros((N, kernels.HIST_BINS), np.int64), npos=np.zeros(N, np.int64),
            mean=np.zeros(N), m2=np.zeros(N), m3=np.zeros(N), m4=np.zeros(N),
            token_sum=np.zeros((2, vocab, N)), token_count=np.zeros((2, vocab), np.int64),
        )

    @property
    def n_neurons(self) -> int:
        return self.top_key.shape[0]

    def arrays(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if isinstance(getattr(self, f.name), np.ndarray)}

    def update(self, bits: np.ndarray, tokens: np.ndarray, row0: int, context_len: int) -> None:
        """Fold one chunk into this partial (in place). bits: uint16 [R, N]; tokens: int32 [R]."""
        R, N = bits.shape
        top_worst = np.empty(N, np.int32)
        bot_worst = np.empty(N, np.int32)
        kernels.worst_slots(self.top_key, self.top_pos, self.bot_key, self.bot_pos, top_worst, bot_worst)
        sums = np.zeros((N, 6))  # shift (first value, keeps the power sums small), power sums 1..4, density
        parity = ((row0 + np.arange(R)) // context_len) & 1  # [R]
        tokens = np.ascontiguousarray(tokens, dtype=np.int32)
        V = self.token_count.shape[1]
        gkey, grp = np.unique(parity * V + tokens, return_inverse=True)  # [G] distinct (parity, token), [R]
        bits = np.ascontiguousarray(bits)
        hkb, grp, gpar, gtok = self._key_block_counts(R), grp.astype(np.int32), gkey // V, gkey % V

        def blocks(b0, b1):
            kernels.pass1_rows(bits, row0, context_len, schema.CONTEXT_BEFORE, _DENS_KEY, tokens, parity,
                               self.top_key, self.top_pos, self.top_win, top_worst,
                               self.bot_key, self.bot_pos, self.bot_win, bot_worst, hkb, sums,
                               self.token_sum, grp, gpar, gtok, kernels.ROW_BLOCK, b0, b1)

        _run_blocks(blocks, hkb.shape[0])
        self.npos += sums[:, 5].astype(np.int64)
        shift, sums = sums[:, 0], sums[:, 1:5].T  # [N], [4, N]
        V = self.token_count.shape[1]
        for par in (0, 1):
            sel = tokens[parity == par]
            if sel.size:
                self.token_count[par] += np.bincount(sel, minlength=V)
        # central moments of this chunk from the shifted power sums, then the parallel merge
        mu = sums[0] / R
        c2 = sums[1] - R * mu**2
        c3 = sums[2] - 3 * mu * sums[1] + 2 * R * mu**3
        c4 = sums[3] - 4 * mu * sums[2] + 6 * mu**2 * sums[1] - 3 * R * mu**4
        self.n, self.mean, self.m2, self.m3, self.m4 = _merge_moments(
            (self.n, self.mean, self.m2, self.m3, self.m4), (R, shift + mu, np.maximum(c2, 0.0), c3, c4))

    def _key_block_counts(self, rows: int) -> np.ndarray:
        """[nb, 2**(16 - HIST_SHIFT), ROW_BLOCK] histogram counts per (neuron block, float16 key block,
        neuron) not yet folded into ``hist``: pass1_rows adds to it chunk after chunk and
        ``canonical`` folds it (also here, before ``rows`` more could overflow it). uint16 while a
        chunk has fewer than 65536 rows (half the cache footprint of int32 for the histogram scatter,
        the costliest part of the sweep; folded every 31 chunks of 2048 rows), else int32. Not a
        dataclass field: never saved or merged, always folded before."""
        dtype = np.uint16 if rows <= 0xFFFF else np.int32
        limit = 0xFFFF if dtype is np.uint16 else 2**31 - 1
        hkb = self.__dict__.get("_hkb")
        if hkb is not None and (self._hkb_rows + rows > limit or hkb.dtype != dtype):
            kernels.fold_key_blocks(hkb, self.hist)
            self._hkb_rows = 0
            if hkb.dtype != dtype:
                hkb = None
        if hkb is None:
            nb = -(-self.n_neurons // kernels.ROW_BLOCK)
            hkb = self._hkb = np.zeros((nb, 1 << (16 - kernels.HIST_SHIFT), kernels.ROW_BLOCK), dtype)
            self._hkb_rows = 0
        self._hkb_rows += rows
        return hkb

    def canonical(self) -> "PartialIndex":
        """Sort the top and bottom lists best first and fold the pending histogram counts into
        ``hist`` (in place); returns self."""
        hkb = self.__dict__.pop("_hkb", None)
        if hkb is not None:
            kernels.fold_key_blocks(hkb, self.hist)
        self.top_key, self.top_pos, self.top_win = _sorted_lists(self.top_key, self.top_pos, self.top_win, True)
        self.bot_key, self.bot_pos, self.bot_win = _sorted_lists(self.bot_key, self.bot_pos, self.bot_win, False)
        return self


_DENS_KEY = int(kernels.f16_keys_np(np.array([schema.DENSITY_THRESHOLD], np.float16).view(np.uint16))[0])


def _merge_moments(a, b):
    """Chan et al. / Pebay pairwise update of (n, mean, M2, M3, M4); n is a scalar, the rest [N]."""
    na, ma, m2a, m3a, m4a = a
    nb, mb, m2b, m3b, m4b = b
    if na == 0:
        return nb, mb.copy(), m2b.copy(), m3b.copy(), m4b.copy()
    if nb == 0:
        return na, ma, m2a, m3a, m4a
    n = na + nb
    d = mb - ma
    dn = d / n
    mean = ma + nb * dn
    m2 = m2a + m2b + d * dn * na * nb
    m3 = m3a + m3b + d * dn * dn * na * nb * (na - nb) + 3 * dn * (na * m2b - nb * m2a)
    m4 = (m4a + m4b + d * dn**3 * na * nb * (na * na - na * nb + nb * nb)
          + 6 * dn * dn * (na * na * m2b + nb * nb * m2a) + 4 * dn * (na * m3b - nb * m3a))
    return n, mean, m2, m3, m4


def _sorted_lists(key, pos, win, top: bool):
    """Order each neuron's list best first: top by (key desc, pos asc), bottom by (key asc, pos asc).
    Empty slots (pos -1) sort last."""
    empty = pos < 0
    primary = np.where(empty, np.iinfo(np.int64).max, -key.astype(np.int64) if top else key.astype(np.int64))
    order = np.lexsort((np.where(empty, 0, pos), primary), axis=-1)  # [N, m]
    return (np.take_along_axis(key, order, 1), np.take_along_axis(pos, order, 1),
            np.take_along_axis(win, order[:, :, None], 1))


def _merge_ranges(a: list, b: list) -> list:
    out = sorted([tuple(r) for r in a] + [tuple(r) for r in b])
    for (s0, e0), (s1, e1) in zip(out, out[1:]):
        if s1 < e0:
            raise ValueError(f"partial results overlap: chunks [{s0}, {e0}) and [{s1}, {e1}) (merge disjoint ranges only)")
    merged: list = []
    for s, e in out:
        if merged and merged[-1][1] == s:
            merged[-1] = (merged[-1][0], e)
        else:
            merged.append((s, e))
    return merged


def merge_partials(a: PartialIndex, b: PartialIndex) -> PartialIndex:
    """The pass-1 result of the union of two disjoint chunk ranges; a pure function.

    Exact (bit for bit) for top-k / bottom-k and their windows, histograms and counts; moments by
    the parallel algorithm (float rounding only); token sums by addition (float rounding only).
    """
    if a.hook != b.hook or a.k != b.k or a.top_key.shape != b.top_key.shape or a.token_sum.shape != b.token_sum.shape:
        raise ValueError(f"cannot merge partial results of {a.hook} (k={a.k}) and {b.hook} (k={b.k}) of other shapes")
    first, second = (a, b) if (a.ranges or [(0, 0)])[0] <= (b.ranges or [(0, 0)])[0] else (b, a)
    k = a.k
    tk, tp, tw = _sorted_lists(np.concatenate([first.top_key, second.top_key], 1),
                               np.concatenate([first.top_pos, second.top_pos], 1),
                               np.concatenate([first.top_win, second.top_win], 1), True)
    bk, bp, bw = _sorted_lists(np.concatenate([first.bot_key, second.bot_key], 1),
                               np.concatenate([first.bot_pos, second.bot_pos], 1),
                               np.concatenate([first.bot_win, second.bot_win], 1), False)
    n, mean, m2, m3, m4 = _merge_moments((first.n, first.mean, first.m2, first.m3, first.m4),
                                         (second.n, second.mean, second.m2, second.m3, second.m4))
    return PartialIndex(
        hook=a.hook, k=k, ranges=_merge_ranges(a.ranges, b.ranges), n=n,
        top_key=np.ascontiguousarray(tk[:, :k]), top_pos=np.ascontiguousarray(tp[:, :k]),
        top_win=np.ascontiguousarray(tw[:, :k]),
        bot_key=np.ascontiguousarray(bk[:, :k]), bot_pos=np.ascontiguousarray(bp[:, :k]),
        bot_win=np.ascontiguousarray(bw[:, :k]),
        hist=first.hist + second.hist, npos=first.npos + second.npos,
        mean=mean, m2=m2, m3=m3, m4=m4,
        token_sum=first.token_sum + second.token_sum, token_count=first.token_count + second.token_count,
    )


@dataclass
class SamplePartial:
    """Pass-2 random samples per (neuron, bin) over chunk ranges; picklable, merges exactly."""

    hook: str
    ranges: list
    qbin: np.ndarray  # int32 [N, len(SAMPLE_QUANTILES)] first histogram bin of each quantile bin
    prio: np.ndarray  # uint64 [N, B, S] hash priorities, lowest first; 2**64-1 = empty
    pos: np.ndarray  # int64 [N, B, S]; -1 = empty
    key: np.ndarray  # int32 [N, B, S]
    win: np.ndarray  # uint16 [N, B, S, W]

    @classmethod
    def empty(cls, hook: str, qbin: np.ndarray) -> "SamplePartial":
        N, B, S = qbin.shape[0], len(schema.SAMPLE_BINS), schema.SAMPLES_PER_BIN
        return cls(hook=hook, ranges=[], qbin=np.ascontiguousarray(qbin, dtype=np.int32),
                   prio=np.full((N, B, S), _PRIO_EMPTY, np.uint64), pos=np.full((N, B, S), -1, np.int64),
                   key=np.zeros((N, B, S), np.int32), win=np.zeros((N, B, S, WINDOW), np.uint16))

    def arrays(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if isinstance(getattr(self, f.name), np.ndarray)}

    def update(self, bits: np.ndarray, row0: int, context_len: int, seed: int) -> None:
        R, N = bits.shape
        h1, h2 = kernels.position_hashes(row0, R, seed)
        worst = np.empty(self.prio.shape[:2], np.int32)
        kernels.sample_worst_slots(self.prio, worst)
        bits = np.ascontiguousarray(bits)
        salt = kernels.neuron_salts(N, seed)

        def blocks(b0, b1):
            kernels.pass2_rows(bits, row0, context_len, schema.CONTEXT_BEFORE, h1, h2, salt, self.qbin, self.prio,
                               self.pos, self.key, self.win, worst, kernels.ROW_BLOCK, b0, b1)

        _run_blocks(blocks, -(-N // kernels.ROW_BLOCK))

    def canonical(self) -> "SamplePartial":
        order = np.argsort(self.prio, axis=-1, kind="stable")  # priorities are distinct (a bijective hash)
        self.prio = np.take_along_axis(self.prio, order, -1)
        self.pos = np.take_along_axis(self.pos, order, -1)
        self.key = np.take_along_axis(self.key, order, -1)
        self.win = np.take_along_axis(self.win, order[..., None], -2)
        return self


def merge_sample_partials(a: SamplePartial, b: SamplePartial) -> SamplePartial:
    """Samples of the union of two disjoint chunk ranges (exact: the S lowest priorities of both)."""
    if a.hook != b.hook or not np.array_equal(a.qbin, b.qbin):
        raise ValueError("cannot merge samples drawn with other quantile edges (or of another hook)")
    S = a.prio.shape[2]
    prio = np.concatenate([a.prio, b.prio], -1)
    order = np.argsort(prio, axis=-1, kind="stable")[..., :S]
    return SamplePartial(
        hook=a.hook, ranges=_merge_ranges(a.ranges, b.ranges), qbin=a.qbin.copy(),
        prio=np.take_along_axis(prio, order, -1),
        pos=np.take_along_axis(np.concatenate([a.pos, b.pos], -1), order, -1),
        key=np.take_along_axis(np.concatenate([a.key, b.key], -1), order, -1),
        win=np.take_along_axis(np.concatenate([a.win, b.win], -2), order[..., None], -2),
    )


def sample_thresholds(partial: PartialIndex) -> np.ndarray:
    """int32 [N, len(SAMPLE_QUANTILES)]: for each neuron and quantile q the histogram bin holding
    the q-quantile; the sample bin "q-q'" is every value whose histogram bin is in [bin(q), bin(q')).
    Quantiles are resolved to histogram bins (~6% wide), so bin membership is approximate at the
    edges; it depends only on the merged histogram, never on chunking."""
    cum = np.cumsum(partial.hist, axis=1)  # [N, H]
    out = np.empty((partial.n_neurons, len(schema.SAMPLE_QUANTILES)), np.int32)
    for i, q in enumerate(schema.SAMPLE_QUANTILES):
        target = np.ceil(q * partial.n)
        out[:, i] = np.minimum((cum < target).sum(axis=1), kernels.HIST_BINS - 1)
    return out


# ---- reading a store ----------------------------------------------------------------------------


def _open_store(store):
    """A Store from a path, or the Store given."""
    if isinstance(store, (str, Path)):
        from store.reader import Store

        return Store.open(store)
    return store


def _vocab_size(st) -> int:
    cfg = st.model_config or {}
    v = int(cfg.get("d_vocab") or 0)
    if v <= 0:
        v = int(st.tokenizer.get_vocab_size())
    return v


class _ChunkSource:
    """Reads whole chunks of one hook (and the token ids) of a store, turning every failure into an
    error that names the array and the chunk key."""

    def __init__(self, st, hook: str):
        if hook not in st.hooks:
            raise StoreError(f"{st.path} has no hook {hook!r}; it has {', '.join(st.hooks)}")
        self.st = st
        self.hook = hook
        self.path = Path(st.path)
        self.ct = int(st.chunk_tokens)
        self.n_tokens = int(st.n_tokens)
        self.context_len = int(st.context_len)
        if self.ct % self.context_len:
            raise StoreError(f"{self.path}: chunk_tokens {self.ct} is not a multiple of context_len "
                             f"{self.context_len}; the indexer needs whole contexts per chunk")
        self.n_chunks = schema.n_chunks(self.n_tokens, self.ct)
        self.arr = st.activations(hook)
        self.n_neurons = int(self.arr.shape[1])
        self.vocab = _vocab_size(st)
        self._tokens: np.ndarray | None = None

    def _read(self, name: str, arr, c: int) -> np.ndarray:
        """Chunk c of ``name`` through Store.read_chunk, which raises CorruptChunkError naming the
        chunk for a missing, truncated or damaged file (its direct path and CheckedLocalStore alike);
        any other decode failure is turned into one here."""
        try:
            return np.asarray(self.st.read_chunk(name, c))
        except CorruptChunkError:
            raise
        except Exception as e:  # a decode error zarr raises in its own words
            key = arr.metadata.encode_chunk_key((c,) + (0,) * (arr.ndim - 1))
            raise CorruptChunkError(f"chunk {name}/{key} of {self.path} is corrupt or truncated "
                                    f"({type(e).__name__}: {e}); re-record the store (or that chunk)") from e

    def chunk(self, c: int) -> np.ndarray:
        """uint16 [R, N] float16 bits of chunk c."""
        return self._read(self.hook, self.arr, c).view(np.uint16)

    def tokens(self) -> np.ndarray:
        """int32 [n_tokens] every token id, read chunk by chunk (checked against the vocabulary)."""
        if self._tokens is None:
            parts = [self.token_chunk(c) for c in range(self.n_chunks)]
            self._tokens = np.concatenate(parts) if parts else np.zeros(0, np.int32)
        return self._tokens

    def token_chunk(self, c: int) -> np.ndarray:
        """int32 [R] the token ids of chunk c (checked against the vocabulary)."""
        arr = self.st.tokens
        toks = self._read(schema.TOKENS, arr, c).astype(np.int32, copy=False)
        if toks.size and (toks.min() < 0 or toks.max() >= self.vocab):
            bad = int(np.flatnonzero((toks < 0) | (toks >= self.vocab))[0])
            key = arr.metadata.encode_chunk_key((c,))
            raise CorruptChunkError(f"chunk {schema.TOKENS}/{key} of {self.path} holds token id "
                                    f"{int(toks[bad])} outside the vocabulary (0..{self.vocab - 1})")
        return toks

    def _prefetched(self, read, start: int, stop: int, prefetch: bool):
        """Yield (c, row0, read(c)) for chunks start..stop-1, with READ_AHEAD reads in flight on as
        many threads (file reads and Crc32c release the GIL)."""
        if not prefetch:
            for c in range(start, stop):
                yield c, c * self.ct, read(c)
            return
        with ThreadPoolExecutor(max_workers=READ_AHEAD) as pool:
            pending = deque(pool.submit(read, c) for c in range(start, min(stop, start + READ_AHEAD)))
            nxt = start + len(pending)
            for c in range(start, stop):
                got = pending.popleft().result()
                if nxt < stop:
                    pending.append(pool.submit(read, nxt))
                    nxt += 1
                yield c, c * self.ct, got

    def chunks_with_tokens(self, start: int, stop: int, prefetch: bool = True):
        """Yield (c, row0, bits, tokens) for chunks start..stop-1 (tokens: int32 [R] of that chunk
        only), reading ahead: what a pass over part of a store needs, without reading every token id
        of the store first."""
        for c, row0, (bits, toks) in self._prefetched(lambda c: (self.chunk(c), self.token_chunk(c)), start, stop, prefetch):
            yield c, row0, bits, toks

    def chunks(self, start: int, stop: int, prefetch: bool = True):
        """Yield (c, row0, bits) for chunks start..stop-1, reading ahead."""
        yield from self._prefetched(self.chunk, start, stop, prefetch)


# Chunk reads in flight during a pass, each on its own thread. Two concurrent reads get more out of a
# disk than one (a cold 512k x 2048 hook: 1 reader 1.9-3.0 s, 2 readers 2.1 s, 4 readers 1.4-1.6 s on
# the dev box), and a second buffered chunk rides out a slow read; more would only take memory
# (8 MB per chunk) and cores from the kernels on a small machine.
READ_AHEAD = 2


def _check_range(src: _ChunkSource, start: int, stop: int) -> None:
    if not 0 <= start <= stop <= src.n_chunks:
        raise ValueError(f"chunk range [{start}, {stop}) is outside 0..{src.n_chunks} of {src.hook}")


def compute_partial(store, hook: str, chunk_start: int, chunk_stop: int, k: int = schema.DEFAULT_K,
                    prefetch: bool = True) -> PartialIndex:
    """Pass 1 over chunks [chunk_start, chunk_stop) of ``hook``; a pure function of the store's data.
    ``store`` is a Store or a path (a path is what a Dask task should carry)."""
    src = _ChunkSource(_open_store(store), hook)
    _check_range(src, chunk_start, chunk_stop)
    part = PartialIndex.empty(hook, k, src.n_neurons, src.vocab)
    for c, row0, bits, toks in src.chunks_with_tokens(chunk_start, chunk_stop, prefetch):
        part.update(bits, toks, row0, src.context_len)
    part.ranges = [(chunk_start, chunk_stop)] if chunk_stop > chunk_start else []
    return part.canonical()


def compute_sample_partial(store, hook: str, chunk_start: int, chunk_stop: int, qbin: np.ndarray,
                           seed: int = schema.SAMPLE_SEED, prefetch: bool = True) -> SamplePartial:
    """Pass 2 over chunks [chunk_start, chunk_stop): random samples per quantile bin, given the
    thresholds ``qbin = sample_thresholds(merged pass-1 partial)``."""
    src = _ChunkSource(_open_store(store), hook)
    _check_range(src, chunk_start, chunk_stop)
    part = SamplePartial.empty(hook, qbin)
    for c, row0, bits in src.chunks(chunk_start, chunk_stop, prefetch):
        part.update(bits, row0, src.context_len, seed)
    part.ranges = [(chunk_start, chunk_stop)] if chunk_stop > chunk_start else []
    return part.canonical()


# ---- turning partial results into index arrays ------------------------------------------------------


def _windows_tokens(tokens: np.ndarray, pos: np.ndarray, context_len: int) -> np.ndarray:
    """int32 [..., W] token ids around each position (same clipping as the kernels' act windows)."""
    offs = np.arange(-schema.CONTEXT_BEFORE, schema.CONTEXT_AFTER + 1)
    q = pos[..., None] + offs  # [..., W]
    ctx = np.where(pos >= 0, pos // context_len, -1)[..., None]
    valid = (pos[..., None] >= 0) & (q >= 0) & (q < tokens.shape[0]) & (q // context_len == ctx)
    out = np.full(q.shape, -1, np.int32)
    out[valid] = tokens[q[valid]]
    return out


def _window_acts(win: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """float16 [..., W] from the kernels' bits, zero for missing entries."""
    acts = win.view(np.float16).copy()
    acts[pos < 0] = 0
    return acts


def _values(keys: np.ndarray, pos: np.ndarray) -> np.ndarray:
    v = kernels.keys_to_f32(np.clip(keys, 0, 65535))
    v[pos < 0] = np.nan
    return v


def _top_tokens(token_sum: np.ndarray, token_count: np.ndarray, t: int, min_count: int):
    """Per neuron the t tokens of highest mean activation among tokens seen >= min_count times.
    token_sum: [V, N]; token_count: [V]. Returns ids int32 [N, t] (-1 pad), means float32, counts int64."""
    V, N = token_sum.shape
    ok = token_count >= min_count  # [V]
    ids = np.flatnonzero(ok)
    out_ids = np.full((N, t), -1, np.int32)
    out_means = np.full((N, t), np.nan, np.float32)
    out_counts = np.zeros((N, t), np.int64)
    if ids.size == 0:
        return out_ids, out_means, out_counts
    m = min(t, ids.size)
    # highest mean first, lower token id on ties (deterministic): a streaming top-m per neuron
    top_ids = np.empty((N, m), np.int64)  # [N, m]
    top_means = np.empty((N, m))  # [N, m] float64
    kernels.top_tokens_by_mean(np.ascontiguousarray(token_sum, dtype=np.float64),
                               np.ascontiguousarray(token_count, dtype=np.int64), ids.astype(np.int64),
                               top_ids, top_means, kernels.ROW_BLOCK)
    out_ids[:, :m] = top_ids
    out_means[:, :m] = top_means
    out_counts[:, :m] = token_count[top_ids]
    return out_ids, out_means, out_counts


def index_arrays(src_tokens: np.ndarray, context_len: int, partial: PartialIndex,
                 samples: SamplePartial) -> dict[str, np.ndarray]:
    """Every index array of schema.INDEX_ARRAYS from the merged partial results (no I/O)."""
    from store import scores

    n = max(partial.n, 1)
    N = partial.n_neurons
    out: dict[str, np.ndarray] = {}
    out["top_values"] = _values(partial.top_key, partial.top_pos)
    out["top_positions"] = partial.top_pos.copy()
    out["top_context_tokens"] = _windows_tokens(src_tokens, partial.top_pos, context_len)
    out["top_context_acts"] = _window_acts(partial.top_win, partial.top_pos)
    out["bottom_values"] = _values(partial.bot_key, partial.bot_pos)
    out["bottom_positions"] = partial.bot_pos.copy()
    out["bottom_context_tokens"] = _windows_tokens(src_tokens, partial.bot_pos, context_len)
    out["bottom_context_acts"] = _window_acts(partial.bot_win, partial.bot_pos)
    edges = kernels.hist_edges()
    out["hist_counts"] = partial.hist.copy()
    out["hist_edges"] = edges
    out["quantile_edges"] = edges[samples.qbin]
    # samples: within a bin, show the highest activation first (empty slots last)
    skey = np.where(samples.pos >= 0, samples.key, -1)
    order = np.lexsort((samples.pos, -skey.astype(np.int64)), axis=-1)
    spos = np.take_along_axis(samples.pos, order, -1)
    out["sample_positions"] = spos
    out["sample_values"] = _values(np.take_along_axis(samples.key, order, -1), spos)
    out["sample_context_tokens"] = _windows_tokens(src_tokens, spos, context_len)
    out["sample_context_acts"] = _window_acts(np.take_along_axis(samples.win, order[..., None], -2), spos)
    with np.errstate(divide="ignore", invalid="ignore"):
        var = partial.m2 / n
        out["mean"] = partial.mean.copy()
        out["var"] = var
        out["skewness"] = np.where(partial.m2 > 0, np.sqrt(n) * partial.m3 / partial.m2**1.5, np.nan)
        out["kurtosis"] = np.where(partial.m2 > 0, n * partial.m4 / partial.m2**2 - 3.0, np.nan)
    out["density"] = (partial.npos / n).astype(np.float32)
    token_sum = partial.token_sum[0] + partial.token_sum[1]  # [V, N]
    token_count = partial.token_count[0] + partial.token_count[1]  # [V]
    out["token_sum"] = token_sum.astype(np.float32)
    out["token_count"] = token_count
    ids, means, counts = _top_tokens(token_sum, token_count, schema.TOP_TOKENS, schema.MIN_TOKEN_COUNT)
    out["top_token_ids"], out["top_token_means"], out["top_token_counts"] = ids, means, counts
    out["token_rule_score"] = scores.token_rule_score(src_tokens, partial.top_pos)
    random_bin = schema.SAMPLE_BINS.index("random")
    out["sim_score"] = scores.sim_score(
        src_tokens, context_len, partial.token_sum, partial.token_count,
        eval_pos=np.concatenate([partial.top_pos, samples.pos[:, random_bin]], 1),
        eval_val=np.concatenate([out["top_values"], _values(samples.key[:, random_bin], samples.pos[:, random_bin])], 1),
        mean_all=partial.mean)
    assert set(out) == set(schema.INDEX_ARRAYS), set(out) ^ set(schema.INDEX_ARRAYS)
    for name, (dtype, _dims) in schema.INDEX_ARRAYS.items():
        out[name] = np.ascontiguousarray(out[name], dtype=dtype)
        assert out[name].shape[0] == (N if _dims[0] == schema.NEURON_DIM else out[name].shape[0])
    return out


# ---- writing into the store (resumable) --------------------------------------------------------------


def _disk_errors(where: str):
    """Context manager: OSError while writing -> StoreError that says what happened and how to go on."""

    class _Guard:
        def __enter__(self):
            return self

        def __exit__(self, et, e, tb):
            if et is None or not issubclass(et, OSError):
                return False
            if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                raise StoreError(f"the disk is full ({e.strerror}) while writing {where}; free some space and run the same "
                                 f"command again: the index resumes from its last saved point") from e
            if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise StoreError(f"cannot write {where} ({e.strerror}); index a store you may write to") from e
            raise StoreError(f"writing {where} failed ({e}); run the same command again to resume") from e

    return _Guard()


def _direct_chunk_jobs(root: Path, arr: zarr.Array, a: np.ndarray) -> list | None:
    """Callables that write every chunk file of the new array ``arr`` with the data ``a`` directly
    (the bytes zarr would write: C-order little-endian chunk padded with the fill value 0 to the full
    chunk shape, zstd-compressed when the array has a zstd codec, then its Crc32c), or None when
    ``arr``'s layout is not one of those (then zarr writes it). Chunked along one axis at most.

    Why: zarr's setitem spends ~1 ms of event-loop overhead per chunk, and an index has ~2800 small
    chunks (2048 neurons, 16 per chunk, 22 arrays): finalize took ~2.5 s of a 9.5 s index_store on a
    512k x 2048 hook, ~1 s now (benchmarks/bench_index.py). Files are written in place: the
    index's ``complete`` attribute (or a state's slot pointer) is written after all of them."""
    from numcodecs import Zstd

    layout = schema.chunk_codec_layout(arr)
    if layout is None or arr.metadata.fill_value != 0:
        return None
    split = [i for i, (cs, n) in enumerate(zip(arr.chunks, a.shape)) if cs < n]
    if len(split) > 1:
        return None
    if a.size == 0:
        return []
    zstd = Zstd(level=arr.metadata.codecs[1].level) if layout == "zstd" else None
    ax = split[0] if split else 0
    cs = arr.chunks[ax] if split else a.shape[0]
    dtype = arr.dtype.newbyteorder("<")
    folder = root / arr.path

    def job(i: int):
        sel = [slice(None)] * a.ndim
        sel[ax] = slice(i * cs, (i + 1) * cs)
        part = a[tuple(sel)]
        if part.shape[ax] < cs:  # the last chunk: stored padded with the fill value
            pad = [(0, 0)] * a.ndim
            pad[ax] = (0, cs - part.shape[ax])
            part = np.pad(part, pad)
        payload = np.ascontiguousarray(part, dtype=dtype).reshape(-1).view(np.uint8)
        if zstd is not None:
            payload = np.frombuffer(zstd.encode(payload), np.uint8)
        with open(files[i], "wb") as fh:
            fh.write(payload.data)
            fh.write(np.uint32(google_crc32c.value(payload)).tobytes())

    files = []
    for i in range(-(-a.shape[ax] // cs) if split else 1):
        coords = [0] * a.ndim
        coords[ax] = i
        files.append(folder / arr.metadata.encode_chunk_key(tuple(coords)))
    for d in {f.parent for f in files}:  # each chunk folder once, before the threads write into them
        d.mkdir(parents=True, exist_ok=True)
    return [lambda i=i: job(i) for i in range(len(files))]


class _IndexGroup:
    """The writable index/{hook} group of a store: final arrays, attrs and the resume state."""

    def __init__(self, path: Path, hook: str, on_checkpoint=None):
        self.path = path
        self.hook = hook
        self.on_checkpoint = on_checkpoint
        self.where = f"the index of {hook} in {path}"
        with _disk_errors(self.where):
            root = zarr.open_group(LocalStore(path), mode="r+")
            self.group = root.require_group(schema.INDEX_GROUP).require_group(hook)

    @property
    def attrs(self) -> dict:
        return dict(self.group.attrs)

    def set_attrs(self, **kv) -> None:
        with _disk_errors(self.where):
            self.group.attrs.update(kv)

    def clear(self) -> None:
        """Remove everything of this hook's index (for --force or a stale index of another recording)."""
        with _disk_errors(self.where):
            root = zarr.open_group(LocalStore(self.path), mode="r+")
            idx = root.require_group(schema.INDEX_GROUP)
            if self.hook in idx:
                del idx[self.hook]
            self.group = idx.require_group(self.hook)

    def _write_arrays(self, group: zarr.Group, arrays: dict[str, np.ndarray], dims: dict[str, tuple],
                      neuron_chunk: int = schema.INDEX_NEURON_CHUNK, raw_floats: bool = False) -> None:
        """Create and fill arrays, chunked along their neuron axis. ``raw_floats``: float arrays get a
        Crc32c checksum only, no zstd (resume state: float64 sums barely compress, and zstd over
        the 2 x vocab x neurons per-token sums made each checkpoint cost seconds)."""
        todo: list = []
        for name, a in arrays.items():
            d = dims[name]
            chunks = list(a.shape)
            if name not in schema.INDEX_WHOLE_ARRAYS and schema.NEURON_DIM in d:
                ax = d.index(schema.NEURON_DIM)
                chunks[ax] = min(neuron_chunk, a.shape[ax])
            chunks = tuple(max(1, c) for c in chunks)
            raw = raw_floats and a.dtype.kind == "f"
            arr = group.create_array(name, shape=a.shape, dtype=a.dtype, chunks=chunks,
                                     compressors=schema.dense_codecs() if raw else schema.codecs(str(a.dtype)),
                                     fill_value=0,
                                     dimension_names=d, config=schema.ARRAY_CONFIG, overwrite=True)
            jobs = _direct_chunk_jobs(Path(self.path), arr, np.asarray(a))
            if jobs is None:
                arr[...] = a
            else:
                todo += jobs
        # the chunk files of every array at once, on a few threads (zstd releases the GIL)
        with ThreadPoolExecutor(max_workers=2) as pool:
            for f in [pool.submit(job) for job in todo]:
                f.result()

    def save_state(self, which: str, part, chunk_stop: int, extra: dict, quick: bool = False) -> None:
        """Save a partial result into the free slot of ``which`` ("p1" / "p2"), then point the
        progress attribute at it (the pointer is written last: a kill leaves the old save valid).
        ``quick``: float arrays uncompressed (periodic checkpoints, soon replaced: ~2x cheaper to
        write); the save at the end of a pass, which the store keeps, is compressed."""
        progress = dict(self.attrs.get("progress") or {})
        old = progress.get(which, {}).get("slot")
        slot = f"{which}_{1 - int(old[-1])}" if old else f"{which}_0"
        with _disk_errors(self.where):
            state = self.group.require_group(schema.INDEX_STATE_GROUP)
            if slot in state:
                del state[slot]
            g = state.create_group(slot)
            arrays = part.arrays()
            n_neurons = part.prio.shape[0] if isinstance(part, SamplePartial) else part.n_neurons
            dims = {n: _state_dims(n, a, n_neurons) for n, a in arrays.items()}
            self._write_arrays(g, arrays, dims, neuron_chunk=256, raw_floats=quick)
            g.attrs.update({"ranges": [list(r) for r in part.ranges], **_scalars(part)})
        progress[which] = {"slot": slot, "chunk_stop": int(chunk_stop), **extra}
        self.set_attrs(progress=progress)
        if self.on_checkpoint is not None:
            self.on_checkpoint(self.hook, which, int(chunk_stop))

    def load_state(self, which: str, cls):
        prog = (self.attrs.get("progress") or {}).get(which)
        if not prog:
            return None, None
        g = self.group[schema.INDEX_STATE_GROUP][prog["slot"]]
        fields = {n: np.asarray(g[n][...]) for n in g.array_keys()}
        scal = dict(g.attrs)
        kwargs = {f.name: fields.get(f.name, scal.get(f.name)) for f in dataclasses.fields(cls)}
        kwargs["ranges"] = [tuple(r) for r in scal["ranges"]]
        return cls(**kwargs), prog

    def prune_state(self) -> None:
        """Delete saved slots no longer referenced (keeps the final pass-1 result: appending tokens
        to a store needs only a partial result of the new chunks merged into it)."""
        keep = {v["slot"] for v in (self.attrs.get("progress") or {}).values()}
        with _disk_errors(self.where):
            if schema.INDEX_STATE_GROUP in self.group:
                state = self.group[schema.INDEX_STATE_GROUP]
                for name in list(state.group_keys()):
                    if name not in keep:
                        del state[name]

    def drop_state(self) -> None:
        with _disk_errors(self.where):
            if schema.INDEX_STATE_GROUP in self.group:
                del self.group[schema.INDEX_STATE_GROUP]
            attrs = self.attrs
            attrs.pop("progress", None)
            self.group.attrs.clear()
            self.group.attrs.update(attrs)


def _state_dims(name: str, a: np.ndarray, n_neurons: int) -> tuple:
    """Dimension names of a saved state array: the neuron axis is the first one of size n_neurons
    (or the last, for token_sum [2, V, N]), so the array is chunked along it."""
    d = [f"d{i}" for i in range(a.ndim)]
    if name != "token_count" and a.ndim:
        if a.shape[0] == n_neurons:
            d[0] = schema.NEURON_DIM
        elif a.shape[-1] == n_neurons:
            d[-1] = schema.NEURON_DIM
    return tuple(d)


def _scalars(part) -> dict:
    return {f.name: getattr(part, f.name) for f in dataclasses.fields(part)
            if isinstance(getattr(part, f.name), (int, str))}


def pass1_result(store, hook: str) -> PartialIndex:
    """The pass-1 result an index keeps in ``index/{hook}/_state`` (top/bottom lists, histogram,
    moments, per-token sums by context parity): what appending tokens merges into, and the input of
    analyses that need the sums behind the index arrays, e.g. ``store.scores.sim_score_all``."""
    st = _open_store(store)
    if hook not in st.hooks:
        raise StoreError(f"{st.path} has no hook {hook!r}; it has {', '.join(st.hooks)}")
    part, prog = _IndexGroup(Path(st.path), hook).load_state("p1", PartialIndex)
    n_chunks = schema.n_chunks(int(st.n_tokens), int(st.chunk_tokens))
    if part is None or prog.get("chunk_stop") != n_chunks:
        raise StoreError(f"{st.path}: {hook} has no finished pass-1 result; run `neurobrowse index {st.path}` first")
    return part


def finalize_index(store, hook: str, partial: PartialIndex, samples: SamplePartial | None = None,
                   seed: int = schema.SAMPLE_SEED) -> dict:
    """Write ``index/{hook}/...`` (schema.INDEX_ARRAYS) from a pass-1 partial result covering the
    whole store, running pass 2 here when ``samples`` is not given. The ``complete`` attribute is
    written last. Returns a summary dict."""
    st = _open_store(store)
    src = _ChunkSource(st, hook)
    if partial.ranges != [(0, src.n_chunks)]:
        raise StoreError(f"the partial index of {hook} covers chunks {partial.ranges}, not all of "
                         f"0..{src.n_chunks}; merge the missing ranges first")
    if samples is None:
        samples = compute_sample_partial(st, hook, 0, src.n_chunks, sample_thresholds(partial), seed)
    if samples.ranges != [(0, src.n_chunks)]:
        raise StoreError(f"the samples of {hook} cover chunks {samples.ranges}, not all of 0..{src.n_chunks}")
    tokens = src.tokens()
    arrays = index_arrays(tokens, src.context_len, partial, samples)
    grp = _IndexGroup(Path(st.path), hook)
    grp.set_attrs(complete=False)
    with _disk_errors(grp.where):
        grp._write_arrays(grp.group, arrays, {n: d for n, (_t, d) in schema.INDEX_ARRAYS.items()})
    grp.set_attrs(**_index_attrs(st, partial, seed), complete=True)
    explain.explain_hook(st, hook, arrays, tokens)
    return {"hook": hook, "n_tokens": int(partial.n), "k": partial.k, "n_neurons": partial.n_neurons,
            "token_rule_score_mean": float(np.nanmean(arrays["token_rule_score"])),
            "sim_score_mean": float(np.nanmean(arrays["sim_score"])) if np.isfinite(arrays["sim_score"]).any() else float("nan")}


def _index_attrs(st, partial: PartialIndex, seed: int) -> dict:
    return {
        "k": partial.k, "n_tokens": int(partial.n), "run_uuid": st.run_uuid,
        "sample_bins": list(schema.SAMPLE_BINS), "sample_quantiles": list(schema.SAMPLE_QUANTILES),
        "samples_per_bin": schema.SAMPLES_PER_BIN, "seed": seed, "min_token_count": schema.MIN_TOKEN_COUNT,
        "context_before": schema.CONTEXT_BEFORE, "context_after": schema.CONTEXT_AFTER,
        "histogram": f"float16 bit-pattern bins: {kernels.HIST_BINS} bins, 16 per octave (see store/kernels.py)",
    }


# ---- the resumable driver ---------------------------------------------------------------------------


class _Stopped(Exception):
    """Raised by the testing aid ``stop_after_chunks`` (behaves like a kill after a save)."""


def _run_pass(src: _ChunkSource, grp: _IndexGroup, which: str, part, start: int, cfg: IndexConfig,
              step, bar, budget: list) -> object:
    """Stream chunks start..n_chunks into ``part`` with ``step(part, c, row0, bits)``, saving the
    running result every cfg.checkpoint_every_s seconds and at the end."""
    last_save = time.monotonic()
    mb_per_chunk = src.ct * src.n_neurons * 2 / 1e6
    t0 = time.monotonic()
    done_mb = 0.0
    for c, row0, bits in src.chunks(start, src.n_chunks, cfg.prefetch):
        step(part, c, row0, bits)
        part.ranges = [(0, c + 1)]
        done_mb += bits.size * 2 / 1e6
        if bar is not None:
            bar.update(bits.shape[0])
            bar.set_postfix_str(f"{done_mb / max(time.monotonic() - t0, 1e-9):.0f} MB/s", refresh=False)
        if budget[0] is not None:
            budget[0] -= 1
            if budget[0] <= 0:
                grp.save_state(which, part.canonical(), c + 1, {}, quick=True)
                raise _Stopped()
        if c + 1 < src.n_chunks and time.monotonic() - last_save >= cfg.checkpoint_every_s:
            grp.save_state(which, part.canonical(), c + 1, {}, quick=True)
            last_save = time.monotonic()
    del mb_per_chunk
    part.canonical()
    grp.save_state(which, part, src.n_chunks, {})
    return part


def index_hook(st, hook: str, cfg: IndexConfig, force: bool = False, progress: bool = True,
               budget: list | None = None) -> dict:
    """Index one hook of an open Store, resuming a previous run when one was interrupted."""
    budget = budget if budget is not None else [cfg.stop_after_chunks]
    src = _ChunkSource(st, hook)
    grp = _IndexGroup(Path(st.path), hook, cfg.on_checkpoint)
    attrs = grp.attrs
    stale = attrs and (attrs.get("run_uuid_indexing", st.run_uuid) != st.run_uuid
                       or attrs.get("k_indexing", cfg.k) != cfg.k or attrs.get("seed_indexing", cfg.seed) != cfg.seed)
    if force or stale:
        grp.clear()
        attrs = {}
    if attrs.get("complete") and not force:
        if not explain.is_explained(st, hook):  # an index from before explanations: add them
            explain.explain_hook(st, hook)
            return {"hook": hook, "skipped": True, "reason": "already indexed; added the rule explanations"}
        return {"hook": hook, "skipped": True, "reason": "already indexed (use --force to redo)"}
    grp.set_attrs(run_uuid_indexing=st.run_uuid, k_indexing=cfg.k, seed_indexing=cfg.seed, complete=False)
    tokens = src.tokens()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=2 * src.n_chunks * src.ct if src.n_chunks else 0, unit="tok", unit_scale=True,
                   desc=hook, dynamic_ncols=True)
    def resume_pass(which: str, label: str, cls, fresh, fits, step):
        """Continue ``which`` from its saved state (or from ``fresh()`` when there is none or it
        does not ``fits``) over the chunks it has not seen yet."""
        part, prog = grp.load_state(which, cls)
        start = prog["chunk_stop"] if part is not None else 0
        if part is None or not fits(part):
            part, start = fresh(), 0
        if bar is not None:
            bar.set_description(f"{hook} {label}")
            bar.update(min(start * src.ct, src.n_tokens))
        if start < src.n_chunks or prog is None:
            part = _run_pass(src, grp, which, part, start, cfg, step, bar, budget)
        return part

    try:
        p1 = resume_pass("p1", "pass 1/2", PartialIndex,
                         lambda: PartialIndex.empty(hook, cfg.k, src.n_neurons, src.vocab), lambda part: True,
                         lambda part, c, row0, bits: part.update(bits, tokens[row0:row0 + bits.shape[0]], row0,
                                                                 src.context_len))
        # pass 2 samples within the quantile bins of the finished pass 1: a saved state counts only
        # if it was drawn with the same bins
        qbin = sample_thresholds(p1)
        p2 = resume_pass("p2", "pass 2/2", SamplePartial, lambda: SamplePartial.empty(hook, qbin),
                         lambda part: np.array_equal(part.qbin, qbin),
                         lambda part, c, row0, bits: part.update(bits, row0, src.context_len, cfg.seed))
    finally:
        if bar is not None:
            bar.close()
    summary = finalize_index(st, hook, p1, p2, cfg.seed)
    grp.prune_state()
    return summary


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


def index_store(path, *, hooks: list[str] | None = None, k: int = schema.DEFAULT_K, force: bool = False,
                progress: bool = True, config: IndexConfig | None = None) -> dict:
    """Index every (or the named) hook of the store at ``path``; resumable; returns a summary per hook.

    Refuses an incomplete store (the recording must finish first) and a store of another schema
    version (Store.open). ``force`` drops any existing index of those hooks and starts again.
    """
    cfg = dataclasses.replace(config or IndexConfig(), k=k)
    if cfg.k < 1:
        raise StoreError(f"--k must be at least 1 (got {cfg.k})")
    st = _open_store(path)
    wanted = indexable_hooks(st, hooks)
    budget = [cfg.stop_after_chunks]
    out = {}
    for hook in wanted:
        try:
            out[hook] = index_hook(st, hook, cfg, force=force, progress=progress, budget=budget)
        except _Stopped:
            out[hook] = {"hook": hook, "stopped": True}
            break
    return out


__all__ = [
    "IndexConfig", "PartialIndex", "SamplePartial", "compute_partial", "merge_partials",
    "compute_sample_partial", "merge_sample_partials", "sample_thresholds", "finalize_index",
    "index_arrays", "index_hook", "index_store", "NeurobrowseError",
]
