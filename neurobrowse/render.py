"""What the command line prints: plain text for people, ANSI shading on a terminal, JSON for scripts.

Commands parse their arguments, call one library function and hand the result to one function here.
Numbers and sizes are written by ``neurobrowse.formatting``, the same as in the app.
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any, TextIO

import numpy as np

from neurobrowse.formatting import human_bytes
from store.schema import parse_hook_name

# ---- JSON ----------------------------------------------------------------------------------------------


def _clean(x: Any) -> Any:
    """NaN / inf as null, numpy scalars and arrays as plain numbers and lists, paths as strings."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if hasattr(x, "tolist"):  # numpy arrays and scalars
        return _clean(x.tolist())
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, (str, int, bool)) or x is None:
        return x
    return str(x)


def json_text(obj: Any, indent: int | None = 1) -> str:
    """``obj`` as JSON: NaN as null, numpy values as numbers, anything else as its string."""
    return json.dumps(_clean(obj), indent=indent, ensure_ascii=False)


# ---- ANSI shading ----------------------------------------------------------------------------------------


def use_color(mode: str, stream: TextIO | None = None) -> bool:
    """--color always / never / auto (auto: only when the stream is a terminal)."""
    stream = stream or sys.stdout
    return mode == "always" or (mode == "auto" and stream.isatty())


_RAMP_POS = (231, 230, 229, 222, 221, 215, 214, 208, 202)  # ANSI 256 colours: white -> orange
_RAMP_NEG = (231, 195, 159, 153, 117, 111, 75, 69, 33)  # white -> blue


def shade(level: float, negative: bool = False) -> str:
    """ANSI background (and black text) for an activation level in [0, 1]."""
    ramp = _RAMP_NEG if negative else _RAMP_POS
    return f"\x1b[48;5;{ramp[min(len(ramp) - 1, int(level * (len(ramp) - 1) + 0.5))]}m\x1b[38;5;16m"


def snippet_line(s, scale: float, color: bool, width: int = 100) -> str:
    """One snippet (store.measures.snippets.Snippet) on one line: the tokens the model saw, each shaded by the
    neuron's activation (firing token bold and underlined); without colour the firing token is in «»
    and kept in view."""
    parts = []
    lo, hi = s.crop()
    for i, (tok, act) in enumerate(zip(s.tokens, s.acts)):
        if not lo <= i < hi:
            continue
        if color:
            lvl = min(1.0, abs(float(act)) / scale) if scale > 0 else 0.0
            style = shade(lvl, float(act) < 0) + ("\x1b[1;4m" if i == s.center else "")
            parts.append(f"{style}{tok}\x1b[0m")
        else:
            parts.append(f"«{tok}»" if i == s.center else tok)
    text = "".join(parts)
    if not color and len(text) > width:  # keep the firing token in view
        at = text.index("«")
        lo = max(0, min(at - width * 2 // 3, len(text) - width))
        text = ("…" if lo else "") + text[lo:lo + width] + ("…" if lo + width < len(text) else "")
    return text


# ---- one neuron (`show`) -------------------------------------------------------------------------------


def snippet_dict(s) -> dict:
    return {"position": s.position, "value": s.value, "center": s.center, "token_ids": s.token_ids,
            "tokens": s.tokens, "acts": s.acts, "context": [s.ctx_lo, s.ctx_hi], "more": s.more}


def neuron_dict(view, store) -> dict:
    """Everything `show --json` prints about one neuron (store.format.neuron_page.NeuronView)."""
    return {
        "store": str(store.path), "run_uuid": store.run_uuid, "act_fn": store.act_fn,
        "hook": view.hook, "layer": view.layer, "neuron": view.neuron, "explanation": view.explanation,
        "stats": view.stats,
        "top_tokens": [{"token": t, "mean": m, "count": c} for t, m, c in view.top_tokens],
        "logit_up": [{"token": t, "effect": v} for t, v in view.logit_up],
        "logit_down": [{"token": t, "effect": v} for t, v in view.logit_down],
        "top": [snippet_dict(s) for s in view.top],
        "bottom": [snippet_dict(s) for s in view.bottom],
        "samples": {b: [snippet_dict(s) for s in v] for b, v in view.samples.items()},
        "hist_edges": view.hist_edges,
        "hist_counts": view.hist_counts,
        "unit": store.unit_word(view.hook) if hasattr(store, "unit_word") else "neuron",
        "related": list(getattr(view, "related", []) or []),
    }


def neuron_text(view, store, n_snippets: int, color: bool) -> str:
    """One neuron for the terminal: statistics, top tokens, logit effects, top and bottom snippets."""
    st = view.stats
    q = st.get("quantiles", {})
    word = store.unit_word(view.hook) if hasattr(store, "unit_word") else "neuron"
    lines = [
        f"{view.hook} {word} {view.neuron}   ({store.act_fn}, {store.n_tokens:,} tokens, {store.path})",
        f"  max {st['max_act']:.4g}   min {st['min_act']:.4g}   mean {st['mean']:.4g}   std {st['std']:.4g}   "
        f"skew {st['skewness']:.3g}   kurtosis {st['kurtosis']:.3g}   density {st['density']:.2%}",
        f"  token-rule score {st['token_rule_score']:.2f}   token lookup correlation {st['sim_score']:.2f}   "
        "quantiles " + "  ".join(f"{float(k):.1%}: {v:.3g}" for k, v in q.items()),
        "  rule: " + (f"{view.explanation}   (rule explanation score {st['explain_score']:.2f})" if view.explanation
                      else "none (no rule matches two distinct top firings; `neurobrowse index` adds rules to an "
                      "older index)"),
        "top tokens (mean activation, count):",
        "  " + ",  ".join(f"{t!r} {m:.3g} ({c})" for t, m, c in view.top_tokens[:10]),
    ]
    lines += related_lines(view, word, st)
    if view.logit_up:
        lines.append("logit effects (W_dec @ W_out @ W_U):" if word == "feature" else "logit effects (W_out @ W_U):")
        lines.append("  up:   " + ",  ".join(f"{t!r} {v:+.3g}" for t, v in view.logit_up[:10]))
        lines.append("  down: " + ",  ".join(f"{t!r} {v:+.3g}" for t, v in view.logit_down[:10]))
    scale = max(abs(st["max_act"]), abs(st["min_act"]), 1e-9)
    for title, snippets in (("top snippets", view.top), ("bottom snippets", view.bottom)):
        lines.append(f"{title}:")
        for s in snippets[:n_snippets]:
            more = f"  (+{s.more} more in this context)" if s.more else ""
            lines.append(f"  {s.value:>8.4g}  @{s.position:<9}  {snippet_line(s, scale, color)}{more}")
    return "\n".join(lines)


def related_lines(view, word: str, stats: dict) -> list[str]:
    """A feature: the neurons its decoder direction loads on; a neuron: the features that read from it."""
    rel = list(getattr(view, "related", []) or [])
    out = []
    if word == "feature":
        cos, hid = stats.get("max_cos"), stats.get("hidden_share")
        parts = []
        if cos is not None and cos == cos:
            parts.append(f"largest |cosine| with one neuron {cos:.2f}")
        if hid is not None and hid == hid:
            parts.append(f"top firings where no neuron fires strongly {hid:.0%}")
        if parts:
            out.append("  " + "   ".join(parts))
        if rel:
            out.append("decoder direction loads on neurons (component):")
            out.append("  " + ",  ".join(f"{r['unit']} {r['weight']:+.2f}" for r in rel))
    elif rel:
        out.append("features that read from it (encoder weight):")
        out.append("  " + ",  ".join(f"{r['hook'].rsplit('.', 1)[-1]}#{r['unit']} {r['weight']:.2f}" for r in rel[:10]))
    return out


# ---- dictionaries (`features info`, `features summary`) ------------------------------------------------


def _pct(v) -> str:
    return "—" if v is None or (isinstance(v, float) and v != v) else f"{v:.1%}"


def _num(v, fmt=".3f") -> str:
    return "—" if v is None or (isinstance(v, float) and v != v) else format(v, fmt)


def dictionary_metrics_text(m: dict) -> str:
    """A dictionary's metrics (solu_core.dictionary.metrics.evaluate) in a few lines."""
    lines = [f"  FVU {_num(m.get('fvu'))} on {m.get('heldout_tokens', 0):,} held-out tokens   mean L0 "
             f"{_num(m.get('l0'), '.1f')}   dead {m.get('dead', '—')}   dense (> {m.get('dense_threshold', 0.1):.0%} "
             f"of tokens) {m.get('dense', '—')}"]
    if m.get("loss_recovered") is not None:
        lines.append(f"  loss recovered {_pct(m.get('loss_recovered'))} vs zero ablation, "
                     f"{_pct(m.get('loss_recovered_vs_mean'))} vs mean ablation (CE original "
                     f"{_num(m.get('ce_original'))}, reconstruction {_num(m.get('ce_reconstruction'))}, zero "
                     f"{_num(m.get('ce_zero_ablation'))}, mean {_num(m.get('ce_mean_ablation'))})")
    else:
        lines.append(f"  loss recovered: — ({m.get('loss_recovered_note', 'not measured')})")
    over = f" of the {m['alignment_over']}" if m.get("alignment_over") else ""
    lines.append(f"  features{over} aligned with one neuron (|cos| >= 0.9) {_pct(m.get('aligned_share'))}, spread over "
                 f"many (< 0.5) {_pct(m.get('spread_share'))}")
    return "\n".join(lines)


def dictionaries_text(summaries: list[dict], examples: bool = False) -> str:
    """store.format.features.dictionary_summary results side by side (one row per dictionary), then the hidden
    candidates' examples."""
    from store.format.features import HIDDEN_PEAK, HIDDEN_SHARE, report_rows

    if not summaries:
        return "no dictionaries (train one: neurobrowse features train STORE --hook HOOK --width 8x --k 32)"
    rows = report_rows(summaries)
    if any("act_fn" in s for s in summaries):
        rows[0].insert(0, "model")
        for r, s in zip(rows[1:], summaries):
            r.insert(0, str(s.get("act_fn", "")))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    lines.append(f"aligned: |cos| >= 0.9 with one neuron; spread: < 0.5 (both over the live features); explained: "
                 f"rule explanation score >= {summaries[0].get('explain_threshold', 0.7)}; hidden: >= "
                 f"{HIDDEN_SHARE:.0%} of the top firings where no neuron reaches {HIDDEN_PEAK:.0%} of its maximum "
                 f"(count of the live features, share); "
                 f"dense: firing on > 10% of the held-out tokens")
    for s in summaries:
        if s.get("neurons_explained_share") is not None:
            lines.append(f"{s['source_hook']} neurons explained: {_pct(s['neurons_explained_share'])}"
                         + (f"   ({s.get('act_fn')})" if s.get("act_fn") else ""))
    if examples:
        for s in summaries:
            ex = s.get("hidden_examples") or []
            if not ex:
                continue
            lines.append(f"hidden candidates of {s['hook']}" + (f" ({s['store']})" if s.get("store") else "") + ":")
            for e in ex:
                lines.append(f"  feature {e['feature']}: max {e['max_act']:.3g}, hidden {e['hidden_share']:.0%}, "
                             f"|cos| {e['max_cos']:.2f}, {e['explanation'] or 'no rule'}   "
                             f"(neurobrowse show {s.get('store') or 'STORE'} --layer {parse_hook_name(s['hook'])[0]} "
                             f"--hook {s['hook']} --neuron {e['feature']})")
    return "\n".join(lines)


# ---- a store (`info`, `index`) ---------------------------------------------------------------------------


def info_text(info: dict) -> str:
    """``Store.info()`` for the terminal."""
    m = info["model"]
    lines = [
        f"store       {info['path']}",
        f"model       {m['act_fn']}, {m['n_layers']} layer(s), d_model {m['d_model']}, d_mlp {m['d_mlp']}, "
        f"d_vocab {m['d_vocab']}, n_ctx {m['n_ctx']}",
        f"checkpoint  {info['checkpoint_path']} (sha256 {str(info['checkpoint_hash'])[:12]})",
        f"run         {info['run_uuid']}, recorded {info['created']}, neurobrowse {info['code_version']}, "
        f"schema v{info['schema_version']}",
        f"tokens      {info['n_tokens']:,} in contexts of {info['context_len']}, "
        f"{info['n_chunks']} chunk(s) of {info['chunk_tokens']:,} rows",
    ]
    if info["complete"]:
        lines.append("status      complete")
    else:
        lines.append(f"status      INCOMPLETE: {info['chunks_done']}/{info['n_chunks']} chunks recorded. Resume with:")
        lines.append(f"              {info['resume_command']}")
    missing = info.get("missing_files") or []
    if missing:
        lines.append(f"DAMAGED     {len(missing)} file(s) missing, e.g. {', '.join(missing[:3])}. "
                     "Check and repair with:")
        lines.append(f"              neurobrowse verify --repair {info['path']}")
    else:
        lines.append(f"checked     every marked chunk file exists (full check: neurobrowse verify {info['path']})")
    lines.append("hooks")
    for hook, h in info["hooks"].items():
        if h["indexed"]:
            k = h["index_state"].get("k")
            state = f"indexed{f' (k={k})' if k else ''}"
        elif h["index_state"]:
            state = "index incomplete: run `neurobrowse index` to resume"
        else:
            state = "not indexed: run `neurobrowse index`"
        lines.append(f"  {hook:<28} {human_bytes(h['bytes_on_disk']):>10}   {state}")
    ratio = info["compression_ratio"]
    if info.get("dense") is False:
        lines.append("dense       no dense activations (recorded with --index --dense none): tokens, logit effects and "
                     "the index only; re-indexing needs a recording with --dense keep")
    lines.append(
        f"size        {human_bytes(info['size_on_disk'])} on disk; activations {human_bytes(info['dense_bytes_raw'])} "
        f"raw -> {human_bytes(info['dense_bytes_on_disk'])} (compression ratio {ratio:.2f})"
        if ratio else f"size        {human_bytes(info['size_on_disk'])} on disk"
    )
    return "\n".join(lines)


def score_summary_text(summary: dict) -> str:
    """``store.format.score_summary.score_summary`` as a table: per model, hook and score, mean, median,
    share passing."""
    lines = [f"{'model':<12} {'hook':<28} {'score':<17} {'mean':>6} {'median':>6} {'share>=thr':>10} {'n':>6}"]
    for model, hooks in summary.items():
        for hook, scores in hooks.items():
            for score, d in scores.items():
                lines.append(f"{model:<12} {hook:<28} {score:<17} {d['mean']:6.3f} {d['median']:6.3f} "
                             f"{d['share_above']:10.3f} {d['n_valid']:6d}")
    return "\n".join(lines)


def index_text(results: dict, summary: dict) -> str:
    """What `index` did per hook, then the score distributions."""
    lines = []
    for hook, s in results.items():
        if s.get("skipped"):
            lines.append(f"{hook}: {s['reason']}")
        else:
            lines.append(f"{hook}: indexed {s['n_tokens']:,} tokens x {s['n_neurons']} neurons (k={s['k']})")
    lines.append(score_summary_text(summary))
    return "\n".join(lines)


# ---- labels (`labels list / set / history`) ---------------------------------------------------------------


_CONTROL = {c: f"\\x{c:02x}" for c in [*range(0x20), 0x7F] if c != 0x09}


def printable(text: str) -> str:
    """``text`` with control characters (terminal escape sequences, newlines) shown as \\xNN, not obeyed."""
    return text.translate(_CONTROL)


def label_line(lab) -> str:
    """One label (store.labels.label.Label) on one line: run, hook, neuron, verdict, description, tags, who and when."""
    tags = f" [{printable(', '.join(lab.tags))}]" if lab.tags else ""
    desc = f" {printable(lab.description)}" if lab.description else ""
    return (f"{lab.run_uuid[:8]} {lab.hook} {lab.neuron:>6} {lab.verdict:<17}{desc}{tags}  "
            f"({printable(lab.author)}, {lab.time[:19]})")


def label_event_line(ev) -> str:
    """One event of a label's history."""
    what = ev.verdict or "(cleared)"
    return (f"#{ev.event_id:<6} {ev.time[:19]} {printable(ev.author):<12} {ev.source:<7} {what:<17} "
            f"{printable(ev.description)}" + (f" [{printable(', '.join(ev.tags))}]" if ev.tags else "")
            + (f"  notes: {printable(ev.notes)}" if ev.notes else ""))


# ---- two stores (`compare --summary`) ---------------------------------------------------------------------


def comparison_text(cmp) -> str:
    """``neurobrowse.compare.Comparison``: per model the share passing each score with its 95% interval,
    then the verdict."""
    from store.measures import columns

    lines = []
    for label, shares in zip(cmp.labels, cmp.shares):
        for r in shares:
            lo, hi = r.interval
            title = columns.BY_NAME[r.name].title if r.name in columns.BY_NAME else r.name
            lines.append(f"{label:>12}  {title} >= {r.threshold:g}: {r.k}/{r.n} = {r.share:.1%}  "
                         f"95% CI [{lo:.1%}, {hi:.1%}]")
    lines += ["", cmp.verdict]
    ev = getattr(cmp, "evidence", None)
    if ev is not None:  # neurobrowse.verdict.Verdict: the evidence line by line and what "holds" means
        lines += [f"  - {line}" for line in ev.lines]
        lines.append(f"({ev.help})")
    for label, t in zip(cmp.labels, cmp.tables):
        line = ln_overlap_line(t.get("ln_overlap"))
        if line:
            lines.append(f"{label}: {line}")
    return "\n".join(lines)


def ln_overlap_line(values) -> str:
    """The distribution of the pre/post-LayerNorm top-firing overlap in words ('' without one)."""
    v = np.asarray(values if values is not None else [], np.float64)
    v = v[np.isfinite(v)]
    if not v.size:
        return ""
    q = np.quantile(v, [0.1, 0.25, 0.5, 0.75, 0.9])
    return (f"top firings kept across the LayerNorm (hook_post vs hook_mid), over {v.size} neurons: median "
            f"{q[2]:.2f}, quartiles {q[1]:.2f}-{q[3]:.2f}, 10%-90% {q[0]:.2f}-{q[4]:.2f}; "
            f"{(v < 0.5).mean():.1%} of neurons keep fewer than half (filter `ln_overlap < 0.5`)")


__all__ = ["json_text", "use_color", "shade", "snippet_line", "neuron_dict", "neuron_text", "info_text",
           "score_summary_text", "index_text", "label_line", "label_event_line", "comparison_text",
           "ln_overlap_line"]
