"""`neurobrowse export STORE --format jsonl|csv|neuron-explainer ...`: labeled neuron sets out of the tool."""

from __future__ import annotations

import argparse

from neurobrowse import __version__, options
from neurobrowse.commands.labels_cmd import common_db_args, open_db
from store.export.neurons import ExportConfig, ExportError, FORMATS
from store.labels.label import VERDICTS


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export", parents=[common_db_args()], help="export labeled neurons (jsonl, csv, neuron-explainer)",
        description="Export neurons with their labels, statistics and top snippets. By default only labeled "
                    "neurons; --all adds the rest. Written atomically (temp file + rename).")
    p.add_argument("store", metavar="STORE")
    p.add_argument("--format", choices=FORMATS, default="jsonl")
    p.add_argument("--out", type=options.output_file, required=True, metavar="FILE")
    p.add_argument("--verdict", choices=VERDICTS, action="append", help="only this verdict (repeatable)")
    p.add_argument("--tag", action="append", help="only labels with this tag (repeatable: any of them)")
    p.add_argument("--layer", type=options.non_negative_int, action="append", help="only this layer (repeatable)")
    p.add_argument("--hook", type=options.hook_name, action="append",
                   help="only this hook (full name; repeatable; default: every indexed)")
    p.add_argument("--min-score", action="append", default=[], metavar="[NAME=]VALUE",
                   help="keep neurons whose statistic NAME (default token_rule_score) is >= VALUE, e.g. "
                        "sim_score=0.5 or max_act=1 (repeatable)")
    p.add_argument("--all", action="store_true", help="also export unlabeled neurons")
    p.add_argument("--snippets", type=options.non_negative_int, default=20, help="top snippets per neuron (default 20)")
    p.add_argument("--gzip", action="store_true", help="gzip the output")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_export)


def parse_min_scores(items: list[str]) -> dict[str, float]:
    out = {}
    for it in items:
        name, _, value = it.rpartition("=")
        try:
            out[name or "token_rule_score"] = float(value)
        except ValueError:
            raise ExportError(f"--min-score {it!r}: expected NAME=NUMBER or NUMBER") from None
    return out


def cmd_export(args: argparse.Namespace) -> int:
    from store.export.neurons import export_store
    from store.format.reader import Store

    store = Store.open(args.store)
    cfg = ExportConfig(fmt=args.format, hooks=args.hook, verdicts=args.verdict, tags=args.tag, layers=args.layer,
                       min_scores=parse_min_scores(args.min_score), all_neurons=args.all, snippets=args.snippets,
                       gzip=args.gzip)
    with open_db(args) as db:
        res = export_store(store, args.out, cfg, labels_db=db, tool_version=__version__, progress=not args.quiet)
    print(f"exported {res['n_neurons']} neuron(s) of run {res['run_uuid']} to {res['path']} "
          f"({res['format']}, {res['bytes']:,} bytes)")
    return 0
