"""Folding a chunk's pass-1 partial, computed elsewhere, into a running partial in place.

``fold_partial(run, part)``: ``part`` is the ``PartialIndex`` of the one chunk right after the rows
``run`` holds (for instance computed on the model's GPU by solu_core.device_index.chunk_partial while
recording); ``run`` becomes what ``run.update(bits, tokens, row0, context_len)`` on that chunk's
activations would have made it, without the activations:

- top / bottom and distinct lists: the best k of both under the one total order (key, then the lower
  position), as ``merge_partials`` (exact; contexts never straddle a chunk);
- histogram, density and token counts: added (exact);
- per-token sums: each (parity, token) row of ``run`` gets the chunk's sum added in float64 and rounded
  to float32 once, as the kernel adds a chunk (bit for bit when ``part`` carries its exact float64
  sums as ``token_sum64``; its float32 ``token_sum`` otherwise, one rounding more); rows are given to new
  tokens in the kernel's order, bounded tables (``token_rows_max``) included. A partial marked
  ``token_deferred`` adds nothing (its sums were added to a table kept elsewhere, the same way); one that
  carries ``token_sync`` = (pair keys parity * V + token, float32 [P, N]) sets those rows to the values
  given (that table's rows after this chunk: unbounded tables only);
- moments: the parallel merge (float rounding only, as the chunk's own power sums are added in
  another order).

Unlike ``merge_partials`` it keeps ``run``'s per-token table (no copy of it per chunk) and its bound, and
re-sorts only the lists of the neurons ``part`` brings entries to (a partial made against the running lists,
``solu_core.device_index.DevicePass1``, holds only the entries that enter them: after the first chunks, few).
"""

from __future__ import annotations

import numpy as np

from store.index.partial import PartialIndex, _drop_worst_slots, _merge_moments, _sorted_lists


def fold_partial(run: PartialIndex, part: PartialIndex) -> None:
    """Fold the chunk partial ``part`` into ``run`` in place (see the module docstring)."""
    if (run.k != part.k or run.top_win.shape[1:] != part.top_win.shape[1:] or run.n_neurons != part.n_neurons
            or run.token_count.shape != part.token_count.shape or (run.before, run.after) != (part.before, part.after)):
        raise ValueError(f"cannot fold a chunk partial of {part.hook} (k={part.k}, {part.n_neurons} neurons, window "
                         f"{part.before},{part.after}) into {run.hook} (k={run.k}, {run.n_neurons} neurons, window "
                         f"{run.before},{run.after})")
    if "_hkb" in part.__dict__:  # a partial made by update, with histogram counts not folded in yet
        part.canonical()
    k = run.k
    V = run.token_count.shape[1]
    # the chunk's distinct (parity, token) pairs, ascending: rows for them first, as update does
    gkey = np.flatnonzero(part.token_count.reshape(-1))
    rows = run._rows_for(gkey % V)  # before n and the counts change (bounded tables: last use, folded counts)
    table = run.token_table
    if not getattr(part, "token_deferred", False):
        sums = getattr(part, "token_sum64", None)
        src = sums if sums is not None else part.token_sum
        par, prow = gkey // V, part.token_rows[gkey % V]
        table[par, rows] = (table[par, rows].astype(np.float64) + src[par, prow]).astype(np.float32)
    sync = getattr(part, "token_sync", None)
    if sync is not None:  # the sums kept beside the model: their rows touched since the last sync, as they are now
        keys, values = sync
        table[keys // V, run.token_rows[keys % V]] = values
    run.token_count += part.token_count
    _drop_worst_slots(run)  # the lists change in place below: update finds its replace-next slots again
    for side, top in (("top", True), ("bot", False), ("dtop", True), ("dbot", False)):
        names = ("key", "pos", "win", "more") if side.startswith("d") else ("key", "pos", "win")
        fields = [f"{side}_{f}" for f in names]
        touched = np.flatnonzero((getattr(part, f"{side}_pos") >= 0).any(1))  # neurons the chunk brings entries to
        if not touched.size:
            continue
        cat = [np.concatenate([getattr(run, f)[touched], getattr(part, f)[touched]], 1) for f in fields]
        merged = _sorted_lists(*cat[:3], top, *cat[3:])
        for f, v in zip(fields, merged):
            getattr(run, f)[touched] = v[:, :k]
    run.hist += part.hist
    run.npos += part.npos
    run.n, run.mean, run.m2, run.m3, run.m4 = _merge_moments((run.n, run.mean, run.m2, run.m3, run.m4),
                                                             (part.n, part.mean, part.m2, part.m3, part.m4))


__all__ = ["fold_partial"]
