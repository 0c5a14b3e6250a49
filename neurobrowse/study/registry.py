"""The registry of reported studies (``registry_path``): ``study report`` appends one line per report,
``reported_study`` finds the latest of two recordings for `compare`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


REGISTRY_ENV = "NEUROBROWSE_STUDIES"  # overrides where reported studies are listed (for compare)


def registry_path() -> Path:
    """``$NEUROBROWSE_STUDIES`` if set, else ``<user data dir>/neurobrowse/studies.jsonl``: one line per
    reported study (path, models' run UUIDs, per-item counts), read by ``reported_study``."""
    env = os.environ.get(REGISTRY_ENV)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return platformdirs.user_data_path("neurobrowse", appauthor=False) / "studies.jsonl"


def _register(summary: dict) -> None:
    """Append a reported study to the registry (``registry_path``); a registry that cannot be written
    only loses the link from `compare` to this report (report.json stays in the study folder)."""
    path = registry_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(summary) + "\n")
    except OSError:
        pass


def reported_study(run_solu: str, run_other: str):
    """neurobrowse.verdict.StudyEvidence of the latest reported study of exactly these two recordings
    (by run UUID; its report.json must still exist), or None."""
    from neurobrowse.verdict import StudyEvidence, fisher_p

    path = registry_path()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            doc = json.loads(line)
            by_run = {m["run_uuid"]: m for m in doc["models"]}
        except (ValueError, KeyError, TypeError):
            continue
        if set(by_run) != {run_solu, run_other} or not Path(doc.get("report", "")).is_file():
            continue
        s, o = by_run[run_solu], by_run[run_other]
        k = (int(s["items_interpretable"]), int(o["items_interpretable"]))
        n = (int(s["items_rated"]), int(o["items_rated"]))
        return StudyEvidence(doc["study"], k, n, fisher_p(k[0], n[0], k[1], n[1]), int(doc.get("raters", 0)))
    return None
