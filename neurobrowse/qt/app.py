"""Starting the app: the ``neurobrowse-app`` GUI script and the packaged app (packaging/neurobrowse_app.py):
``[STORE [STORE_B]] [--smoke-test] [--offscreen --screenshot PNG]``.

The windows it opens are in neurobrowse.qt.windows, the headless runs in neurobrowse.qt.smoke.
"""

from __future__ import annotations

import argparse
import sys

from neurobrowse.qt.smoke import screenshot_compare, screenshot_main, smoke_test
from neurobrowse.qt.windows import ensure_app, open_compare_window, run_windows
from store.errors import NeurobrowseError


def main(argv: list[str] | None = None) -> int:
    """The ``neurobrowse-app`` GUI entry point (and the packaged app): ``[STORE [STORE_B]] [--smoke-test]``."""
    p = argparse.ArgumentParser(prog="neurobrowse-app", description="The neurobrowse desktop app.")
    p.add_argument("stores", nargs="*", help="a store to open, or two to compare")
    p.add_argument("--smoke-test", action="store_true", help="start headless, open STORE, exit 0 when a page shows")
    p.add_argument("--offscreen", action="store_true", help="render without a display")
    p.add_argument("--screenshot", metavar="PNG", help="render the window to PNG and exit")
    args = p.parse_args(argv)
    try:
        if args.smoke_test:
            if not args.stores:
                print("error: --smoke-test needs a STORE", file=sys.stderr)
                return 2
            return smoke_test(args.stores[0])
        if args.screenshot:
            if len(args.stores) == 2:
                out = screenshot_compare(args.stores[0], args.stores[1], args.screenshot)
            elif args.stores:
                out = screenshot_main(args.stores[0], args.screenshot)
            else:
                print("error: --screenshot needs a STORE", file=sys.stderr)
                return 2
            print(f"screenshot written to {out}")
            return 0
        ensure_app(offscreen=args.offscreen)
        if len(args.stores) == 2:
            return run_windows(open_compare_window(*args.stores))
        from neurobrowse.qt.main_window import MainWindow
        from neurobrowse.qt.settings import recent_stores

        win = MainWindow()
        target = args.stores[0] if args.stores else (recent_stores(win.settings)[:1] or [None])[0]
        if target:
            win.open_store(target)
        return run_windows(win)
    except NeurobrowseError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
