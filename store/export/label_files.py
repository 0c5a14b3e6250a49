"""Label files: ``labels export`` (the jsonl layout of store.export.neurons without statistics and
snippets, ``kind: "neurobrowse-labels"``), reading any of the three label-carrying layouts back
(``read_label_file``) and importing them into a label database, all or nothing (``import_labels``).
"""

from __future__ import annotations

import csv
import io
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from store.labels.label import Label, LabelError, LabelImportError
from store.labels.db import LabelDB
from store.export.neurons import (
    EXPORT_KIND, EXPORT_VERSION, LABELS_KIND, LABEL_FIELDS, _label_dict, _open_maybe_gzip, atomic_output,
    check_output_path, tool_version_default,
)


# ---- labels only -----------------------------------------------------------------------------------
def export_labels(db: LabelDB, out: str | os.PathLike, *, run_uuid: str | None = None,
                  tool_version: str | None = None, gzip: bool = False, **filters: Any) -> dict:
    """Write current labels (one transaction) as JSONL: a header then one label per line."""
    out = check_output_path(out, db)
    labs = db.labels(run_uuid, **filters)
    header = {"kind": LABELS_KIND, "export_version": EXPORT_VERSION, "format": "jsonl", "run_uuid": run_uuid,
              "tool_version": tool_version or tool_version_default(),
              "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "n_neurons": len(labs)}
    with atomic_output(out, gzip=gzip) as f:
        f.write(json.dumps(header, ensure_ascii=False) + "\n")
        for lab in labs:
            f.write(json.dumps({"run_uuid": lab.run_uuid, "hook": lab.hook, "layer": lab.layer,
                                "neuron": lab.neuron, "label": _label_dict(lab)}, ensure_ascii=False) + "\n")
    return {"path": str(out), "n_labels": len(labs), "bytes": Path(out).stat().st_size}


# ---- reading back ----------------------------------------------------------------------------------
def _label_from(where: str, run_uuid: Any, hook: Any, layer: Any, neuron: Any, lab: dict) -> Label:
    if not isinstance(lab, dict):
        raise LabelImportError(f"{where}: 'label' must be an object")
    try:
        return Label.from_dict({"run_uuid": run_uuid, "hook": hook, "layer": layer, "neuron": neuron,
                                **{k: lab.get(k) for k in LABEL_FIELDS}})
    except LabelError as e:
        raise LabelImportError(f"{where}: {e}") from None


def read_label_file(path: str | os.PathLike) -> tuple[dict, list[Label]]:
    """Read the labels of a jsonl export, a `labels export` file or a csv export (gzipped or not).
    Returns (header, labels). A malformed line raises LabelImportError naming the line number;
    unlabeled neurons are skipped."""
    path = Path(path)
    if not path.is_file():
        raise LabelImportError(f"no label file at {path}")
    try:
        f = _open_maybe_gzip(path)
        with f:
            first = f.readline()
            if first.startswith("run_uuid,"):
                return _read_csv(path, first, f)
            return _read_jsonl(path, first, f)
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise LabelImportError(f"{path} cannot be read ({e}); is it a neurobrowse export?") from None


def _read_jsonl(path: Path, first: str, f: io.TextIOBase) -> tuple[dict, list[Label]]:
    try:
        header = json.loads(first)
    except ValueError as e:
        raise LabelImportError(f"{path}, line 1: not a neurobrowse export header ({e})") from None
    if not isinstance(header, dict) or header.get("kind") not in (EXPORT_KIND, LABELS_KIND):
        raise LabelImportError(f"{path}, line 1: not a neurobrowse export header (no kind "
                               f"{EXPORT_KIND!r} or {LABELS_KIND!r}); neuron-explainer files carry no labels")
    if int(header.get("export_version", 0)) > EXPORT_VERSION:
        raise LabelImportError(f"{path} is export version {header.get('export_version')}, newer than this "
                               f"neurobrowse reads ({EXPORT_VERSION}); upgrade neurobrowse")
    labels, n_lines = [], 0
    for lineno, line in enumerate(f, start=2):
        if not line.strip():
            continue
        n_lines += 1
        where = f"{path}, line {lineno}"
        try:
            rec = json.loads(line)
        except ValueError as e:
            raise LabelImportError(f"{where}: not valid JSON ({e}); nothing was imported") from None
        if not isinstance(rec, dict) or any(k not in rec for k in ("run_uuid", "hook", "neuron", "label")):
            raise LabelImportError(f"{where}: a neuron line needs run_uuid, hook, neuron and label; "
                                   "nothing was imported")
        if header.get("run_uuid") and rec["run_uuid"] != header["run_uuid"]:
            raise LabelImportError(f"{where}: run UUID {rec['run_uuid']} differs from the header's "
                                   f"{header['run_uuid']}; nothing was imported")
        if rec["label"] is not None:
            labels.append(_label_from(where, rec["run_uuid"], rec["hook"], rec.get("layer"), rec["neuron"],
                                      rec["label"]))
    expected = header.get("n_neurons")
    if expected is not None and n_lines != int(expected):
        raise LabelImportError(f"{path} holds {n_lines} neuron lines but its header says {expected}: the file "
                               "is truncated or was edited; nothing was imported")
    return header, labels


def _read_csv(path: Path, first: str, f: io.TextIOBase) -> tuple[dict, list[Label]]:
    cols = next(csv.reader([first]))
    missing = [c for c in ("run_uuid", "tool_version", "hook", "layer", "neuron", *LABEL_FIELDS) if c not in cols]
    if missing:
        raise LabelImportError(f"{path}, line 1: CSV header lacks {missing}; is it a neurobrowse export?")
    labels, header = [], {"kind": EXPORT_KIND, "format": "csv", "run_uuid": None, "tool_version": None}
    reader = csv.reader(f)
    for row in reader:
        lineno = reader.line_num + 1
        where = f"{path}, line {lineno}"
        if len(row) != len(cols):
            raise LabelImportError(f"{where}: {len(row)} fields, the header has {len(cols)}; nothing was imported")
        d = dict(zip(cols, row))
        if header["run_uuid"] is None:
            header.update(run_uuid=d["run_uuid"], tool_version=d["tool_version"])
        elif d["run_uuid"] != header["run_uuid"]:
            raise LabelImportError(f"{where}: run UUID {d['run_uuid']} differs from the first row's "
                                   f"{header['run_uuid']}; nothing was imported")
        if not d["verdict"]:
            continue
        try:
            tags = json.loads(d["tags"]) if d["tags"] else []
        except ValueError as e:
            raise LabelImportError(f"{where}: tags is not a JSON list ({e}); nothing was imported") from None
        lab = {k: d[k] for k in LABEL_FIELDS}
        lab["tags"] = tags
        labels.append(_label_from(where, d["run_uuid"], d["hook"], d["layer"], d["neuron"], lab))
    return header, labels


def import_labels(db: LabelDB, path: str | os.PathLike, *, store: Any = None) -> dict:
    """Import the labels of an export file into ``db``: all of them in one transaction, or none.
    With ``store``, a file of another store (another run UUID) or a neuron the store lacks is
    refused. Labels equal to the current ones are skipped (importing twice adds nothing)."""
    header, labels = read_label_file(path)
    if store is not None:
        runs = {lab.run_uuid for lab in labels} | ({header["run_uuid"]} if header.get("run_uuid") else set())
        other = sorted(r for r in runs if r != store.run_uuid)
        if other:
            raise LabelImportError(
                f"{path} holds labels of the store with run UUID {other[0]}, not of {store.path} "
                f"(run UUID {store.run_uuid}); labels only attach to the recording they were made on. "
                "Nothing was imported.")
    written = db.set_many(labels, source=None, store=store)
    return {"path": str(path), "labels_in_file": len(labels), "written": written,
            "run_uuid": header.get("run_uuid")}
