"""The labeling state of the app, without Qt: which neuron is shown, its label, undo, filters.

Why a Qt-free layer: the label logic (write on every change, undo as a new event, filters for the
neuron table) is tested without a display, and the Qt LabelPanel only draws it and forwards keys.

Typical use (the app's neuron page)::

    model = LabelModel(LabelDB(), store.run_uuid, store=store)   # one per open store
    panel = LabelPanel(model)                                    # neurobrowse.qt.label_panel
    model.set_neuron("blocks.0.mlp.hook_post", 17)              # when the page shows a neuron
    unsubscribe = model.subscribe(lambda change: table.refresh_labels())
    model.filter_neurons("blocks.0.mlp.hook_post", verdicts=["interpretable"], tags=["syntax"])

Every change is written at once (one SQLite transaction, author = OS user, source "app"), so
several windows and CLI calls can label the same store; ``refresh()`` re-reads what others wrote.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

import numpy as np

from store.labels.label import Label, LabelError, VERDICTS, normalize_tags, validate_against_store
from store.labels.db import LabelDB

_UNSET: Any = object()
VERDICT_MARK = {"interpretable": "✓", "not_interpretable": "✗", "unsure": "?"}


def label_text(label: Label) -> str:
    """A label as one line of text (the neuron table's Label column; ``label ~ ...`` filters on it):
    verdict mark, description, #tags."""
    tags = " ".join(f"#{t}" for t in label.tags or ())
    return " ".join(x for x in (VERDICT_MARK.get(label.verdict, label.verdict), label.description, tags) if x)


@dataclass(frozen=True)
class LabelChange:
    """What subscribers hear: the neuron whose label changed and its new label (None = cleared).
    ``kind``: "set", "cleared", "undo", "neuron" (another neuron is shown), "refresh"."""

    kind: str
    hook: str | None
    neuron: int | None
    label: Label | None


class LabelModel:
    """Labels of one store's neurons for an interactive client (the app's LabelPanel)."""

    def __init__(self, db: LabelDB, run_uuid: str, *, store: Any = None, author: str | None = None,
                 source: str = "app"):
        self.db = db
        self.run_uuid = run_uuid
        self.store = store  # when given, every write is validated against it
        self.author = author or db.author
        self.source = source
        self.hook: str | None = None
        self.neuron: int | None = None
        self.current: Label | None = None
        self._undo: list[tuple[str, int, Label | None]] = []  # (hook, neuron, label before the change)
        self._subscribers: list[Callable[[LabelChange], None]] = []

    # ---- observers ---------------------------------------------------------------------------------
    def subscribe(self, fn: Callable[[LabelChange], None]) -> Callable[[], None]:
        """Call ``fn(change)`` after every change; returns a function that unsubscribes."""
        self._subscribers.append(fn)
        return lambda: self._subscribers.remove(fn) if fn in self._subscribers else None

    def _emit(self, change: LabelChange) -> None:
        for fn in list(self._subscribers):
            fn(change)

    # ---- the shown neuron --------------------------------------------------------------------------
    def set_neuron(self, hook: str, neuron: int) -> Label | None:
        """Show another neuron: reads its current label (None when unlabeled)."""
        if self.store is not None:
            validate_against_store(self.store, self.run_uuid, hook, neuron)
        self.hook, self.neuron = hook, int(neuron)
        self.current = self.db.get(self.run_uuid, hook, self.neuron)
        self._emit(LabelChange("neuron", hook, self.neuron, self.current))
        return self.current

    def refresh(self) -> Label | None:
        """Re-read the shown neuron's label (another window or process may have changed it)."""
        if self.hook is None:
            return None
        self.current = self.db.get(self.run_uuid, self.hook, self.neuron)
        self._emit(LabelChange("refresh", self.hook, self.neuron, self.current))
        return self.current

    def _require_neuron(self) -> tuple[str, int]:
        if self.hook is None or self.neuron is None:
            raise LabelError("no neuron is shown: call set_neuron(hook, neuron) first")
        return self.hook, self.neuron

    # ---- changes -----------------------------------------------------------------------------------
    def set_verdict(self, verdict: str) -> Label:
        """Set the verdict of the shown neuron, keeping its description, tags and notes."""
        return self.update(verdict=verdict)

    def update(self, *, verdict: str = _UNSET, description: str = _UNSET, tags: Iterable[str] = _UNSET,
               notes: str = _UNSET) -> Label:
        """Change any of the label's fields; a neuron without a label gets verdict 'unsure' when only
        its description, tags or notes are given. Writes nothing when nothing changed."""
        hook, neuron = self._require_neuron()
        cur = self.current
        new = dict(
            verdict=verdict if verdict is not _UNSET else (cur.verdict if cur else "unsure"),
            description=(description if description is not _UNSET else (cur.description if cur else "")).strip(),
            tags=normalize_tags(tags if tags is not _UNSET else (cur.tags if cur else ())),
            notes=notes if notes is not _UNSET else (cur.notes if cur else ""),
        )
        if cur is not None and (cur.verdict, cur.description, cur.tags, cur.notes) == tuple(new.values()):
            return cur
        lab = self.db.set_label(self.run_uuid, hook, neuron, author=self.author, source=self.source,
                                store=self.store, **new)
        self._undo.append((hook, neuron, cur))
        self.current = lab
        self._emit(LabelChange("set", hook, neuron, lab))
        return lab

    def clear(self) -> None:
        """Remove the shown neuron's label (history keeps it; undo brings it back)."""
        hook, neuron = self._require_neuron()
        if self.current is None:
            return
        self.db.clear_label(self.run_uuid, hook, neuron, author=self.author, source=self.source)
        self._undo.append((hook, neuron, self.current))
        self.current = None
        self._emit(LabelChange("cleared", hook, neuron, None))

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    def undo_target(self) -> tuple[str, int] | None:
        """(hook, neuron) whose label ``undo`` would change next, or None."""
        return self._undo[-1][:2] if self._undo else None

    def undo(self) -> LabelChange | None:
        """Revert the last change made through this model (whichever neuron it was on), as a new
        event in the history. Returns the change, or None when there is nothing to undo."""
        if not self._undo:
            return None
        hook, neuron, before = self._undo.pop()
        if before is None:
            self.db.clear_label(self.run_uuid, hook, neuron, author=self.author, source=self.source)
            restored = None
        else:
            restored = self.db.set_label(self.run_uuid, hook, neuron, verdict=before.verdict,
                                         description=before.description, tags=before.tags, notes=before.notes,
                                         author=self.author, source=self.source)
        if (hook, neuron) == (self.hook, self.neuron):
            self.current = restored
        change = LabelChange("undo", hook, neuron, restored)
        self._emit(change)
        return change

    # ---- for the neuron table ----------------------------------------------------------------------
    def labels(self) -> dict[tuple[str, int], Label]:
        """All current labels of this store, {(hook, neuron): Label} (one consistent read)."""
        return self.db.snapshot(self.run_uuid)

    def label_texts(self, hook: str) -> dict[int, str]:
        """{neuron: label_text(label)} of one hook: the neuron table's Label column."""
        return {lab.neuron: label_text(lab) for lab in self.db.labels(self.run_uuid, hook=hook)}

    def all_tags(self) -> list[str]:
        return self.db.all_tags(self.run_uuid)

    def filter_neurons(self, hook: str, *, verdicts: Iterable[str] | None = None,
                       tags: Iterable[str] | None = None, unlabeled: bool = False) -> np.ndarray:
        """Sorted neuron ids of ``hook`` whose label has one of ``verdicts`` and any of ``tags``
        (a filter left None is not applied); ``unlabeled=True`` gives the neurons without a label."""
        labs = [lab for lab in self.db.labels(self.run_uuid, hook=hook)]
        if unlabeled:
            have = {lab.neuron for lab in labs}
            if self.store is None:
                n = max(have) + 1 if have else 0
            else:
                n = int(self.store.n_units(hook) if hasattr(self.store, "n_units") else self.store.d_mlp)
            return np.array([i for i in range(n) if i not in have], dtype=np.int64)
        if verdicts is not None:
            verdicts = set(verdicts)
            bad = verdicts - set(VERDICTS)
            if bad:
                raise LabelError(f"unknown verdicts {sorted(bad)}; use {', '.join(VERDICTS)}")
            labs = [lab for lab in labs if lab.verdict in verdicts]
        if tags is not None:
            want = set(normalize_tags(tags))
            labs = [lab for lab in labs if want & set(lab.tags)]
        return np.array(sorted(lab.neuron for lab in labs), dtype=np.int64)
