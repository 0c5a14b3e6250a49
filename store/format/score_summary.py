"""The interpretability scores (store.measures.scores) of stores' indexed hooks: per hook the arrays,
per model their distributions (the compare view and `neurobrowse index` print them). Reads stores;
the scores themselves are computed by the indexer."""

from __future__ import annotations

import numpy as np

from store.format.reader import as_store
from store.measures.scores import SCORES, THRESHOLDS, describe_distribution, model_name


def score_distributions(store) -> dict[str, dict[str, np.ndarray]]:
    """{hook: {"token_rule_score": float32 [N], "sim_score": float32 [N]}} for every indexed hook of a
    Store (or a path)."""
    store = as_store(store)
    out = {}
    for hook in store.hooks:
        if store.is_indexed(hook):
            out[hook] = {name: np.asarray(store.index_array(hook, name)[...]) for name in SCORES}
    return out


def score_summary(stores) -> dict[str, dict[str, dict[str, dict]]]:
    """Per-model score distributions for the compare view and the CLI (store.measures.scores: the scores).

    stores: {name: Store or path} or a list of them (named by ``model_name``).
    Returns {model: {hook: {score name: {n, n_valid, mean, median, p10..p90, share_above,
    threshold, hist_counts, hist_edges}}}}; share_above is the share of neurons scoring at least
    THRESHOLDS[score] (0.8 for the token rule, after the paper's "80% of firings follow one rule").
    """
    items = stores.items() if isinstance(stores, dict) else [(None, s) for s in stores]
    out: dict = {}
    for name, s in items:
        st = as_store(s)
        key = name or model_name(st)
        out[key] = {hook: {score: describe_distribution(vals, THRESHOLDS[score]) for score, vals in d.items()}
                    for hook, d in score_distributions(st).items()}
    return out
