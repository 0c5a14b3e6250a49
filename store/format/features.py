"""A dictionary's features next to the neurons: their table columns, the links between features and
neurons, their logit effects on disk, the per-token neuron peak, and the summary that answers the
paper's question (are there features below the LayerNorm that no neuron shows?).

Hidden-feature candidates. For every token t of a store the *neuron peak* is
r[t] = max_n act[t, n] / max_act[n] over the source hook's neurons (max_act: the neuron's largest
activation in the store, from its index): r[t] < HIDDEN_PEAK means no neuron reaches half of its own
maximum at t, so no neuron's top firings would show t to someone browsing neurons. A feature's
``hidden_share`` is the share of its distinct top firings (at most store.measures.explain.N_TOP) at such tokens;
a feature with hidden_share >= HIDDEN_SHARE is a candidate for a feature the neurons hide.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from store import schema
from store.format import atomic

HIDDEN_PEAK = 0.5  # "a neuron fires strongly" at t: its activation is at least this share of its maximum
HIDDEN_SHARE = 0.5  # a feature is a hidden candidate when this share of its top firings has no strong neuron
PEAK_FILE = "neuron_peak.npy"  # in the dictionary folder: float16 [n_tokens] the neuron peak r[t]


def table_columns(st, hook: str) -> dict[str, np.ndarray]:
    """The feature columns of Store.neuron_table: ``max_cos`` (a feature's largest |cosine| with one neuron's
    basis direction) and ``hidden_share`` (see the module); NaN for neurons."""
    n = st.n_units(hook)
    if not schema.is_feature_hook(hook):
        return {"max_cos": np.full(n, np.nan, np.float32), "hidden_share": np.full(n, np.nan, np.float32)}
    from store.format.dictionary import alignment

    d = st.dictionary(hook)
    return {"max_cos": alignment(d.W_dec)["max_cos"], "hidden_share": hidden_shares(st, hook)}


def hidden_shares(st, hook: str) -> np.ndarray:
    """float32 [d_sae]: per feature the share of its distinct top firings where no neuron of the source hook
    fires strongly (NaN when the neuron peak was not computed: `neurobrowse features index`)."""
    from store.measures.explain import N_TOP, distinct_top

    n = st.n_units(hook)
    peak = read_neuron_peak(st, hook)
    if peak is None:
        return np.full(n, np.nan, np.float32)
    pos = np.asarray(st.index_array(hook, "top_positions")[...])  # [d_sae, k]
    vals = np.asarray(st.index_array(hook, "top_values")[...])
    mine = distinct_top(pos, st.context_len, N_TOP) & (pos >= 0) & (vals > 0)
    low = np.zeros(pos.shape, bool)
    low[mine] = peak[pos[mine]] < HIDDEN_PEAK
    cnt = mine.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cnt > 0, low.sum(1) / np.maximum(cnt, 1), np.nan).astype(np.float32)


def related_units(st, hook: str, unit: int, n: int = 8) -> list[dict]:
    """See Store.related_units."""
    from store.format.dictionary import top_loadings

    if schema.is_feature_hook(hook):
        src = schema.feature_source(hook)[0]
        row = st.dictionary(hook).W_dec[unit]
        return [{"hook": src, "unit": i, "weight": w, "kind": "neuron"}
                for i, w in top_loadings(row, n, min_share=0.01)]
    out = []
    for fh in st.feature_hooks:
        if schema.feature_source(fh)[0] != hook:
            continue
        w = st.dictionary(fh).W_enc[unit]  # [d_sae]
        order = np.argsort(-w, kind="stable")[:n]
        out += [{"hook": fh, "unit": int(i), "weight": float(w[i]), "kind": "feature"} for i in order if w[i] > 0]
    return out


# ---- files a feature index writes besides the index ------------------------------------------------------


def has_feature_logits(st, hook: str) -> bool:
    return (Path(st.path) / schema.logit_path_for(hook) / schema.LOGIT_ARRAYS[0] / "zarr.json").is_file()


def write_feature_logits(store_path, hook: str, up_tokens, up_values, down_tokens, down_values) -> None:
    """logit/{feature hook}/{up,down}_{tokens,values} [d_sae, K_LOGIT], as the recorder writes a layer's."""
    import zarr
    from zarr.storage import LocalStore

    group = zarr.open_group(LocalStore(Path(store_path)), mode="r+")
    base = schema.logit_path_for(hook)
    data = {"up_tokens": up_tokens, "up_values": up_values, "down_tokens": down_tokens, "down_values": down_values}
    for key in schema.LOGIT_ARRAYS:
        a = np.asarray(data[key]).astype(schema.LOGIT_DTYPES[key])
        arr = group.create_array(f"{base}/{key}", shape=a.shape, dtype=a.dtype, chunks=a.shape,
                                 compressors=schema.codecs(str(a.dtype)), fill_value=0,
                                 dimension_names=(schema.FEATURE_DIM, "rank"), config=schema.ARRAY_CONFIG,
                                 overwrite=True)
        arr[...] = a


def typical_row_std(st, hook: str, reader=None, chunks: int = 4) -> float:
    """The mean standard deviation over d_mlp of a hook's rows (a few chunks): the scale a SoLU-LN
    LayerNorm divides hook_mid by."""
    picks = np.unique(np.linspace(0, st.n_chunks - 1, min(chunks, st.n_chunks)).astype(int))
    stds = []
    for c in picks:
        a = (reader(int(c)) if reader else np.asarray(st.read_chunk(hook, int(c)))).astype(np.float32)
        stds.append(float(a.std(1).mean()))
    return float(np.mean(stds)) if stds else 1.0


def _peak_path(st, hook: str) -> Path:
    return Path(st.path) / schema.dictionary_path(hook) / PEAK_FILE


def read_neuron_peak(st, hook: str) -> np.ndarray | None:
    p = _peak_path(st, hook)
    if not p.is_file():
        return None
    try:
        a = np.load(p, allow_pickle=False)
    except (OSError, ValueError):
        return None
    return a if a.shape == (st.n_tokens,) else None


def write_neuron_peak(st, hook: str, reader=None, force: bool = False) -> dict:
    """Compute and save the neuron peak r[t] of the source hook of ``hook`` (see the module); ``reader(c)``
    gives the source hook's chunk c where the store has no dense activations. Returns a small summary."""
    src = schema.feature_source(hook)[0]
    p = _peak_path(st, hook)
    if p.is_file() and not force and read_neuron_peak(st, hook) is not None:
        return {"computed": False}
    if st.is_indexed(src):
        mx = np.asarray(st.index_array(src, "top_values")[:, 0], np.float32)
    else:
        mx = np.zeros(st.d_mlp, np.float32)
        for c in range(st.n_chunks):
            a = reader(c) if reader else np.asarray(st.read_chunk(src, c))
            mx = np.maximum(mx, a.astype(np.float32).max(0))
    live = np.isfinite(mx) & (mx > 0)
    inv = np.where(live, 1.0 / np.where(live, mx, 1.0), 0.0).astype(np.float32)
    out = np.empty(st.n_tokens, np.float16)
    for c in range(st.n_chunks):
        a = reader(c) if reader else np.asarray(st.read_chunk(src, c))
        r0 = c * st.chunk_tokens
        out[r0:r0 + a.shape[0]] = (np.maximum(a.astype(np.float32), 0) * inv).max(1)
    with atomic.writing(p, suffix=".npy") as tmp:
        np.save(tmp, out)
    return {"computed": True, "share_no_strong_neuron": float(np.mean(out < HIDDEN_PEAK))}


# ---- the summary of a dictionary (the paper's question) ---------------------------------------------------


def dictionary_summary(st, hook: str, examples: int = 5) -> dict:
    """Plain figures of one dictionary of an open Store ``st`` (``store.format.reader.as_store`` opens a path):
    its metrics (neurobrowse.json: FVU, loss recovered, L0, dead, dense), the feature-neuron alignment
    (aligned / spread shares), the share of indexed features passing the automated explanation (rule score >=
    the column's threshold), the share of hidden candidates with a few example features (largest activation
    first), and the same shares for the source hook's neurons where indexed. JSON-ready."""
    from store.measures import columns
    from store.format.dictionary import alignment, live_features

    st.check_hook(hook)
    if not schema.is_feature_hook(hook):
        raise ValueError(f"{hook!r} is not a dictionary's features")
    d = st.dictionary(hook)
    live = live_features(d)  # the shares over the features that fired on the held-out tokens, when saved
    al = alignment(d.W_dec, live=live)
    out = {"hook": hook, "source_hook": schema.feature_source(hook)[0], "d_in": d.d_in, "d_sae": d.d_sae,
           "k": d.k, "architecture": d.architecture, "metrics": dict(d.meta.get("metrics") or {}),
           "aligned_share": al["aligned_share"], "spread_share": al["spread_share"],
           "median_max_cos": al["median_max_cos"],
           "alignment_over": "all features" if live is None else "live features", "alignment_dead": al["dead_count"],
           **{key: al[key] for key in ("dead_aligned_share", "dead_spread_share", "dead_median_max_cos") if key in al},
           "indexed": st.is_indexed(hook),
           "trained_here": bool(d.meta.get("trained_here", False)), "tokens_per_s": d.meta.get("tokens_per_s")}
    thr = columns.THRESHOLDS["explain_score"]
    out["explain_threshold"] = thr
    if st.is_indexed(hook):
        t = st.neuron_table(hook)
        live = np.asarray(t["max_act"]) > 0
        score = np.asarray(t["explain_score"], np.float64)
        out["live_features"] = int(live.sum())
        out["explained_share"] = float(np.mean(score[live] >= thr)) if live.any() else float("nan")
        hid = np.asarray(t["hidden_share"], np.float64)
        ok = live & np.isfinite(hid)
        cand = ok & (hid >= HIDDEN_SHARE)
        out["hidden_share"] = float(cand.sum() / ok.sum()) if ok.any() else float("nan")
        out["hidden_count"] = int(cand.sum()) if ok.any() else None
        order = np.flatnonzero(cand)[np.argsort(-np.asarray(t["max_act"])[cand], kind="stable")][:examples]
        out["hidden_examples"] = [{"feature": int(f), "max_act": float(t["max_act"][f]),
                                   "hidden_share": float(hid[f]), "max_cos": float(t["max_cos"][f]),
                                   "explanation": str(t["explanation"][f]), "top_token": str(t["top_token"][f])}
                                  for f in order]
    src = out["source_hook"]
    if st.is_indexed(src):
        tn = st.neuron_table(src)
        s = np.asarray(tn["explain_score"], np.float64)
        live = np.asarray(tn["max_act"]) > 0
        out["neurons_explained_share"] = float(np.mean(s[live] >= thr)) if live.any() else float("nan")
    peak = read_neuron_peak(st, hook)
    if peak is not None:
        out["tokens_without_strong_neuron"] = float(np.mean(peak < HIDDEN_PEAK))
    return out


def report_rows(summaries: list[dict]) -> list[list[str]]:
    """Rows of the side-by-side table (one per dictionary) for the CLI and the app."""
    def f(v, fmt=".3f"):
        return "—" if v is None or (isinstance(v, float) and v != v) else format(v, fmt)

    def n(v):
        return "—" if v is None else f"{int(v):,}"

    rows = [["hook", "FVU", "loss rec.", "L0", "dead", "dense", "aligned", "spread", "explained", "hidden"]]
    for s in summaries:
        m = s.get("metrics") or {}
        hid = "—" if s.get("hidden_count") is None else f"{s['hidden_count']:,} ({f(s.get('hidden_share'), '.1%')})"
        rows.append([s["hook"], f(m.get("fvu")), f(m.get("loss_recovered")), f(m.get("l0"), ".1f"),
                     n(m.get("dead")), n(m.get("dense")), f(s.get("aligned_share"), ".1%"),
                     f(s.get("spread_share"), ".1%"), f(s.get("explained_share"), ".1%"), hid])
    return rows


def dump_json(obj) -> str:
    from store.format.dictionary import _json_default

    return json.dumps(obj, indent=2, default=_json_default)


__all__ = ["HIDDEN_PEAK", "HIDDEN_SHARE", "dictionary_summary", "has_feature_logits", "hidden_shares",
           "read_neuron_peak", "related_units", "report_rows", "table_columns", "write_feature_logits",
           "write_neuron_peak"]
