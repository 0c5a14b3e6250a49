"""The Numba kernels and partial results against brute-force numpy, on arrays (no store)."""

import pickle

import numpy as np
import pytest

from store.index.kernels.f16 import _f16_lookup, f16_keys_np, f16_to_f64, keys_to_f32
from store.index.kernels.histogram import HIST_BINS, HIST_OFFSET, HIST_SHIFT, hist_edges
from store import schema
from store.index import (
    WINDOW, PartialIndex, SamplePartial, merge_partials, merge_sample_partials, sample_thresholds,
)
from tests.helpers import brute_order, pass1
from store.index.unit_samples import N_UNITS, UnitSamples, merge_unit_samples, sample_units

CTX = 64


def _data(rows=4 * 512, n=130, vocab=50, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((rows, n)) * 2).astype(np.float16)  # [token, neuron]
    x[rng.random(x.shape) < 0.2] = 0  # many exact ties at 0 (and -0 below)
    if rows > 700:
        x[5, 3] = x[700, 3] = np.float16(30)  # a tie at the very top
    x[9, 4] = np.float16(-0.0)
    toks = rng.integers(0, vocab, rows).astype(np.int32)
    return x, toks, vocab


def test_topk_bottomk_moments_hist_match_numpy():
    x, toks, V = _data()
    p = pass1(x, toks, V, 0, 4)
    order, xf = brute_order(x, True)
    assert np.array_equal(p.top_pos, order[:, :8])
    assert np.array_equal(p.top_pos[3, :2], [5, 700])  # tie broken by the lower position
    assert np.array_equal(keys_to_f32(p.top_key), np.take_along_axis(xf.T, order[:, :8], 1))
    border, _ = brute_order(x, False)
    assert np.array_equal(p.bot_pos, border[:, :8])
    xd = xf.astype(np.float64)
    mu = xd.mean(0)
    assert p.n == x.shape[0]
    np.testing.assert_allclose(p.mean, mu, rtol=1e-12, atol=1e-12)
    for m, e in ((p.m2, 2), (p.m3, 3), (p.m4, 4)):
        np.testing.assert_allclose(m, ((xd - mu) ** e).sum(0), rtol=1e-9, atol=1e-9)
    assert np.array_equal(p.npos, (xf > schema.DENSITY_THRESHOLD).sum(0))
    ts = np.zeros((V, x.shape[1]))
    np.add.at(ts, toks, xd)
    np.testing.assert_allclose(p.token_sums_by_id().sum(0), ts, rtol=1e-6, atol=1e-5)  # float32 sums
    assert sorted(p.token_ids) == sorted(set(toks.tolist()))  # rows for the tokens seen, no others
    assert np.array_equal(p.token_count.sum(0), np.bincount(toks, minlength=V))
    even = (np.arange(x.shape[0]) // CTX) % 2 == 0
    assert np.array_equal(p.token_count[0], np.bincount(toks[even], minlength=V))


def test_histogram_bins_follow_the_edges():
    x, toks, V = _data()
    p = pass1(x, toks, V, 0, 4)
    edges = hist_edges()
    assert edges.shape == (HIST_BINS + 1,) and np.all(np.diff(edges) > 0)
    for j in range(6):
        v = x[:, j].astype(np.float32)
        b = np.where(v > 0, np.searchsorted(edges, v, side="right") - 1, np.searchsorted(edges, v, side="left") - 1)
        b[(v == 0) & ~np.signbit(v)] = np.searchsorted(edges, 0.0)  # +0 opens the first positive bin
        assert np.array_equal(np.bincount(b, minlength=HIST_BINS), p.hist[j])
    assert p.hist.sum(1).tolist() == [x.shape[0]] * x.shape[1]


def test_windows_are_the_neurons_acts_clipped_to_the_context():
    x, toks, V = _data()
    p = pass1(x, toks, V, 0, 4)
    for j in range(x.shape[1]):
        for s in range(8):
            for pos, win in ((p.top_pos[j, s], p.top_win[j, s]), (p.bot_pos[j, s], p.bot_win[j, s])):
                c0 = pos // CTX * CTX
                want = [x[q, j] if c0 <= q < c0 + CTX else 0
                        for q in range(pos - schema.CONTEXT_BEFORE, pos + schema.CONTEXT_AFTER + 1)]
                assert np.array_equal(np.array(want, np.float16).view(np.uint16), win)
    assert p.top_win.shape[-1] == WINDOW


def test_fewer_rows_than_k_leaves_empty_slots():
    x, toks, V = _data(rows=64, n=5)
    p = PartialIndex.empty("h", 100, 5, V)
    p.update(x.view(np.uint16), toks, 0, CTX)
    p.canonical()
    assert (p.top_pos[:, :64] >= 0).all() and (p.top_pos[:, 64:] == -1).all()
    assert np.array_equal(np.sort(p.top_pos[:, :64], 1), np.tile(np.arange(64), (5, 1)))


def test_merge_is_exact_and_associative_in_any_order():
    x, toks, V = _data()
    whole = pass1(x, toks, V, 0, 4)
    parts = [pass1(x, toks, V, c, c + 1) for c in range(4)]
    left = merge_partials(merge_partials(parts[0], parts[1]), merge_partials(parts[2], parts[3]))
    right = merge_partials(parts[3], merge_partials(parts[2], merge_partials(parts[1], parts[0])))
    for m in (left, right):
        assert m.ranges == [(0, 4)] and m.n == whole.n
        for f in ("top_key", "top_pos", "top_win", "bot_key", "bot_pos", "bot_win", "hist", "npos", "token_count"):
            assert np.array_equal(getattr(m, f), getattr(whole, f)), f
        for f in ("mean", "m2", "m3", "m4"):
            np.testing.assert_allclose(getattr(m, f), getattr(whole, f), rtol=1e-10, atol=1e-9)
        np.testing.assert_allclose(m.token_sums_by_id(), whole.token_sums_by_id(), rtol=1e-6, atol=1e-5)
        assert np.array_equal(m.token_ids, whole.token_ids)  # rows in order of first sight, as one pass makes
    back = pickle.loads(pickle.dumps(left))  # Dask ships partials between processes
    assert np.array_equal(back.top_win, left.top_win) and back.ranges == left.ranges
    with pytest.raises(ValueError, match="overlap"):
        merge_partials(parts[0], parts[0])


def test_samples_fall_in_their_bins_and_merge_exactly():
    x, toks, V = _data()
    whole = pass1(x, toks, V, 0, 4)
    qb = sample_thresholds(whole)

    def run(c0, c1, R=512):
        s = SamplePartial.empty("h", qb)
        for c in range(c0, c1):
            s.update(np.ascontiguousarray(x[c * R:(c + 1) * R]).view(np.uint16), c * R, CTX, seed=7)
        s.ranges = [(c0, c1)]
        return s.canonical()

    sw = run(0, 4)
    sm = merge_sample_partials(run(2, 4), run(0, 2))
    for f in ("prio", "pos", "key", "win"):
        assert np.array_equal(getattr(sw, f), getattr(sm, f)), f
    hb = np.clip((f16_keys_np(x.view(np.uint16)) >> HIST_SHIFT) - HIST_OFFSET,
                 0, HIST_BINS - 1)  # [token, neuron]
    nq = len(schema.SAMPLE_QUANTILES)
    for j in range(x.shape[1]):
        # which positions belong to each quantile bin (0 = the top bin)
        members = []
        for b in range(nq + 1):
            lo = qb[j, nq - 1 - b] if b < nq else -1
            hi = qb[j, nq - b] if 0 < b <= nq else HIST_BINS
            members.append(np.flatnonzero((hb[:, j] >= lo) & (hb[:, j] < hi)))
        members.append(np.arange(x.shape[0]))  # "random"
        for b, m in enumerate(members):
            got = sw.pos[j, b][sw.pos[j, b] >= 0]
            assert len(got) == min(schema.SAMPLES_PER_BIN, len(m)), (j, b)
            assert np.isin(got, m).all() and len(set(got.tolist())) == len(got)
    # another seed draws other samples (the draw is random, not the first positions)
    assert (sw.pos[:, -1] != run_seed(x, qb, 8).pos[:, -1]).any()


def run_seed(x, qb, seed, R=512):
    s = SamplePartial.empty("h", qb)
    for c in range(x.shape[0] // R):
        s.update(np.ascontiguousarray(x[c * R:(c + 1) * R]).view(np.uint16), c * R, CTX, seed=seed)
    return s.canonical()


def _units(x, umap, seed, c0, c1, R=512):
    u = UnitSamples.empty("h", umap)
    for c in range(c0, c1):
        u.update(np.ascontiguousarray(x[c * R:(c + 1) * R]).view(np.uint16), c * R, CTX, seed=seed)
    u.ranges = [(c0, c1)]
    return u.canonical()


def test_unit_samples_resolve_to_pass_2_samples_and_merge_exactly():
    """Samples drawn per unit of histogram bins in pass 1's read, resolved to the final quantile
    bins, equal pass 2's for every neuron whose final edges start units; merges are exact."""
    x, toks, V = _data(n=200)
    p = pass1(x, toks, V, 0, 4)
    qb = sample_thresholds(p)
    ref = run_seed(x, qb, 7)
    first = pass1(x, toks, V, 0, 1)  # a provisional look at the first chunk only
    umap = sample_units(sample_thresholds(first))
    assert umap.shape == (200, HIST_BINS) and int(umap.max()) < N_UNITS - 1
    whole = _units(x, umap, 7, 0, 4)
    exact = whole.exact_for(qb)
    assert exact.sum() >= 150, "the provisional edges of one chunk should already hold most neurons"
    got = whole.resolve(qb)
    for f in ("prio", "pos", "key", "win"):
        assert np.array_equal(getattr(got, f)[exact], getattr(ref, f)[exact]), f
    merged = merge_unit_samples(_units(x, umap, 7, 2, 4), _units(x, umap, 7, 0, 2))
    for f in ("prio", "pos", "key", "win"):  # the same samples (a unit's slots in any order)
        a, b = getattr(merged, f), getattr(whole, f)
        oa, ob = np.argsort(merged.prio, -1), np.argsort(whole.prio, -1)
        if f == "win":
            oa, ob = oa[..., None], ob[..., None]
        assert np.array_equal(np.take_along_axis(a, oa, 2), np.take_along_axis(b, ob, 2)), f
    # units around the final edges themselves: every neuron exact
    exact_units = _units(x, sample_units(qb), 7, 0, 4)
    assert exact_units.exact_for(qb).all()
    got = exact_units.resolve(qb)
    for f in ("prio", "pos", "key", "win"):
        assert np.array_equal(getattr(got, f), getattr(ref, f)), f
    # an edge far outside the units is reported, not silently resolved
    far = qb.copy()
    far[0, 0] = (int(qb[0, 0]) + 40) % HIST_BINS
    far[0] = np.sort(far[0])
    assert not exact_units.exact_for(far)[0]
    assert pickle.loads(pickle.dumps(whole)).resolve(qb).pos.tolist() == whole.resolve(qb).pos.tolist()


def test_resolved_samples_lie_in_their_bins_and_certified_neurons_are_pass_2s():
    """Units from a poor provisional look (the first chunk, half as wide): every resolved sample lies
    in its final quantile bin, every certified neuron has pass 2's samples exactly, the certified
    neurons hold those whose edges start units and more, and a neuron not certified really differs
    from pass 2 in some run of this data."""
    x, toks, V = _data(n=200)
    p = pass1(x, toks, V, 0, 4)
    qb = sample_thresholds(p)
    ref = run_seed(x, qb, 7)
    first = pass1(x, toks, V, 0, 1)
    whole = _units(x, sample_units(sample_thresholds(first), radius=2), 7, 0, 4)
    got = whole.resolve(qb)
    cert = whole.certified(qb, p.hist, got)
    old = whole.exact_for(qb)
    assert (cert >= old).all() and cert.sum() > old.sum(), (int(cert.sum()), int(old.sum()))
    for f in ("prio", "pos", "key", "win"):
        assert np.array_equal(getattr(got, f)[cert], getattr(ref, f)[cert]), f
    # each sample's value lies in its bin: histogram bin of its key in [lower edge, upper edge)
    hb = np.clip((got.key.astype(np.int64) >> HIST_SHIFT) - HIST_OFFSET, 0, HIST_BINS - 1)
    nq = qb.shape[1]
    edges = np.concatenate([np.zeros((len(qb), 1), np.int64), qb, np.full((len(qb), 1), HIST_BINS)], 1)
    for b in range(nq + 1):  # SAMPLE_BINS order: bin b holds histogram bins [edges[nq - b], edges[nq + 1 - b])
        lo, hi = edges[:, nq - b][:, None], edges[:, nq + 1 - b][:, None]
        filled = got.pos[:, b] >= 0
        assert ((hb[:, b] >= lo) & (hb[:, b] < hi))[filled].all(), b
    differs = ~np.all(got.pos == ref.pos, axis=(1, 2))
    assert differs[~cert].any() and not differs[cert].any()


def test_results_do_not_depend_on_threads_or_how_blocks_are_handed_out(monkeypatch):
    """_run_blocks hands block ranges to a thread pool as threads come free: pass 1 and pass 2 must
    give the same bits with 1 or 2 threads and any task size (300 neurons = 3 blocks of 128)."""
    import numba

    from store.index import blocks

    x, toks, V = _data(n=300)
    runs = []
    for threads, per_thread in ((1, 1), (2, 1), (2, 3)):
        numba.set_num_threads(threads)
        monkeypatch.setattr(blocks, "BLOCK_TASKS_PER_THREAD", per_thread)
        p = pass1(x, toks, V, 0, 4)
        runs.append((p, run_seed(x, sample_thresholds(p), 7)))
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    (p0, s0), rest = runs[0], runs[1:]
    assert (p0.top_pos >= 0).all() and p0.hist.sum() == x.size
    for p, s in rest:
        for f in ("top_key", "top_pos", "top_win", "bot_key", "bot_pos", "bot_win", "hist", "npos",
                  "mean", "m2", "m3", "m4", "token_sum"):
            assert np.array_equal(getattr(p, f), getattr(p0, f)), f
        for f in ("prio", "pos", "key", "win"):
            assert np.array_equal(getattr(s, f), getattr(s0, f)), f


def test_float16_conversion_is_exact_for_every_bit_pattern():
    """The kernels' float16 -> float64 (hardware fpext where the CPU has it, the table elsewhere)
    equals numpy's conversion for all 65536 patterns, signed zeros, subnormals, inf and NaN included."""
    from numba import njit

    bits = np.arange(65536, dtype=np.uint32).astype(np.uint16)
    want = bits.view(np.float16).astype(np.float64)
    for conv in {f16_to_f64, _f16_lookup}:
        @njit
        def run(b, out):
            for i in range(b.shape[0]):
                out[i] = conv(b[i])

        got = np.empty(65536)
        run(bits, got)
        assert np.array_equal(got, want, equal_nan=True) and np.array_equal(np.signbit(got), np.signbit(want)), conv


def test_histogram_counts_survive_folding_past_uint16():
    """The pending histogram counts are uint16 while chunks are small and are folded before they could
    overflow (and switch to int32 for a chunk of 65536+ rows): counts past 65535 per bin stay exact."""
    rng = np.random.default_rng(3)
    n = 2
    p = PartialIndex.empty("h", 4, n, 10)
    xs = []
    for rows in [2048] * 40 + [70000, 512]:  # 82k rows of small chunks, then one big chunk, then small again
        x = np.where(rng.random((rows, n)) < 0.9, np.float16(1.5), rng.standard_normal((rows, n)).astype(np.float16))
        p.update(np.ascontiguousarray(x).view(np.uint16), np.zeros(rows, np.int32), sum(a.shape[0] for a in xs), 64)
        xs.append(x)
    p.canonical()
    x = np.concatenate(xs)
    b = np.clip((f16_keys_np(x.view(np.uint16)) >> HIST_SHIFT) - HIST_OFFSET, 0, HIST_BINS - 1)
    for j in range(n):
        want = np.bincount(b[:, j], minlength=HIST_BINS)
        assert want.max() > 65535 and np.array_equal(p.hist[j], want)


def test_a_forked_child_indexes_with_its_own_threads():
    """The block pool's threads do not survive fork(): a child that indexes after its parent did must
    get fresh threads (and the parent's result), not wait forever on the inherited pool."""
    import multiprocessing as mp

    import numba

    numba.set_num_threads(2)
    x, toks, V = _data(n=300)
    parent = pass1(x, toks, V, 0, 4)  # creates the parent's pool
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    proc = ctx.Process(target=_child_pass1, args=(q,))
    proc.start()
    proc.join(60)
    alive = proc.is_alive()
    if alive:
        proc.kill()
    assert not alive, "the forked child hung on the parent's thread pool"
    assert np.array_equal(q.get(timeout=5), parent.top_pos)


def _child_pass1(q):
    x, toks, V = _data(n=300)
    q.put(pass1(x, toks, V, 0, 4).top_pos)


def _brute_window(x, pos, j, before=schema.CONTEXT_BEFORE, after=schema.CONTEXT_AFTER):
    """float16 bits of neuron j around ``pos``, 0 outside its context (what every kept window holds)."""
    c0 = pos // CTX * CTX
    want = [x[q, j] if c0 <= q < c0 + CTX else 0 for q in range(pos - before, pos + after + 1)]
    return np.array(want, np.float16).view(np.uint16)


def test_every_kept_window_is_the_window_of_its_position():
    """Windows are copied once per chunk for the entries the chunk leaves in a list (not at every
    insertion): with small chunks of many insertions and replacements, every filled slot of every
    list (top, bottom, distinct, unit samples, pass-2 samples) holds its own position's window."""
    x, toks, V = _data(rows=6 * 128, n=70)
    R = 128
    p = PartialIndex.empty("h", 8, x.shape[1], V)
    u = UnitSamples.empty("h", sample_units(np.tile([700, 740, 780, 820], (x.shape[1], 1)).astype(np.int32)))
    for c in range(x.shape[0] // R):
        bits = np.ascontiguousarray(x[c * R:(c + 1) * R]).view(np.uint16)
        p.update(bits, toks[c * R:(c + 1) * R], c * R, CTX)
        u.update(bits, c * R, CTX, seed=3)
    p.canonical()
    s = run_seed(x, sample_thresholds(p), 3, R=R)
    lists = [(p.top_pos, p.top_win), (p.bot_pos, p.bot_win), (p.dtop_pos, p.dtop_win), (p.dbot_pos, p.dbot_win),
             (u.pos.reshape(x.shape[1], -1), u.win.reshape(x.shape[1], -1, WINDOW)),
             (s.pos.reshape(x.shape[1], -1), s.win.reshape(x.shape[1], -1, WINDOW))]
    for pos, win in lists:
        assert (pos >= 0).any()
        for j, slot in zip(*np.nonzero(pos >= 0)):
            assert np.array_equal(win[j, slot], _brute_window(x, int(pos[j, slot]), j)), (j, slot)


def test_sorting_or_pickling_between_chunks_changes_nothing():
    """The replace-next slots are kept from chunk to chunk; sorting the lists (a checkpoint's
    ``canonical``) or shipping a partial through pickle between chunks must give the same bits as
    folding the chunks straight."""
    x, toks, V = _data(n=150)
    straight = pass1(x, toks, V, 0, 4)
    qb = sample_thresholds(straight)
    umap = sample_units(qb)
    u_straight = _units(x, umap, 5, 0, 4)
    s_straight = run_seed(x, qb, 5)
    p, u, s = PartialIndex.empty("h", 8, x.shape[1], V), UnitSamples.empty("h", umap), SamplePartial.empty("h", qb)
    for c in range(4):
        bits = np.ascontiguousarray(x[c * 512:(c + 1) * 512]).view(np.uint16)
        p.update(bits, toks[c * 512:(c + 1) * 512], c * 512, CTX)
        u.update(bits, c * 512, CTX, seed=5)
        s.update(bits, c * 512, CTX, seed=5)
        if c % 2 == 0:
            p, u, s = p.canonical(), u.canonical(), s.canonical()
        else:
            p, u, s = (pickle.loads(pickle.dumps(a)) for a in (p, u, s))
    p.ranges, u.ranges = [(0, 4)], [(0, 4)]
    p, u, s = p.canonical(), u.canonical(), s.canonical()
    for name, a in straight.arrays().items():
        assert np.array_equal(getattr(p, name), a), name
    for f in ("prio", "pos", "key", "win"):
        assert np.array_equal(getattr(s, f), getattr(s_straight, f)), f
        oa, ob = np.argsort(u.prio, -1), np.argsort(u_straight.prio, -1)  # a unit's slots in any order
        if f == "win":
            oa, ob = oa[..., None], ob[..., None]
        assert np.array_equal(np.take_along_axis(getattr(u, f), oa, 2),
                              np.take_along_axis(getattr(u_straight, f), ob, 2)), f


def test_chunk_histogram_is_pass_1s_histogram():
    """The provisional look's histogram (store.index.unit_samples.chunk_hist) counts like pass 1, the
    infinities and NaNs in the end bins included."""
    from store.index.unit_samples import chunk_hist

    x, toks, V = _data(rows=512, n=300)
    x[3, :4] = [np.inf, -np.inf, np.nan, -np.nan]
    with np.errstate(invalid="ignore"):  # the moments of infinities
        p = pass1(x, toks, V, 0, 1)
    assert np.array_equal(chunk_hist(x.view(np.uint16)), p.hist)


def test_token_windows_stop_at_the_ends_of_the_store():
    from store.index.arrays import _windows_tokens

    toks = np.arange(100, 150, dtype=np.int32)  # 50 tokens
    pos = np.array([[0, 2, 49, -1], [25, 48, 1, 0]])
    got = _windows_tokens(toks, pos, 3, 2)
    assert got.shape == (2, 4, 6)
    for idx in np.ndindex(pos.shape):
        p = pos[idx]
        want = [toks[q] if p >= 0 and 0 <= q < 50 else -1 for q in range(p - 3, p + 3)]
        assert got[idx].tolist() == want, (idx, p)
