"""`neurobrowse record MODEL [--text PATH ...] --out STORE`: record MLP activations into an activation store."""

from __future__ import annotations

import argparse

from neurobrowse import options


def _int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated layer numbers like 0,1, got {text!r}") from None


def _tokens(text: str) -> int:
    """'1000000', '1M', '64k' -> int."""
    t = text.strip().lower().replace("_", "")
    mult = {"k": 10**3, "m": 10**6, "g": 10**9}.get(t[-1:], 1)
    try:
        return int(float(t[:-1] if mult > 1 else t) * mult)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a token count like 1000000 or 1M, got {text!r}") from None


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "record",
        help="record a model's MLP activations over text into a Zarr store; resumes a killed run",
        description="Run MODEL over text in fixed contexts and write the chosen hooks' activations (float16 "
        "[token, neuron]) chunk by chunk into STORE. MODEL is a checkpoint directory (`neurobrowse train`; "
        "default text: its corpus's validation split), a Hugging Face model folder (save_pretrained) or a "
        "TransformerLens model name (solu-1l, gelu-2l, gpt2-small, pythia-70m, ...; from the local Hugging Face "
        "cache). Each chunk gets a completion marker once it is on disk; run the same command again after a "
        "crash or Ctrl-C to resume. See docs/models.md.",
    )
    p.add_argument("model", metavar="MODEL",
                   help="checkpoint directory, Hugging Face model folder or TransformerLens model name")
    p.add_argument("--text", nargs="+", default=None, metavar="PATH",
                   help="files, folders and .jsonl files to record (tokenized with the model's tokenizer; "
                   "binary and non-UTF-8 files are skipped and counted)")
    p.add_argument("--jsonl-field", default="text", help="text field of .jsonl files (default: text)")
    p.add_argument("--out", type=options.output_dir, required=True, help="store directory to create (or resume)")
    p.add_argument("--tokens", type=_tokens, default=1 << 20, help="tokens to record, e.g. 1M (default 1048576)")
    p.add_argument("--context", type=int, default=None,
                   help="tokens per context (default: a checkpoint's n_ctx, other models min(n_ctx, 1024))")
    p.add_argument("--allow-download", action="store_true",
                   help="let TransformerLens download weights missing from the local cache (default: offline)")
    p.add_argument("--layers", type=_int_list, default=None, help="comma-separated layers (default: all)")
    p.add_argument("--hooks", default=None,
                   help="comma-separated hooks: hook_post, hook_mid, hook_pre or full names "
                   "(default: hook_post, plus hook_mid for SoLU-LN)")
    p.add_argument("--batch-size", type=options.positive_int, default=None,
                   help="contexts per forward pass (default: one store chunk; rounded so batches fill whole chunks)")
    p.add_argument("--device", type=options.device, default="auto",
                   help="auto (CUDA when present), cpu, cuda, cuda:1, ...")
    p.add_argument("--corpus", default=None, help="corpus directory (default: the one in the checkpoint's config)")
    p.add_argument("--chunk-tokens", type=options.positive_int, default=None,
                   help="rows per store chunk (default: ~8 MiB of activations, see store/schema.py)")
    p.add_argument("--no-fsync", action="store_true", help="do not flush each chunk to disk before its marker")
    p.add_argument("--index", action="store_true",
                   help="index the activations while recording (on a background thread, overlapping the next "
                   "forward pass): the same index as `neurobrowse index` afterwards, without reading the store back")
    p.add_argument("--dense", choices=("keep", "none"), default="keep",
                   help="keep the dense activations (default) or not (needs --index). They take 2 GB per 1M tokens "
                   "per 1,000 neurons (GPT-2 small: 74 GB per 1M tokens) while the index is ~140 MB per hook: drop "
                   "them for large recordings; keep them to re-index later (other k) or read raw activations")
    p.add_argument("--token-rows", type=options.positive_int, default=None, metavar="N",
                   help="with --index: keep exact per-token sums for at most N tokens per hook (the recently seen "
                   "ones) and float16 means for the rest, in a temporary file in the store's folder, bounding "
                   "memory (GPT-2 small's 12 layers over 10M tokens, estimated: ~22 GB -> ~11 GB with 4096, plus "
                   "7.4 GB of disk while recording; docs/speed.md); default: exact sums for every token")
    p.add_argument("--index-backend", choices=("auto", "numba", "torch"), default="auto",
                   help="with --index: where pass 1 (top/bottom-k, distinct passages, histograms, moments, per-token "
                   "sums) runs: torch on the model's device beside the forward pass (only each chunk's partial "
                   "result comes to the host), numba in the host kernels, auto (default) torch when the model runs "
                   "on CUDA, else numba. The same index either way (moments to float rounding); docs/speed.md")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--scheduler", default=None, metavar="local:N|tcp://HOST:PORT|FILE.json",
                   help="record on Dask (pip install neurobrowse[distributed]): whole chunks run on the workers "
                   "(local:N uses one worker per GPU with dask_cuda); same store as without it")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import os

    if args.index:  # before torch loads: its OpenMP threads then sleep between batches instead of spinning
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # on the cores the indexer runs on (RESULTS.md, issue 23)
    from solu_core.dask_record import record_on
    from solu_core.record_config import RecordConfig, text_source
    from store.errors import NeurobrowseError

    hooks = [h.strip() for h in args.hooks.split(",") if h.strip()] if args.hooks else None
    index_config = None
    if args.token_rows is not None:
        if not args.index:
            raise NeurobrowseError("--token-rows bounds the per-token sums of the index built while recording; "
                                   "add --index, or leave out --token-rows")
        from store.index.run import IndexConfig

        index_config = IndexConfig(token_rows=args.token_rows)
    if args.index_backend != "auto" and not args.index:
        raise NeurobrowseError(f"--index-backend {args.index_backend} chooses where --index reduces the activations; "
                               "add --index, or leave out --index-backend")
    if args.index_backend == "torch" and args.scheduler:
        raise NeurobrowseError("--index-backend torch runs in this process only; on Dask (--scheduler) each task "
                               "indexes with numba: leave out one of them")
    if (args.text or args.context is not None or args.allow_download) and args.scheduler:
        raise NeurobrowseError("--scheduler records neurobrowse checkpoints over their corpus only; "
                               "leave out --text / --context / --allow-download, or record without --scheduler")
    cfg = RecordConfig(text=text_source(args.text, args.jsonl_field, args.corpus), n_tokens=args.tokens,
                       context=args.context, layers=args.layers, hooks=hooks, batch_size=args.batch_size,
                       chunk_tokens=args.chunk_tokens, device=args.device, allow_download=args.allow_download,
                       fsync=not args.no_fsync, index=args.index, dense=args.dense == "keep",
                       index_config=index_config, index_backend=args.index_backend)
    out = record_on(args.scheduler, args.model, args.out, cfg, progress=not args.quiet)
    print(f"store: {out}  (see it with `neurobrowse info {out}`)")
    return 0
