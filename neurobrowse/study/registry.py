"""Reported blinded studies, recorded inside the stores they cover (no per-user registry).

``study report`` calls ``record_in_stores``: each store the study drew from (found at the path in
key.json, with the same run UUID) gets the report's per-model counts appended to
``STORE/REPORTED_FILE`` (a small JSON list, replaced atomically). ``compare`` finds a study of its
two stores there (``reported_study``): the link travels with the stores (copy or move them, and
the study still leads the compare window) and needs no per-user registry.
"""

from __future__ import annotations

import json
from pathlib import Path

from store.format import atomic

REPORTED_FILE = "reported_studies.json"  # in a store's root folder, beside its zarr.json


def _read(store_path: Path) -> list[dict]:
    try:
        doc = json.loads((Path(store_path) / REPORTED_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [d for d in doc if isinstance(d, dict)] if isinstance(doc, list) else []


def record_in_stores(summary: dict, key: dict) -> list[Path]:
    """Append ``summary`` (neurobrowse.study.report_summary) to every store of the study's key that is
    still there with the same run UUID; a later report of the same study replaces its entry. Returns
    the stores written. A store that cannot be written is skipped (the report itself is in the study)."""
    from store.errors import NeurobrowseError
    from store.format.reader import Store

    written = []
    for m in key.get("models", []):
        try:
            st = Store.open(m["store"])
        except (NeurobrowseError, OSError, KeyError, TypeError):
            continue
        if st.run_uuid != m.get("run_uuid"):
            continue
        entries = [d for d in _read(st.path) if d.get("study") != summary.get("study")] + [summary]
        path = Path(st.path) / REPORTED_FILE
        try:
            atomic.write_text(path, json.dumps(entries, indent=1) + "\n")
            written.append(Path(st.path))
        except OSError:
            pass
    return written


def reported_study(store_solu, store_other):
    """neurobrowse.verdict.StudyEvidence of the latest study reported for exactly these two recordings
    (found in either store's REPORTED_FILE, matched by run UUID), or None."""
    from neurobrowse.verdict import StudyEvidence, fisher_p

    runs = (store_solu.run_uuid, store_other.run_uuid)
    entries = _read(store_solu.path) + _read(store_other.path)
    best = None
    for doc in entries:
        try:
            by_run = {m["run_uuid"]: m for m in doc["models"]}
        except (KeyError, TypeError):
            continue
        if set(by_run) != set(runs):
            continue
        if best is None or str(doc.get("created", "")) >= str(best.get("created", "")):
            best = doc
    if best is None:
        return None
    by_run = {m["run_uuid"]: m for m in best["models"]}
    s, o = by_run[runs[0]], by_run[runs[1]]
    k = (int(s["items_interpretable"]), int(o["items_interpretable"]))
    n = (int(s["items_rated"]), int(o["items_rated"]))
    return StudyEvidence(best["study"], k, n, fisher_p(k[0], n[0], k[1], n[1]), int(best.get("raters", 0)))


__all__ = ["REPORTED_FILE", "record_in_stores", "reported_study"]
