"""The rule explanations of an indexed hook, computed (store.measures.explain, the search: pure) and
written into its index through the index's one writer (store.index.group.IndexGroup).

``explain_hook`` reads what the search needs from a finished index when the indexer did not hand it
over (an index made before explanations gains them without re-indexing); ``write_explanations``
writes the arrays and tells the open Store to drop what it cached of that index.
"""

from __future__ import annotations

import numpy as np

from store.errors import StoreError
from store.index.group import IndexGroup
from store.index.source import open_store
from store.measures import explain
from store.measures.explain_counts import StreamCounts
from store.measures.snippets import index_window


def explain_hook(store, hook: str, arrays: dict[str, np.ndarray] | None = None, tokens: np.ndarray | None = None,
                 counts: StreamCounts | None = None, group: IndexGroup | None = None) -> dict[str, np.ndarray]:
    """Compute and write the explanation arrays (schema.EXPLAIN_ARRAYS) of an indexed hook.

    ``arrays``: the index arrays in memory (the indexer passes what it just computed); read from the
    store otherwise. ``group``: the IndexGroup of the hook the caller holds (made here when None).
    Sets the index attribute ``explained`` last. Returns the arrays written."""
    st = open_store(store)
    if arrays is None or any(k not in arrays for k in explain.INPUTS):
        if not st.is_indexed(hook):
            raise StoreError(f"{st.path}: hook {hook!r} is not indexed; run `neurobrowse index {st.path}`")
        arrays = {k: np.asarray(st.index_array(hook, k)[...]) for k in explain.INPUTS}
    if tokens is None:
        tokens = np.asarray(st.tokens[...])
    before = index_window(st.index_state(hook))[0]
    out = explain.explain_arrays(tokens, st.context_len, st.explain_vocab, {k: arrays[k] for k in explain.INPUTS},
                                 counts, before=before)
    write_explanations(st, hook, out, group)
    return out


def write_explanations(st, hook: str, out: dict[str, np.ndarray], group: IndexGroup | None = None) -> None:
    """Write the explanation arrays ``out`` (``explain.explain_arrays``) into the finished index of
    ``hook`` in the open Store ``st`` through its IndexGroup (``group``, or a new one), the attribute
    ``explained`` last; then ``st`` forgets what it cached of that index."""
    (group if group is not None else IndexGroup(st.path, hook)).write_explanations(out, explain.EXPLAIN_VERSION)
    st.forget_index(hook)
