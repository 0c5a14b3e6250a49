"""`neurobrowse features train|index|info|load|summary`: sparse dictionaries (TopK SAEs) over a recorded
hook, whose features are browsed like neurons (docs/features.md)."""

from __future__ import annotations

import argparse

from neurobrowse import options
from store import schema


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("features", help="dictionaries (sparse autoencoders) over a hook: train, index, info",
                              description="Sparse dictionaries over a recorded MLP hook (TopK sparse autoencoders, "
                              "saved in the SAELens layout inside the store). Their features become a hook of the "
                              "store, blocks.L.mlp.HOOK.sae.NAME, that show, open, compare, study and export use "
                              "like neurons. See docs/features.md.")
    sub = p.add_subparsers(dest="features_verb", metavar="ACTION")

    t = sub.add_parser("train", help="train a TopK dictionary on a recorded hook (resumable)",
                       description="Train a TopK sparse autoencoder on one recorded hook and save it inside the "
                       "store (STORE/dictionaries/HOOK.sae.NAME/: cfg.json + sae_weights.safetensors). Ctrl-C or "
                       "kill -9, then the same command, resumes to the same result.")
    t.add_argument("store", help="a recorded store")
    t.add_argument("--hook", required=True, type=options.hook_name, help="the hook, e.g. blocks.0.mlp.hook_post")
    t.add_argument("--width", default="8x", help="features per neuron, e.g. 8x (d_sae = width * d_mlp; default 8x)")
    t.add_argument("--k", type=options.positive_int, default=32, help="active features per token (default 32)")
    t.add_argument("--name", default=None, help="the dictionary's name (default e.g. 8x-k32)")
    t.add_argument("--epochs", type=float, default=4.0, help="passes over the training tokens (default 4)")
    t.add_argument("--batch", type=options.positive_int, default=1024, help="tokens per step (default 1024)")
    t.add_argument("--lr", type=float, default=None, help="learning rate (default 2e-3 / sqrt(d_sae / 4096))")
    t.add_argument("--seed", type=options.non_negative_int, default=0, help="seed (default 0)")
    t.add_argument("--model", default=None, metavar="CHECKPOINT",
                   help="the recorded model, when the store's manifest does not find it: needed for a --dense none "
                   "store, otherwise only for the loss-recovered metric")
    t.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, ...")
    t.add_argument("--threads", type=options.positive_int, default=None,
                   help="torch CPU threads (default: 1 for small dictionaries, every core for larger; another count "
                   "gives other floats, so resume with the same one)")
    t.add_argument("--checkpoint-every", type=float, default=30.0, metavar="SECONDS",
                   help="save the resume state this often (default 30)")
    t.add_argument("--index", action="store_true", help="index the features when trained (as `features index`)")
    t.add_argument("--force", action="store_true", help="train again even if the dictionary exists")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.add_argument("--json", action="store_true", help="print the metrics as JSON")
    t.set_defaults(func=cmd_train)

    i = sub.add_parser("index", help="index a dictionary's features like neurons (top-k, samples, scores, logits)",
                       description="Index the features of one dictionary (or every one not indexed yet) with the "
                       "neuron indexer, computing them chunk by chunk from the source hook; logit effects through "
                       "the decoder when the recorded model is found.")
    i.add_argument("store")
    i.add_argument("--hook", default=None, help="the feature hook (default: every dictionary not indexed yet)")
    i.add_argument("--k", type=options.positive_int, default=schema.DEFAULT_K, help="top-k kept per feature")
    i.add_argument("--model", default=None, metavar="CHECKPOINT", help="the recorded model (see train)")
    i.add_argument("--device", default="auto")
    i.add_argument("--force", action="store_true", help="index again")
    i.add_argument("--quiet", action="store_true")
    i.set_defaults(func=cmd_index)

    n = sub.add_parser("info", help="the dictionaries of a store and their metrics (FVU, loss recovered, L0, ...)")
    n.add_argument("store")
    n.add_argument("--hook", default=None, help="one feature hook (default: all)")
    n.add_argument("--json", action="store_true", help="print JSON")
    n.set_defaults(func=cmd_info)

    ld = sub.add_parser("load", help="put a dictionary trained elsewhere (SAELens layout) into a store",
                        description="Copy a SAELens-layout folder (cfg.json + sae_weights.safetensors) into the store "
                        "as the features of --hook; its d_in must be the hook's width.")
    ld.add_argument("store")
    ld.add_argument("folder", help="the dictionary folder")
    ld.add_argument("--hook", default=None, type=options.hook_name,
                    help="the recorded hook it reads (default: its cfg.json's hook_name)")
    ld.add_argument("--name", default=None, help="its name in the store (default: the folder's name)")
    ld.add_argument("--index", action="store_true", help="index its features right away")
    ld.set_defaults(func=cmd_load)

    s = sub.add_parser("summary", help="aligned vs spread, explained and hidden features, side by side",
                       description="The paper's question for the dictionaries of one or more stores: the share of "
                       "features aligned with one neuron, spread over many, passing the automated explanation, "
                       "and active where no neuron fires strongly (hidden candidates), with examples.")
    s.add_argument("stores", nargs="+", metavar="STORE")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_summary)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def cmd_train(args: argparse.Namespace) -> int:
    from neurobrowse import render
    from solu_core.dictionary.config import DictionaryConfig, parse_width
    from solu_core.dictionary.train import train_dictionary

    cfg = DictionaryConfig(batch_tokens=args.batch, epochs=args.epochs, lr=args.lr, seed=args.seed,
                           checkpoint_every_s=args.checkpoint_every)
    r = train_dictionary(args.store, args.hook, width=parse_width(args.width), k=args.k, name=args.name, config=cfg,
                         model=args.model, device=args.device, progress=not args.quiet, force=args.force,
                         threads=args.threads)
    out = {"feature_hook": r.feature_hook, "folder": str(r.folder), "skipped": r.skipped, "metrics": r.metrics,
           "steps": r.steps, "tokens_per_s": r.tokens_per_s}
    if args.index:
        from solu_core.dictionary.index import index_features

        out["index"] = index_features(args.store, r.feature_hook, model=args.model, device=args.device,
                                      progress=not args.quiet)
    if args.json:
        print(render.json_text(out, indent=2))
    else:
        print(("already trained: " if r.skipped else "trained ") + f"{r.feature_hook} -> {r.folder}")
        print(render.dictionary_metrics_text(r.metrics))
        if not args.index:
            print(f"next: neurobrowse features index {args.store} --hook {r.feature_hook}")
    return 0


def cmd_index(args: argparse.Namespace) -> int:
    from solu_core.dictionary.index import index_features

    out = index_features(args.store, args.hook, model=args.model, device=args.device, k=args.k, force=args.force,
                         progress=not args.quiet)
    if not out:
        print("every dictionary is indexed already (--force to index again)")
    for h, s in out.items():
        print(f"indexed {h}: {s.get('n_neurons')} features over {s.get('n_tokens'):,} tokens "
              f"({s.get('index_s', 0):.1f} s; logit effects {s.get('logit_s', 0):.1f} s)")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from neurobrowse import render
    from store.format.features import dictionary_summary
    from store.format.reader import Store

    st = Store.open(args.store)
    hooks = [args.hook] if args.hook else st.feature_hooks
    out = [dictionary_summary(st, h) for h in hooks]
    if args.json:
        print(render.json_text(out, indent=2))
    elif not out:
        print(f"{st.path} has no dictionaries; train one: neurobrowse features train {st.path} --hook "
              f"{st.recorded_hooks[0]} --width 8x --k 32")
    else:
        print(render.dictionaries_text(out))
    return 0


def cmd_load(args: argparse.Namespace) -> int:
    from pathlib import Path

    from store.format.dictionary import DictionaryError, install_dictionary, load_dictionary
    from store.format.reader import Store

    st = Store.open(args.store)
    d = load_dictionary(args.folder)
    hook = args.hook or d.source_hook
    if not hook:
        raise DictionaryError(f"{args.folder}'s cfg.json names no hook_name; pass --hook (e.g. {st.recorded_hooks[0]})")
    if hook not in st.recorded_hooks:
        raise DictionaryError(f"{st.path} did not record {hook!r} (it has {', '.join(st.recorded_hooks)}); pass --hook")
    name = args.name or "".join(c if c in schema.NAME_CHARS else "_" for c in Path(args.folder).resolve().name)
    fh = install_dictionary(st.path, args.folder, hook, name, st.d_mlp)
    print(f"loaded {args.folder} as {fh}")
    if args.index:
        from solu_core.dictionary.index import index_features

        index_features(st.path, fh)
    else:
        print(f"next: neurobrowse features index {st.path} --hook {fh}")
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    from neurobrowse import render
    from store.format.features import dictionary_summary
    from store.format.reader import Store

    out = []
    for path in args.stores:
        st = Store.open(path)
        out += [{**dictionary_summary(st, h), "store": str(st.path), "act_fn": st.act_fn} for h in st.feature_hooks]
    print(render.json_text(out, indent=2) if args.json else render.dictionaries_text(out, examples=True))
    return 0
