"""LabelPanel: label the shown neuron from the keyboard while browsing.

API for the neuron page::

    from neurobrowse.labeling import LabelModel
    from neurobrowse.qt.label_panel import LabelPanel

    model = LabelModel(LabelDB(), store.run_uuid, store=store)  # one per open store
    panel = LabelPanel(model)            # a QWidget; put it in the neuron page's layout
    model.set_neuron(hook, neuron)       # whenever the page shows another neuron
    panel.labelChanged.connect(lambda hook, neuron, label: table.update_label(hook, neuron, label))
    # filter the table: model.filter_neurons(hook, verdicts=[...], tags=[...]); tags: model.all_tags()

Keys (QShortcut, ``Qt.WindowShortcut`` by default, so they work while the table or plots have
focus; a focused text field keeps its own typing): 1 interpretable, 2 not interpretable,
3 unsure, Ctrl+Z undo (outside text fields), Ctrl+L focus the description field. Pass
``shortcut_context=Qt.WidgetWithChildrenShortcut`` when a window shows two panels (compare view),
or ``shortcuts=False`` to wire keys yourself (call ``choose_verdict`` / ``undo``).

The description and tags fields are saved on Enter or when they lose focus; the notes field when it
loses focus (or on Ctrl+Enter). Every save is one SQLite transaction (see store.labels). Errors (a
locked database, a full disk) show in the panel's status line and ``errorOccurred``; nothing raises
out of a Qt slot.

Signals:
    labelChanged(str hook, int neuron, object label)  label is a store.labels.label.Label or None (cleared);
                                                       emitted for sets, clears and undos.
    errorOccurred(str message)
"""

from __future__ import annotations

import html

from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QButtonGroup, QFormLayout, QHBoxLayout, QLabel, QLineEdit, QPlainTextEdit, QPushButton, QVBoxLayout, QWidget,
)

from neurobrowse.labeling import LabelChange, LabelModel
from store.errors import NeurobrowseError
from store.labels.label import VERDICTS

VERDICT_TEXT = {"interpretable": "Interpretable", "not_interpretable": "Not interpretable", "unsure": "Unsure"}
def neuron_name(hook: str, neuron: int) -> str:
    """'L0 N249 (hook_post)', as the window title and the bookmarks name a neuron."""
    from neurobrowse.browsing.navigation import NeuronRef

    return NeuronRef(hook, int(neuron)).label()


VERDICT_KEYS = {"interpretable": "1", "not_interpretable": "2", "unsure": "3"}


class LabelPanel(QWidget):
    """Verdict buttons, description, tags, notes and undo for the neuron a LabelModel shows."""

    labelChanged = Signal(str, int, object)
    errorOccurred = Signal(str)
    undone = Signal(str)  # what an undo changed, in words naming the neuron (for the window's status bar)

    def __init__(self, model: LabelModel, parent: QWidget | None = None, *, shortcuts: bool = True,
                 shortcut_context: Qt.ShortcutContext = Qt.WindowShortcut):
        super().__init__(parent)
        self.model = model
        self.setObjectName("LabelPanel")

        self.buttons: dict[str, QPushButton] = {}
        self.group = QButtonGroup(self)
        self.group.setExclusive(False)  # we set the checked state from the model ourselves
        row = QHBoxLayout()
        for v in VERDICTS:
            b = QPushButton(f"{VERDICT_TEXT[v]} [{VERDICT_KEYS[v]}]")
            b.setCheckable(True)
            b.setObjectName(f"verdict_{v}")
            b.clicked.connect(lambda _=False, v=v: self.choose_verdict(v))
            self.group.addButton(b)
            self.buttons[v] = b
            row.addWidget(b)

        self.description = QLineEdit()
        self.description.setPlaceholderText("short description, e.g. 'closing brackets in code'")
        self.description.editingFinished.connect(self._save_description)
        self.tags = QLineEdit()
        self.tags.setPlaceholderText("tags, comma separated")
        self.tags.editingFinished.connect(self._save_tags)
        self.notes = QPlainTextEdit()
        self.notes.setPlaceholderText("notes")
        self.notes.setMaximumHeight(54)  # a short window (1366 x 768) keeps the whole label panel in view
        self.notes.installEventFilter(self)

        self.undo_button = QPushButton("Undo [Ctrl+Z]")
        self.undo_button.clicked.connect(self.undo)
        self.clear_button = QPushButton("Clear label")
        self.clear_button.clicked.connect(self.clear)
        self.status = QLabel()
        self.status.setObjectName("label_status")
        self.status.setWordWrap(True)

        form = QFormLayout()
        form.addRow("Description", self.description)
        form.addRow("Tags", self.tags)
        form.addRow("Notes", self.notes)
        actions = QHBoxLayout()
        actions.addWidget(self.undo_button)
        actions.addWidget(self.clear_button)
        actions.addStretch(1)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addLayout(row)
        lay.addLayout(form)
        lay.addLayout(actions)
        lay.addWidget(self.status)

        self.shortcuts: list[QShortcut] = []
        if shortcuts:
            for v in VERDICTS:
                self._shortcut(VERDICT_KEYS[v], lambda v=v: self.choose_verdict(v), shortcut_context)
            self._shortcut("Ctrl+Z", self.undo, shortcut_context)
            self._shortcut("Ctrl+L", self.description.setFocus, shortcut_context)

        self._unsubscribe = model.subscribe(self._on_change)
        self.destroyed.connect(lambda *_: self._unsubscribe())
        self._show(model.current)

    def _shortcut(self, key: str, fn, context: Qt.ShortcutContext) -> None:
        sc = QShortcut(QKeySequence(key), self)
        sc.setContext(context)
        sc.activated.connect(fn)
        self.shortcuts.append(sc)

    # ---- actions (also the API for callers that wire their own keys) -------------------------------
    def _guard(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except NeurobrowseError as e:
            self.status.setText(f"<span style='color:#b00020'>{html.escape(str(e))}</span>")
            self.errorOccurred.emit(str(e))
            return None

    def choose_verdict(self, verdict: str) -> None:
        """Set the verdict (saving any edited text fields with it)."""
        if self.model.hook is None:
            return
        self._guard(self.model.update, verdict=verdict, **self._pending_text())

    def undo(self) -> None:
        """Undo the last label change of this store, on whichever neuron it was (as in an editor: a label
        set just before pressing J is still one key away); the status line names that neuron."""
        change = self._guard(self.model.undo)
        if change is None:
            return
        what = (f"restored to {VERDICT_TEXT.get(change.label.verdict, change.label.verdict)}"
                if change.label is not None else "removed")
        here = (change.hook, change.neuron) == (self.model.hook, self.model.neuron)
        msg = f"Undone: the label of {neuron_name(change.hook, change.neuron)} {what}" + (
            "" if here else " (not the neuron shown)")
        self._show(self.model.current)
        self.status.setText(html.escape(msg))
        self.undone.emit(msg)

    def clear(self) -> None:
        if self.model.hook is not None:
            self._guard(self.model.clear)

    def _pending_text(self) -> dict:
        """Text fields whose content differs from the saved label (saved along with a verdict)."""
        cur = self.model.current
        out = {}
        if self.description.text().strip() != (cur.description if cur else ""):
            out["description"] = self.description.text()
        if self._tag_list() != (list(cur.tags) if cur else []):
            out["tags"] = self._tag_list()
        if self.notes.toPlainText() != (cur.notes if cur else ""):
            out["notes"] = self.notes.toPlainText()
        return out

    def _tag_list(self) -> list[str]:
        return sorted({t.strip() for t in self.tags.text().split(",") if t.strip()})

    def _save_description(self) -> None:
        cur = self.model.current
        if self.model.hook is not None and self.description.text().strip() != (cur.description if cur else ""):
            self._guard(self.model.update, description=self.description.text())

    def _save_tags(self) -> None:
        cur = self.model.current
        if self.model.hook is not None and self._tag_list() != (list(cur.tags) if cur else []):
            self._guard(self.model.update, tags=self._tag_list())

    def _save_notes(self) -> None:
        cur = self.model.current
        if self.model.hook is not None and self.notes.toPlainText() != (cur.notes if cur else ""):
            self._guard(self.model.update, notes=self.notes.toPlainText())

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        if obj is self.notes:
            if event.type() == QEvent.FocusOut:
                self._save_notes()
            elif (event.type() == QEvent.KeyPress and event.key() in (Qt.Key_Return, Qt.Key_Enter)
                  and event.modifiers() & Qt.ControlModifier):
                self._save_notes()
                return True
        return super().eventFilter(obj, event)

    # ---- model -> view -----------------------------------------------------------------------------
    def _on_change(self, change: LabelChange) -> None:
        if change.kind in ("neuron", "refresh") or (change.hook, change.neuron) == (self.model.hook, self.model.neuron):
            self._show(self.model.current)
        if change.kind in ("set", "cleared", "undo"):
            self.labelChanged.emit(change.hook, int(change.neuron), change.label)

    def _show(self, lab) -> None:
        enabled = self.model.hook is not None
        for v, b in self.buttons.items():
            b.setEnabled(enabled)
            b.setChecked(lab is not None and lab.verdict == v)
        for w in (self.description, self.tags, self.notes, self.clear_button):
            w.setEnabled(enabled)
        self.undo_button.setEnabled(self.model.can_undo)
        target = self.model.undo_target() if hasattr(self.model, "undo_target") else None
        self.undo_button.setToolTip(f"Undo the last label change: {neuron_name(*target)}" if target
                                    else "Nothing to undo")
        self.description.setText(lab.description if lab else "")
        self.tags.setText(", ".join(lab.tags) if lab else "")
        if self.notes.toPlainText() != (lab.notes if lab else ""):
            self.notes.setPlainText(lab.notes if lab else "")
        if not enabled:
            self.status.setText("no neuron shown")
        elif lab is None:
            self.status.setText(f"neuron {self.model.neuron}: no label yet (keys 1 / 2 / 3)")
        else:
            self.status.setText(f"{VERDICT_TEXT[lab.verdict]} · by {html.escape(lab.author)} · {lab.time[:19]}")
