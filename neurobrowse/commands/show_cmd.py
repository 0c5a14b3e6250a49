"""`neurobrowse show STORE --layer L --neuron N`: one neuron in the terminal (or as JSON)."""

from __future__ import annotations

import argparse

from neurobrowse import options


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("show", help="show one neuron: stats, top tokens, logit effects, top snippets",
                       description="Show one indexed neuron of a store: its statistics, the tokens it fires on, "
                       "its direct logit effects and its strongest snippets with the activations highlighted "
                       "(colour on a terminal, the firing token in «» when piped).")
    p.add_argument("store", help="store directory")
    p.add_argument("--layer", type=options.non_negative_int, required=True, help="layer number")
    p.add_argument("--neuron", "--feature", dest="neuron", type=options.non_negative_int, required=True,
                   help="neuron number (a feature's number with a dictionary's --hook)")
    p.add_argument("--hook", default=None,
                   help="hook_post (default), hook_mid, a dictionary's features (hook_post.sae.NAME) or a full hook "
                   "name")
    p.add_argument("--snippets", type=options.non_negative_int, default=8,
                   help="top (and bottom) snippets to show (default 8)")
    p.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                   help="ANSI colour (default: auto, only on a terminal)")
    p.add_argument("--json", action="store_true", help="print everything as JSON for scripts")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from neurobrowse import render
    from store.format.reader import Store

    store = Store.open(args.store)
    view = store.neuron(store.hook_for(args.layer, args.hook), args.neuron)
    if args.json:
        print(render.json_text(render.neuron_dict(view, store)))
    else:
        print(render.neuron_text(view, store, args.snippets, render.use_color(args.color)))
    return 0
