"""A neuron label (``Label``), its verdicts, the label errors and the checks a label passes before it is
written: pure values, no database.
"""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable
import platformdirs
from store.errors import NeurobrowseError
from store.schema import parse_hook_name


VERDICTS = ("interpretable", "not_interpretable", "unsure")


LABELS_SCHEMA_VERSION = 2


ENV_DB = "NEUROBROWSE_LABELS_DB"  # overrides the default database path


DEFAULT_BUSY_TIMEOUT_S = 10.0  # how long a writer waits for another writer before giving up


BACKUPS_KEPT = 5  # rotated backups kept next to the database (backups/labels-*.sqlite)


class LabelError(NeurobrowseError):
    """Bad label input: an unknown verdict, a neuron the store does not have, a label of another store."""


class LabelDatabaseError(LabelError):
    """The label database cannot be used right now: locked too long, disk full, newer schema, damaged."""


class LabelImportError(LabelError):
    """An import file that cannot be read back (malformed line, another store's labels); nothing imported."""


@dataclass(frozen=True)
class Label:
    """One label of one neuron (or one event of its history).

    ``verdict`` is one of VERDICTS, or None for a cleared label (only seen in history).
    ``time`` is ISO 8601 UTC with microseconds; ``event_id`` is the events row (0 before writing).
    """

    run_uuid: str
    hook: str
    neuron: int
    verdict: str | None
    description: str = ""
    tags: tuple[str, ...] = ()
    notes: str = ""
    author: str = ""
    time: str = ""
    source: str = ""  # what wrote it: "app", "cli", "import", "study", ...
    event_id: int = 0
    layer: int = field(default=-1)

    def __post_init__(self) -> None:
        # layer is derived from the hook name, so the two can never disagree
        object.__setattr__(self, "layer", _layer_of(self.hook))
        object.__setattr__(self, "tags", normalize_tags(self.tags))
        object.__setattr__(self, "neuron", int(self.neuron))
        if self.neuron < 0:
            raise LabelError(f"neuron {self.neuron} of {self.hook}: neuron numbers start at 0")

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.run_uuid, self.hook, self.neuron)

    def content(self) -> tuple:
        """What a user set (verdict, description, tags, notes): equal content = no new event needed."""
        return (self.verdict, self.description, self.tags, self.notes)

    def to_dict(self) -> dict[str, Any]:
        # the fields one by one: asdict's recursive deep copy was most of the time of a 10k-label import
        d = {f: getattr(self, f) for f in self.__dataclass_fields__}
        d["tags"] = list(self.tags)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Label":
        """Inverse of to_dict (extra keys such as 'layer' are checked, unknown keys refused)."""
        known = {"run_uuid", "hook", "neuron", "verdict", "description", "tags", "notes", "author",
                 "time", "source", "event_id", "layer"}
        unknown = set(d) - known
        if unknown:
            raise LabelError(f"unknown label fields {sorted(unknown)}")
        for k in ("run_uuid", "hook", "neuron"):
            if k not in d:
                raise LabelError(f"label is missing the field {k!r}")
        tags = d.get("tags") or ()
        if isinstance(tags, str):
            raise LabelError("label field 'tags' must be a list of strings")
        lab = cls(
            run_uuid=str(d["run_uuid"]), hook=str(d["hook"]), neuron=_as_int(d["neuron"], "neuron"),
            verdict=d.get("verdict"), description=str(d.get("description") or ""), tags=tuple(tags),
            notes=str(d.get("notes") or ""), author=str(d.get("author") or ""), time=str(d.get("time") or ""),
            source=str(d.get("source") or ""), event_id=_as_int(d.get("event_id") or 0, "event_id"),
        )
        if "layer" in d and d["layer"] is not None and int(d["layer"]) != lab.layer:
            raise LabelError(f"label layer {d['layer']} does not match hook {lab.hook!r}")
        check_verdict(lab.verdict, allow_none=True)
        return lab


def _as_int(v: Any, name: str) -> int:
    try:
        if isinstance(v, bool) or (isinstance(v, float) and not v.is_integer()):
            raise ValueError
        return int(v)
    except (TypeError, ValueError):
        raise LabelError(f"label field {name!r} must be an integer, got {v!r}") from None


def _layer_of(hook: str) -> int:
    try:
        return parse_hook_name(hook)[0]
    except ValueError as e:
        raise LabelError(str(e)) from None


def normalize_tags(tags: Iterable[str]) -> tuple[str, ...]:
    """Tags are trimmed, de-duplicated and sorted, so two equal tag sets compare equal."""
    out = set()
    for t in tags:
        if not isinstance(t, str):
            raise LabelError(f"a tag must be a string, got {t!r}")
        t = t.strip()
        if t:
            out.add(t)
    return tuple(sorted(out))


def check_verdict(verdict: str | None, allow_none: bool = False) -> None:
    if verdict is None and allow_none:
        return
    if verdict not in VERDICTS:
        raise LabelError(f"unknown verdict {verdict!r}; use one of {', '.join(VERDICTS)}")


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def default_author() -> str:
    """The OS user name (labels say who set them); 'unknown' when the OS does not say."""
    try:
        return getpass.getuser()
    except Exception:  # getpass raises various errors when no user name is configured
        return "unknown"


def default_db_path() -> Path:
    """``$NEUROBROWSE_LABELS_DB`` if set, else ``<user data dir>/neurobrowse/labels.sqlite``."""
    env = os.environ.get(ENV_DB)
    if env:
        return Path(env).expanduser()
    return platformdirs.user_data_path("neurobrowse", appauthor=False) / "labels.sqlite"


def validate_against_store(store: Any, run_uuid: str, hook: str, neuron: int) -> None:
    """Refuse a label the store cannot have. ``store`` is a store.format.reader.Store (duck-typed:
    ``run_uuid``, ``hooks``, ``d_mlp``, ``path``)."""
    where = getattr(store, "path", "the store")
    if run_uuid != store.run_uuid:
        raise LabelError(
            f"this label belongs to the store with run UUID {run_uuid}, but {where} has run UUID "
            f"{store.run_uuid}; labels only attach to the recording they were made on"
        )
    if hook not in store.hooks:
        raise LabelError(f"hook {hook!r} is not recorded in {where} (it has: {', '.join(store.hooks)})")
    units = int(store.n_units(hook)) if hasattr(store, "n_units") else int(store.d_mlp)
    if not 0 <= int(neuron) < units:
        raise LabelError(
            f"neuron {neuron} of {hook} does not exist in {where}: neurons run 0..{units - 1}"
        )
