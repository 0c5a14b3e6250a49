"""`neurobrowse show STORE --layer L --neuron N`: one neuron in the terminal (or as JSON)."""

from __future__ import annotations

import argparse
import json
import math
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("show", help="show one neuron: stats, top tokens, logit effects, top snippets",
                       description="Show one indexed neuron of a store: its statistics, the tokens it fires on, "
                       "its direct logit effects and its strongest snippets with the activations highlighted "
                       "(colour on a terminal, the firing token in «» when piped).")
    p.add_argument("store", help="store directory")
    p.add_argument("--layer", type=int, required=True, help="layer number")
    p.add_argument("--neuron", type=int, required=True, help="neuron number")
    p.add_argument("--hook", default=None, help="hook_post (default), hook_mid, or a full hook name")
    p.add_argument("--snippets", type=int, default=8, help="top (and bottom) snippets to show (default 8)")
    p.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                   help="ANSI colour (default: auto, only on a terminal)")
    p.add_argument("--json", action="store_true", help="print everything as JSON for scripts")
    p.set_defaults(func=run)


def _num(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else x


def snippet_json(s) -> dict:
    return {"position": s.position, "value": _num(s.value), "center": s.center, "token_ids": s.token_ids.tolist(),
            "tokens": s.tokens, "acts": [_num(float(a)) for a in s.acts], "context": [s.ctx_lo, s.ctx_hi],
            "more": s.more}


def view_json(view, store) -> dict:
    return {
        "store": str(store.path), "run_uuid": store.run_uuid, "act_fn": store.act_fn,
        "hook": view.hook, "layer": view.layer, "neuron": view.neuron,
        "stats": {k: ({q: _num(v) for q, v in val.items()} if isinstance(val, dict) else _num(val))
                  for k, val in view.stats.items()},
        "top_tokens": [{"token": t, "mean": _num(m), "count": c} for t, m, c in view.top_tokens],
        "logit_up": [{"token": t, "effect": v} for t, v in view.logit_up],
        "logit_down": [{"token": t, "effect": v} for t, v in view.logit_down],
        "top": [snippet_json(s) for s in view.top],
        "bottom": [snippet_json(s) for s in view.bottom],
        "samples": {b: [snippet_json(s) for s in v] for b, v in view.samples.items()},
        "hist_edges": [_num(float(x)) for x in view.hist_edges],
        "hist_counts": view.hist_counts.tolist(),
    }


def _bg(level: float, negative: bool) -> str:
    """ANSI 256-colour background for an activation level in [0, 1]: white -> orange (or blue)."""
    ramp_pos = (231, 230, 229, 222, 221, 215, 214, 208, 202)
    ramp_neg = (231, 195, 159, 153, 117, 111, 75, 69, 33)
    ramp = ramp_neg if negative else ramp_pos
    return f"\x1b[48;5;{ramp[min(len(ramp) - 1, int(level * (len(ramp) - 1) + 0.5))]}m\x1b[38;5;16m"


def render_snippet(s, scale: float, color: bool, width: int = 100) -> str:
    """One line: the window's tokens the model saw, each shaded by this neuron's activation (firing token bold)."""
    parts = []
    for i, (tok, act) in enumerate(zip(s.tokens, s.acts)):
        if not s.ctx_lo <= i < s.ctx_hi:
            continue
        if color:
            lvl = min(1.0, abs(float(act)) / scale) if scale > 0 else 0.0
            style = _bg(lvl, float(act) < 0) + ("\x1b[1;4m" if i == s.center else "")
            parts.append(f"{style}{tok}\x1b[0m")
        else:
            parts.append(f"«{tok}»" if i == s.center else tok)
    text = "".join(parts)
    if not color and len(text) > width:  # keep the firing token in view
        at = text.index("«")
        lo = max(0, min(at - width * 2 // 3, len(text) - width))
        text = ("…" if lo else "") + text[lo:lo + width] + ("…" if lo + width < len(text) else "")
    return text


def format_view(view, store, n_snippets: int, color: bool) -> str:
    st = view.stats
    q = st.get("quantiles", {})
    lines = [
        f"{view.hook} neuron {view.neuron}   ({store.act_fn}, {store.n_tokens:,} tokens, {store.path})",
        f"  max {st['max_act']:.4g}   min {st['min_act']:.4g}   mean {st['mean']:.4g}   std {st['std']:.4g}   "
        f"skew {st['skewness']:.3g}   kurtosis {st['kurtosis']:.3g}   density {st['density']:.2%}",
        f"  token-rule score {st['token_rule_score']:.2f}   simulation score {st['sim_score']:.2f}   quantiles "
        + "  ".join(f"{float(k):.1%}: {v:.3g}" for k, v in q.items()),
        "top tokens (mean activation, count):",
        "  " + ",  ".join(f"{t!r} {m:.3g} ({c})" for t, m, c in view.top_tokens[:10]),
    ]
    if view.logit_up:
        lines.append("logit effects (W_out @ W_U):")
        lines.append("  up:   " + ",  ".join(f"{t!r} {v:+.3g}" for t, v in view.logit_up[:10]))
        lines.append("  down: " + ",  ".join(f"{t!r} {v:+.3g}" for t, v in view.logit_down[:10]))
    scale = max(abs(st["max_act"]), abs(st["min_act"]), 1e-9)
    for title, snippets in (("top snippets", view.top), ("bottom snippets", view.bottom)):
        lines.append(f"{title}:")
        for s in snippets[:n_snippets]:
            more = f"  (+{s.more} more in this context)" if s.more else ""
            lines.append(f"  {s.value:>8.4g}  @{s.position:<9}  {render_snippet(s, scale, color)}{more}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from store.reader import Store

    store = Store.open(args.store)
    hook = store.hook_for(args.layer, args.hook)
    view = store.neuron(hook, args.neuron)
    if args.json:
        print(json.dumps(view_json(view, store), indent=1, ensure_ascii=False))
        return 0
    color = args.color == "always" or (args.color == "auto" and sys.stdout.isatty())
    print(format_view(view, store, args.snippets, color))
    return 0
