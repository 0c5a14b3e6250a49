"""`neurobrowse index STORE [--k K] [--hooks ...] [--force]`: index every neuron of a recorded store."""

from __future__ import annotations

import argparse

from neurobrowse import options
from store import schema


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "index", help="index a recorded store: top-k / bottom-k snippets, samples, histograms, stats, scores",
        description="One streaming read per hook over the recorded activations (Numba, parallel over neurons; "
        "a second read only for a hook whose quantile samples it cannot certify) writes every neuron's top-k "
        "and bottom-k firings with their contexts, quantile-bin random samples, a histogram, moments, density, "
        "per-token statistics, three interpretability scores (token-rule, token lookup correlation, rule "
        "explanation) and each neuron's rule explanation into "
        "the store's index group. Interrupted runs (Ctrl-C, kill -9) resume where they stopped when the "
        "same command is run again.")
    p.add_argument("store", help="store directory (from `neurobrowse record`)")
    p.add_argument("--k", type=options.positive_int, default=schema.DEFAULT_K,
                   help=f"top-k and bottom-k firings kept per neuron (default {schema.DEFAULT_K})")
    p.add_argument("--hooks", type=options.hook_name, nargs="+", metavar="HOOK",
                   help="hook names to index, e.g. blocks.0.mlp.hook_post (default: every recorded hook)")
    p.add_argument("--window", default=f"{schema.CONTEXT_BEFORE},{schema.CONTEXT_AFTER}", metavar="BEFORE,AFTER",
                   help="tokens of text kept before and after each firing (default "
                   f"{schema.CONTEXT_BEFORE},{schema.CONTEXT_AFTER}; clipped to what the model saw when shown)")
    p.add_argument("--force", action="store_true", help="drop any existing index of these hooks and start again")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--scheduler", default=None, metavar="local:N|tcp://HOST:PORT|FILE.json",
                   help="index on Dask (pip install neurobrowse[distributed]): a local cluster of N worker "
                   "processes, a running scheduler, or a scheduler file; same result as without it")
    p.set_defaults(func=run)


def parse_window(text: str) -> tuple[int, int]:
    """'64,16' -> (64, 16); a StoreError naming the accepted form otherwise."""
    from store.index import check_window

    parts = [p.strip() for p in str(text).split(",")]
    if len(parts) != 2:
        from store.errors import StoreError

        raise StoreError(f"--window takes BEFORE,AFTER (e.g. 64,16), not {text!r}")
    return check_window(parts)


def run(args: argparse.Namespace) -> int:
    from neurobrowse import render
    from store.index.dask_run import index_store_on
    from store.format.score_summary import score_summary

    out = index_store_on(args.scheduler, args.store, hooks=args.hooks, k=args.k, force=args.force,
                         progress=not args.quiet, window=parse_window(args.window))
    print(render.index_text(out, score_summary([args.store])))
    return 0
