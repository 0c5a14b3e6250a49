"""Interpretability scores on constructed neurons in real stores, and the per-model summaries."""

import numpy as np
import pytest

from store import schema
from store.index import index_store
from store.format.reader import Store
from neurobrowse.render import score_summary_text
from store.format.score_summary import score_distributions, score_summary
from store.measures.scores import THRESHOLDS, sim_score, token_rule
from tests.helpers import write_synthetic_store

HOOK = "blocks.0.mlp.hook_post"
VOCAB = 40


def _constructed(seed=0, n=4096, n_random=20):
    """Neuron 0 fires only on token 7; neuron 1 on tokens 7 or 8; neurons 2.. are noise."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, VOCAB, n).astype(np.int32)
    N = 2 + n_random
    x = rng.standard_normal((n, N)) * 0.01
    x[:, 0] += np.where(tokens == 7, 3.0 + 0.1 * rng.standard_normal(n), 0.0)
    x[:, 1] += np.where((tokens == 7) | (tokens == 8), 3.0 + 0.1 * rng.standard_normal(n), 0.0)
    x[:, 2:] = rng.standard_normal((n, n_random))
    return {HOOK: x.astype(np.float16)}, tokens


@pytest.fixture(scope="module")
def constructed_store(tmp_path_factory):
    acts, tokens = _constructed()
    path = write_synthetic_store(tmp_path_factory.mktemp("scores") / "s", acts, tokens, VOCAB, act_fn="solu_ln")
    index_store(path, progress=False)
    return path


def test_a_one_token_neuron_scores_high_and_noise_scores_low(constructed_store):
    st = Store.open(constructed_store)
    rule = np.asarray(st.index_array(HOOK, "token_rule_score")[:])
    sim = np.asarray(st.index_array(HOOK, "sim_score")[:])
    assert rule[0] == 1.0
    assert sim[0] > 0.95
    assert 0.4 <= rule[1] <= 0.6  # two tokens share the top firings
    assert sim[1] > 0.9  # but the per-token table still predicts it
    assert rule[2:].max() < 0.35 and rule[2:].mean() < 0.2
    assert np.abs(sim[2:]).mean() < 0.2 and sim[2:].max() < 0.6
    table = st.neuron_table(HOOK)
    assert table["top_token"][0] == "w7"


def test_score_functions_on_arrays():
    tokens = np.array([5, 5, 6, 6, 7, 9], np.int32)
    score, tok = token_rule(tokens, np.array([[0, 1, 2, -1], [2, 3, 0, 1], [-1, -1, -1, -1]]))
    assert score[0] == pytest.approx(2 / 3) and tok[0] == 5
    assert score[1] == 0.5 and tok[1] == 5  # a tie goes to the lower token id
    assert np.isnan(score[2]) and tok[2] == -1
    # sim: a perfect per-token rule, evaluated across the two halves (contexts of 2 tokens)
    L = 2
    toks = np.array([1, 2, 1, 2, 1, 2, 1, 2], np.int32)
    acts = np.where(toks == 1, 1.0, 0.0)
    ts = np.zeros((2, 3, 1))
    tc = np.zeros((2, 3), np.int64)
    for p, (t, a) in enumerate(zip(toks, acts)):
        ts[(p // L) % 2, t, 0] += a
        tc[(p // L) % 2, t] += 1
    pos = np.arange(8)[None]
    assert sim_score(toks, L, ts, tc, pos, acts[None], np.zeros(1))[0] == pytest.approx(1.0)
    assert np.isnan(sim_score(toks, L, ts, tc, pos[:, :2] * 0 - 1, acts[None, :2], np.zeros(1))[0])


def test_summary_per_model(constructed_store, tmp_path):
    acts, tokens = _constructed(seed=1)
    other = write_synthetic_store(tmp_path / "g", acts, tokens, VOCAB, act_fn="gelu")
    index_store(other, progress=False)
    summary = score_summary([constructed_store, other])
    assert set(summary) == {"solu_ln", "gelu"}
    d = summary["solu_ln"][HOOK]["token_rule_score"]
    assert d["n"] == 22 and d["n_valid"] == 22 and d["threshold"] == THRESHOLDS["token_rule_score"]
    assert d["share_above"] == pytest.approx(1 / 22)  # only neuron 0 has >= 80% of top firings on one token
    assert sum(d["hist_counts"]) == 22
    dist = score_distributions(constructed_store)
    assert dist[HOOK]["sim_score"].shape == (22,)
    text = score_summary_text(summary)
    assert "gelu" in text and "sim_score" in text
    assert schema.INDEX_ARRAYS["sim_score"][0] == "float32"


def test_all_token_lookup_correlation_equals_brute_force_over_every_position(constructed_store):
    """sim_score_all from the pass-1 sums equals the Pearson correlation, over every position of the
    store, between the activation and its cross-fitted per-token-mean prediction (computed here the
    slow way from the dense activations)."""
    from store.index import pass1_result
    from store.measures.scores import sim_score_all

    st = Store.open(constructed_store)
    p1 = pass1_result(constructed_store, HOOK)  # the kept pass-1 result
    got = sim_score_all(p1.token_sum, p1.token_count[:, p1.token_ids], p1.m2)
    x = np.asarray(st.activations(HOOK)[:], np.float64)  # [n, N]
    toks = np.asarray(st.tokens[:], np.int64)
    half = (np.arange(len(toks)) // st.context_len) & 1
    want = []
    for j in range(x.shape[1]):
        pred = np.empty(len(toks))
        for h in (0, 1):
            fit = half != h
            sums = np.bincount(toks[fit], weights=x[fit, j], minlength=VOCAB)
            cnt = np.bincount(toks[fit], minlength=VOCAB)
            table = np.where(cnt > 0, sums / np.maximum(cnt, 1), x[fit, j].mean())
            pred[half == h] = table[toks[half == h]]
        want.append(np.corrcoef(pred, x[:, j])[0, 1])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert got[0] > 0.95 and got[1] > 0.95 and np.abs(got[2:]).max() < 0.2  # token neurons vs noise
    # undefined when a half is empty
    one_half = p1.token_count[:, p1.token_ids].copy()
    one_half[1] = 0
    assert np.isnan(sim_score_all(p1.token_sum, one_half, p1.m2)).all()


def test_pass1_result_of_an_unindexed_store_says_to_index_it(tmp_path):
    from store.errors import StoreError
    from store.index import pass1_result

    acts, tokens = _constructed(n=512)
    path = write_synthetic_store(tmp_path / "s", acts, tokens, VOCAB)
    with pytest.raises(StoreError, match=r"no finished pass-1 result.*neurobrowse index"):
        pass1_result(path, HOOK)
    with pytest.raises(StoreError, match="no hook"):
        pass1_result(path, "blocks.9.mlp.hook_post")
