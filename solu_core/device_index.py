"""Pass 1 of the indexer on the model's device: one chunk's reductions in torch, only the partial result
to the host.

``chunk_partial(acts, tokens, row0, context_len, k, vocab, window)`` computes, for one chunk of
activations ``acts`` (float16 [rows, neurons], on any torch device: CUDA next to the model, or the
CPU), every pass-1 statistic of ``store.index.partial.PartialIndex``: top-k and bottom-k with their
global positions and windows, the distinct lists (the best and lowest firing of each context, with
their ``more`` counts), the histogram, the density count, the moments and the per-token sums. Only
those partial results (a few arrays of [neurons, k], [neurons, bins] and [2, tokens seen, neurons])
are copied to the host, as a ``PartialIndex`` of that chunk that ``store.index.merge_partials``
merges with any other, the Numba kernels' included.

Exactness (tested against the Numba path on CPU torch): the same total order (float16 order key,
then the lower position) decides the top and bottom lists, so keys, positions, windows, ``more``
counts, histogram and counts are the same bit for bit; the per-token sums too (a chunk's float16
values add up exactly in float64 whatever the order, then are rounded to float32 once, as the
kernel does); the moments agree to float rounding (their power sums are added in another order).
"""

from __future__ import annotations

import numpy as np
import torch

from store import schema
from store.index.kernels.histogram import HIST_BINS, HIST_OFFSET, HIST_SHIFT
from store.index.kernels.topk import MORE_SHARE
from store.index.partial import _BOT_EMPTY, _DENS_KEY, _TOP_EMPTY, PartialIndex, _merge_moments

_LOW = (1 << 32) - 1  # composite = key << 32 | (_LOW - row): the larger, the better (higher key, then lower row)


def _keys(acts: torch.Tensor) -> torch.Tensor:
    """int64 [R, N] float16 order keys (store.index.kernels.f16.f16_key) of float16 activations."""
    b = acts.contiguous().view(torch.int16).to(torch.int64) & 0xFFFF
    return b ^ (((b >> 15) * 0x7FFF) | 0x8000)


def _best(comp: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k largest composites per column of comp [M, N] (fewer when M < k): (composite [n, N], row [n, N])."""
    n = min(k, comp.shape[0])
    if n == 0:
        return comp[:0], comp[:0]
    vals, _ = torch.topk(comp, n, dim=0, sorted=True)
    return vals, _LOW - (vals & _LOW)


def _windows(bits: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, row0: int, ctx_len: int, before: int,
             W: int) -> torch.Tensor:
    """[M, W] (bits' dtype) the float16 bits of neuron cols[m] at rows r - before .. r - before + W - 1 of the
    chunk (r = rows[m]), clipped to the context of r, 0 elsewhere (store.index.kernels.topk._copy_window_rows)."""
    R = bits.shape[0]
    idx = rows.unsqueeze(-1) - before + torch.arange(W, device=bits.device)  # [M, W]
    lo = ((row0 + rows) // ctx_len * ctx_len - row0).unsqueeze(-1)
    ok = (idx >= lo) & (idx < lo + ctx_len) & (idx >= 0) & (idx < R)
    vals = bits[idx.clamp(0, max(R - 1, 0)), cols.unsqueeze(-1).expand_as(idx)]
    return torch.where(ok, vals, torch.zeros((), dtype=vals.dtype, device=vals.device))


def _more(values: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, row0: int, ctx_len: int) -> torch.Tensor:
    """int32 [M] tokens of the context of entry m (row rows[m] of neuron cols[m]; other than itself) at least
    MORE_SHARE of its value, same sign; 0 for a value of 0 (store.index.kernels.topk._count_more)."""
    R = values.shape[0]
    start = (row0 + rows) // ctx_len * ctx_len - row0  # [M] first row of the context
    idx = start.unsqueeze(-1) + torch.arange(ctx_len, device=values.device)  # [M, ctx]
    inside = idx < R
    v = values[idx.clamp(0, R - 1), cols.unsqueeze(-1).expand_as(idx)]  # [M, ctx] float32 (exact, as half of it)
    peak = values[rows, cols].unsqueeze(-1)  # [M, 1]
    lim = MORE_SHARE * peak
    hit = inside & (((peak > 0) & (v >= lim)) | ((peak < 0) & (v <= lim)))
    n = hit.sum(-1).to(torch.int32) - 1
    return torch.where(peak[:, 0] == 0, torch.zeros_like(n), n)


def _lists(comp: torch.Tensor, k: int, top: bool, bits, values, row0, ctx_len, before, W, more: bool,
           running: dict | None = None, name: str = ""):
    """Numpy (key, pos, win[, more]) of a top (or bottom) list from composites [M, N] of candidate rows.
    ``bits``: int16 [R, N] the float16 bit patterns (windows cross as int16: 2 bytes a value).

    ``running``: the recording's running lists on the device (DevicePass1), name -> int64 [k, N] the k best
    composites over global positions so far (-1: none). Only the chunk's entries that enter them cross to
    the host (their windows and counts are made only for those); the others are left empty. Exact: the
    host's list has seen at least the chunks these have, so an entry below their k-th is below its k-th too."""
    R, N = bits.shape
    dev = comp.device
    best, rows = _best(comp, k)  # [n, N]
    n = best.shape[0]
    keys = np.full((N, k), _TOP_EMPTY if top else _BOT_EMPTY, np.int32)
    pos = np.full((N, k), -1, np.int64)
    win = np.zeros((N, k, W), np.uint16)
    out_more = np.zeros((N, k), np.int32)
    if n:
        if running is not None and row0 + R < _LOW:
            glob = (best >> 32 << 32) | (_LOW - (rows + row0))  # [n, N] the order across chunks
            old = running.get(name)
            if old is None:
                old = torch.full((k, N), -1, dtype=torch.int64, device=dev)
            merged = torch.topk(torch.cat([old, glob]), k, dim=0, sorted=True).values  # [k, N]
            running[name] = merged
            enter = (glob >= merged[-1]).T  # [N, n] the chunk's entries in the running k best
        else:
            enter = torch.ones((N, n), dtype=torch.bool, device=dev)
        col, slot = enter.nonzero(as_tuple=True)  # [E] neuron, slot of each entry that crosses
        r = rows[slot, col]
        key = best[slot, col] >> 32
        key = key if top else 65535 - key
        c_np, s_np = col.cpu().numpy(), slot.cpu().numpy()
        keys[c_np, s_np] = key.to(torch.int32).cpu().numpy()
        pos[c_np, s_np] = (r + row0).cpu().numpy()
        win[c_np, s_np] = _windows(bits, r, col, row0, ctx_len, before, W).cpu().numpy().view(np.uint16)
        if more:
            out_more[c_np, s_np] = _more(values, r, col, row0, ctx_len).cpu().numpy()
    return (keys, pos, win, out_more) if more else (keys, pos, win)


def _context_peaks(comp: torch.Tensor, ctx_len: int, row0: int) -> torch.Tensor:
    """[C, N] the largest composite of each context's rows (contexts never straddle a chunk)."""
    R, N = comp.shape
    first = row0 % ctx_len  # rows of a context cut by the chunk start (never, for store chunks)
    pad_front = first
    C = -(-(pad_front + R) // ctx_len)
    padded = torch.full((C * ctx_len, N), -1, dtype=comp.dtype, device=comp.device)
    padded[pad_front:pad_front + R] = comp
    return padded.view(C, ctx_len, N).amax(1)


@torch.no_grad()
def chunk_partial(acts: torch.Tensor, tokens, row0: int, context_len: int, k: int, vocab: int,
                  window: tuple[int, int] = (schema.CONTEXT_BEFORE, schema.CONTEXT_AFTER),
                  hook: str = "", running: dict | None = None, table: torch.Tensor | None = None,
                  hist_acc: torch.Tensor | None = None) -> PartialIndex:
    """The pass-1 PartialIndex of one chunk (``acts`` float16 [R, N] on any device, ``tokens`` [R] token
    ids) covering rows row0 .. row0 + R - 1; its ``ranges`` are left empty for the caller to set.
    ``running``: the running lists of the chunks before (``_lists``; DevicePass1 keeps them): then the lists
    hold only the chunk's entries that enter the running k best (the rest empty), which is all a fold needs.
    ``table``: float32 [2 * vocab, N] per-token sums kept on the device (DevicePass1): the chunk's sums are
    added there (in float64, rounded once, as the kernel adds them to its table) instead of crossing; the
    partial is then marked ``token_deferred`` (the fold gives rows to its tokens but adds nothing until a
    ``token_sync``). ``hist_acc``: int32 [N, HIST_BINS] on the device the histogram is added to instead of
    crossing (the partial's ``hist`` is then zero until DevicePass1 hands the sum over).

    Besides the fields, the partial carries ``token_sum64`` (float64 [2, T, N], not a field: never saved):
    the exact chunk sums behind ``token_sum``, which ``store.index.fold.fold_partial`` adds to a running
    partial as the Numba kernel does (so a recording folded from these partials has its per-token sums
    bit for bit). What crosses to the host per chunk is what ``partial_bytes`` counts."""
    if acts.dtype != torch.float16 or acts.dim() != 2:
        raise ValueError(f"chunk_partial takes float16 [rows, neurons] activations, not {acts.dtype} "
                         f"{tuple(acts.shape)}")
    dev = acts.device
    R, N = acts.shape
    before, after = int(window[0]), int(window[1])
    W = before + 1 + after
    bits = acts.contiguous().view(torch.int16)  # [R, N] the float16 bit patterns (windows are copied from it)
    key = _keys(acts)  # [R, N] int64
    r = torch.arange(R, device=dev).unsqueeze(1)
    values = acts.float()  # [R, N] exact float16 values (the `more` counts compare them with half a peak)
    part = PartialIndex.empty(hook, k, N, vocab, (before, after))
    top_comp = (key << 32) | (_LOW - r)
    bot_comp = ((65535 - key) << 32) | (_LOW - r)
    common = (bits, values, row0, context_len, before, W)
    part.top_key, part.top_pos, part.top_win = _lists(top_comp, k, True, *common, False, running, "top")
    part.bot_key, part.bot_pos, part.bot_win = _lists(bot_comp, k, False, *common, False, running, "bot")
    (part.dtop_key, part.dtop_pos, part.dtop_win, part.dtop_more) = _lists(
        _context_peaks(top_comp, context_len, row0), k, True, *common, True, running, "dtop")
    (part.dbot_key, part.dbot_pos, part.dbot_win, part.dbot_more) = _lists(
        _context_peaks(bot_comp, context_len, row0), k, False, *common, True, running, "dbot")
    del top_comp, bot_comp
    # histogram (the float16 bit-pattern bins) and density, counted on the device; int32 across (a chunk's
    # counts fit), int64 on the host as the field is
    hb = ((key >> HIST_SHIFT) - HIST_OFFSET).clamp(0, HIST_BINS - 1)
    flat = (torch.arange(N, device=dev) * HIST_BINS + hb).reshape(-1)
    hist = torch.bincount(flat, minlength=N * HIST_BINS).view(N, HIST_BINS).to(torch.int32)
    if hist_acc is None:
        part.hist = hist.cpu().numpy().astype(np.int64)
        part.crossed_hist = True
    else:
        hist_acc += hist
    part.npos = (key > _DENS_KEY).sum(0).to(torch.int32).cpu().numpy().astype(np.int64)
    del key, hb, flat, hist
    # moments: shifted power sums (shift: the first row, as the kernel), central moments, then the merge
    if R:
        v64 = acts.double()
        shift = v64[0]
        d = v64 - shift
        d2 = d * d
        sums = torch.stack([d.sum(0), d2.sum(0), (d2 * d).sum(0), (d2 * d2).sum(0)]).cpu().numpy()
        del d, d2
        mu = sums[0] / R
        c2 = sums[1] - R * mu**2
        c3 = sums[2] - 3 * mu * sums[1] + 2 * R * mu**3
        c4 = sums[3] - 4 * mu * sums[2] + 6 * mu**2 * sums[1] - 3 * R * mu**4
        part.n, part.mean, part.m2, part.m3, part.m4 = _merge_moments(
            (0, part.mean, part.m2, part.m3, part.m4), (R, shift.cpu().numpy() + mu, np.maximum(c2, 0.0), c3, c4))
    # per-token sums by context parity: float64 on the device (exact: float16 values add up exactly in
    # float64 whatever the order); rounded to float32 once for the field, kept exact in token_sum64
    tok = torch.as_tensor(np.asarray(tokens, np.int64), device=dev)
    parity = ((row0 + torch.arange(R, device=dev)) // context_len) & 1
    pair = parity * vocab + tok  # [R]
    gcount = torch.bincount(pair, minlength=2 * vocab)
    gkey = torch.nonzero(gcount).squeeze(1)  # [G] ascending
    lut = torch.empty(2 * vocab, dtype=torch.int64, device=dev)
    lut[gkey] = torch.arange(gkey.numel(), device=dev)
    sums_g = torch.zeros((gkey.numel(), N), dtype=torch.float64, device=dev).index_add_(0, lut[pair], acts.double())
    part.token_count = gcount.view(2, vocab).cpu().numpy().astype(np.int64)
    if table is not None:  # the device's table: the kernel's own addition (float64, rounded once to float32)
        table[gkey] = (table[gkey].double() + sums_g).float()
        part.token_deferred = True
        return part
    gkey_np = gkey.cpu().numpy()
    ids = np.unique(gkey_np % vocab)
    rows = part._rows_for(ids)  # ascending ids, as the kernel's first chunk gives them rows
    grow = rows[np.searchsorted(ids, gkey_np % vocab)]
    sums_np = sums_g.cpu().numpy()  # [G, N] float64
    part.token_table[gkey_np // vocab, grow] = sums_np.astype(np.float32)
    exact = np.zeros((2, ids.size, N))
    exact[gkey_np // vocab, grow] = sums_np
    part.token_sum64 = exact
    return part


def partial_bytes(part: PartialIndex) -> int:
    """Bytes that crossed from the device to the host for the chunk partial ``part`` (``chunk_partial``, and
    DevicePass1's hand-overs): per list entry that crossed its int32 key, int64 position, int16 window of W
    values, two int64 indices (and the int32 ``more`` count of the distinct lists); the int32 histogram
    [N, HIST_BINS] when it crossed; the density count, the shift and 4 power sums (float64 [N] each); the
    token counts (int64 [2, V]); per-token sums: float64 [pairs, N] of the chunk's distinct (parity, token)
    pairs with their keys, or, kept on the device, at a ``token_sync`` the float32 rows touched since the last."""
    N, W, V = part.n_neurons, part.before + 1 + part.after, part.token_count.shape[1]
    out = N * 4 + 5 * N * 8 + 2 * V * 8
    for side in ("top", "bot", "dtop", "dbot"):
        entries = int((getattr(part, f"{side}_pos") >= 0).sum())
        out += entries * (4 + 8 + 2 * W + 16 + (4 if side.startswith("d") else 0))
    if getattr(part, "crossed_hist", False):
        out += N * HIST_BINS * 4
    sync = getattr(part, "token_sync", None)
    if sync is not None:
        out += sync[1].nbytes + sync[0].nbytes
    elif not getattr(part, "token_deferred", False):
        out += int(np.count_nonzero(part.token_count)) * (N + 1) * 8
    return out


DEVICE_TABLE_SHARE = 0.5  # the per-token tables stay on a GPU when they take at most this share of its free memory
CPU_TABLE_BYTES = 1 << 30  # on CPU torch, at most this much (they would duplicate the host's tables)


class DevicePass1:
    """Pass 1 of ``record --index`` on the model's device (the torch backend): for each recorded chunk
    of the hooks still to index, its ``chunk_partial`` (solu_core.record.compute_group hands them to the
    StreamIndexer as ``Chunk.partials``; store.index.fold.fold_partial folds them in on the writer thread).

    Kept on the device between chunks, per hook: the running k best of each list (only entries that enter
    them cross), the histogram of the work group (it crosses once per group, with the group's last chunk)
    and, when they fit (``DEVICE_TABLE_SHARE`` of the free GPU memory; not with bounded ``--token-rows``),
    the per-token sums: a float32 [2 * vocab, N] table updated as the kernel updates its own, whose rows
    touched in the group cross once per group as float32 (``token_sync``), not each chunk's float64 sums.
    The pipeline saves the index state only after a whole group, so what it saves is always complete.
    ``start``: hook -> the first chunk the indexer still needs (a resumed index: its state's chunk stop);
    chunks before it are not computed (the indexer has them), and the device tables start from its state."""

    def __init__(self, k: int, vocab: int, window: tuple[int, int], context_len: int, hooks,
                 start: dict | None = None, token_tables: bool = True, device=None, n_neurons: dict | None = None,
                 resumed: dict | None = None):
        self.k, self.vocab, self.window, self.context_len = int(k), int(vocab), tuple(window), int(context_len)
        self.hooks = set(hooks)
        self.start = {h: int((start or {}).get(h, 0)) for h in self.hooks}
        self.bytes = 0  # partials copied to the host so far (partial_bytes)
        self.chunks = 0
        self.chunk_bytes: list[int] = []  # bytes of each chunk's partials (all hooks), in order
        self.running: dict[str, dict] = {h: {} for h in self.hooks}  # hook -> the running lists (_lists)
        self.hist: dict[str, torch.Tensor] = {}  # hook -> int32 [N, HIST_BINS] of the group so far
        self.tables: dict[str, torch.Tensor] = {}  # hook -> float32 [2 * vocab, N] per-token sums
        self.touched: dict[str, np.ndarray] = {}  # hook -> bool [2 * vocab] pairs added to since the last sync
        self.token_tables = bool(token_tables) and device is not None and n_neurons is not None and self._fit(
            device, sum(2 * self.vocab * n_neurons[h] * 4 for h in self.hooks))
        if self.token_tables:
            for h in self.hooks:
                table = torch.zeros((2 * self.vocab, n_neurons[h]), dtype=torch.float32, device=device)
                p1 = (resumed or {}).get(h)
                if p1 is not None and p1.token_ids.size:  # a resumed index: go on from its sums
                    ids = torch.as_tensor(p1.token_ids.astype(np.int64), device=device)
                    for par in range(2):
                        table[par * self.vocab + ids] = torch.from_numpy(np.ascontiguousarray(p1.token_sum[par])).to(
                            device)
                self.tables[h] = table
                self.touched[h] = np.zeros(2 * self.vocab, bool)

    @staticmethod
    def _fit(device, nbytes: int) -> bool:
        dev = torch.device(device)
        if dev.type == "cuda":
            free, _total = torch.cuda.mem_get_info(dev)
            return nbytes <= DEVICE_TABLE_SHARE * free
        return nbytes <= CPU_TABLE_BYTES

    @classmethod
    def for_indexer(cls, indexer, device=None) -> "DevicePass1":
        """The pass 1 a store.index.StreamIndexer folds: its k, vocabulary, window, the hooks not yet indexed
        and where each goes on from; the per-token tables on ``device`` when they fit and are unbounded."""
        folds = {h: s.fold for h, s in indexer.hooks.items() if not s.done}
        vocab = next(iter(folds.values())).vocab if folds else 0
        n = {h: int(indexer.st.d_mlp) for h in folds}
        return cls(indexer.cfg.k, vocab, indexer.window, int(indexer.st.context_len), folds,
                   start={h: f.stop for h, f in folds.items()}, token_tables=not indexer.token_rows,
                   device=device, n_neurons=n, resumed={h: f.p1 for h, f in folds.items()})

    def wants(self, hook: str) -> bool:
        return hook in self.hooks

    def chunk_partials(self, acts: dict, tokens, row0: int, chunk_index: int = -1, last: bool = True) -> dict:
        """hook -> PartialIndex of one chunk (index ``chunk_index``) starting at global row ``row0`` (acts: hook
        -> float16 [R, N] on the device; tokens [R]); ``last``: the last chunk of its work group (the
        group's histogram and per-token rows go with it). A hook whose index already holds the chunk gets
        none."""
        out = {}
        before = self.bytes
        for hook, a in acts.items():
            if chunk_index < self.start[hook] and chunk_index >= 0:
                continue
            acc = self.hist.get(hook)
            if acc is None:
                acc = self.hist[hook] = torch.zeros((a.shape[1], HIST_BINS), dtype=torch.int32, device=a.device)
            part = chunk_partial(a, tokens, row0, self.context_len, self.k, self.vocab, self.window, hook=hook,
                                 running=self.running[hook], table=self.tables.get(hook), hist_acc=acc)
            if hook in self.tables:
                self.touched[hook] |= part.token_count.reshape(-1) > 0
            if last:
                part.hist = acc.cpu().numpy().astype(np.int64)
                part.crossed_hist = True
                acc.zero_()
                if hook in self.tables:
                    keys = np.flatnonzero(self.touched[hook])
                    rows = self.tables[hook][torch.as_tensor(keys, device=a.device)].cpu().numpy()
                    part.token_sync = (keys, rows)  # pair keys parity * V + token, their float32 sums
                    self.touched[hook][:] = False
            self.bytes += partial_bytes(part)
            out[hook] = part
        self.chunks += 1
        self.chunk_bytes.append(self.bytes - before)
        return out


__all__ = ["DevicePass1", "chunk_partial", "partial_bytes"]
