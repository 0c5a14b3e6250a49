"""The study folder: what raters see (``study.json``: blinded items and their snippets) and the
unblinding key (``key.json``), read back with their checks; the rule raters follow.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from store.errors import NeurobrowseError


STUDY_VERSION = 1


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


# ---- reading a study -------------------------------------------------------------------------------
def load_items(study: str | os.PathLike) -> list[StudyItem]:
    """The blinded items, in study order (never opens key.json)."""
    path = Path(study) / "study.json"
    if not path.is_file():
        raise StudyError(f"{study} is not a study folder (no study.json); create one with `neurobrowse study new`")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise StudyError(f"{path} is damaged ({e})") from None
    if doc.get("kind") != "neurobrowse-study" or int(doc.get("version", 0)) > STUDY_VERSION:
        raise StudyError(f"{path} is not a study this neurobrowse reads (kind {doc.get('kind')!r}, "
                         f"version {doc.get('version')})")
    return [StudyItem(it["item_id"], it["snippets"]) for it in doc["items"]]


def load_key(study: str | os.PathLike) -> dict:
    path = Path(study) / "key.json"
    if not path.is_file():
        raise StudyError(f"{path} is missing: the study cannot be unblinded without its key")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise StudyError(f"{path} is damaged ({e})") from None
