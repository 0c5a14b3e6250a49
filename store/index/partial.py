"""Pass-1 partial results: pure, picklable and exactly mergeable.

A ``PartialIndex`` holds the pass-1 statistics of one hook over a set of chunk ranges: top-k and
bottom-k (values, positions and this neuron's activations in the window around each), a histogram
with data-independent bins (the float16 bit pattern), moments (count, mean, M2, M3, M4), a density
count and per-token activation sums (split by context parity for the token lookup correlation).
``PartialIndex.update(bits, tokens, row0, context_len)`` folds in one chunk from anywhere (a store,
a recorder); ``merge_partials`` combines two disjoint ranges: top/bottom lists under one total order
(key, then lower position), integer counts, moments by the Chan/Pebay parallel formulas (exact up to
float rounding). The random samples are in ``store.index.samples`` (pass 2's, per quantile bin) and
``store.index.unit_samples`` (drawn in pass 1's read, per unit).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from store import schema
from store.index.kernels import ROW_BLOCK
from store.index.kernels.f16 import F16_TO_F32, f16_keys_np
from store.index.kernels.histogram import HIST_BINS, HIST_SHIFT, fold_key_blocks
from store.index.kernels.pass1 import ChunkRows, DistinctList, Pass1Sums, RankedList, TokenGroups, pass1_rows
from store.index.kernels.topk import worst_slots
from store.index import folded_means
from store.index.blocks import run_blocks


WINDOW = schema.CONTEXT_BEFORE + 1 + schema.CONTEXT_AFTER
_TOP_EMPTY = -1  # key of an empty top slot (below every real key)
_BOT_EMPTY = 65536  # key of an empty bottom slot (above every real key)


# a value counts for the density when its float16 order key is above this one
_DENS_KEY = int(f16_keys_np(np.array([schema.DENSITY_THRESHOLD], np.float16).view(np.uint16))[0])


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
    # activation sums per current token, by context parity, for the T tokens seen so far (row r is token
    # token_ids[r]; rows in order of first sight, a chunk's new tokens by ascending id): float32, each
    # chunk summed in float64 and rounded once when added. The table dominates a hook's memory (2 x
    # vocab x neurons at most), so it grows with the tokens seen, in place: a view of a table reserved
    # for the whole vocabulary whose unused rows are never touched (no memory behind them)
    token_sum: np.ndarray  # float32 [2, T, N]
    token_count: np.ndarray  # int64 [2, V] token occurrences, by context parity
    # distinct passages: the best (dtop) and lowest (dbot) firing of each context, k of each per neuron
    # (kernels.pass1.pass1_rows), same order and tie rule as the raw lists, with the count of further
    # firings in that context
    dtop_key: np.ndarray  # int32 [N, k]
    dtop_pos: np.ndarray  # int64 [N, k]
    dtop_win: np.ndarray  # uint16 [N, k, W]
    dtop_more: np.ndarray  # int32 [N, k]
    dbot_key: np.ndarray  # int32 [N, k]
    dbot_pos: np.ndarray  # int64 [N, k]
    dbot_win: np.ndarray  # uint16 [N, k, W]
    dbot_more: np.ndarray  # int32 [N, k]
    before: int = schema.CONTEXT_BEFORE  # window tokens before a firing (W = before + 1 + after)
    after: int = schema.CONTEXT_AFTER
    token_ids: np.ndarray | None = None  # int32 [T] token id of each row of token_sum (None: saved by older
    # versions, a row per token id)
    # bounded per-token sums (``token_rows_max`` > 0, ``record --index --token-rows``): token_sum holds at most
    # that many rows, exact float32 sums as above; when a chunk brings tokens that do not fit, the rows used
    # longest ago (by no token of the chunk) are folded into ``token_cold``: float16 means per (parity, folded
    # token, neuron) of the sums folded so far, over ``token_cold_count`` values; its rows are in order of first
    # fold (``token_cold_ids``), so the memory written is contiguous (numpy asks for huge pages: rows scattered
    # over a [2, V, N] table by token id made it all resident). A token that is never evicted (the
    # frequent ones) keeps its exact sums; each eviction rounds a token's folded mean once to float16 (error
    # measured by benchmarks/bench_record_index.py --parts token-rows, docs/speed.md). 0: a row for every token.
    # ``record --index`` keeps token_cold in a temporary file, not in memory (``spill_folded_means``).
    token_rows_max: int = 0
    token_cold: np.ndarray | None = None  # uint16 [2, C, N] float16 bits of the folded means; None: nothing folded
    token_cold_count: np.ndarray | None = None  # int64 [2, C] values folded into each row of token_cold
    token_cold_ids: np.ndarray | None = None  # int32 [C] the token id of each row of token_cold
    token_used: np.ndarray | None = None  # int64 [T] token position (n) of the last chunk each row's token was in

    @classmethod
    def empty(cls, hook: str, k: int, n_neurons: int, vocab: int,
              window: tuple[int, int] = (schema.CONTEXT_BEFORE, schema.CONTEXT_AFTER),
              token_rows: int = 0) -> "PartialIndex":
        N = n_neurons
        W = window[0] + 1 + window[1]
        return cls(
            hook=hook, k=k, ranges=[], n=0,
            top_key=np.full((N, k), _TOP_EMPTY, np.int32), top_pos=np.full((N, k), -1, np.int64),
            top_win=np.zeros((N, k, W), np.uint16),
            bot_key=np.full((N, k), _BOT_EMPTY, np.int32), bot_pos=np.full((N, k), -1, np.int64),
            bot_win=np.zeros((N, k, W), np.uint16),
            hist=np.zeros((N, HIST_BINS), np.int64), npos=np.zeros(N, np.int64),
            mean=np.zeros(N), m2=np.zeros(N), m3=np.zeros(N), m4=np.zeros(N),
            token_sum=np.zeros((2, 0, N), np.float32), token_count=np.zeros((2, vocab), np.int64),
            dtop_key=np.full((N, k), _TOP_EMPTY, np.int32), dtop_pos=np.full((N, k), -1, np.int64),
            dtop_win=np.zeros((N, k, W), np.uint16), dtop_more=np.zeros((N, k), np.int32),
            dbot_key=np.full((N, k), _BOT_EMPTY, np.int32), dbot_pos=np.full((N, k), -1, np.int64),
            dbot_win=np.zeros((N, k, W), np.uint16), dbot_more=np.zeros((N, k), np.int32),
            before=int(window[0]), after=int(window[1]), token_ids=np.zeros(0, np.int32),
            token_rows_max=int(token_rows) if 0 < int(token_rows) < vocab else 0,
        )

    def __post_init__(self):
        """Put the per-token sums into a table reserved for the whole vocabulary (see ``token_sum``)."""
        if self.token_sum is None:
            return
        V, N = self.token_count.shape[1], self.token_sum.shape[-1]
        sums = self.token_sum
        if self.token_ids is None:  # saved by older versions: a row per token id; keep the seen ones
            self.token_ids = np.flatnonzero(self.token_count.sum(0) > 0)
            sums = sums[:, self.token_ids]
        self.token_ids = np.ascontiguousarray(self.token_ids, dtype=np.int32)
        T = self.token_ids.size
        cap = max(int(self.token_rows_max), T) if self.token_rows_max else V  # a chunk may need more (_rows_for)
        if self.token_rows_max:
            used = self.token_used
            self.token_used = (np.zeros(T, np.int64) if used is None
                               else np.ascontiguousarray(used, dtype=np.int64).copy())
        self._cold_row_of = np.full(V, -1, np.int64)
        if self.token_cold is not None:  # a table reserved for the whole vocabulary, as token_sum's
            C = int(self.token_cold_ids.size)
            cold = folded_means.new_table(V, N, self.__dict__.get("_spill_dir"))
            cold[:, :C] = self.token_cold
            self._cold_reserve, self.token_cold = cold, cold[:, :C]
            self.token_cold_ids = np.ascontiguousarray(self.token_cold_ids, dtype=np.int32)
            self.token_cold_count = np.ascontiguousarray(self.token_cold_count, dtype=np.int64).copy()
            self._cold_row_of[self.token_cold_ids] = np.arange(C)
        base = sums.base
        if (isinstance(base, np.ndarray) and base.shape == (2, cap, N) and base.dtype == np.float32
                and sums.shape[1] == T):
            self._reserve = base  # already a view of such a table (merge_partials builds it so)
        else:
            self._reserve = np.zeros((2, cap, N), np.float32)  # zero pages: memory only for the rows written
            self._reserve[:, :T] = sums
        self.token_sum = self._reserve[:, :T]
        self._row_of = np.full(V, -1, np.int64)
        self._row_of[self.token_ids] = np.arange(T)

    def __getstate__(self) -> dict:
        """Pickled (Dask ships partials between processes): the fields, in canonical form, with only the
        seen rows of the per-token sums (not the table reserved behind them)."""
        self.canonical()
        state = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        state["token_sum"] = np.ascontiguousarray(self.token_sum)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.__post_init__()

    @property
    def token_table(self) -> np.ndarray:
        """float32 [2, V, N] (bounded: [2, >= token_rows_max, N]) the C-contiguous table token_sum is the first T
        rows of (rows past T are zero and never written): what the kernels index by row, so they compile for a
        contiguous layout (a strided [2, T, N] view ran them ~1.5x slower)."""
        return self._reserve

    @property
    def token_rows(self) -> np.ndarray:
        """int64 [V] the row of token_sum of each token id, -1 for a token not seen."""
        return self._row_of

    def token_sums_by_id(self) -> np.ndarray:
        """float64 [2, V, N] the per-token sums with a row per token id (zeros for tokens not seen): the
        whole table, for checks and small analyses."""
        full = self.full_token_sums()
        out = np.zeros((2, full.token_count.shape[1], full.n_neurons))
        out[:, full.token_ids] = full.token_sum
        return out

    @property
    def token_folded(self) -> int:
        """How many (parity, token) values were folded into the float16 means (0: every sum is exact)."""
        return 0 if self.token_cold_count is None else int(self.token_cold_count.sum())

    def full_token_sums(self) -> "PartialIndex":
        """This partial with a float32 row per token seen (what finalize reads): itself when no row was
        ever folded (bounded or not: the sums are exact), else a copy whose rows add the exact sums kept
        and the folded means times their counts (in float64, rounded once to float32), in ascending id
        order, unbounded. Built in blocks of tokens: no float64 table of the whole vocabulary."""
        if not self.token_folded:
            return self
        V, N = self.token_count.shape[1], self.n_neurons
        ids = np.flatnonzero(self.token_count.sum(0) > 0).astype(np.int32)
        table = np.zeros((2, V, N), np.float32)
        hot, cold = self._row_of[ids], self._cold_row_of[ids]  # -1: only folded / never folded
        for i0 in range(0, ids.size, 1024):
            folded_means.release_pages(self._cold_reserve)  # a file-backed table: the last block's pages go back
            sl = slice(i0, i0 + 1024)
            h, c = hot[sl], cold[sl]
            for p in range(2):
                acc = np.zeros((h.size, N))
                has = c >= 0
                acc[has] = (F16_TO_F32[self.token_cold[p, c[has]]].astype(np.float64)
                            * self.token_cold_count[p, c[has]][:, None])
                has = h >= 0
                acc[has] += self._reserve[p, h[has]]
                table[p, i0:i0 + h.size] = acc
        folded_means.release_pages(self._cold_reserve)
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        fields.update(token_sum=table[:, :ids.size], token_ids=ids, token_rows_max=0, token_cold=None,
                      token_cold_count=None, token_cold_ids=None, token_used=None)
        return PartialIndex(**fields)

    def release_token_sums(self) -> None:
        """Drop the per-token tables (after ``full_token_sums`` made the rows finalize reads): their memory goes
        before the next hook's is made. The partial cannot be updated or merged any more."""
        self._reserve = self._cold_reserve = self.token_sum = self.token_cold = None

    def _fold_rows(self, rows: np.ndarray) -> None:
        """Fold the exact sums of token_sum's rows ``rows`` into the float16 means (``token_cold``) and zero
        them: the mean over the values folded before and the ones of these rows (token_count less what
        was folded: the rows' values; the current chunk's are not counted yet)."""
        V, N = self.token_count.shape[1], self.n_neurons
        if self.token_cold is None:
            # zero pages until written (float16 +0), in memory or in a file (spill_folded_means)
            self._cold_reserve = folded_means.new_table(V, N, self.__dict__.get("_spill_dir"))
            self.token_cold = self._cold_reserve[:, :0]
            self.token_cold_count = np.zeros((2, 0), np.int64)
            self.token_cold_ids = np.zeros(0, np.int32)
        t = self.token_ids[rows].astype(np.int64)
        new = t[self._cold_row_of[t] < 0]  # first fold of these tokens: rows after the last, in this order
        if new.size:
            C = self.token_cold_ids.size
            self._cold_row_of[new] = np.arange(C, C + new.size)
            self.token_cold_ids = np.concatenate([self.token_cold_ids, new.astype(np.int32)])
            self.token_cold_count = np.concatenate([self.token_cold_count, np.zeros((2, new.size), np.int64)], 1)
            self.token_cold = self._cold_reserve[:, :C + new.size]
        c = self._cold_row_of[t]
        for p in range(2):
            n_old = self.token_cold_count[p, c]
            n_hot = self.token_count[p, t] - self._folded_count(p, t)
            n_new = n_old + n_hot
            fold = n_hot > 0
            if not fold.any():
                continue
            cf, rf = c[fold], rows[fold]
            total = (F16_TO_F32[self.token_cold[p, cf]].astype(np.float64) * n_old[fold][:, None]
                     + self._reserve[p, rf])
            self.token_cold[p, cf] = (total / n_new[fold][:, None]).astype(np.float16).view(np.uint16)
            self.token_cold_count[p, cf] = n_new[fold]
        self._reserve[:, rows] = 0.0

    def spill_folded_means(self, folder) -> None:
        """Keep the folded float16 means (``token_cold``) in an unlinked temporary file in ``folder`` from now on
        (store.index.folded_means: memory-mapped, its pages handed back to the page cache after every
        ``update``), not in memory: the same values bit for bit. Moves a table folded so far there."""
        self._spill_dir = str(folder)
        if self.token_cold is not None and folded_means.file_mapping(self._cold_reserve) is None:
            C = int(self.token_cold_ids.size)
            cold = folded_means.new_table(self.token_count.shape[1], self.n_neurons, self._spill_dir)
            cold[:, :C] = self.token_cold
            self._cold_reserve, self.token_cold = cold, cold[:, :C]
            folded_means.release_pages(cold)

    def release_folded_pages(self) -> None:
        """Hand the pages of a file-backed folded-means table this process touched (an update, a save of the
        state) back to the page cache; nothing for a table in memory."""
        folded_means.release_pages(self.__dict__.get("_cold_reserve"))

    def _folded_count(self, p: int, t: np.ndarray) -> np.ndarray:
        """int64 values of parity p folded so far for each token id of ``t`` (0 where never folded)."""
        c = self._cold_row_of[t]
        out = np.zeros(t.shape, np.int64)
        if self.token_cold_count is not None:
            out[c >= 0] = self.token_cold_count[p, c[c >= 0]]
        return out

    def _rows_for(self, ids: np.ndarray) -> np.ndarray:
        """int64 rows of token_sum of the token ids ``ids``, giving rows to tokens not seen before (in
        ascending id order, after the last row). Bounded (token_rows_max): when the new tokens do not
        fit, the rows last used longest ago (lowest row first on ties) by tokens not in ``ids`` are
        folded (``_fold_rows``) and given to them."""
        new = np.unique(ids[self._row_of[ids] < 0])
        T = self.token_ids.size
        bounded = bool(self.token_rows_max)
        if new.size and bounded and T + new.size > self._reserve.shape[1]:
            distinct = np.unique(ids).size
            if distinct > self._reserve.shape[1]:  # a chunk with more distinct tokens than the bound: more rows
                grown = np.zeros((2, distinct, self.n_neurons), np.float32)
                grown[:, :T] = self._reserve[:, :T]
                self._reserve = grown
                self.token_sum = grown[:, :T]
        if new.size and bounded and T + new.size > self._reserve.shape[1]:
            need = T + new.size - self._reserve.shape[1]
            busy = np.zeros(T, bool)
            busy[self._row_of[ids[self._row_of[ids] >= 0]]] = True
            free = np.flatnonzero(~busy)  # at least `need`: the chunk's distinct tokens fit
            victims = free[np.lexsort((free, self.token_used[free]))[:need]]
            victims.sort()
            self._fold_rows(victims)
            self._row_of[self.token_ids[victims]] = -1
            reuse, extra = new[:need], new[need:]
            self.token_ids[victims] = reuse
            self._row_of[reuse] = victims
            self.token_used[victims] = self.n
            new = extra
        if new.size:
            T = self.token_ids.size
            self._row_of[new] = np.arange(T, T + new.size)
            self.token_ids = np.concatenate([self.token_ids, new.astype(np.int32)])
            self.token_sum = self._reserve[:, :T + new.size]
            if bounded:
                self.token_used = np.concatenate([self.token_used, np.full(new.size, self.n, np.int64)])
        rows = self._row_of[ids]
        if bounded:
            self.token_used[rows] = self.n
        return rows

    @property
    def n_neurons(self) -> int:
        return self.top_key.shape[0]

    def arrays(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if isinstance(getattr(self, f.name), np.ndarray)}

    def update(self, bits: np.ndarray, tokens: np.ndarray, row0: int, context_len: int) -> None:
        """Fold one chunk into this partial (in place). bits: uint16 [R, N]; tokens: int32 [R]."""
        R, N = bits.shape
        top_worst, bot_worst = _worst_slots(self, "top", "bot")
        dtop_worst, dbot_worst = _worst_slots(self, "dtop", "dbot")
        sums = np.zeros((N, 6))  # shift (first value, keeps the power sums small), power sums 1..4, density
        parity = ((row0 + np.arange(R)) // context_len) & 1  # [R]
        tokens = np.ascontiguousarray(tokens, dtype=np.int32)
        V = self.token_count.shape[1]
        # the chunk's distinct (parity, token) pairs, ascending, and each row's index among them (a
        # count over the 2 x V pairs: cheaper than sorting the rows)
        pair = parity * V + tokens  # [R]
        gcount = np.bincount(pair, minlength=2 * V)  # [2V]
        gkey = np.flatnonzero(gcount)  # [G]
        lut = np.empty(2 * V, np.int32)
        lut[gkey] = np.arange(gkey.size, dtype=np.int32)
        grp = lut[pair]  # [R]
        bits = np.ascontiguousarray(bits)
        hkb, gpar, grow = self._key_block_counts(R), gkey // V, self._rows_for(gkey % V)

        chunk = ChunkRows(bits, row0, context_len, self.before)
        top = RankedList(self.top_key, self.top_pos, self.top_win, top_worst)
        bot = RankedList(self.bot_key, self.bot_pos, self.bot_win, bot_worst)
        dtop = DistinctList(self.dtop_key, self.dtop_pos, self.dtop_win, self.dtop_more, dtop_worst)
        dbot = DistinctList(self.dbot_key, self.dbot_pos, self.dbot_win, self.dbot_more, dbot_worst)
        groups = TokenGroups(grp, gpar, grow)
        acc = Pass1Sums(hkb, sums, self._reserve, _DENS_KEY)

        def blocks(b0, b1):
            pass1_rows(chunk, top, bot, dtop, dbot, groups, acc, ROW_BLOCK, b0, b1)

        run_blocks(blocks, hkb.shape[0])
        self.release_folded_pages()  # what this chunk's folds touched (file-backed means only)
        self.npos += sums[:, 5].astype(np.int64)
        shift, sums = sums[:, 0], sums[:, 1:5].T  # [N], [4, N]
        self.token_count += gcount.reshape(2, V)
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
            fold_key_blocks(hkb, self.hist)
            self._hkb_rows = 0
            if hkb.dtype != dtype:
                hkb = None
        if hkb is None:
            nb = -(-self.n_neurons // ROW_BLOCK)
            hkb = self._hkb = np.zeros((nb, 1 << (16 - HIST_SHIFT), ROW_BLOCK), dtype)
            self._hkb_rows = 0
        self._hkb_rows += rows
        return hkb

    def canonical(self) -> "PartialIndex":
        """Sort the top and bottom lists best first and fold the pending histogram counts into
        ``hist`` (in place); returns self."""
        hkb = self.__dict__.pop("_hkb", None)
        if hkb is not None:
            fold_key_blocks(hkb, self.hist)
        _drop_worst_slots(self)
        self.top_key, self.top_pos, self.top_win = _sorted_lists(self.top_key, self.top_pos, self.top_win, True)
        self.bot_key, self.bot_pos, self.bot_win = _sorted_lists(self.bot_key, self.bot_pos, self.bot_win, False)
        self.dtop_key, self.dtop_pos, self.dtop_win, self.dtop_more = _sorted_lists(
            self.dtop_key, self.dtop_pos, self.dtop_win, True, self.dtop_more)
        self.dbot_key, self.dbot_pos, self.dbot_win, self.dbot_more = _sorted_lists(
            self.dbot_key, self.dbot_pos, self.dbot_win, False, self.dbot_more)
        return self


def _worst_slots(part, top: str, bot: str) -> tuple[np.ndarray, np.ndarray]:
    """The replace-next slots (int32 [N] each) of the lists ``{top}_key/_pos`` and ``{bot}_key/_pos``
    of ``part``. The kernels keep them up to date as they insert, so they are kept from chunk to
    chunk (not dataclass fields: never saved or merged) and found again only when the lists are
    other arrays (``canonical`` sorted them; a load or a merge made them)."""
    arrays = tuple(getattr(part, n) for n in (f"{top}_key", f"{top}_pos", f"{bot}_key", f"{bot}_pos"))
    cached = part.__dict__.get(f"_worst_{top}")
    if cached is None or any(a is not b for a, b in zip(cached[0], arrays)):
        N = arrays[0].shape[0]
        tw, bw = np.empty(N, np.int32), np.empty(N, np.int32)
        worst_slots(*arrays, tw, bw)
        cached = part.__dict__[f"_worst_{top}"] = (arrays, (tw, bw))
    return cached[1]


def _drop_worst_slots(part) -> None:
    """Forget the kept replace-next slots (before the lists are reordered)."""
    for name in [n for n in part.__dict__ if n.startswith("_worst_")]:
        del part.__dict__[name]


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


def _sorted_lists(key, pos, win, top: bool, more=None):
    """Order each neuron's list best first: top by (key desc, pos asc), bottom by (key asc, pos asc).
    Empty slots (pos -1) sort last. ``more`` (the distinct lists' counts) travels with its entries."""
    empty = pos < 0
    primary = np.where(empty, np.iinfo(np.int64).max, -key.astype(np.int64) if top else key.astype(np.int64))
    order = np.lexsort((np.where(empty, 0, pos), primary), axis=-1)  # [N, m]
    out = (np.take_along_axis(key, order, 1), np.take_along_axis(pos, order, 1),
           np.take_along_axis(win, order[:, :, None], 1))
    return out if more is None else out + (np.take_along_axis(more, order, 1),)


def _merge_ranges(a: list, b: list) -> list:
    out = sorted([tuple(r) for r in a] + [tuple(r) for r in b])
    for (s0, e0), (s1, e1) in zip(out, out[1:]):
        if s1 < e0:
            raise ValueError(f"partial results overlap: chunks [{s0}, {e0}) and [{s1}, {e1}) "
                             "(merge disjoint ranges only)")
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
    if (a.hook != b.hook or a.k != b.k or a.top_win.shape != b.top_win.shape
            or a.token_count.shape != b.token_count.shape or (a.before, a.after) != (b.before, b.after)):
        raise ValueError(f"cannot merge partial results of {a.hook} (k={a.k}, window {a.before},{a.after}) and "
                         f"{b.hook} (k={b.k}, window {b.before},{b.after}) of other shapes")
    first, second = (a, b) if (a.ranges or [(0, 0)])[0] <= (b.ranges or [(0, 0)])[0] else (b, a)
    first, second = first.full_token_sums(), second.full_token_sums()  # folded means: float32 rows again
    k = a.k
    tk, tp, tw = _sorted_lists(np.concatenate([first.top_key, second.top_key], 1),
                               np.concatenate([first.top_pos, second.top_pos], 1),
                               np.concatenate([first.top_win, second.top_win], 1), True)
    bk, bp, bw = _sorted_lists(np.concatenate([first.bot_key, second.bot_key], 1),
                               np.concatenate([first.bot_pos, second.bot_pos], 1),
                               np.concatenate([first.bot_win, second.bot_win], 1), False)
    n, mean, m2, m3, m4 = _merge_moments((first.n, first.mean, first.m2, first.m3, first.m4),
                                         (second.n, second.mean, second.m2, second.m3, second.m4))
    # contexts never straddle a chunk, so each context's entry is in one of the two: the same merge
    d = {}
    for side, top in (("dtop", True), ("dbot", False)):
        both = {f: np.concatenate([getattr(first, f"{side}_{f}"), getattr(second, f"{side}_{f}")], 1)
                for f in ("key", "pos", "win", "more")}
        key, pos, win, more = _sorted_lists(both["key"], both["pos"], both["win"], top, both["more"])
        d.update({f"{side}_key": key[:, :k], f"{side}_pos": pos[:, :k], f"{side}_win": win[:, :k],
                  f"{side}_more": more[:, :k]})
    d = {name: np.ascontiguousarray(v) for name, v in d.items()}
    token_ids, token_sum = _merge_token_rows(first, second)
    return PartialIndex(
        hook=a.hook, k=k, ranges=_merge_ranges(a.ranges, b.ranges), n=n,
        top_key=np.ascontiguousarray(tk[:, :k]), top_pos=np.ascontiguousarray(tp[:, :k]),
        top_win=np.ascontiguousarray(tw[:, :k]),
        bot_key=np.ascontiguousarray(bk[:, :k]), bot_pos=np.ascontiguousarray(bp[:, :k]),
        bot_win=np.ascontiguousarray(bw[:, :k]),
        hist=first.hist + second.hist, npos=first.npos + second.npos,
        mean=mean, m2=m2, m3=m3, m4=m4,
        token_sum=token_sum, token_count=first.token_count + second.token_count,
        **d, before=a.before, after=a.after, token_ids=token_ids,
    )


def _merge_token_rows(first: PartialIndex, second: PartialIndex) -> tuple[np.ndarray, np.ndarray]:
    """(token_ids, token_sum) of the union: the first's rows, then the second's tokens the first has not
    seen (in the second's row order: for adjacent ranges the order one pass over both makes), written
    into a new table reserved for the whole vocabulary (see PartialIndex.token_sum)."""
    new = second.token_ids[first.token_rows[second.token_ids] < 0]
    ids = np.concatenate([first.token_ids, new]).astype(np.int32)
    V, N = first.token_count.shape[1], first.n_neurons
    reserve = np.zeros((2, V, N), np.float32)
    sums = reserve[:, :ids.size]
    sums[:, :first.token_ids.size] = first.token_sum
    row_of = np.full(V, -1, np.int64)
    row_of[ids] = np.arange(ids.size)
    sums[:, row_of[second.token_ids]] += second.token_sum  # each row once: the second's ids are distinct
    return ids, sums


__all__ = ["WINDOW", "PartialIndex", "merge_partials"]
