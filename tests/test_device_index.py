"""Pass 1 in torch (solu_core.device_index, the CUDA path) against the Numba kernels, on CPU torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from solu_core.device_index import chunk_partial
from store.index import PartialIndex, merge_partials

EXACT = ["top_key", "top_pos", "top_win", "bot_key", "bot_pos", "bot_win", "dtop_key", "dtop_pos", "dtop_win",
         "dtop_more", "dbot_key", "dbot_pos", "dbot_win", "dbot_more", "hist", "npos", "token_count", "token_ids"]


def _chunk(rng, R, N, levels):
    """float16 [R, N] with many ties (values from a few levels), zeros, negatives and subnormals."""
    vals = np.concatenate([rng.standard_normal(levels) * 3, [0.0, -0.0, 1e-7, -2e-6, 60000.0]]).astype(np.float16)
    return vals[rng.integers(0, vals.size, (R, N))]


def _numba(acts, toks, row0, ctx, k, vocab, window, part=None):
    part = part or PartialIndex.empty("h", k, acts.shape[1], vocab, window)
    part.update(acts.view(np.uint16), toks, row0, ctx)
    return part.canonical()


@pytest.mark.parametrize("R,N,ctx,k,window,levels", [(256, 200, 16, 8, (4, 2), 7), (96, 130, 32, 40, (3, 3), 50)])
def test_one_chunk_equals_the_numba_kernels_bit_for_bit(R, N, ctx, k, window, levels):
    rng = np.random.default_rng(R + N)
    vocab = 50
    acts = _chunk(rng, R, N, levels)
    toks = rng.integers(0, vocab, R).astype(np.int32)
    row0 = 3 * R  # a chunk further into the store: positions and parities count from it
    want = _numba(acts, toks, row0, ctx, k, vocab, window)
    got = chunk_partial(torch.from_numpy(acts), toks, row0, ctx, k, vocab, window, hook="h").canonical()
    for name in EXACT:
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)
    assert got.token_sum.dtype == np.float32
    np.testing.assert_array_equal(got.token_sum, want.token_sum)  # float64 sums of float16 are exact
    assert got.n == want.n == R
    for name in ("mean", "m2", "m3", "m4"):
        np.testing.assert_allclose(getattr(got, name), getattr(want, name), rtol=1e-9, atol=1e-6, err_msg=name)


def test_device_partials_merge_exactly_with_numba_partials():
    """A store whose first chunk was folded by Numba and second by torch gives the lists, windows and counts
    of Numba over both (the same merge Dask and appends use)."""
    rng = np.random.default_rng(1)
    R, N, ctx, k, vocab, window = 128, 70, 16, 6, 30, (5, 1)
    a, b = _chunk(rng, R, N, 9), _chunk(rng, R, N, 9)
    ta, tb = rng.integers(0, vocab, R).astype(np.int32), rng.integers(0, vocab, R).astype(np.int32)
    both = _numba(a, ta, 0, ctx, k, vocab, window)
    both = _numba(b, tb, R, ctx, k, vocab, window, both)
    first = _numba(a, ta, 0, ctx, k, vocab, window)
    first.ranges = [(0, 1)]
    second = chunk_partial(torch.from_numpy(b), tb, R, ctx, k, vocab, window, hook="h")
    second.ranges = [(1, 2)]
    merged = merge_partials(first, second).canonical()
    for name in EXACT:
        np.testing.assert_array_equal(getattr(merged, name), getattr(both, name), err_msg=name)
    np.testing.assert_allclose(merged.token_sum, both.token_sum, rtol=1e-6, atol=1e-5)  # rounded once more
    np.testing.assert_allclose(merged.m2, both.m2, rtol=1e-9)


def test_refuses_other_dtypes():
    with pytest.raises(ValueError, match="float16"):
        chunk_partial(torch.zeros(4, 3), np.zeros(4, np.int32), 0, 4, 2, 10)
