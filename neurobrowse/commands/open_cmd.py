"""`neurobrowse open STORE`: the desktop browser on one store."""

from __future__ import annotations

import argparse

from neurobrowse import options
from store.errors import NeurobrowseError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "open",
        help="browse a store's neurons in the desktop app",
        description="Open the neuron browser on STORE: a sortable, filterable neuron table and each neuron's "
        "page (shaded top/bottom/quantile snippets, histogram, top tokens, logit effects, before/after "
        "LayerNorm, try-your-text). Without a display use --offscreen --screenshot PNG.",
    )
    p.add_argument("store", nargs="?", help="store directory (default: the most recently opened store)")
    p.add_argument("--hook", type=options.hook_name, help="start on this hook, e.g. blocks.0.mlp.hook_post")
    p.add_argument("--neuron", type=options.non_negative_int, help="start on this neuron")
    p.add_argument("--offscreen", action="store_true", help="render without a display (with --screenshot)")
    p.add_argument("--screenshot", type=options.output_file, metavar="PNG",
                   help="render the window with a neuron page into PNG and exit")
    p.add_argument("--smoke-test", action="store_true", help="start headless, open STORE, exit 0 once a page shows")
    p.set_defaults(func=run)


def _check_start(args: argparse.Namespace) -> None:
    """Refuse a --hook / --neuron the store does not have before any window opens."""
    if not args.store or (args.hook is None and args.neuron is None):
        return
    from store.format.reader import Store

    st = Store.open(args.store)
    hook = st.hook_for(0, args.hook) if args.hook else st.hooks[0]
    if args.neuron is not None and not 0 <= args.neuron < st.n_units(hook):
        raise NeurobrowseError(f"--neuron {args.neuron} is out of range: {hook} has units 0..{st.n_units(hook) - 1}")


def run(args: argparse.Namespace) -> int:
    from neurobrowse.qt import smoke, windows

    _check_start(args)
    if args.smoke_test:
        if not args.store:
            raise NeurobrowseError("--smoke-test needs a STORE: neurobrowse open STORE --smoke-test")
        return smoke.smoke_test(args.store)
    if args.screenshot:
        if not args.store:
            raise NeurobrowseError("--screenshot needs a STORE: neurobrowse open STORE --screenshot out.png")
        out = smoke.screenshot_main(args.store, args.screenshot, neuron=args.neuron)
        print(f"screenshot written to {out}")
        return 0
    windows.ensure_app(offscreen=args.offscreen)
    from neurobrowse.qt.main_window import MainWindow
    from neurobrowse.qt.settings import recent_stores

    win = MainWindow()
    target = args.store or (recent_stores(win.settings)[:1] or [None])[0]
    if target:
        win.open_store(target, hook=args.hook, neuron=args.neuron)
    return windows.run_windows(win)
