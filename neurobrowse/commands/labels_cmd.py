"""`neurobrowse labels list|set|history|import|export|backup`: the label database from the shell."""

from __future__ import annotations

import argparse
import sys

from neurobrowse import __version__, options, render
from store.labels.label import ENV_DB, LabelError, VERDICTS
from store.labels.db import LabelDB


def common_db_args() -> argparse.ArgumentParser:
    """--db and --busy-timeout, shared by every labels / export sub-command."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--db", default=None,
                   help=f"label database (default: ${ENV_DB}, else the user data dir's neurobrowse/labels.sqlite)")
    p.add_argument("--busy-timeout", type=options.non_negative_float, default=10.0, metavar="S",
                   help="seconds to wait for another writer before giving up (default 10)")
    return p


def open_db(args: argparse.Namespace) -> LabelDB:
    return LabelDB(args.db, busy_timeout_s=args.busy_timeout, author=getattr(args, "author", None))


def _hook(store, hook: str, kind: str) -> str:
    """'blocks.0.mlp.hook_post' as given, or a layer number plus --hook-kind."""
    if hook.isdigit():
        return store.hook_for(int(hook), kind)
    if not hook.startswith("blocks."):
        raise LabelError(f"{hook!r} is neither a hook name like blocks.0.mlp.hook_post nor a layer number")
    return store.hook_for(0, hook)  # a full name: checked against the store's hooks


def register(subparsers: argparse._SubParsersAction) -> None:
    common = common_db_args()
    p = subparsers.add_parser("labels", help="list, set, import, export and back up neuron labels",
                              description="Neuron labels (verdict, description, tags, notes) in a SQLite database.")
    sub = p.add_subparsers(dest="labels_verb", metavar="ACTION")

    ls = sub.add_parser("list", parents=[common], help="list current labels")
    ls.add_argument("--store", help="only labels of this store")
    ls.add_argument("--run", help="only labels of this run UUID")
    ls.add_argument("--hook", type=options.hook_name, help="only this hook (full name)")
    ls.add_argument("--layer", type=options.non_negative_int, action="append", help="only this layer (repeatable)")
    ls.add_argument("--verdict", choices=VERDICTS, action="append", help="only this verdict (repeatable)")
    ls.add_argument("--tag", action="append", help="only labels with this tag (repeatable: any of them)")
    ls.add_argument("--json", action="store_true", help="one JSON object per line")
    ls.set_defaults(func=cmd_list)

    st = sub.add_parser("set", parents=[common], help="set the label of one neuron")
    st.add_argument("store", help="the store the neuron belongs to (its run UUID keys the label)")
    st.add_argument("hook", help="hook name (blocks.0.mlp.hook_post) or a layer number")
    st.add_argument("neuron", type=options.non_negative_int)
    st.add_argument("--hook-kind", default="hook_post", help="with a layer number: hook_post (default) or hook_mid")
    st.add_argument("--verdict", choices=VERDICTS, required=True)
    st.add_argument("--description", default="")
    st.add_argument("--tag", action="append", default=[], help="a tag (repeatable)")
    st.add_argument("--notes", default="")
    st.add_argument("--author", default=None, help="default: the OS user")
    st.set_defaults(func=cmd_set)

    hi = sub.add_parser("history", parents=[common], help="every change of one neuron's label")
    hi.add_argument("store")
    hi.add_argument("hook")
    hi.add_argument("neuron", type=options.non_negative_int)
    hi.add_argument("--hook-kind", default="hook_post")
    hi.set_defaults(func=cmd_history)

    im = sub.add_parser("import", parents=[common], help="import labels from an export (all or nothing)")
    im.add_argument("file", type=options.input_text_file,
                    help="a `neurobrowse export` jsonl/csv file or a `labels export` file (gzip ok)")
    im.add_argument("--store", help="check every label against this store (refuses another store's file)")
    im.set_defaults(func=cmd_import)

    ex = sub.add_parser("export", parents=[common], help="write current labels as JSONL")
    ex.add_argument("--out", type=options.output_file, required=True)
    ex.add_argument("--store", help="only labels of this store")
    ex.add_argument("--run", help="only labels of this run UUID")
    ex.add_argument("--gzip", action="store_true")
    ex.set_defaults(func=cmd_export)

    bk = sub.add_parser("backup", parents=[common], help="copy the database (sqlite backup API)")
    bk.add_argument("--out", type=options.output_file, default=None,
                    help="target file (default: a rotated file in backups/ next to the db)")
    bk.set_defaults(func=cmd_backup)

    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _run_of(args: argparse.Namespace) -> str | None:
    if getattr(args, "store", None):
        from store.format.reader import Store

        return Store.open(args.store).run_uuid
    return getattr(args, "run", None)


def cmd_list(args: argparse.Namespace) -> int:
    with open_db(args) as db:
        labs = db.labels(_run_of(args), hook=args.hook, layers=args.layer, verdicts=args.verdict, tags=args.tag)
    for lab in labs:
        print(render.json_text(lab.to_dict(), indent=None) if args.json else render.label_line(lab))
    if not args.json:
        print(f"{len(labs)} label(s)", file=sys.stderr)
    return 0


def cmd_set(args: argparse.Namespace) -> int:
    from store.format.reader import Store

    store = Store.open(args.store)
    hook = _hook(store, args.hook, args.hook_kind)
    with open_db(args) as db:
        lab = db.set_label(store.run_uuid, hook, args.neuron, verdict=args.verdict, description=args.description,
                           tags=args.tag, notes=args.notes, author=args.author, source="cli", store=store)
    print(render.label_line(lab))
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    from store.format.reader import Store

    store = Store.open(args.store)
    hook = _hook(store, args.hook, args.hook_kind)
    with open_db(args) as db:
        events = db.history(store.run_uuid, hook, args.neuron)
    if not events:
        raise LabelError(f"neuron {args.neuron} of {hook} in {store.path} has never been labeled")
    for ev in events:
        print(render.label_event_line(ev))
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from store.export.label_files import import_labels
    from store.format.reader import Store

    store = Store.open(args.store) if args.store else None
    with open_db(args) as db:
        res = import_labels(db, args.file, store=store)
    print(f"imported {res['written']} label change(s) from {res['labels_in_file']} label(s) in {args.file}")
    if store is None:
        print("note: without --store STORE the neuron numbers and hooks were not checked against a store",
              file=sys.stderr)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from store.export.label_files import export_labels

    with open_db(args) as db:
        res = export_labels(db, args.out, run_uuid=_run_of(args), tool_version=__version__, gzip=args.gzip)
    print(f"wrote {res['n_labels']} label(s) to {res['path']} ({res['bytes']} bytes)")
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    from store.export.neurons import check_output_path

    with open_db(args) as db:
        if args.out is not None:  # never onto a device, the database itself, a store's, study's or checkpoint's file
            check_output_path(args.out, db)
        path = db.backup(args.out)
    print(f"backed up {db.path} to {path}")
    return 0
