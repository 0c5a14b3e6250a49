"""`neurobrowse compare STORE_A STORE_B`: two models' neurons side by side (GeLU vs SoLU-LN)."""

from __future__ import annotations

import argparse

from neurobrowse import options


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="compare two stores (e.g. GeLU vs SoLU-LN): score distributions, pass shares, neuron pages",
        description="Population plots of both interpretability scores, max activation, density and kurtosis "
        "for both models; the share of neurons passing each automated score with 95% Wilson intervals; a "
        "plain verdict on whether SoLU-LN comes out more interpretable; a neuron page for either side.",
    )
    p.add_argument("store_a")
    p.add_argument("store_b")
    p.add_argument("--offscreen", action="store_true", help="render without a display (with --screenshot)")
    p.add_argument("--screenshot", type=options.output_file, metavar="PNG",
                   help="render the compare window into PNG and exit")
    p.add_argument("--control", action="append", default=None, metavar="STORE",
                   help="a random-model control store (`neurobrowse train --init random`, recorded and indexed) "
                   "whose calibrated share is shown beside the trained models' (repeatable; default: controls "
                   "found beside the two stores)")
    p.add_argument("--no-control", action="store_true", help="show no random-model control")
    p.add_argument("--summary", action="store_true",
                   help="print the comparison (shares, intervals, verdict; and the dictionaries' aligned, "
                   "spread, explained and hidden features when the stores have any) and exit")
    p.add_argument("--allow-mismatch", action="store_true",
                   help="compare even stores indexed or recorded too differently (another k, tokenizer, text, "
                        "or token counts more than 4x apart); the differences are printed as warnings")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from store.errors import StoreError
    from store.format.reader import Store

    a, b = Store.open(args.store_a), Store.open(args.store_b)
    if a.run_uuid == b.run_uuid:
        raise StoreError(f"{a.path} and {b.path} are the same recording (run {a.run_uuid}); compare two models' "
                         f"stores, e.g. the GeLU and the SoLU-LN store of `neurobrowse demo`")
    import sys

    from neurobrowse.comparable import comparability

    gross, minor = comparability(a, b)  # before any comparison: a verdict on unlike stores means nothing
    if gross and not args.allow_mismatch:
        raise StoreError(f"{a.path} and {b.path} cannot be compared fairly: " + "; ".join(gross)
                         + ". Add --allow-mismatch to compare them anyway")
    for why in gross + minor:
        print(f"warning: {a.path.name} and {b.path.name}: {why}", file=sys.stderr)
    if args.summary:
        from neurobrowse import render
        from neurobrowse.compare import compare_stores

        controls = [] if args.no_control else args.control
        print(render.comparison_text(compare_stores(args.store_a, args.store_b, controls=controls)))
        if a.feature_hooks or b.feature_hooks:  # the dictionaries of both: do features hide below the LayerNorm?
            from store.format.features import dictionary_summary

            rows = [{**dictionary_summary(st, h), "store": str(st.path), "act_fn": st.act_fn}
                    for st in (a, b) for h in st.feature_hooks]
            print("\ndictionaries (features of sparse autoencoders over the hooks; docs/features.md):")
            print(render.dictionaries_text(rows, examples=True))
        return 0
    from neurobrowse.qt import smoke, windows

    if args.screenshot:
        out = smoke.screenshot_compare(args.store_a, args.store_b, args.screenshot)
        print(f"screenshot written to {out}")
        return 0
    windows.ensure_app(offscreen=args.offscreen)
    return windows.run_windows(windows.open_compare_window(args.store_a, args.store_b))
