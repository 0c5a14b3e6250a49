"""`neurobrowse study new|rate|report`: the paper's blinded rating study (see neurobrowse.study)."""

from __future__ import annotations

import argparse

from neurobrowse import options
from neurobrowse.study.draw import StudyConfig
from store import schema


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("study", help="blinded rating study: new, rate, report",
                              description="The SoLU paper's blinded rating of random neurons (section 6.1).")
    sub = p.add_subparsers(dest="study_verb", metavar="ACTION")

    new = sub.add_parser("new", help="draw a blinded sample of neurons from several stores")
    new.add_argument("--stores", nargs="+", required=True, metavar="STORE", help="indexed stores, one per model")
    new.add_argument("--per-model", type=options.positive_int, default=StudyConfig.per_model,
                     help="neurons per store (default 60)")
    new.add_argument("--seed", type=options.non_negative_int, default=None,
                     help="random seed (default: a fresh one, recorded)")
    new.add_argument("--hook", action="append", default=None, metavar="KIND",
                     help="hook kind to draw from: hook_post (default) or hook_mid (repeatable)")
    new.add_argument("--hooks", default=None, metavar="KINDS",
                     help="comma-separated hook kinds, e.g. hook_mid,hook_post (or hook_post,hook_post.sae.8x-k32: a "
                     "dictionary's features, drawn apart, --per-model of them): each drawn SoLU-LN neuron is shown "
                     "once per kind (before and after the LayerNorm), all blind; the report splits them")
    new.add_argument("--snippets", type=options.positive_int, default=StudyConfig.snippets,
                     help="top snippets per neuron (default 20)")
    new.add_argument("--out", type=options.output_dir, required=True, metavar="STUDY",
                     help="the study folder to create")
    new.set_defaults(func=cmd_new)

    rate = sub.add_parser("rate", help="rate a study (opens the rating window, or --answers FILE)")
    rate.add_argument("study", metavar="STUDY")
    rate.add_argument("--rater", default=None, help="your name (default: the OS user); each rater rates apart")
    rate.add_argument("--answers", type=options.input_text_file, default=None, metavar="FILE",
                      help="scripted rating: CSV 'item_id,verdict' or JSON {item_id: verdict}; no window")
    rate.set_defaults(func=cmd_rate)

    rep = sub.add_parser("report", help="unblind: shares, Wilson intervals, Fisher test, kappa, ROC AUC")
    rep.add_argument("study", metavar="STUDY")
    rep.add_argument("--out", type=options.output_dir, default=None,
                     help="folder for report.txt/.csv/.png (default STUDY/report)")
    rep.set_defaults(func=cmd_report)

    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def cmd_new(args: argparse.Namespace) -> int:
    from neurobrowse.study.draw import new_study
    from store.errors import NeurobrowseError

    kinds = [k.strip() for k in args.hooks.split(",") if k.strip()] if args.hooks else list(args.hook or ())
    def known(k: str) -> bool:  # a hook kind, or a dictionary's features: hook_post.sae.NAME
        try:
            schema.parse_hook_name(schema.hook_name(0, k))
        except ValueError:
            return False
        return k.partition(".")[0] in ("hook_pre", "hook_mid", "hook_post")

    bad = [k for k in kinds if not known(k)]
    if bad:
        raise NeurobrowseError(f"--hooks: unknown hook kind {', '.join(map(repr, bad))}; use hook_post, hook_mid "
                               "or hook_pre (or a dictionary's features, hook_post.sae.NAME), "
                               "e.g. --hooks hook_mid,hook_post")
    cfg = StudyConfig(per_model=args.per_model, seed=args.seed, hooks=tuple(dict.fromkeys(kinds or ["hook_post"])),
                      snippets=args.snippets)
    out = new_study(args.stores, args.out, cfg)
    from neurobrowse.study.folder import key_dir

    print(f"study of {cfg.per_model} neurons x {len(args.stores)} models written to {out}: hand that folder to the "
          f"raters. Its key is in {key_dir(out)}: keep it, never hand it out; the models stay hidden until "
          f"`neurobrowse study report {out}`")
    return 0


def cmd_rate(args: argparse.Namespace) -> int:
    from neurobrowse.study.session import StudySession, rate_from_answers
    from store.labels.label import default_author

    rater = args.rater or default_author()
    if args.answers:
        n = rate_from_answers(args.study, rater, args.answers)
        print(f"saved {n} rating(s) by {rater}")
        return 0
    from neurobrowse.qt.windows import rate_study

    session = StudySession(args.study, rater)
    rate_study(session)
    done, total = session.progress()
    print(f"{rater}: {done} of {total} rated" + ("" if done == total else "; run the same command to resume"))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from neurobrowse.study.report import report_text, study_report

    rep = study_report(args.study, args.out)
    print(report_text(rep), end="")
    print(f"written: {', '.join(rep['files'].values())}")
    return 0
