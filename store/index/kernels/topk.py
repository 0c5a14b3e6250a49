"""Top-k and bottom-k lists per neuron, updated in place by the row-major kernels: the replace-next
slot, insertion, the windows of activations around each entry, and the distinct-passage lists (the
best and the lowest firing of each context).

Tie-breaking (what makes partial results merge exactly): among equal keys the lower global token
position ranks higher, for top-k and for bottom-k. A chunk is scanned in increasing position, so
within a scan an equal key never displaces a kept one, and merging two partial results
(``store.index.partial.merge_partials``) applies the same total order.
"""

from __future__ import annotations

from numba import njit

from store.index.kernels.f16 import f16_to_f64


@njit(inline="always", cache=True)
def _worst_top(keys, pos, j):
    """Slot of the lowest-ranked entry of neuron j's top list: smallest key, then highest position."""
    w = 0
    for i in range(1, keys.shape[1]):
        if keys[j, i] < keys[j, w] or (keys[j, i] == keys[j, w] and pos[j, i] > pos[j, w]):
            w = i
    return w


@njit(inline="always", cache=True)
def _worst_bottom(keys, pos, j):
    """Slot of the lowest-ranked entry of a bottom list: largest key, then highest position."""
    w = 0
    for i in range(1, keys.shape[1]):
        if keys[j, i] > keys[j, w] or (keys[j, i] == keys[j, w] and pos[j, i] > pos[j, w]):
            w = i
    return w


@njit(nogil=True, cache=True)  # serial: tiny work, and waking threads on a busy box cost ~10 ms a call
def worst_slots(top_key, top_pos, bot_key, bot_pos, top_worst, bot_worst):
    """Recompute the replace-next slot of every neuron's top and bottom list (after loading a state)."""
    for j in range(top_key.shape[0]):
        top_worst[j] = _worst_top(top_key, top_pos, j)
        bot_worst[j] = _worst_bottom(bot_key, bot_pos, j)


@njit(inline="always", cache=True)
def _copy_window_rows(cur, j, r, row0, ctx_len, before, dst):
    """dst[:] = neuron j's float16 bits at rows r-before .. r-before+W-1 of the row-major chunk,
    clipped to the context of row r (contexts are ``ctx_len`` rows and never straddle a chunk), 0 elsewhere."""
    W = dst.shape[0]
    p = row0 + r
    lo = (p // ctx_len) * ctx_len - row0
    hi = lo + ctx_len
    R = cur.shape[0]
    for w in range(W):
        rr = r - before + w
        if rr >= lo and rr < hi and rr >= 0 and rr < R:
            dst[w] = cur[rr, j]
        else:
            dst[w] = 0


@njit(inline="always", cache=True)
def _keep(j, r, row0, key, keys, pos, worst, top):
    """Put row r's entry (key) of neuron j into the replace-next slot of its top (``top``) or bottom
    list, find the list's new replace-next slot and return the key to beat now. The window is
    copied later (``_fill_windows``), once for the entries the chunk leaves in the list: most
    entries of the first chunks are replaced again within the chunk."""
    s = worst[j]
    keys[j, s] = key
    pos[j, s] = row0 + r
    s = _worst_top(keys, pos, j) if top else _worst_bottom(keys, pos, j)
    worst[j] = s
    return keys[j, s]


@njit(inline="always", cache=True)
def _fill_windows(cur, j, row0, ctx_len, before, pos, win):
    """Copy the window of every entry of neuron j's list (pos [N, m], win [N, m, W]) that came from
    this chunk (rows row0 .. row0 + R - 1): the windows ``_keep`` left out."""
    R = cur.shape[0]
    for s in range(pos.shape[1]):
        r = pos[j, s] - row0
        if r >= 0 and r < R:
            _copy_window_rows(cur, j, r, row0, ctx_len, before, win[j, s])


# ---- distinct passages: the best firing of each context --------------------------------------------
# A second top-k (and bottom-k) per neuron over *contexts* instead of tokens: each context (ctx_len
# contiguous rows, never straddling a chunk) offers only its best firing, so the list holds distinct
# passages: Neuroscope keeps one firing per document). Kept beside the raw top-k in the same sweep
# (pass1_rows: a running best and lowest key per context, offered at the context's end). Same total order and tie
# rule as the raw lists (key, then lower position; within a context the first best position), so
# partial results merge exactly. With each entry: how many other tokens of its context fire at least
# MORE_SHARE as strongly (same sign), counted when the entry is kept.
MORE_SHARE = 0.5  # store.measures.snippets.MORE_SHARE


@njit(inline="always", cache=True)
def _count_more(cur, j, lo, hi, peak):
    """Tokens of rows lo..hi-1 (one context) of neuron j, other than the peak itself, whose value is at
    least MORE_SHARE of the peak value (same sign); 0 for a peak of 0."""
    if peak == 0.0:
        return 0
    lim = MORE_SHARE * peak
    n = 0
    for rr in range(lo, hi):
        v = f16_to_f64(cur[rr, j])
        if (peak > 0.0 and v >= lim) or (peak < 0.0 and v <= lim):
            n += 1
    return n - 1


@njit(inline="always", cache=True)
def _keep_context(cur, j0, m, row0, ctx_len, before, c0, c1, peak, prow, thr, keys, pos, win, more, worst, top):
    """At the end of a context (rows c0 .. c1 - 1 of the chunk): for each neuron j0 + jj of the block
    whose context peak (``peak[jj]`` at row ``prow[jj]``: the largest key for the top list, the
    smallest for the bottom one) beats its list's threshold ``thr[jj]``, put it into the list with its
    window and its ``more`` count, and update the threshold."""
    for jj in range(m):
        if (peak[jj] > thr[jj]) if top else (peak[jj] < thr[jj]):
            j = j0 + jj
            s = worst[j]
            keys[j, s] = peak[jj]
            pos[j, s] = row0 + prow[jj]
            _copy_window_rows(cur, j, prow[jj], row0, ctx_len, before, win[j, s])
            more[j, s] = _count_more(cur, j, c0, c1, f16_to_f64(cur[prow[jj], j]))
            s = _worst_top(keys, pos, j) if top else _worst_bottom(keys, pos, j)
            worst[j] = s
            thr[jj] = keys[j, s]
