"""`neurobrowse info STORE`: what a store holds, whether it is complete and indexed, its size."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="summarise a store: model, hooks, tokens, completeness, index state, size",
                       description="Summarise an activation store. An incomplete store is shown with the command "
                       "that resumes its recording.")
    p.add_argument("store", help="store directory")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from neurobrowse import render
    from store.format.reader import Store

    info = Store.open(args.store).info()
    print(render.json_text(info, indent=2) if args.json else render.info_text(info))
    return 1 if info.get("missing_files") else 0
