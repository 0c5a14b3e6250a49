"""`neurobrowse demo`: the whole loop on this machine, then the GeLU vs SoLU-LN compare window."""

from __future__ import annotations

import argparse
from pathlib import Path

from neurobrowse import options
from neurobrowse.demo import DEFAULT_WORKDIR


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="corpus -> tokenizer -> GeLU + SoLU-LN pair -> record -> index -> compare window (cached, resumable)",
        description="Build everything from text found on this machine and open the compare window. Each step is "
        "cached and resumable: a second run opens the window in seconds, an interrupted one picks up where it "
        f"stopped. Artifacts go under --workdir (default {DEFAULT_WORKDIR}, or $NEUROBROWSE_DEMO_DIR). Without "
        "a display it renders the window into WORKDIR/demo.png instead.",
    )
    p.add_argument("--workdir", type=options.output_dir, default=None,
                   help=f"where artifacts go (default: {DEFAULT_WORKDIR})")
    p.add_argument("--preset", default="demo",
                   help="training preset: demo (minutes) or tiny (seconds, for a quick look)")
    p.add_argument("--tokens", type=options.positive_int, default=None,
                   help="tokens recorded per model (default: 262,144; tiny: 20,480)")
    p.add_argument("--seed", type=options.non_negative_int, default=0,
                   help="initial weights and data order of the pair (default 0; another seed gives another pair)")
    p.add_argument("--no-control", action="store_true",
                   help="skip the random-init controls (by default the untrained GeLU and SoLU-LN of the same seed are "
                   "recorded into WORKDIR/stores/<act_fn>-random, so compare shows the proxy's share on random "
                   "neurons)")
    p.add_argument("--device", type=options.device, default="auto",
                   help="auto (CUDA when present), cpu, cuda, ...")
    p.add_argument("--offscreen", action="store_true", help="no window: render the compare window into --screenshot")
    p.add_argument("--screenshot", metavar="PNG", type=options.output_file,
                   help="render the compare window into PNG and exit")
    p.add_argument("--no-window", action="store_true", help="build everything, open nothing")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--features", action="store_true",
                   help="also train and index dictionaries (8x, k 32) on GeLU hook_post and SoLU-LN hook_mid and "
                   "hook_post: the paper's hidden-features question (docs/features.md; minutes more)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from neurobrowse.demo import DemoConfig, run_pipeline

    cfg = DemoConfig(preset=args.preset, n_tokens=args.tokens, device=args.device, progress=not args.quiet,
                     seed=args.seed, controls=() if args.no_control else ("random",),
                     features=args.features)
    if args.workdir is not None:
        cfg.workdir = args.workdir
    res = run_pipeline(cfg)
    a, b = res.stores["gelu"], res.stores["solu_ln"]
    if args.no_window:
        print(f"stores ready: {a} {b}\nbrowse with: neurobrowse compare {a} {b}")
        return 0
    from neurobrowse.qt import smoke, windows

    headless = args.offscreen or args.screenshot is not None or not windows.has_display()
    if headless:
        out = args.screenshot or Path(cfg.workdir) / "demo.png"
        if not (args.offscreen or args.screenshot):
            print("no display ($DISPLAY / $WAYLAND_DISPLAY unset): rendering the compare window offscreen instead")
        path = smoke.screenshot_compare(a, b, out)
        print(f"screenshot of the compare window: {Path(path).absolute()}")
        print(f"on a desktop, browse with: neurobrowse compare {a} {b}")
        return 0
    windows.ensure_app()
    return windows.run_windows(windows.open_compare_window(a, b))
