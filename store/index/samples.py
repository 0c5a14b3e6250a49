"""Pass 2's random samples per (neuron, quantile bin): pure, picklable and exactly mergeable.

A ``SamplePartial`` holds the samples of one hook over a set of chunk ranges, drawn by a hash priority
of (position, neuron) (the S lowest per bin), so they do not depend on how the store is cut into chunks
and two partial selections merge exactly (``merge_sample_partials``). The quantile bins come from the
merged histogram (``sample_thresholds``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from store import schema
from store.index.kernels import ROW_BLOCK
from store.index.kernels.histogram import HIST_BINS
from store.index.kernels.sample_rows import neuron_salts, pass2_rows, position_hashes, sample_worst_slots
from store.index.blocks import run_blocks
from store.index.partial import PartialIndex, _drop_worst_slots, _merge_ranges


N_QUANTILE_BINS = len(schema.SAMPLE_QUANTILES) + 1  # the quantile bins; SAMPLE_BINS adds "random"
_PRIO_EMPTY = np.uint64(0xFFFFFFFFFFFFFFFF)


def _sample_worst_slots(part) -> np.ndarray:
    """int32 [N, B] the replace-next slot of every sample list of ``part`` (kept as ``_worst_slots``)."""
    cached = part.__dict__.get("_worst_prio")
    if cached is None or cached[0] is not part.prio:
        worst = np.empty(part.prio.shape[:2], np.int32)
        sample_worst_slots(part.prio, worst)
        cached = part.__dict__["_worst_prio"] = (part.prio, worst)
    return cached[1]


def _sample_slots(N: int, B: int, S: int, W: int) -> dict:
    """Empty sample slots for N neurons x B bins x S samples with windows of W tokens."""
    return dict(prio=np.full((N, B, S), _PRIO_EMPTY, np.uint64), pos=np.full((N, B, S), -1, np.int64),
                key=np.zeros((N, B, S), np.int32), win=np.zeros((N, B, S, W), np.uint16))


class _SampleArrays:
    """What SamplePartial and UnitSamples share: neurons and the array fields that get saved."""

    @property
    def n_neurons(self) -> int:
        return self.prio.shape[0]

    def arrays(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if isinstance(getattr(self, f.name), np.ndarray)}

    def __getstate__(self) -> dict:
        """Pickled (Dask ships partials between processes): the fields only, not the kernels' caches."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def _chunk_inputs(self, bits: np.ndarray, row0: int, seed: int) -> tuple:
        """What both sample kernels take for one chunk: (contiguous bits, the rows' two position hashes,
        each slot group's replace-next slot, the neurons' salts)."""
        h1, h2 = position_hashes(row0, bits.shape[0], seed)
        return np.ascontiguousarray(bits), h1, h2, _sample_worst_slots(self), neuron_salts(bits.shape[1], seed)


@dataclass
class SamplePartial(_SampleArrays):
    """Pass-2 random samples per (neuron, bin) over chunk ranges; picklable, merges exactly."""

    hook: str
    ranges: list
    qbin: np.ndarray  # int32 [N, len(SAMPLE_QUANTILES)] first histogram bin of each quantile bin
    prio: np.ndarray  # uint64 [N, B, S] hash priorities, lowest first; 2**64-1 = empty
    pos: np.ndarray  # int64 [N, B, S]; -1 = empty
    key: np.ndarray  # int32 [N, B, S]
    win: np.ndarray  # uint16 [N, B, S, W]
    before: int = schema.CONTEXT_BEFORE  # window tokens before a sample (W = before + 1 + after)
    after: int = schema.CONTEXT_AFTER

    @classmethod
    def empty(cls, hook: str, qbin: np.ndarray,
              window: tuple[int, int] = (schema.CONTEXT_BEFORE, schema.CONTEXT_AFTER)) -> "SamplePartial":
        N, B, S = qbin.shape[0], len(schema.SAMPLE_BINS), schema.SAMPLES_PER_BIN
        W = window[0] + 1 + window[1]
        return cls(hook=hook, ranges=[], qbin=np.ascontiguousarray(qbin, dtype=np.int32),
                   **_sample_slots(N, B, S, W), before=int(window[0]), after=int(window[1]))

    def update(self, bits: np.ndarray, row0: int, context_len: int, seed: int) -> None:
        N = bits.shape[1]
        bits, h1, h2, worst, salt = self._chunk_inputs(bits, row0, seed)

        def blocks(b0, b1):
            pass2_rows(bits, row0, context_len, self.before, h1, h2, salt, self.qbin, self.prio,
                               self.pos, self.key, self.win, worst, ROW_BLOCK, b0, b1)

        run_blocks(blocks, -(-N // ROW_BLOCK))

    def canonical(self) -> "SamplePartial":
        _drop_worst_slots(self)
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
    return SamplePartial(hook=a.hook, ranges=_merge_ranges(a.ranges, b.ranges), qbin=a.qbin.copy(), before=a.before,
                         after=a.after, **lowest_priorities(a, b))


def lowest_priorities(a, b) -> dict[str, np.ndarray]:
    """``prio``, ``pos``, ``key`` and ``win`` of the S lowest priorities of two sample sets of S per slot (the
    exact merge of samples, quantile or unit, of two disjoint chunk ranges), in a stable order."""
    S = a.prio.shape[2]
    prio = np.concatenate([a.prio, b.prio], -1)
    order = np.argsort(prio, axis=-1, kind="stable")[..., :S]
    return dict(
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
    return hist_thresholds(partial.hist, partial.n)


def hist_thresholds(hist: np.ndarray, n: int) -> np.ndarray:
    """``sample_thresholds`` of a histogram ``hist`` [N, HIST_BINS] of ``n`` values per neuron."""
    cum = np.cumsum(hist, axis=1)  # [N, H]
    out = np.empty((hist.shape[0], len(schema.SAMPLE_QUANTILES)), np.int32)
    for i, q in enumerate(schema.SAMPLE_QUANTILES):
        target = np.ceil(q * n)
        out[:, i] = np.minimum((cum < target).sum(axis=1), HIST_BINS - 1)
    return out


__all__ = ["SamplePartial", "merge_sample_partials", "sample_thresholds"]
