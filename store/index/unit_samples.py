"""Samples drawn in pass 1's read, before the quantile edges are known: ``UnitSamples`` per (neuron, unit),
resolved into pass 2's samples (``SamplePartial``) once the whole histogram is known."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from store import schema
from store.index.kernels import ROW_BLOCK
from store.index.kernels.histogram import HIST_BINS, HIST_OFFSET, HIST_SHIFT, fold_key_blocks, key_block_counts
from store.index.kernels.sample_rows import unit_key_blocks, unit_sample_rows
from store.index.blocks import run_blocks
from store.index.partial import _merge_ranges
from store.index.samples import (
    N_QUANTILE_BINS,
    SamplePartial,
    _SampleArrays,
    _sample_slots,
    hist_thresholds,
    lowest_priorities,
)


# ---- samples in the same read as pass 1 ---------------------------------------------------------------
# The quantile bins are known only once the whole histogram is, but the samples of a bin are the S
# lowest priorities among its values, and the S lowest of a union are the S lowest of the parts' S
# lowest. So pass 1 keeps samples per *unit*: every histogram bin within UNIT_RADIUS bins of a
# provisional quantile edge (from a first look at the data) is a unit of its own, and each run of
# bins between those is one unit. When every final quantile edge starts a unit (it moved less than
# UNIT_RADIUS bins), each quantile bin is a union of units and ``UnitSamples.resolve`` gives pass 2's
# samples exactly; otherwise the neuron is reported inexact (the store indexer then reads the store
# once more for it, see store.index.run).
UNIT_RADIUS = 5  # histogram bins (16 per octave) tracked one by one on each side of a provisional edge
N_UNITS = len(schema.SAMPLE_QUANTILES) * (2 * UNIT_RADIUS + 1) + N_QUANTILE_BINS + 1  # + the random one


def chunk_hist(bits: np.ndarray) -> np.ndarray:
    """int64 [N, HIST_BINS] the histogram (PartialIndex.hist's bins) of one chunk's float16 bits [R, N],
    counted on the kernels' threads."""
    bits = np.ascontiguousarray(bits)
    N, B = bits.shape[1], ROW_BLOCK
    nb = -(-N // B)
    counts = np.zeros((nb, 1 << (16 - HIST_SHIFT), B), np.int32)  # [neuron block, key block, neuron]
    run_blocks(lambda b0, b1: key_block_counts(bits, counts, B, b0, b1), nb)
    hist = np.zeros((N, HIST_BINS), np.int64)
    fold_key_blocks(counts, hist)  # -inf / NaN blocks into the end bins, as pass 1 folds them
    return hist


def units_around(hist: np.ndarray, n: int) -> np.ndarray:
    """The units (``sample_units``) around the quantile edges of a first look at the data: the
    histogram ``hist`` [N, HIST_BINS] of ``n`` values per neuron."""
    return sample_units(hist_thresholds(hist, n))


def sample_units(provisional: np.ndarray, radius: int = UNIT_RADIUS) -> np.ndarray:
    """uint8 [N, HIST_BINS] histogram bin -> unit (ascending, at most N_UNITS - 1 of them; the last
    unit is the random bin's) around the provisional quantile edges ``provisional`` [N, nq]."""
    N, H = provisional.shape[0], HIST_BINS
    fine = np.zeros((N, H + 1), bool)
    hb = np.arange(H)
    for e in range(provisional.shape[1]):
        lo, hi = provisional[:, e:e + 1] - radius, provisional[:, e:e + 1] + radius
        fine[:, :H] |= (hb >= lo) & (hb <= hi)
    start = fine[:, :H].copy()
    start[:, 1:] |= fine[:, :H - 1]  # the bin after a tracked bin starts the next run
    start[:, 0] = True
    return (np.cumsum(start, axis=1) - 1).astype(np.uint8)


def unit_starts(umap: np.ndarray) -> np.ndarray:
    """bool [N, HIST_BINS]: True where a histogram bin starts a unit."""
    start = np.ones(umap.shape, bool)
    start[:, 1:] = umap[:, 1:] != umap[:, :-1]
    return start


def unit_key_block_starts(umap: np.ndarray) -> np.ndarray:
    """int32 [N, N_UNITS + 1] the first float16 key block (key >> HIST_SHIFT) of each unit of ``umap``:
    unit 0 from block 0 and the last unit to the end (the histogram's end bins take the outer blocks,
    as ``kernels.sample_rows.unit_key_blocks``), unused units and the end 2**(16 - HIST_SHIFT); unit u covers blocks
    [starts[u], starts[u + 1]) (store.index.kernels.sample_rows.unit_sample_rows)."""
    N, H = umap.shape
    out = np.full((N, N_UNITS + 1), 1 << (16 - HIST_SHIFT), np.int32)
    rows, cols = np.nonzero(unit_starts(umap))
    out[rows, umap[rows, cols]] = cols + HIST_OFFSET
    out[:, 0] = 0
    return out


@dataclass
class UnitSamples(_SampleArrays):
    """Samples per (neuron, unit) drawn in pass 1's read; picklable, merges exactly (same units)."""

    hook: str
    ranges: list
    umap: np.ndarray  # uint8 [N, HIST_BINS] histogram bin -> unit; unit N_UNITS - 1 is the random bin
    prio: np.ndarray  # uint64 [N, U, S] hash priorities; 2**64-1 = empty
    pos: np.ndarray  # int64 [N, U, S]; -1 = empty
    key: np.ndarray  # int32 [N, U, S]
    win: np.ndarray  # uint16 [N, U, S, W]
    before: int = schema.CONTEXT_BEFORE  # window tokens before a sample (W = before + 1 + after)
    after: int = schema.CONTEXT_AFTER

    @classmethod
    def empty(cls, hook: str, umap: np.ndarray,
              window: tuple[int, int] = (schema.CONTEXT_BEFORE, schema.CONTEXT_AFTER)) -> "UnitSamples":
        N, U, S = umap.shape[0], N_UNITS, schema.SAMPLES_PER_BIN
        W = window[0] + 1 + window[1]
        return cls(hook=hook, ranges=[], umap=np.ascontiguousarray(umap, dtype=np.uint8),
                   **_sample_slots(N, U, S, W), before=int(window[0]), after=int(window[1]))

    def update(self, bits: np.ndarray, row0: int, context_len: int, seed: int) -> None:
        """Fold one chunk into the samples (in place). bits: uint16 [R, N]."""
        N = bits.shape[1]
        bits, h1, h2, worst, salt = self._chunk_inputs(bits, row0, seed)

        tables = self.__dict__.get("_tables")  # lookup tables of the units, made once (not fields: never saved)
        if tables is None:
            tables = self._tables = (unit_key_blocks(self.umap, ROW_BLOCK),
                                     unit_key_block_starts(self.umap))

        def blocks(b0, b1):
            unit_sample_rows(bits, row0, context_len, self.before, h1, h2, salt, *tables,
                                     self.prio, self.pos, self.key, self.win, worst, ROW_BLOCK, b0, b1)

        run_blocks(blocks, -(-N // ROW_BLOCK))

    def canonical(self) -> "UnitSamples":
        """Returns self: the order of a unit's slots carries no information (the kernel replaces the
        slot of the highest priority, ``resolve`` and the merge order by priority), so it is left as
        the kernel made it; sorting the windows at every checkpoint cost seconds."""
        return self

    def exact_for(self, qbin: np.ndarray) -> np.ndarray:
        """bool [N]: whether every quantile edge of ``qbin`` starts a unit (then resolve is exact)."""
        return np.take_along_axis(unit_starts(self.umap), qbin.astype(np.int64), 1).all(axis=1)

    def _sample_bins(self, qbin: np.ndarray) -> np.ndarray:
        """int64 [N, U, S]: the quantile bin (SAMPLE_BINS order) of each kept sample's own value; the
        random unit's samples go to the random bin."""
        nq = qbin.shape[1]
        hb = np.clip((self.key.astype(np.int64) >> HIST_SHIFT) - HIST_OFFSET, 0, HIST_BINS - 1)
        # pass 2's bin of a histogram bin h: nq - #(edges <= h)
        sbin = nq - (hb[..., None] >= qbin[:, None, None, :]).sum(axis=3)
        sbin[:, -1] = len(schema.SAMPLE_BINS) - 1
        return sbin

    def resolve(self, qbin: np.ndarray) -> SamplePartial:
        """The samples per quantile bin of ``qbin`` (as pass 2 draws them): for each bin the S lowest
        priorities among the kept samples whose value lies in it. Every sample lies in its bin; they
        are pass 2's exactly for the neurons of ``certified(qbin, hist)`` (which holds ``exact_for``:
        there each unit lies within one bin)."""
        N, U, S = self.prio.shape
        flat_bin = self._sample_bins(qbin).reshape(N, U * S)
        prio = self.prio.reshape(N, U * S)
        order = np.lexsort((prio, flat_bin), axis=-1)
        sbin = np.take_along_axis(flat_bin, order, 1)
        idx = np.broadcast_to(np.arange(U * S), sbin.shape)
        new_group = np.ones(sbin.shape, bool)
        new_group[:, 1:] = sbin[:, 1:] != sbin[:, :-1]
        rank = idx - np.maximum.accumulate(np.where(new_group, idx, 0), axis=1)
        spos = np.take_along_axis(self.pos.reshape(N, U * S), order, 1)
        keep = (rank < S) & (spos >= 0)
        rows, cols = np.nonzero(keep)
        src = order[rows, cols]
        out = SamplePartial.empty(self.hook, qbin, (self.before, self.after))
        b, r = sbin[rows, cols], rank[rows, cols]
        out.prio[rows, b, r] = prio[rows, src]
        out.pos[rows, b, r] = spos[rows, cols]
        out.key[rows, b, r] = self.key.reshape(N, U * S)[rows, src]
        out.win[rows, b, r] = self.win.reshape(N, U * S, self.win.shape[-1])[rows, src]
        out.ranges = list(self.ranges)
        return out.canonical()

    def certified(self, qbin: np.ndarray, hist: np.ndarray, resolved: SamplePartial | None = None) -> np.ndarray:
        """bool [N]: where ``resolve(qbin)`` gives pass 2's samples exactly, given the whole histogram
        ``hist`` [N, HIST_BINS] (what the kept samples were drawn from).

        A unit keeps the S lowest priorities of its values. Within a quantile bin that is all a unit
        inside it needs to give. A unit across a final edge (the edge moved off the unit starts) gives
        the bin its kept values on that side, which are that side's lowest when it kept S of them, or
        all of them when the histogram counts no more there; otherwise the values it dropped all have
        priorities above its highest kept one, so they do not matter when that one is above the bin's
        S-th lowest drawn. A neuron passes when every (unit, bin) passes."""
        N, U, S = self.prio.shape
        B = len(schema.SAMPLE_BINS)
        out = resolved if resolved is not None else self.resolve(qbin)
        t = out.prio[:, :, S - 1]  # [N, B] the S-th lowest priority of each bin (empty: the largest)
        sbin = self._sample_bins(qbin)  # [N, U, S]
        valid = self.pos >= 0
        n_idx = np.arange(N)[:, None, None]
        u_idx = np.arange(U)[None, :, None]
        kept = np.zeros(N * U * B, np.int64)  # [N, U, B] kept samples of each unit in each bin
        np.add.at(kept, ((n_idx * U + u_idx) * B + sbin)[valid], 1)
        hbin = np.arange(HIST_BINS)
        hbin_bin = qbin.shape[1] - (hbin[None, :, None] >= qbin[:, None, :]).sum(axis=2)  # [N, H]
        flat = (np.arange(N)[:, None] * U + self.umap.astype(np.int64)) * B + hbin_bin
        count = np.bincount(flat.ravel(), weights=hist.ravel(), minlength=N * U * B).astype(np.int64)
        kept, count = kept.reshape(N, U, B), count.reshape(N, U, B)
        maxp = np.where(valid, self.prio, np.uint64(0)).max(axis=2)  # [N, U]
        bad = (count > kept) & (kept < S) & (maxp[:, :, None] < t[:, None, :])
        bad[:, U - 1] = False  # the random unit is the random bin whole
        return ~bad.any(axis=(1, 2))


def merge_unit_samples(a: UnitSamples, b: UnitSamples) -> UnitSamples:
    """Unit samples of the union of two disjoint chunk ranges (exact: the S lowest priorities of both)."""
    if a.hook != b.hook or not np.array_equal(a.umap, b.umap) or (a.before, a.after) != (b.before, b.after):
        raise ValueError("cannot merge samples drawn over other units or windows (or of another hook)")
    return UnitSamples(hook=a.hook, ranges=_merge_ranges(a.ranges, b.ranges), umap=a.umap.copy(), before=a.before,
                       after=a.after, **lowest_priorities(a, b))


__all__ = ["N_UNITS", "UnitSamples", "merge_unit_samples", "sample_units"]
