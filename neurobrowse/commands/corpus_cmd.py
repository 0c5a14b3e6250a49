"""`neurobrowse corpus`: build the training corpus and its tokenizer (offline)."""

from __future__ import annotations

import argparse

from neurobrowse import options

DEFAULT_OUT = "artifacts/corpus"


def register(sub: argparse._SubParsersAction) -> None:
    from solu_core.corpus.config import CorpusConfig

    d = CorpusConfig()
    p = sub.add_parser(
        "corpus",
        help="build a training corpus (Python stdlib source + your text) and a byte-level BPE tokenizer",
        description="Build a deduplicated, document-split corpus from text on this machine, train a byte-level "
        "BPE tokenizer and write token shards. Nothing is downloaded. Re-running with the same settings reuses "
        "the corpus.",
    )
    p.add_argument("--out", type=options.output_dir, default=DEFAULT_OUT,
                   help=f"corpus directory to write (default: {DEFAULT_OUT})")
    p.add_argument("--source", action="append", default=[], metavar="PATH",
                   help="a file, folder or .jsonl file to add (repeatable)")
    p.add_argument("--jsonl-field", default=d.jsonl_field,
                   help=f"text field of JSONL sources (default: {d.jsonl_field})")
    p.add_argument("--no-stdlib", action="store_true", help="leave out the Python standard library's source")
    p.add_argument("--prose", action="store_true",
                   help="add offline prose packages found on this machine (python3-doc, fortunes)")
    p.add_argument("--prose-share", type=options.fraction, default=None, metavar="SHARE",
                   help="cap code or prose so prose is this share of their bytes, e.g. 0.8 (the demo's mix)")
    p.add_argument("--keep-generated", action="store_true",
                   help="keep machine-generated tables (codec maps, Unicode data, generated dumps; left out by "
                   "default)")
    p.add_argument("--vocab", type=options.positive_int, default=d.vocab_size,
                   help=f"BPE vocabulary size (default: {d.vocab_size})")
    p.add_argument("--tokenizer", default=None, metavar="FILE",
                   help="use this existing tokenizer.json (with <|endoftext|>) instead of training one; --vocab is "
                   "then ignored")
    p.add_argument("--val-fraction", type=options.fraction, default=d.val_fraction,
                   help=f"share of text held out for validation, by document (default: {d.val_fraction})")
    p.add_argument("--seed", type=options.non_negative_int, default=d.seed,
                   help="decides the split and the --max-mb subset")
    p.add_argument("--max-mb", type=options.positive_float, default=None,
                   help="cap the text at this many MB (quick runs)")
    p.add_argument("--force", action="store_true", help="replace an existing corpus built with other settings")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from solu_core.corpus.sources import PROSE_SOURCES
    from solu_core.corpus.config import CorpusConfig
    from solu_core.corpus.build import build_corpus
    from pathlib import Path

    cfg = CorpusConfig(
        sources=args.source, include_stdlib=not args.no_stdlib, include_prose=args.prose,
        jsonl_field=args.jsonl_field, vocab_size=args.vocab, val_fraction=args.val_fraction,
        seed=args.seed, max_mb=args.max_mb, prose_share=args.prose_share, skip_generated=not args.keep_generated,
        tokenizer_file=args.tokenizer,
    )
    m = build_corpus(args.out, cfg, progress=not args.quiet, force=args.force)
    c = m["counts"]
    for s in m["sources"]:
        print(f"  {s['kind']:<8} {s['path']}: {s['n_docs']} docs, {s['bytes'] / 1e6:.2f} MB "
              f"(train {s['split']['train']}, val {s['split']['val']}; skipped {s['skipped_binary']} binary, "
              f"{s['skipped_non_utf8']} non-UTF-8, {s['duplicates']} duplicates, "
              f"{s.get('skipped_generated', 0)} generated tables, {s.get('capped', 0)} left out for the mix)")
    if args.prose:
        for name, (where, how) in PROSE_SOURCES.items():
            if not Path(where).exists():
                print(f"  prose {name} not installed ({where}); to add it: {how}")
    sp = m["splits"]
    print(f"corpus {Path(args.out).resolve()}: {c['documents']} documents, {c['bytes'] / 1e6:.1f} MB, "
          f"vocab {m['tokenizer']['vocab_size']}, train {sp['train']['n_tokens']:,} tokens, "
          f"val {sp['val']['n_tokens']:,} tokens")
    mix = m.get("mix") or {}
    if mix.get("prose_share") is not None:
        print(f"mix: {mix['prose_bytes'] / 1e6:.1f} MB prose, {mix['code_bytes'] / 1e6:.1f} MB code "
              f"({mix['prose_share']:.0%} prose), {mix['generated_left_out']} generated tables left out")
    return 0
