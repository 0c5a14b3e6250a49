"""The neuron table of a hook: one row per unit, a column per store.measures.columns entry, assembled
from the index's per-neuron arrays (read whole, in one concurrent batch), the rule explanations in
words, the LayerNorm overlap (SoLU-LN) and the dictionaries' columns. ``st`` is a store.format.reader.Store;
``Store.neuron_table`` is the entry point (it reads every array from one version of the index)."""

from __future__ import annotations

import numpy as np

from store import schema
from store.format.checked import read_many
from store.measures import columns


def neuron_table(st, hook: str) -> dict[str, np.ndarray]:
    if hook in st._tables:
        return st._tables[hook]
    st._require_index(hook)
    names = ("top_values", "bottom_values", *columns.INDEX_SCALARS, "top_token_ids", "top_positions")
    arrs = [st.index_array(hook, n) for n in names]
    top, bottom, *scalars, top_ids, top_pos = read_many([(a, (slice(None),)) for a in arrs])
    table = {"neuron": np.arange(st.n_units(hook), dtype=np.int64),
             "max_act": np.asarray(top[:, 0], dtype=np.float32),
             "min_act": np.asarray(bottom[:, 0], dtype=np.float32)}
    table.update({name: np.asarray(v) for name, v in zip(columns.INDEX_SCALARS, scalars)})
    table["top_token_id"] = np.asarray(top_ids[:, 0], dtype=np.int32)
    table["top_token"] = np.array(st.token_strings(table["top_token_id"]), dtype=object)
    table.update(explain_columns(st, hook))
    table["ln_overlap"] = ln_overlap(st, hook, np.asarray(top_pos))
    from store.format import features

    table.update(features.table_columns(st, hook))
    st._tables[hook] = table
    return table


def ln_partner(st, hook: str) -> str | None:
    """The hook on the other side of the LayerNorm (hook_mid <-> hook_post of the same layer) when this
    store records and indexed both (SoLU-LN), else None."""
    layer, kind = schema.parse_hook_name(hook)
    other = {"hook_mid": "hook_post", "hook_post": "hook_mid"}.get(kind)
    cand = schema.hook_name(layer, other) if other else None
    return cand if cand in st.hooks and st.is_indexed(cand) else None


def ln_overlap(st, hook: str, top_pos: np.ndarray) -> np.ndarray:
    """float32 [N]: the share of each neuron's distinct top firings (one per context, at most
    store.measures.explain.N_TOP) on this side of the LayerNorm that are also among its top-k firings on the
    other side (hook_mid vs hook_post); NaN without the other side. Low = the LN changes which
    tokens the neuron fires on most."""
    from store.measures.explain import distinct_top

    other = ln_partner(st, hook)
    if other is None:
        return np.full(st.n_units(hook), np.nan, np.float32)
    other_pos = np.asarray(st.index_array(other, "top_positions")[...])
    mine = distinct_top(top_pos, st.context_len)
    hit = (top_pos[:, :, None] == other_pos[:, None, :]).any(-1) & mine & (top_pos >= 0)[:, :]
    n = mine.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, hit.sum(1) / np.maximum(n, 1), np.nan).astype(np.float32)


def explain_columns(st, hook: str) -> dict[str, np.ndarray]:
    """explain_score / _coverage / _precision (float32) and explanation (object: words) per neuron;
    NaN and '' when the index has no explanations yet (`neurobrowse index` adds them)."""
    from store.measures import explain, explain_families

    N = st.n_units(hook)
    if not explain.is_explained(st, hook):
        out = {k: np.full(N, np.nan, np.float32) for k in columns.EXPLAIN_SCALARS}
        out["explanation"] = np.full(N, "", dtype=object)
        return out
    arrs = [st.index_array(hook, n) for n in schema.EXPLAIN_ARRAYS]
    got = dict(zip(schema.EXPLAIN_ARRAYS, read_many([(a, (slice(None),)) for a in arrs])))
    out = {k: np.asarray(got[k], np.float32) for k in columns.EXPLAIN_SCALARS}
    out["explanation"] = explain_families.describe_all(st.explain_vocab, got)
    return out
