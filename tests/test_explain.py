"""Automatic rule explanations (store.measures.explain) on constructed neurons in a real store, on the tiny real
models, and in `neurobrowse index` for an index made before explanations existed."""

import numpy as np
import pytest
import zarr
from zarr.storage import LocalStore

from store.measures import explain, explain_counts, explain_families
from store.measures.explain_families import CLASSES, F_BEFORE, F_LINE, F_PAIR, F_PREV, F_TOKEN, Vocab
from store import schema
from store.index import index_store
from store.format.reader import Store
from tests.helpers import write_synthetic_store

HOOK = "blocks.0.mlp.hook_post"
VOCAB = 40


def _constructed(seed=0, n=16384, n_noise=6):
    """0: fires on token 7; 1: on token 9 right after token 3 (not on other 9s); 2: on any token right
    after token 4; 3: on 10% of the token 1s at random (a frequent token, no rule); 4..: noise."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, VOCAB, n).astype(np.int32)
    tokens[np.arange(5, n, 37)] = 9  # plenty of 9s, some after a 3
    tokens[np.arange(4, n, 74)] = 3
    prev = np.roll(tokens, 1)
    prev[::32] = -1  # context starts (context_len 32)
    N = 4 + n_noise
    x = rng.standard_normal((n, N)) * 0.05
    x[:, 0] += np.where(tokens == 7, 3.0, 0.0)
    x[:, 1] += np.where((tokens == 9) & (prev == 3), 3.0, 0.0)
    x[:, 2] += np.where(prev == 4, 3.0, 0.0)
    x[:, 3] += np.where((tokens == 1) & (rng.random(n) < 0.1), 3.0, 0.0)
    x[:, 4:] = rng.standard_normal((n, n_noise))
    return {HOOK: x.astype(np.float16)}, tokens, x


@pytest.fixture(scope="module")
def store_and_truth(tmp_path_factory):
    acts, tokens, x = _constructed()
    path = write_synthetic_store(tmp_path_factory.mktemp("explain") / "s", acts, tokens, VOCAB, act_fn="solu_ln")
    index_store(path, progress=False)
    return path, tokens, x


def test_each_constructed_neuron_gets_its_rule_in_words(store_and_truth):
    path, _, _ = store_and_truth
    st = Store.open(path)
    t = st.neuron_table(HOOK)
    words = t["explanation"]
    assert words[0].startswith("the token 'w7': 20/20 top firings, precision ")
    assert words[1].startswith("'w9' right after 'w3': 20/20 top firings")
    assert words[2].startswith("right after 'w4': 20/20 top firings")
    assert t["explain_coverage"][:3].tolist() == [1.0, 1.0, 1.0]
    assert (t["explain_precision"][:3] > 0.9).all() and (t["explain_score"][:3] > 0.9).all()
    # a frequent token that fires one time in ten covers the top firings but is not specific
    assert words[3].startswith("the token 'w1'") and t["explain_precision"][3] < 0.4 and t["explain_score"][3] < 0.7
    assert t["explain_score"][4:].max() < explain.PASS_SCORE
    # the page and the stats carry it too
    view = st.neuron(HOOK, 1)
    assert view.explanation == words[1] and view.stats["explain_score"] == pytest.approx(t["explain_score"][1])


def test_precision_estimate_is_close_to_the_truth_from_the_dense_activations(store_and_truth):
    """The estimate from the index (census + samples + snippets) against the share counted over every token."""
    path, tokens, x = store_and_truth
    st = Store.open(path)
    t = st.neuron_table(HOOK)
    prev = np.roll(tokens, 1)
    prev[::32] = -1
    mean = x.mean(0)
    med = np.asarray(t["max_act"])  # the constructed firing levels are flat: median top ~ max
    for i, match in ((0, tokens == 7), (1, (tokens == 9) & (prev == 3)), (3, tokens == 1)):
        tau = mean[i] + explain.HIGH_FRACTION * (med[i] - mean[i])
        true = float((x[match, i] >= tau).mean())
        assert t["explain_precision"][i] == pytest.approx(true, abs=0.15), i


def test_index_adds_explanations_to_an_index_made_without_them(store_and_truth, tmp_path):
    import shutil

    path = shutil.copytree(store_and_truth[0], tmp_path / "old")
    before = np.asarray(Store.open(path).index_array(HOOK, "explain_score")[...])
    grp = zarr.open_group(LocalStore(path), mode="r+")[schema.index_path(HOOK)]
    for name in schema.EXPLAIN_ARRAYS:
        del grp[name]
    del grp.attrs["explained"]
    st = Store.open(path)
    assert not explain.is_explained(st, HOOK)
    assert np.isnan(st.neuron_table(HOOK)["explain_score"]).all() and st.neuron_table(HOOK)["explanation"][0] == ""
    out = index_store(path, progress=False)
    assert out[HOOK]["reason"] == "already indexed; added the rule explanations"
    st = Store.open(path)
    assert explain.is_explained(st, HOOK)
    np.testing.assert_array_equal(st.neuron_table(HOOK)["explain_score"], before)


def test_classes_and_line_rules_of_byte_level_pieces():
    voc = Vocab.build(["⏎", "⏎    ", "    ", " Foo", "bar", " 42", "(", ")", '"', " __init__", "é", " x",
                               " HTTP", " +="])
    names = {s: {CLASSES[c] for c in np.flatnonzero(voc.class_mat[i])} for i, s in enumerate(voc.strings)}
    assert names["⏎"] == {"a line break"} and names["⏎    "] == {"a line break"}
    assert names["    "] == {"indentation"}
    assert names[" Foo"] == {"a capitalised word", "a word start"}
    assert names[" 42"] == {"digits", "a number"}
    assert "an opening bracket" in names["("] and "a closing bracket" in names[")"] and "a quote" in names['"']
    assert "an identifier piece" in names[" __init__"] and names["é"] == {"non-ASCII text"}
    assert "an all-caps word" in names[" HTTP"] and "an operator" in names[" +="]
    # line rules: after a bare line break -> start of a line; after "⏎    " -> after indentation
    lines = lambda f: sorted(int(v & ((1 << 36) - 1)) for v in f if v >= 0 and v >> 36 == F_LINE)  # noqa: E731
    f = explain_families.features(np.array([[0, 11], [1, 11], [-1, 11]]), 1, voc)
    assert lines(f[0]) == [0] and lines(f[1]) == [1] and lines(f[2]) == [2]
    assert explain_families.rule_words(voc, F_LINE, 1, -1) == "the first token after indentation"
    assert explain_families.rule_words(voc, F_PAIR, 0, 3) == "' Foo' right after '⏎'"


def test_stream_counts_are_exact():
    voc = Vocab.build([f"w{i}" for i in range(5)])
    toks = np.array([0, 1, 0, 2, 1, 0, 3, 4, 0, 0, 1, 2], np.int64)
    L = 6
    c = explain_counts.StreamCounts.build(toks, L, voc)
    pos = np.arange(toks.size)

    def brute_before(t):
        return sum(t in toks[max(p - explain_families.BEFORE_SPAN, p - p % L):p] for p in pos)

    enc = lambda fam, v: (fam << 36) | v  # noqa: E731
    for t in range(5):
        assert c.count(np.array([enc(F_BEFORE, t)]))[0] == brute_before(t), t
        assert c.count(np.array([enc(F_TOKEN, t)]))[0] == (toks == t).sum()
    prev = np.where(pos % L == 0, -1, np.roll(toks, 1))
    assert c.count(np.array([enc(F_PAIR, 0 * 5 + 1)]))[0] == ((prev == 0) & (toks == 1)).sum()
    assert c.count(np.array([enc(F_LINE, 2)]))[0] == 2  # two context starts


def test_tiny_real_models_get_explanations_in_index(gelu, solu):
    for st in (gelu, solu):
        for hook in st.hooks:
            t = st.neuron_table(hook)
            s = t["explain_score"]
            assert np.isfinite(s).mean() > 0.9 and ((s >= 0) & (s <= 1))[np.isfinite(s)].all()
            has = t["explanation"] != ""
            assert has.mean() > 0.5
            assert all(": " in w and " top firings, precision " in w for w in t["explanation"][has])


def test_blocks_of_neurons_on_threads_give_the_same_explanations(store_and_truth):
    """explain_arrays runs its blocks of neurons on threads: any block size gives the same arrays."""
    path, tokens, _ = store_and_truth
    st = Store.open(path)
    arrays = {k: np.asarray(st.index_array(HOOK, k)[...]) for k in explain.INPUTS}
    before = st.index_state(HOOK)["context_before"]
    whole = explain.explain_arrays(tokens, st.context_len, st.explain_vocab, arrays, before=before)
    blocks = explain.explain_arrays(tokens, st.context_len, st.explain_vocab, arrays, block=3, before=before)
    assert whole["explain_family"][:3].tolist() == [F_TOKEN, F_PAIR, F_PREV]
    for name, a in whole.items():
        assert np.array_equal(blocks[name], a, equal_nan=True), name


def _window_occurrences_reference(a, voc, cand, tau, c):
    """window_occurrences as plain NumPy (the search's definition before its Numba kernel): each neuron's
    distinct window positions (first slot wins, top-k positions left out), their ``features``, counted
    against the candidates."""
    top_pos = a["top_positions"]
    b = top_pos.shape[0]
    W = a["top_context_tokens"].shape[-1]
    pos = np.concatenate([top_pos, a["sample_positions"].reshape(b, -1)], 1)
    win = np.concatenate([a["top_context_tokens"], a["sample_context_tokens"].reshape(b, -1, W)], 1)
    acts = np.concatenate([a["top_context_acts"], a["sample_context_acts"].reshape(b, -1, W)], 1)
    lo = max(0, c - explain_counts.OCC_BEFORE - explain_families.BEFORE_SPAN - 2)
    hi = min(W, c + explain_counts.OCC_AFTER + 2)
    win, acts, c = win[..., lo:hi], acts[..., lo:hi], c - lo  # what the kernel sees of a window
    nl = np.arange(b, dtype=np.int64)
    gp = pos[:, :, None] + (np.arange(win.shape[-1]) - c)[None, None, :]
    span = np.zeros(win.shape[-1], bool)
    span[max(0, c - explain_counts.OCC_BEFORE):c + explain_counts.OCC_AFTER + 1] = True
    ok = (pos[:, :, None] >= 0) & (win >= 0) & span
    ok[:, :, c] = False
    key = np.where(ok, (nl[:, None, None] << explain_families.FEAT_BITS) | np.maximum(gp, 0), -1)
    flat = key.ravel()
    _, first = np.unique(flat, return_index=True)
    keep = np.zeros(flat.size, bool)
    keep[first] = True
    keep &= (flat >= 0) & ~np.isin(flat, ((nl[:, None] << explain_families.FEAT_BITS) | top_pos)[top_pos >= 0])
    keep = keep.reshape(key.shape)
    high = np.asarray(acts, np.float64) >= tau[:, None, None]
    m_w, h_w = np.zeros(cand.size), np.zeros(cand.size)
    for j in np.flatnonzero(span):
        f = explain_families.features(win, j, voc)  # [b, R, F]
        m = keep[:, :, j, None] & (f >= 0)
        kk = (np.broadcast_to(nl[:, None, None], f.shape)[m] << explain_families.FEAT_BITS) | f[m]
        hh = np.broadcast_to(high[:, :, j, None], f.shape)[m]
        i = np.minimum(np.searchsorted(cand, kk), cand.size - 1)
        hit = cand[i] == kk
        m_w += np.bincount(i[hit], minlength=cand.size)
        h_w += np.bincount(i[hit], weights=hh[hit].astype(float), minlength=cand.size)
    return m_w, h_w


def test_window_occurrence_kernel_matches_the_numpy_definition(gelu, solu, store_and_truth, monkeypatch):
    """The Numba kernel of window_occurrences (hash tables, family masks) counts exactly what the plain NumPy
    definition counts, on every block of the tiny real models' indexes and the constructed store; the
    explanation arrays are then the same as with the reference."""
    kernel = explain_counts.window_occurrences
    seen = []

    def both(a, voc, cand, tau, c):
        got = kernel(a, voc, cand, tau, c)
        want = _window_occurrences_reference(a, voc, cand, tau, c)
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
        seen.append((cand.size, int(want[0].sum())))
        return got

    monkeypatch.setattr(explain, "window_occurrences", both)
    path, _, _ = store_and_truth
    for st in (gelu, solu, Store.open(path)):
        tokens = np.asarray(st.tokens[...])
        for hook in st.hooks:
            arrays = {k: np.asarray(st.index_array(hook, k)[...]) for k in explain.INPUTS}
            before = st.index_state(hook)["context_before"]
            out = explain.explain_arrays(tokens, st.context_len, st.explain_vocab, arrays, block=64, before=before)
            stored = {k: np.asarray(st.index_array(hook, k)[...]) for k in explain.OUTPUTS}
            for name, v in out.items():
                assert v.dtype == stored[name].dtype and np.array_equal(v, stored[name], equal_nan=True), (hook, name)
    assert len(seen) > 10 and all(n > 0 and m > 0 for n, m in seen[:3])
