"""StudyWindow: the blinded rating screen of the study (SoLU paper, section 6.1).

It shows, for one item at a time, its ~20 top snippets (one per recorded context, several lines each,
tokens shaded red by activation) and the rating rule - nothing else: no model, no neuron id, no statistics, no
scores. It only ever sees a ``neurobrowse.study.session.StudySession``, which reads the blinded study.json
and never the key, so it cannot leak the model even by mistake.

Keys: 1 interpretable, 2 not interpretable, 3 unsure, U (or Ctrl+Z) undo the last rating, P (or
Space) pause / resume. Progress is saved with every rating; opening the study again resumes at the
first item not yet rated. Snippets are drawn by the neuron page's renderer (SnippetView without its
header lines): line breaks and indentation kept, shaded red by activation / the item's largest.

For the app::

    from neurobrowse.study.session import StudySession
    from neurobrowse.qt.study_window import StudyWindow
    win = StudyWindow(StudySession(study_dir, rater=name)); win.show()

Signals: rated(str item_id, str verdict), undone(str item_id), pausedChanged(bool), finished().
"""

from __future__ import annotations

import html

import numpy as np
from PySide6.QtCore import Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import QHBoxLayout, QLabel, QMessageBox, QPushButton, QVBoxLayout, QWidget

from neurobrowse.qt.snippet_view import SnippetView
from neurobrowse.browsing.pages import MergedSnippet
from neurobrowse.study.folder import StudyItem
from neurobrowse.study.session import StudySession
from store.errors import NeurobrowseError

KEYS = {"interpretable": "1", "not_interpretable": "2", "unsure": "3"}
TEXT = {"interpretable": "Interpretable", "not_interpretable": "Not interpretable", "unsure": "Unsure"}
UNDO_KEYS = ("U", "Ctrl+Z")


def relative_acts(item: StudyItem) -> list[np.ndarray]:
    """Each snippet's activations as a share of the item's strongest, negatives as zero: all a rater's view
    may depend on (the models' scales differ, and SoLU-LN's LayerNorm makes weak items strongly negative)."""
    acts = [np.maximum(np.nan_to_num(np.asarray(s["acts"], dtype=np.float64), nan=0.0), 0.0) for s in item.snippets]
    peak = max((float(a.max()) for a in acts if a.size), default=0.0)
    return [(a / peak if peak > 0 else a).astype(np.float32) for a in acts]


def item_snippets(item: StudyItem) -> tuple[list[MergedSnippet], float]:
    """The item's snippets as the app's renderer takes them, on relative activations (``relative_acts``) with
    the shading scale 1: the same text, line breaks and shading as the neuron page, and nothing that tells
    one model's scale from another's."""
    out = []
    for s, acts in zip(item.snippets, relative_acts(item)):
        c = int(s["center"])
        out.append(MergedSnippet(0, [-1] * len(s["tokens"]), list(s["tokens"]), acts, [c],
                                 float(acts[c]) if len(acts) else 0.0, 1))
    return out, 1.0


class StudyWindow(QWidget):
    """One rater's rating window over a StudySession."""

    rated = Signal(str, str)
    pausedChanged = Signal(bool)
    finished = Signal()
    undone = Signal(str)  # item id whose rating was taken back

    def __init__(self, session: StudySession, parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.setWindowTitle(f"neurobrowse: blinded rating ({session.rater})")
        self.resize(1000, 900)

        self.rule = QLabel(f"<b>Rule.</b> {html.escape(session.rule)}")
        self.rule.setObjectName("study_rule")
        self.rule.setWordWrap(True)
        self.rule.setStyleSheet("background: #fff7e0; color: #202020; border: 1px solid #e8d8a8; padding: 6px;")
        self.progress = QLabel()
        self.progress.setObjectName("study_progress")
        self.view = SnippetView(heads=False, values=False)
        self.view.setObjectName("study_snippets")

        self.buttons: dict[str, QPushButton] = {}
        row = QHBoxLayout()
        for v, key in KEYS.items():
            b = QPushButton(f"{TEXT[v]} [{key}]")
            b.setObjectName(f"rate_{v}")
            b.clicked.connect(lambda _=False, v=v: self.rate(v))
            row.addWidget(b)
            self.buttons[v] = b
            sc = QShortcut(QKeySequence(key), self)
            sc.activated.connect(lambda v=v: self.rate(v))
        row.addStretch(1)
        self.undo_button = QPushButton("Undo last rating [U]")
        self.undo_button.setObjectName("study_undo")
        self.undo_button.clicked.connect(self.undo)
        row.addWidget(self.undo_button)
        for key in UNDO_KEYS:
            QShortcut(QKeySequence(key), self).activated.connect(self.undo)
        self.pause_button = QPushButton("Pause [P]")
        self.pause_button.setObjectName("study_pause")
        self.pause_button.clicked.connect(self.toggle_pause)
        row.addWidget(self.pause_button)
        for key in ("P", "Space"):
            QShortcut(QKeySequence(key), self).activated.connect(self.toggle_pause)

        lay = QVBoxLayout(self)
        lay.addWidget(self.rule)
        lay.addWidget(self.progress)
        lay.addWidget(self.view, 1)
        lay.addLayout(row)
        self._render()

    # ---- actions -----------------------------------------------------------------------------------
    def rate(self, verdict: str) -> None:
        if self.session.paused or self.session.finished:
            return
        item = self.session.current()
        try:
            self.session.rate(verdict)
        except NeurobrowseError as e:
            QMessageBox.warning(self, "Rating not saved", str(e))
            return
        self.rated.emit(item.item_id, verdict)
        self._render()
        if self.session.finished:
            self.finished.emit()

    def undo(self) -> None:
        """Take back the last rating of this session and show that item again."""
        if not self.session.can_undo:
            return
        try:
            item = self.session.undo()
        except NeurobrowseError as e:
            QMessageBox.warning(self, "Rating not undone", str(e))
            return
        self._render()
        self.undone.emit(item.item_id)

    def toggle_pause(self) -> None:
        if self.session.finished:
            return
        if self.session.paused:
            self.session.resume()
        else:
            self.session.pause()
        self._render()
        self.pausedChanged.emit(self.session.paused)

    # ---- drawing -----------------------------------------------------------------------------------
    def _render(self) -> None:
        done, total = self.session.progress()
        s = self.session
        for b in self.buttons.values():
            b.setEnabled(not s.paused and not s.finished)
        self.pause_button.setEnabled(not s.finished)
        self.pause_button.setText("Resume [P]" if s.paused else "Pause [P]")
        self.undo_button.setEnabled(s.can_undo)
        if s.finished:
            self.progress.setText(f"All {total} items rated. Thank you - you can close this window "
                                  "(or undo the last rating).")
            self.view.clear_snippets("Done.")
        elif s.paused:
            self.progress.setText(f"Paused - {done} of {total} rated. Press P to resume.")
            self.view.clear_snippets("Paused: the snippets are hidden and the clock is stopped.")
        else:
            self.progress.setText(f"Item {s.index + 1} of {total} - {done} rated")
            snippets, peak = item_snippets(s.current())
            self.view.show_snippets(snippets, peak)
            self.view.verticalScrollBar().setValue(0)

    def closeEvent(self, event) -> None:
        self.session.close()
        super().closeEvent(event)
