"""StudyWindow: the blinded rating screen of the study (SoLU paper, section 6.1).

It shows, for one item at a time, its ~20 top snippets (a few lines of context each, tokens shaded
red by activation) and the rating rule - nothing else: no model, no neuron id, no statistics, no
scores. It only ever sees a ``neurobrowse.study.StudySession``, which reads the blinded study.json
and never the key, so it cannot leak the model even by mistake.

Keys: 1 interpretable, 2 not interpretable, 3 unsure, P (or Space) pause / resume. Progress is
saved with every rating; opening the study again resumes at the first item not yet rated.

For the app (engineer D)::

    from neurobrowse.study import StudySession
    from neurobrowse.qt.study_window import StudyWindow
    win = StudyWindow(StudySession(study_dir, rater=name)); win.show()

Signals: rated(str item_id, str verdict), pausedChanged(bool), finished().
"""

from __future__ import annotations

import html

from PySide6.QtCore import Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import QHBoxLayout, QLabel, QMessageBox, QPushButton, QTextBrowser, QVBoxLayout, QWidget

from neurobrowse.study import StudyItem, StudySession
from store.errors import NeurobrowseError

KEYS = {"interpretable": "1", "not_interpretable": "2", "unsure": "3"}
TEXT = {"interpretable": "Interpretable", "not_interpretable": "Not interpretable", "unsure": "Unsure"}


def snippets_html(item: StudyItem) -> str:
    """The item's snippets as HTML: one line each, every token shaded red by activation / item max."""
    peak = max((max(s["acts"]) for s in item.snippets if s["acts"]), default=0.0)
    peak = peak if peak > 0 else 1.0
    rows = []
    for s in item.snippets:
        parts = []
        for i, (tok, act) in enumerate(zip(s["tokens"], s["acts"])):
            alpha = min(1.0, max(0.0, act / peak))
            text = html.escape(tok).replace(" ", "&nbsp;") or "&nbsp;"
            style = f"background-color: rgba(220, 20, 20, {alpha:.2f});"
            if i == s["center"]:
                style += " text-decoration: underline;"
            parts.append(f"<span style='{style}'>{text}</span>")
        rows.append("<p style='margin: 2px 0 8px 0; font-family: monospace;'>" + "".join(parts) + "</p>")
    return "".join(rows)


class StudyWindow(QWidget):
    """One rater's rating window over a StudySession."""

    rated = Signal(str, str)
    pausedChanged = Signal(bool)
    finished = Signal()

    def __init__(self, session: StudySession, parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.setWindowTitle(f"neurobrowse: blinded rating ({session.rater})")
        self.resize(900, 760)

        self.rule = QLabel(f"<b>Rule.</b> {html.escape(session.rule)}")
        self.rule.setObjectName("study_rule")
        self.rule.setWordWrap(True)
        self.progress = QLabel()
        self.progress.setObjectName("study_progress")
        self.view = QTextBrowser()
        self.view.setObjectName("study_snippets")
        self.view.setOpenLinks(False)

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
        if s.finished:
            self.progress.setText(f"All {total} items rated. Thank you - you can close this window.")
            self.view.setHtml("<p>Done.</p>")
        elif s.paused:
            self.progress.setText(f"Paused - {done} of {total} rated. Press P to resume.")
            self.view.setHtml("<p style='color:#777'>Paused: the snippets are hidden and the clock is stopped.</p>")
        else:
            self.progress.setText(f"Item {s.index + 1} of {total} - {done} rated")
            self.view.setHtml(snippets_html(s.current()))

    def closeEvent(self, event) -> None:
        self.session.close()
        super().closeEvent(event)
