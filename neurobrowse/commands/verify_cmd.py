"""`neurobrowse verify STORE [--repair]`: check every chunk of a store; repair what the advice needs."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "verify", help="check every chunk of a store (existence, size, checksum, place); --repair",
        description="Read every chunk of a store and check it: the file exists, has the right size, matches "
        "its Crc32c checksum and the checksum its completion marker recorded (a chunk moved to another "
        "chunk's place fails that), for the recorded arrays, the tokenizer, the logit effects and each "
        "index. Exit 0 when everything is intact, 1 when something is damaged (the commands that repair "
        "it are printed). --repair clears the markers of bad chunks and drops damaged indexes, so that "
        "the store's record command and `neurobrowse index` rewrite exactly what was lost.")
    p.add_argument("store", help="store directory")
    p.add_argument("--repair", action="store_true",
                   help="clear the markers of bad chunks and drop damaged indexes (good data is kept)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from store.format.verify import format_report, verify_store

    report = verify_store(args.store, repair=args.repair, progress=not args.quiet)
    print(format_report(report))
    return 0 if report.ok else 1
