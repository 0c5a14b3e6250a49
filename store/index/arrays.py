"""The index arrays of one hook (schema.INDEX_ARRAYS) from merged partial results: no I/O."""

from __future__ import annotations

import numpy as np

from store.index.kernels import ROW_BLOCK
from store.index.kernels.f16 import keys_to_f32
from store.index.kernels.histogram import HIST_BINS, hist_edges
from store.index.kernels.token_means import top_tokens_by_mean
from store import schema
from store.index.partial import PartialIndex
from store.index.samples import SamplePartial
from store.measures.snippets import shared_slots


def _windows_tokens(tokens: np.ndarray, pos: np.ndarray, before: int, after: int) -> np.ndarray:
    """int32 [..., W] token ids around each position, -1 past the ends of the store (the derived arrays
    schema.INDEX_DERIVED: readers gather the same from the store's tokens). Unlike the
    activation windows (0 outside the firing's context) the tokens go on past the context: readers
    show them greyed (store.measures.snippets.context_slots tells which slots the model saw)."""
    padded = np.concatenate([np.full(before, -1, np.int32), np.asarray(tokens, np.int32), np.full(after, -1, np.int32)])
    rows = np.lib.stride_tricks.sliding_window_view(padded, before + 1 + after)  # [n, W]: row p = window of p
    if rows.shape[0] == 0:
        return np.full((*pos.shape, before + 1 + after), -1, np.int32)
    out = rows[np.clip(pos, 0, rows.shape[0] - 1)]  # [..., W] one contiguous copy per window
    out[pos < 0] = -1
    return out


def _window_acts(win: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """float16 [..., W] from the kernels' bits, zero for missing entries."""
    acts = win.view(np.float16).copy()
    acts[pos < 0] = 0
    return acts


def _values(keys: np.ndarray, pos: np.ndarray) -> np.ndarray:
    v = keys_to_f32(np.clip(keys, 0, 65535))
    v[pos < 0] = np.nan
    return v


def _top_tokens(token_sum: np.ndarray, token_ids: np.ndarray, token_count: np.ndarray, t: int, min_count: int):
    """Per neuron the t tokens of highest mean activation among tokens seen >= min_count times.
    token_sum: float32 [2, >= T, N] by context parity, row r for token token_ids[r]; token_count: [V]
    (both parities). Returns ids int32 [N, t] (-1 pad), means float32, counts int64."""
    N = token_sum.shape[2]
    rows = np.flatnonzero(token_count[token_ids] >= min_count)  # [T'] rows of the tokens that rank
    ids = token_ids[rows].astype(np.int64)
    out_ids = np.full((N, t), -1, np.int32)
    out_means = np.full((N, t), np.nan, np.float32)
    out_counts = np.zeros((N, t), np.int64)
    if ids.size == 0:
        return out_ids, out_means, out_counts
    m = min(t, ids.size)
    # highest mean first, lower token id on ties (deterministic): a streaming top-m per neuron
    top_ids = np.empty((N, m), np.int64)  # [N, m]
    top_means = np.empty((N, m))  # [N, m] float64
    top_tokens_by_mean(token_sum, np.ascontiguousarray(token_count, dtype=np.int64), rows.astype(np.int64),
                               ids, top_ids, top_means, ROW_BLOCK)
    out_ids[:, :m] = top_ids
    out_means[:, :m] = top_means
    out_counts[:, :m] = token_count[top_ids]
    return out_ids, out_means, out_counts


def index_arrays(src_tokens: np.ndarray, context_len: int, partial: PartialIndex,
                 samples: SamplePartial) -> dict[str, np.ndarray]:
    """Every index array of schema.INDEX_ARRAYS from the merged partial results (no I/O)."""
    from store.measures import scores

    n = max(partial.n, 1)
    N = partial.n_neurons
    win = (partial.before, partial.after)
    if (samples.before, samples.after) != win:
        raise ValueError(f"samples drawn with window {samples.before},{samples.after}, firings with {win}")
    out: dict[str, np.ndarray] = {}
    out["top_values"] = _values(partial.top_key, partial.top_pos)
    out["top_positions"] = partial.top_pos.copy()
    out["top_context_tokens"] = _windows_tokens(src_tokens, partial.top_pos, *win)
    out["top_context_acts"] = _window_acts(partial.top_win, partial.top_pos)
    out["bottom_values"] = _values(partial.bot_key, partial.bot_pos)
    out["bottom_positions"] = partial.bot_pos.copy()
    out["bottom_context_tokens"] = _windows_tokens(src_tokens, partial.bot_pos, *win)
    out["bottom_context_acts"] = _window_acts(partial.bot_win, partial.bot_pos)
    for side, kind in (("dtop", "top"), ("dbot", "bottom")):  # distinct passages: one per context
        pos = getattr(partial, f"{side}_pos")
        out[f"distinct_{kind}_values"] = _values(getattr(partial, f"{side}_key"), pos)
        out[f"distinct_{kind}_positions"] = pos.copy()
        out[f"distinct_{kind}_context_tokens"] = _windows_tokens(src_tokens, pos, *win)
        out[f"distinct_{kind}_context_acts"] = _window_acts(getattr(partial, f"{side}_win"), pos)
        out[f"distinct_{kind}_more"] = np.where(pos >= 0, getattr(partial, f"{side}_more"), 0)
    edges = hist_edges()
    out["hist_counts"] = partial.hist.copy()
    out["hist_edges"] = edges
    out["quantile_edges"] = edges[samples.qbin]
    # samples: within a bin, show the highest activation first (empty slots last)
    skey = np.where(samples.pos >= 0, samples.key, -1)
    order = np.lexsort((samples.pos, -skey.astype(np.int64)), axis=-1)
    spos = np.take_along_axis(samples.pos, order, -1)
    out["sample_positions"] = spos
    out["sample_values"] = _values(np.take_along_axis(samples.key, order, -1), spos)
    out["sample_context_tokens"] = _windows_tokens(src_tokens, spos, *win)
    out["sample_context_acts"] = _window_acts(np.take_along_axis(samples.win, order[..., None], -2), spos)
    with np.errstate(divide="ignore", invalid="ignore"):
        var = partial.m2 / n
        out["mean"] = partial.mean.copy()
        out["var"] = var
        out["skewness"] = np.where(partial.m2 > 0, np.sqrt(n) * partial.m3 / partial.m2**1.5, np.nan)
        out["kurtosis"] = np.where(partial.m2 > 0, n * partial.m4 / partial.m2**2 - 3.0, np.nan)
    out["density"] = (partial.npos / n).astype(np.float32)
    token_count = partial.token_count[0] + partial.token_count[1]  # [V]
    out["token_count"] = token_count
    ids, means, counts = _top_tokens(partial.token_table, partial.token_ids, token_count, schema.TOP_TOKENS,
                                     schema.MIN_TOKEN_COUNT)
    out["top_token_ids"], out["top_token_means"], out["top_token_counts"] = ids, means, counts
    out["token_rule_score"] = scores.token_rule_score(src_tokens, partial.top_pos)
    random_bin = schema.SAMPLE_BINS.index("random")
    out["sim_score"] = scores.sim_score(
        src_tokens, context_len, partial.token_sum, partial.token_count,
        eval_pos=np.concatenate([partial.top_pos, samples.pos[:, random_bin]], 1),
        eval_val=np.concatenate([out["top_values"],
                                 _values(samples.key[:, random_bin], samples.pos[:, random_bin])], 1),
        mean_all=partial.mean, token_rows=partial.token_rows)
    assert set(out) == set(schema.INDEX_ARRAYS), set(out) ^ set(schema.INDEX_ARRAYS)
    for name, (dtype, _dims) in schema.INDEX_ARRAYS.items():
        out[name] = np.ascontiguousarray(out[name], dtype=dtype)
        assert out[name].shape[0] == (N if _dims[0] == schema.NEURON_DIM else out[name].shape[0])
    return out


def stored_arrays(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """What an index writes of its arrays: all but the token windows (schema.INDEX_DERIVED, readers gather
    them from the tokens), with the distinct lists' windows that the raw lists hold too stored as zeros
    (schema.INDEX_SHARED_WINDOWS; readers take them from the raw list)."""
    out = {n: a for n, a in arrays.items() if n not in schema.INDEX_DERIVED}
    for name, (pos, raw_pos, _raw) in schema.INDEX_SHARED_WINDOWS.items():
        shared = shared_slots(arrays[pos], arrays[raw_pos]) >= 0  # [N, k]
        out[name] = np.where(shared[..., None], np.zeros((), arrays[name].dtype), arrays[name])
    return out


def index_attrs(run_uuid: str, partial: PartialIndex, seed: int) -> dict:
    """The attributes of a finished index/{hook} group (besides ``complete``)."""
    return {
        "k": partial.k, "n_tokens": int(partial.n), "run_uuid": run_uuid,
        "sample_bins": list(schema.SAMPLE_BINS), "sample_quantiles": list(schema.SAMPLE_QUANTILES),
        "samples_per_bin": schema.SAMPLES_PER_BIN, "seed": seed, "min_token_count": schema.MIN_TOKEN_COUNT,
        "context_before": partial.before, "context_after": partial.after, "distinct_lists": True,
        "shared_windows": True,
        "histogram": f"float16 bit-pattern bins: {HIST_BINS} bins, 16 per octave "
                     "(see store/index/kernels/histogram.py)",
    }


__all__ = ["index_arrays", "index_attrs", "stored_arrays"]
