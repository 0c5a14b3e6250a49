"""Indexing a store: per-neuron top-k, bottom-k, quantile samples, histogram, moments, density,
per-token statistics, context windows and interpretability scores, written to ``index/{hook}/``.

The parts, each in its own module:

* ``kernels``  the Numba kernels (a package: float16 keys, histogram, top-k lists, pass 1, samples, token means)
* ``partial``  ``PartialIndex``, the pass-1 partial result, and its exact merge (``merge_partials``):
               pure, picklable; ``update`` folds in one chunk of activations from anywhere
* ``samples``  ``SamplePartial``, pass 2's random samples per quantile bin, and their exact merge
* ``unit_samples``  ``UnitSamples``, the samples drawn in pass 1's read per unit, resolved to pass 2's
* ``source``   ``ChunkSource``: whole chunks of one hook of a store, read ahead on threads
* ``arrays``   ``index_arrays``: the index arrays (schema.INDEX_ARRAYS) from merged partials, no I/O
* ``group``    ``IndexGroup``: the ``index/{hook}`` group, its final write and the resume state
* ``run``      the resumable single-process driver (``index_store``) and the chunk-range passes
               (``compute_partial``, ``compute_sample_partial``) that store.index.dask_run runs as tasks
* ``stream``   ``StreamIndexer``: the index built from the chunks a recorder hands over (no dense read)
"""

from store.index.arrays import index_arrays
from store.index.group import IndexGroup
from store.index.partial import PartialIndex, WINDOW, merge_partials
from store.index.samples import SamplePartial, merge_sample_partials, sample_thresholds
from store.index.run import (
    IndexConfig, check_index_memory, check_record_index_memory, check_window, compute_partial,
    compute_sample_partial, finalize_index, index_hook, index_store, indexable_hooks, pass1_result,
)
from store.index.source import ChunkSource, open_store
from store.index.stream import StreamIndexer

__all__ = [
    "WINDOW", "ChunkSource", "IndexConfig", "IndexGroup", "check_index_memory", "check_record_index_memory",
    "PartialIndex", "SamplePartial",
    "check_window", "compute_partial",
    "compute_sample_partial", "finalize_index", "index_arrays", "index_hook", "index_store", "indexable_hooks",
    "merge_partials", "merge_sample_partials", "open_store", "pass1_result", "sample_thresholds", "StreamIndexer",
]
