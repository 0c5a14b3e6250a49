"""`neurobrowse train`: train a GeLU + SoLU-LN pair (plain SoLU on request) on a corpus."""

from __future__ import annotations

import argparse

from neurobrowse import options

DEFAULT_CORPUS = "artifacts/corpus"
DEFAULT_OUT = "artifacts/models"


def register(sub: argparse._SubParsersAction) -> None:
    from solu_core.presets import PRESETS

    p = sub.add_parser(
        "train",
        help="train a fair GeLU / SoLU-LN model pair (same data order, same init); resumes a killed run",
        description="Train one model per activation into OUT/<act_fn>/ (a checkpoint directory with "
        "model.safetensors, config.json, tokenizer.json). Running the same command again resumes unfinished "
        "models from their last checkpoint and skips finished ones.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="presets:\n" + "\n".join(f"  {k:<8} {v.description}" for k, v in PRESETS.items()),
    )
    p.add_argument("--corpus", default=DEFAULT_CORPUS, help=f"corpus directory (default: {DEFAULT_CORPUS})")
    p.add_argument("--out", type=options.output_dir, default=DEFAULT_OUT,
                   help=f"where the checkpoint dirs go (default: {DEFAULT_OUT})")
    p.add_argument("--preset", default="demo", help=f"one of {', '.join(PRESETS)} (default: demo)")
    p.add_argument("--act-fns", default="gelu,solu_ln",
                   help="comma-separated: gelu, solu, solu_ln (default: gelu,solu_ln)")
    p.add_argument("--steps", type=options.positive_int, default=None, help="override the preset's step count")
    p.add_argument("--batch-size", type=options.positive_int, default=None, help="override the preset's batch size")
    p.add_argument("--lr", type=options.positive_float, default=None, help="override the preset's peak learning rate")
    p.add_argument("--ckpt-every", type=options.positive_int, default=None, help="steps between checkpoints")
    p.add_argument("--init", default="trained", metavar="KINDS",
                   help="what to make, comma-separated: trained (default), random, shuffled. random: the untrained "
                   "model of the same preset and seed, into OUT/<act_fn>-random; shuffled: the trained model's "
                   "weights permuted within each tensor, into OUT/<act_fn>-shuffled (trains the model first when "
                   "it is missing). Controls are ordinary checkpoints (config.json \"init\") to record and index "
                   "like any other, so compare and study report can show their shares")
    p.add_argument("--seed", type=options.non_negative_int, default=None,
                   help="init and data-order seed (default: the preset's, 0)")
    p.add_argument("--device", type=options.device, default="auto",
                   help="auto (CUDA when present), cpu, cuda, cuda:1, ...")
    p.add_argument("--threads", type=options.positive_int, default=None,
                   help="CPU threads (default: 1, fixed so that a rerun gives bit-identical weights; another count "
                   "gives other weights)")
    p.add_argument("--force", action="store_true", help="retrain from scratch over existing checkpoints")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from solu_core.checkpoint import read_config
    from solu_core.corpus.folder import read_manifest
    from solu_core.train import get_preset, train_pair

    vocab, tuned = read_manifest(args.corpus)["tokenizer"]["vocab_size"], get_preset(args.preset).vocab_size
    if vocab != tuned:
        print(f"note: the corpus has a {vocab}-token vocabulary; the {args.preset} preset was tuned with {tuned} "
              f"(`neurobrowse corpus --vocab {tuned}`)")
    paths = train_pair(
        args.corpus, args.out, preset=args.preset, act_fns=args.act_fns, steps=args.steps, seed=args.seed,
        device=args.device, progress=not args.quiet, force=args.force, threads=args.threads,
        train_overrides={"batch_size": args.batch_size, "lr": args.lr, "ckpt_every": args.ckpt_every},
        inits=args.init,
    )
    for name, path in paths.items():
        meta = read_config(path)
        m = meta["metrics"]
        if meta.get("init", "trained") != "trained":
            print(f"{name:<8} {path}: {meta['init']} control, val loss {m['val_loss']:.4f} nats/token")
            continue
        print(f"{name:<8} {path}: val loss {m['val_loss']:.4f} nats/token after {m['step']} steps, "
              f"{m['tokens_per_s'] or 0:,.0f} tokens/s, {m['wall_s']:.0f} s")
    return 0
