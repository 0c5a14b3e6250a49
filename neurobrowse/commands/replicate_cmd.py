"""`neurobrowse replicate --sizes 1,2,4 --preset small --out DIR` and `neurobrowse replicate report DIR`."""

from __future__ import annotations

import argparse
from pathlib import Path

from neurobrowse import options


def register(sub: argparse._SubParsersAction) -> None:
    from neurobrowse.replicate.presets import PRESETS

    p = sub.add_parser(
        "replicate",
        help="the paper's size sweep: GeLU / SoLU-LN / SoLU (+ smaller GeLUs, a random control) per size, "
        "recorded, indexed, one blinded study per size, and a report; resumable",
        description="Per size (layers) train GeLU, SoLU-LN and plain SoLU on the same data, seed and "
        "initialisation, GeLU at smaller MLP widths (its loss-vs-width curve) and a random-model control; "
        "record and index the four (indexing while recording); draw one blinded study per size; write "
        "DIR/report/. Every step is resumable: run the same command again after a crash or kill. "
        "`neurobrowse replicate report DIR` rewrites the report (after ratings were entered with "
        "`neurobrowse study rate DIR/L<n>/study`). See docs/replicate.md.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="presets:\n" + "\n".join(f"  {k:<10} {v.description}" for k, v in PRESETS.items()),
    )
    p.add_argument("action", nargs="*", metavar="report DIR",
                   help="`report DIR`: (re)write DIR's report from what is on disk; nothing is trained")
    p.add_argument("--sizes", default="1,2,4", help="layer counts, comma-separated (default: 1,2,4)")
    p.add_argument("--preset", default="small", help=f"one of {', '.join(PRESETS)} (default: small)")
    p.add_argument("--out", type=options.output_dir, default=None, metavar="DIR", help="the sweep's folder")
    p.add_argument("--device", type=options.device, default="auto", help="auto (CUDA when present), cpu, cuda, ...")
    p.add_argument("--per-model", type=options.positive_int, default=None,
                   help="neurons per model in each size's study (default: the preset's, 60)")
    p.add_argument("--dense", choices=("keep", "none"), default="none",
                   help="keep the dense activations (keep) or only the index (none, default)")
    p.add_argument("--corpus", default=None, metavar="DIR",
                   help="an existing corpus (`neurobrowse corpus`); default: build one from text on this machine")
    p.add_argument("--seed", type=options.non_negative_int, default=None, help="training seed (default 0)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from neurobrowse.replicate.presets import ReplicateError

    if args.action:
        if args.action[0] != "report" or len(args.action) != 2:
            raise ReplicateError(f"unexpected {' '.join(args.action)!r}: use `neurobrowse replicate --out DIR ...` "
                                 f"to run the sweep or `neurobrowse replicate report DIR` to write its report")
        from neurobrowse.replicate.report import write_report

        files = write_report(Path(args.action[1]))
        print(Path(files["txt"]).read_text(encoding="utf-8"), end="")
        print(f"written: {', '.join(files.values())}")
        return 0
    if args.out is None:
        raise ReplicateError("--out DIR is needed: the folder the sweep is built in (or continued)")
    from neurobrowse.replicate.pipeline import ReplicateConfig, run_sweep
    from neurobrowse.replicate.presets import parse_sizes

    cfg = ReplicateConfig(out=args.out, sizes=parse_sizes(args.sizes), preset=args.preset, device=args.device,
                          per_model=args.per_model, dense=args.dense,
                          corpus=Path(args.corpus) if args.corpus else None, seed=args.seed, quiet=args.quiet)
    res = run_sweep(cfg)
    done = sum(s["status"] == "done" for s in res.steps)
    print(f"sweep ready in {res.out}: {done} step(s) run, {len(res.steps) - done} finished earlier")
    return 0
