"""The `neurobrowse` command line: a thin shell over the library.

Each verb lives in neurobrowse/commands/<verb>.py with a ``register(subparsers)`` function.
Errors derived from NeurobrowseError print ``error: ...`` and exit 2; Ctrl-C exits 130 and the
work done so far stays on disk, so the same command resumes.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import sys

from neurobrowse import __version__
from store.errors import NeurobrowseError

# The verbs, in the order `--help` lists them. Add a verb by adding its module here.
VERBS = [
    "demo",
    "corpus",
    "train",
    "record",
    "index",
    "info",
    "verify",
    "show",
    "open",
    "compare",
    "labels",
    "study",
    "export",
    "replicate",
    "features",
]


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole parser, or with ``only`` a verb of VERBS just that verb's (so `neurobrowse index ...`
    imports the index command's module and nothing of the other verbs': imports stay lazy)."""
    parser = argparse.ArgumentParser(
        prog="neurobrowse",
        description="Offline neuron browser: train GeLU/SoLU models, record and index MLP neurons, "
        "browse, label and rate them.",
    )
    parser.add_argument("--version", action="version", version=f"neurobrowse {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", title="verbs")
    for verb in VERBS if only not in VERBS else [only]:
        importlib.import_module(f"neurobrowse.commands.{verb}_cmd").register(sub)
    return parser


def describe_os_error(e: OSError) -> str:
    """What an operating-system error during a command means for the user, and what to do."""
    where = f" ({e.filename})" if e.filename else ""
    if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return (f"the disk is full{where}; free some space and run the same command again: what was finished "
                f"is kept and the command resumes")
    if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"no permission to write{where} ({e.strerror}); choose a folder you can write to (--out)"
    return f"{e.strerror or e}{where}"


def _verb_of(argv: list[str]) -> str | None:
    """The verb a command line names (its first argument, when it is one of VERBS), else None."""
    return argv[0] if argv and argv[0] in VERBS else None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(_verb_of(sys.argv[1:] if argv is None else list(argv)))
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.verb is None else 2
    try:
        return int(args.func(args) or 0)
    except NeurobrowseError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"error: {describe_os_error(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: what was written so far is kept; run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
