"""Numba kernels of the indexer: pure functions over numpy arrays, no zarr, no I/O.

The modules, by concern:

* ``f16``          float16 bit patterns: order keys (``f16_key``) and values (``f16_to_f64``)
* ``histogram``    the histogram's bins (read off the bit pattern) and the counting kernels
* ``topk``         top-k / bottom-k lists: replace-next slots, windows, distinct passages
* ``pass1``        ``pass1_rows``: every pass-1 statistic in one sweep, and its argument tuples
* ``sample_rows``  position hashes and the sample kernels (``pass2_rows``, ``unit_sample_rows``)
* ``token_means``  ``top_tokens_by_mean``: the tokens of highest mean activation per neuron

Every kernel updates its state arrays in place, one chunk at a time. The indexer's kernels
(``pass1_rows``, ``pass2_rows``) are serial and ``nogil`` over a range of neuron blocks; the indexer
hands the ranges to a thread pool as threads come free (``store.index.blocks.run_blocks``) while the
next chunks are read in other threads. The others are parallel with ``prange``.
The kernels work on the chunk row-major, as stored: a work item owns ``ROW_BLOCK`` contiguous
neurons and walks the rows, reading the block's contiguous bits per row, with its statistics in
small per-block arrays. One sweep computes every pass-1 statistic (transposing each chunk to [neurons, rows] first cost
more than any statistic; benchmarks/topk_kernels.py keeps that variant for comparison). No atomics,
no races: results depend only on the data and the order of chunks, never on the number of threads or
the block size. Ties and exact merges: see ``topk``.

Shapes: R rows of the chunk, N neurons, k kept per neuron, W = window tokens, B sample bins,
S samples per bin, H histogram bins, V vocabulary.
"""

# ---- row-major kernels (the indexer's) -------------------------------------------------------------
# Each work item owns a block of ``block`` contiguous neurons and walks the R rows of the row-major
# chunk. Each neuron sees its rows in increasing order, so the results equal those of column-wise
# kernels over a transposed chunk (bit for bit for everything but the power sums' rounding).
ROW_BLOCK = 128  # neurons per work item of the row-major kernels (64-256 measured alike; see bench_index.py)
