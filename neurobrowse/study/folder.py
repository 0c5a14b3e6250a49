"""The study folder: what raters see (``study.json``: blinded items and their snippets) and the
unblinding key (``key.json``), read back with their checks; the rule raters follow.

Layout (version 2)::

    STUDY/           handed to raters: study.json (relative activations only), ratings.sqlite
    STUDY.key/       kept by whoever runs the study, never handed out: key.json, and report/

Older studies (version 1, ``docs/studies``) keep key.json inside STUDY and may hold study.json.gz; both
still load. What a rater sees depends only on each item's relative activations above zero
(``relative_snippets``), whatever a study file holds.
"""

from __future__ import annotations

import gzip
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from store.errors import NeurobrowseError


STUDY_VERSION = 2  # 2: relative activations in study.json, the key in STUDY.key/ (1 still reads)


RULE = ("Rate a neuron interpretable when at least 80% of its strongest firings (the red tokens) "
        "follow one rule or belong to one category you could name. Otherwise rate it not "
        "interpretable; use unsure only when you cannot decide.")


class StudyError(NeurobrowseError):
    """A study folder or answers file that cannot be used; the message names the file."""


@dataclass
class StudyItem:
    """One blinded item as a rater sees it: an opaque id and snippets (tokens, acts, center)."""

    item_id: str
    snippets: list[dict] = field(default_factory=list)


# ---- where things are -----------------------------------------------------------------------------
def key_dir(study: str | os.PathLike) -> Path:
    """The folder that holds a (version 2) study's key and report: STUDY.key beside STUDY."""
    study = Path(study)
    return study.with_name(study.name + ".key")


def key_path(study: str | os.PathLike) -> Path:
    """Where the key of ``study`` is: STUDY.key/key.json, or key.json inside an older study folder."""
    old = Path(study) / "key.json"
    return old if old.is_file() and not (key_dir(study) / "key.json").is_file() else key_dir(study) / "key.json"


def report_dir(study: str | os.PathLike) -> Path:
    """Where ``study report`` writes by default: beside the key (never in the folder raters get)."""
    return key_path(study).parent / "report"


def _study_file(study: str | os.PathLike) -> Path | None:
    for name in ("study.json", "study.json.gz"):
        p = Path(study) / name
        if p.is_file():
            return p
    return None


# ---- what a rater sees ------------------------------------------------------------------------------
def relative_snippets(snippets: list[dict], decimals: int = 3) -> list[dict]:
    """An item's snippets with each activation as a share of the item's strongest, negatives as zero (what
    the paper's raters saw): no raw value, no per-model scale. Two items with the same tokens and relative
    activations come out equal, whatever their model and scale."""
    acts = [[max(float(a), 0.0) if math.isfinite(float(a)) else 0.0 for a in s["acts"]] for s in snippets]
    peak = max((max(a) for a in acts if a), default=0.0)
    scale = 1.0 / peak if peak > 0 else 0.0
    return [{**s, "acts": [round(a * scale, decimals) for a in row]} for s, row in zip(snippets, acts)]


# ---- reading a study -------------------------------------------------------------------------------
def load_items(study: str | os.PathLike) -> list[StudyItem]:
    """The blinded items, in study order (never opens the key). Reads study.json or study.json.gz."""
    path = _study_file(study)
    if path is None:
        raise StudyError(f"{study} is not a study folder (no study.json); create one with `neurobrowse study new`")
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rt", encoding="utf-8") as f:
                doc = json.load(f)
        else:
            doc = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError, EOFError) as e:
        raise StudyError(f"{path} is damaged ({e})") from None
    if doc.get("kind") != "neurobrowse-study" or int(doc.get("version", 0)) > STUDY_VERSION:
        raise StudyError(f"{path} is not a study this neurobrowse reads (kind {doc.get('kind')!r}, "
                         f"version {doc.get('version')})")
    return [StudyItem(it["item_id"], it["snippets"]) for it in doc["items"]]


def load_key(study: str | os.PathLike) -> dict:
    path = key_path(study)
    if not path.is_file():
        raise StudyError(f"{path} is missing: the study cannot be unblinded without its key (a study keeps it in "
                         f"{key_dir(study)}, beside the folder raters get)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise StudyError(f"{path} is damaged ({e})") from None
