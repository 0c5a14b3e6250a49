"""Bounded per-token sums (PartialIndex.token_rows_max, `record --index --token-rows`): exact where nothing is
folded, float16 means of bounded error where something is, every other statistic bit for bit, saved and
resumed exactly."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from store import schema
from store.format.reader import Store
from store.index import PartialIndex, folded_means, merge_partials
from store.index.group import IndexGroup
from store.index.source import ChunkSource, open_store
from tests.builders import TINY_TOKENS
from tests.helpers import assert_same_index

R, N, V, CTX = 256, 70, 400, 32


def _chunks(n=10, seed=0):
    rng = np.random.default_rng(seed)
    p = 1 / np.arange(1, V + 1)  # Zipf-like: frequent tokens stay in the rows, rare ones get folded
    p /= p.sum()
    return [(rng.standard_normal((R, N)).astype(np.float16) * 3, rng.choice(V, R, p=p).astype(np.int32))
            for _ in range(n)]


def _fold(chunks, bound, part=None, c0=0):
    part = part or PartialIndex.empty("h", 8, N, V, (4, 2), token_rows=bound)
    for i, (a, t) in enumerate(chunks):
        part.update(a.view(np.uint16), t, (c0 + i) * R, CTX)
    return part


def _not_token(part):
    return {n: a for n, a in part.arrays().items() if not n.startswith("token_")}


def test_a_bound_above_the_tokens_seen_is_the_unbounded_partial_bit_for_bit():
    chunks = _chunks()
    full, bounded = _fold(chunks, 0).canonical(), _fold(chunks, V - 1).canonical()
    assert bounded.token_rows_max == V - 1 and bounded.token_folded == 0
    for name, a in _not_token(full).items():
        assert np.array_equal(a, getattr(bounded, name)), name
    assert np.array_equal(full.token_count, bounded.token_count)
    assert np.array_equal(full.token_sums_by_id(), bounded.token_sums_by_id())
    assert bounded.full_token_sums() is bounded


def test_a_small_bound_folds_rare_tokens_into_float16_means_and_keeps_the_rest_exact():
    chunks = _chunks()
    full, small = _fold(chunks, 0).canonical(), _fold(chunks, 60).canonical()
    assert small.token_folded > 0 and small.token_cold_count.sum() == small.token_folded
    assert small.token_table.shape[1] < 2 * 60  # bounded (grown only to a chunk's distinct tokens)
    for name, a in _not_token(full).items():  # lists, windows, histograms, moments: untouched
        assert np.array_equal(a, getattr(small, name)), name
    assert np.array_equal(full.token_count, small.token_count)
    want, got = full.token_sums_by_id(), small.token_sums_by_id()
    never = np.ones(V, bool)
    never[small.token_cold_ids] = False
    assert never[:5].all()  # the most frequent tokens are never folded ...
    assert np.array_equal(want[:, never], got[:, never])  # ... so their sums are exact
    cnt = np.maximum(full.token_count, 1)[:, :, None]
    err = np.abs(want / cnt - got / cnt)
    # each fold rounds a mean once to float16 (relative 2**-11); a token is folded at most once a chunk
    bound = 10 * 2.0**-11 * np.abs(want / cnt).max()
    assert 0 < err.max() <= bound, (err.max(), bound)
    # the same results merge exactly with an unbounded partial (Dask, appends): rows of every token again
    merged = merge_partials(small, PartialIndex.empty("h", 8, N, V, (4, 2)))
    assert merged.token_folded == 0 and merged.token_rows_max == 0
    assert np.array_equal(merged.token_sums_by_id(), got)


def test_folding_depends_only_on_the_data_and_the_chunk_order():
    chunks = _chunks()
    a, b = _fold(chunks, 60), _fold(chunks, 60)
    for name, x in a.arrays().items():
        assert np.array_equal(x, getattr(b, name)), name


def _mapped_rss_kib(table: np.ndarray) -> int:
    """Resident KiB of the memory mapping holding ``table`` (Linux /proc/self/smaps)."""
    addr = table.__array_interface__["data"][0]
    inside = False
    for line in open("/proc/self/smaps").read().splitlines():
        head = line.split()
        if len(head) >= 5 and "-" in head[0] and ":" not in head[0]:
            lo, hi = (int(x, 16) for x in head[0].split("-"))
            inside = lo <= addr < hi
        elif inside and head[0] == "Rss:":
            return int(head[1])
    raise AssertionError("the table is in no mapping")


def test_folded_means_kept_in_a_file_are_the_same_bits_and_not_resident(tmp_path):
    """`record --index --token-rows` keeps the folded float16 means in a temporary file (the largest table of a
    bounded index): the partial is the in-memory one bit for bit, the file holds every folded mean, and after
    each update, and after a release, none of its pages count in the process's resident memory."""
    chunks = _chunks()
    mem = _fold(chunks, 60)
    spilled = PartialIndex.empty("h", 8, N, V, (4, 2), token_rows=60)
    spilled.spill_folded_means(tmp_path)
    _fold(chunks, 60, spilled)
    assert folded_means.file_mapping(spilled.token_cold) is not None
    assert folded_means.file_mapping(mem.token_cold) is None
    assert not list(tmp_path.iterdir())  # unlinked: nothing is left behind, even after a kill
    assert _mapped_rss_kib(spilled.token_cold) == 0  # released after the last update
    for name, a in mem.canonical().arrays().items():
        assert np.array_equal(a, getattr(spilled.canonical(), name)), name
    assert spilled.token_folded > 0 and _mapped_rss_kib(spilled.token_cold) > 0  # read back from the file
    spilled.release_folded_pages()
    assert _mapped_rss_kib(spilled.token_cold) == 0
    assert np.array_equal(mem.token_sums_by_id(), spilled.token_sums_by_id())
    # a table folded in memory moves into the file whole
    moved = _fold(chunks[:5], 60)
    before = moved.token_cold.copy()
    moved.spill_folded_means(tmp_path)
    assert folded_means.file_mapping(moved.token_cold) is not None and np.array_equal(before, moved.token_cold)
    _fold(chunks[5:], 60, moved, c0=5)
    assert np.array_equal(moved.canonical().token_cold, mem.token_cold)


@pytest.mark.parametrize("spill", [False, True], ids=["in-memory", "in-a-file"])
def test_a_bounded_state_saved_and_read_back_goes_on_exactly(tiny_stores, tmp_path, spill):
    """The resume path of `record --index --token-rows`: a folded partial saved into a real store's index group,
    checked and read back, then both fed the same remaining chunks (with the folded means in memory, and in a
    temporary file in the store as the recorder keeps them)."""
    path = tmp_path / "store"
    shutil.copytree(tiny_stores["solu_ln"], path)
    st = open_store(path)
    hook = st.recorded_hooks[0]
    src = ChunkSource(st, hook)
    n_chunks = schema.n_chunks(int(st.n_tokens), int(st.chunk_tokens))
    part = PartialIndex.empty(hook, 8, src.n_neurons, src.vocab, token_rows=64)
    if spill:
        part.spill_folded_means(path)
    rest = []
    for c, row0, bits, toks in src.chunks_with_tokens(0, n_chunks, False):
        if c < 3:
            part.update(bits, toks, row0, src.context_len)
        else:
            rest.append((row0, bits, toks))
    part.ranges = [(0, 3)]
    assert part.token_folded > 0
    grp = IndexGroup(path, hook, None)
    grp.save_states({"p1": part.canonical()}, 3, quick=True)
    back, prog = grp.load_state("p1")
    assert back is not None and prog["chunk_stop"] == 3 and back.token_rows_max == 64
    if spill:
        part.release_folded_pages()
        back.spill_folded_means(path)  # as ChunkFold does with a loaded state
        assert folded_means.file_mapping(back.token_cold) is not None
    for name, a in part.arrays().items():
        assert np.array_equal(a, getattr(back, name)), name
    for row0, bits, toks in rest:
        part.update(bits, toks, row0, src.context_len)
        back.update(bits, toks, row0, src.context_len)
    for name, a in part.canonical().arrays().items():
        assert np.array_equal(a, getattr(back.canonical(), name)), name


def test_record_index_with_token_rows_differs_from_the_exact_index_only_in_the_token_statistics(
        tiny_root, tiny_stores, tmp_path):
    from solu_core.record import record
    from solu_core.record_config import CorpusText, RecordConfig
    from store.index import IndexConfig

    out = tmp_path / "bounded"
    ref = Store.open(tiny_stores["solu_ln"])
    record(tiny_root / "models" / "solu_ln", out,
           RecordConfig(text=CorpusText(tiny_root / "corpus"), n_tokens=TINY_TOKENS, chunk_tokens=int(ref.chunk_tokens),
                        device="cpu", index=True, dense=False, index_config=IndexConfig(token_rows=64)),
           progress=False)
    st = Store.open(out)
    token_stats = ("top_token_ids", "top_token_means", "top_token_counts", "sim_score")
    assert_same_index(st, ref, skip=token_stats)
    for hook in st.hooks:
        a = np.asarray(st.index_array(hook, "top_token_means")[...])
        b = np.asarray(ref.index_array(hook, "top_token_means")[...])
        # the best token's mean: within float16 rounding of the exact one (a few folds), for every neuron
        np.testing.assert_allclose(a[:, 0], b[:, 0], rtol=2e-2, atol=1e-3)
        s = np.asarray(st.index_array(hook, "sim_score")[...])
        t = np.asarray(ref.index_array(hook, "sim_score")[...])
        np.testing.assert_allclose(s, t, atol=2e-2, equal_nan=True)
        assert (np.asarray(st.index_array(hook, "top_token_ids")[...])[:, 0]
                == np.asarray(ref.index_array(hook, "top_token_ids")[...])[:, 0]).mean() > 0.9


def test_the_memory_estimate_counts_the_bound_and_the_cli_refuses_it_without_index(tiny_root, tmp_path):
    from store.index import run
    from tests.builders import run_cli

    full = run.index_memory_bytes(3072, 32, 50257, hooks=12, n_tokens=10**7)  # GPT-2 small, every token seen
    bounded = run.index_memory_bytes(3072, 32, 50257, hooks=12, token_rows=4096, n_tokens=10**7)
    # per hook float32 rows for 4096 tokens (the float16 means of the others on disk), not float32 for every
    # token: GPT-2 small's 12 layers over 10M tokens with the model and torch beside it (the bare forward's
    # peak: 1.3 GiB measured, benchmarks/RESULTS.md) clearly within 16 GB, under 14 GB
    assert bounded < 0.5 * full and bounded + 2 * 2**30 < 14e9 and full > 16 * 2**30
    no_bound = run.index_memory_bytes(3072, 32, 50257, hooks=12, token_rows=50257, n_tokens=10**7)
    assert no_bound == full  # a bound of the whole vocabulary: no bound
    # what the bound no longer counts in memory is the disk the temporary files take: 7.4 GB
    assert run.folded_means_disk_bytes(3072, 50257, 12) == 12 * 2 * 50257 * 3072 * 2
    out = tmp_path / "never"
    r = run_cli(["record", tiny_root / "models" / "solu_ln", "--out", out, "--tokens", 2048, "--device", "cpu",
                 "--quiet", "--token-rows", 64])
    assert r.returncode != 0 and "error:" in r.stderr and "add --index" in r.stderr, r.stderr
    assert not out.exists()


def test_record_with_token_rows_refuses_a_disk_too_small_for_the_folded_means(tiny_stores, monkeypatch):
    from store.errors import StoreError
    from store.index import run

    st = Store.open(tiny_stores["solu_ln"])
    run.check_record_index_memory(st, 32, token_rows=64)  # fits
    monkeypatch.setattr(run, "available_disk_bytes", lambda path: 10)
    with pytest.raises(StoreError, match=r"temporary files there: about .* GB of disk, more than the 0.0 GB free"):
        run.check_record_index_memory(st, 32, token_rows=64)
    run.check_record_index_memory(st, 32)  # unbounded sums: no file, no disk needed
