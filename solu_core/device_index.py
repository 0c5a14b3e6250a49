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
from store.index.partial import PartialIndex, _BOT_EMPTY, _DENS_KEY, _TOP_EMPTY, _merge_moments

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


def _windows(bits: torch.Tensor, rows: torch.Tensor, row0: int, ctx_len: int, before: int, W: int) -> torch.Tensor:
    """int32 [n, N, W] each neuron's float16 bits at rows r - before .. r - before + W - 1 of the chunk
    (``rows`` [n, N]), clipped to the context of r, 0 elsewhere (store.index.kernels.topk._copy_window_rows)."""
    R, N = bits.shape
    idx = rows.unsqueeze(-1) - before + torch.arange(W, device=bits.device)  # [n, N, W]
    lo = ((row0 + rows) // ctx_len * ctx_len - row0).unsqueeze(-1)
    ok = (idx >= lo) & (idx < lo + ctx_len) & (idx >= 0) & (idx < R)
    col = torch.arange(N, device=bits.device).view(1, N, 1).expand_as(idx)
    vals = bits[idx.clamp(0, max(R - 1, 0)), col]
    return torch.where(ok, vals, torch.zeros((), dtype=vals.dtype, device=vals.device))


def _more(values: torch.Tensor, rows: torch.Tensor, row0: int, ctx_len: int) -> torch.Tensor:
    """int32 [n, N] tokens of each entry's context (other than itself) at least MORE_SHARE of its value,
    same sign; 0 for a value of 0 (store.index.kernels.topk._count_more)."""
    R, N = values.shape
    start = (row0 + rows) // ctx_len * ctx_len - row0  # [n, N] first row of the context
    idx = start.unsqueeze(-1) + torch.arange(ctx_len, device=values.device)  # [n, N, ctx]
    inside = idx < R
    col = torch.arange(N, device=values.device).view(1, N, 1).expand_as(idx)
    v = values[idx.clamp(0, R - 1), col]  # [n, N, ctx] float64
    peak = values[rows, torch.arange(N, device=values.device).expand_as(rows)].unsqueeze(-1)  # [n, N, 1]
    lim = MORE_SHARE * peak
    hit = inside & (((peak > 0) & (v >= lim)) | ((peak < 0) & (v <= lim)))
    n = hit.sum(-1).to(torch.int32) - 1
    return torch.where(peak[..., 0] == 0, torch.zeros_like(n), n)


def _lists(comp: torch.Tensor, k: int, top: bool, bits, values, row0, ctx_len, before, W, more: bool):
    """Numpy (key, pos, win[, more]) of a top (or bottom) list from composites [M, N] of candidate rows."""
    R, N = bits.shape
    best, rows = _best(comp, k)  # [n, N]
    key = best >> 32 if top else 65535 - (best >> 32)
    n = best.shape[0]
    keys = np.full((N, k), _TOP_EMPTY if top else _BOT_EMPTY, np.int32)
    pos = np.full((N, k), -1, np.int64)
    win = np.zeros((N, k, W), np.uint16)
    out_more = np.zeros((N, k), np.int32)
    if n:
        keys[:, :n] = key.T.cpu().numpy()
        pos[:, :n] = (rows + row0).T.cpu().numpy()
        win[:, :n] = _windows(bits, rows, row0, ctx_len, before, W).permute(1, 0, 2).cpu().numpy().astype(np.uint16)
        if more:
            out_more[:, :n] = _more(values, rows, row0, ctx_len).T.cpu().numpy()
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
                  hook: str = "") -> PartialIndex:
    """The pass-1 PartialIndex of one chunk (``acts`` float16 [R, N] on any device, ``tokens`` [R] token
    ids) covering rows row0 .. row0 + R - 1; its ``ranges`` are left empty for the caller to set."""
    if acts.dtype != torch.float16 or acts.dim() != 2:
        raise ValueError(f"chunk_partial takes float16 [rows, neurons] activations, "
                         f"not {acts.dtype} {tuple(acts.shape)}")
    dev = acts.device
    R, N = acts.shape
    before, after = int(window[0]), int(window[1])
    W = before + 1 + after
    bits = acts.contiguous().view(torch.int16).to(torch.int32) & 0xFFFF  # [R, N] the float16 bit patterns
    key = _keys(acts)  # [R, N] int64
    r = torch.arange(R, device=dev).unsqueeze(1)
    values = acts.double()  # [R, N] exact float16 values
    part = PartialIndex.empty(hook, k, N, vocab, (before, after))
    top_comp = (key << 32) | (_LOW - r)
    bot_comp = ((65535 - key) << 32) | (_LOW - r)
    common = (bits, values, row0, context_len, before, W)
    part.top_key, part.top_pos, part.top_win = _lists(top_comp, k, True, *common, False)
    part.bot_key, part.bot_pos, part.bot_win = _lists(bot_comp, k, False, *common, False)
    (part.dtop_key, part.dtop_pos, part.dtop_win, part.dtop_more) = _lists(
        _context_peaks(top_comp, context_len, row0), k, True, *common, True)
    (part.dbot_key, part.dbot_pos, part.dbot_win, part.dbot_more) = _lists(
        _context_peaks(bot_comp, context_len, row0), k, False, *common, True)
    # histogram (the float16 bit-pattern bins) and density, counted on the device
    hb = ((key >> HIST_SHIFT) - HIST_OFFSET).clamp(0, HIST_BINS - 1)
    flat = (torch.arange(N, device=dev) * HIST_BINS + hb).reshape(-1)
    hist = torch.bincount(flat, minlength=N * HIST_BINS).view(N, HIST_BINS)
    part.hist = hist.cpu().numpy().astype(np.int64)
    part.npos = (key > _DENS_KEY).sum(0).cpu().numpy().astype(np.int64)
    # moments: shifted power sums (shift: the first row, as the kernel), central moments, then the merge
    if R:
        shift = values[0]
        d = values - shift
        d2 = d * d
        sums = torch.stack([d.sum(0), d2.sum(0), (d2 * d).sum(0), (d2 * d2).sum(0)]).cpu().numpy()
        mu = sums[0] / R
        c2 = sums[1] - R * mu**2
        c3 = sums[2] - 3 * mu * sums[1] + 2 * R * mu**3
        c4 = sums[3] - 4 * mu * sums[2] + 6 * mu**2 * sums[1] - 3 * R * mu**4
        part.n, part.mean, part.m2, part.m3, part.m4 = _merge_moments(
            (0, part.mean, part.m2, part.m3, part.m4), (R, shift.cpu().numpy() + mu, np.maximum(c2, 0.0), c3, c4))
    # per-token sums by context parity: float64 on the device (exact), rounded to float32 once
    tok = torch.as_tensor(np.asarray(tokens, np.int64), device=dev)
    parity = ((row0 + torch.arange(R, device=dev)) // context_len) & 1
    pair = parity * vocab + tok  # [R]
    gcount = torch.bincount(pair, minlength=2 * vocab)
    gkey = torch.nonzero(gcount).squeeze(1)  # [G] ascending
    lut = torch.empty(2 * vocab, dtype=torch.int64, device=dev)
    lut[gkey] = torch.arange(gkey.numel(), device=dev)
    sums_g = torch.zeros((gkey.numel(), N), dtype=torch.float64, device=dev).index_add_(0, lut[pair], values)
    gkey_np = gkey.cpu().numpy()
    ids = np.unique(gkey_np % vocab)
    part.token_count = gcount.view(2, vocab).cpu().numpy().astype(np.int64)
    rows = part._rows_for(ids)  # ascending ids, as the kernel's first chunk gives them rows
    table = part.token_table
    table[gkey_np // vocab, rows[np.searchsorted(ids, gkey_np % vocab)]] = sums_g.cpu().numpy().astype(np.float32)
    return part


__all__ = ["chunk_partial"]
