"""Try your own text: the recorded model runs on what you type and the current neuron shades it.

Typing is debounced; the model runs in a worker (Browser.run_live, newest text wins); the
result's character spans shade the editor through extra selections, so the text itself, its undo
history and the cursor are untouched. Hovering a token shows its activation.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QEvent, QTimer, Signal
from PySide6.QtGui import QColor, QFont, QTextCharFormat, QTextCursor
from PySide6.QtWidgets import QLabel, QPlainTextEdit, QTextEdit, QToolTip, QVBoxLayout, QWidget

from neurobrowse.snippet_text import shade_rgb


class _Editor(QPlainTextEdit):
    def __init__(self, panel: "TryTextPanel") -> None:
        super().__init__()
        self.panel = panel

    def event(self, e) -> bool:
        if e.type() == QEvent.Type.ToolTip:
            pos = self.cursorForPosition(e.pos()).position()
            tip = self.panel.tooltip_at(pos)
            if tip:
                QToolTip.showText(e.globalPos(), tip, self)
            else:
                QToolTip.hideText()
            return True
        return super().event(e)


class TryTextPanel(QWidget):
    """Editor + status line. Emits ``shaded(object)`` after a result was applied (tests wait on it)."""

    shaded = Signal(object)

    def __init__(self, browser, parent=None, debounce_ms: int = 300) -> None:
        super().__init__(parent)
        self.browser = browser
        self.result = None
        self.recorded = None  # (text, firing offset, recorded value, NeuronRef) after 'edit' on a snippet
        self.editor = _Editor(self)
        self.editor.setPlaceholderText("Try your own text: type or paste here, or click 'edit' on a snippet. "
                                       "The model runs on it and the current neuron shades each token.")
        mono = QFont("DejaVu Sans Mono")
        mono.setPointSizeF(10)
        self.editor.setFont(mono)
        self.status = QLabel("Try your text")
        self.status.setStyleSheet("color: palette(placeholder-text);")
        self.status.setWordWrap(True)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 2, 0, 0)
        lay.addWidget(self.status)
        lay.addWidget(self.editor, 1)

        self.timer = QTimer(self)
        self.timer.setSingleShot(True)
        self.timer.setInterval(debounce_ms)
        self.timer.timeout.connect(self.run_now)
        self.editor.textChanged.connect(self._on_edit)
        browser.liveReady.connect(self._on_result)
        browser.liveStateChanged.connect(self._on_state)
        browser.neuronChanged.connect(lambda ref: self.timer.start() if self.text() else None)

    def text(self) -> str:
        return self.editor.toPlainText()

    def set_text(self, text: str, recorded: tuple | None = None) -> None:
        """'Open snippet in editor': replace the text (one undo step) and run at once. ``recorded``:
        (character offset of the firing token, its value in the store, its NeuronRef), shown beside the
        re-run value while the text is unchanged."""
        self.recorded = (text, *recorded) if recorded is not None else None
        self.editor.setPlainText(text)
        self.editor.setFocus()
        self.run_now()

    def recorded_line(self, result) -> str:
        """'recorded +16.95 on ' x' · re-run 16.10' for the firing the text was loaded from ('' otherwise)."""
        rec = getattr(self, "recorded", None)
        if rec is None or rec[0] != result.text:
            return ""
        _text, offset, value, ref = rec
        if ref is not None and (ref.hook, ref.neuron) != (result.hook, result.neuron):
            return ""
        i = next((k for k, (a, b) in enumerate(result.spans) if a <= offset < b), None)
        if i is None:
            return f"recorded {value:+.4g} in the store; the firing token was not found in the re-run"
        return (f"recorded {value:+.4g} on {result.tokens[i]!r} in the store · "
                f"re-run here {float(result.acts[i]):+.4g}")

    def _on_edit(self) -> None:
        self.editor.setExtraSelections([])  # stale shading would lie about the edited text
        self.result = None
        self.timer.start()

    def run_now(self) -> None:
        self.timer.stop()
        text = self.text()
        if text.strip():
            self.browser.run_live(text)

    def _on_state(self, msg: str) -> None:
        if msg != "ready":
            self.status.setText(msg)

    def _on_result(self, result) -> None:
        if result.text != self.text():
            return  # typed on since: a newer run is coming
        ref = self.browser.ref
        if ref is not None and (result.hook, result.neuron) != (ref.hook, ref.neuron):
            return
        self.result = result
        page = self.browser.page
        scale = page.scale if page is not None and page.ref == ref else 0.0
        acts = np.asarray(result.acts, dtype=np.float64)
        if len(acts):
            scale = max(scale, float(np.max(np.abs(acts))))
        sels = []
        doc = self.editor.document()
        for (a, b), act in zip(result.spans, acts):
            if b <= a:
                continue
            sel = QTextEdit.ExtraSelection()
            cur = QTextCursor(doc)
            cur.setPosition(a)
            cur.setPosition(b, QTextCursor.MoveMode.KeepAnchor)
            fmt = QTextCharFormat()
            r, g, bb = shade_rgb(float(act), scale)
            fmt.setBackground(QColor(r, g, bb))
            sel.cursor, sel.format = cur, fmt
            sels.append(sel)
        self.editor.setExtraSelections(sels)
        if len(acts):
            i = int(np.argmax(acts))
            rec = self.recorded_line(result)
            self.status.setText((f"{rec}. " if rec else "")
                                + f"{result.hook} neuron {result.neuron}: max {acts[i]:.3g} on {result.tokens[i]!r} "
                                f"({len(acts)} tokens; shading scale {scale:.3g}). Hover a token for its value.")
        self.shaded.emit(result)

    def tooltip_at(self, pos: int) -> str:
        r = self.result
        if r is None:
            return ""
        for (a, b), tok, act in zip(r.spans, r.tokens, r.acts):
            if a <= pos < b:
                return f"{float(act):.4g}   {tok!r}"
        return ""

    def shading(self) -> list[tuple[int, int, tuple[int, int, int]]]:
        """(start, end, rgb) of every shaded span: what a test compares against the model's values."""
        out = []
        for sel in self.editor.extraSelections():
            c = sel.format.background().color()
            out.append((sel.cursor.selectionStart(), sel.cursor.selectionEnd(), (c.red(), c.green(), c.blue())))
        return out
