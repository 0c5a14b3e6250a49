"""Shaded text: snippets with each token's background set by the neuron's activation there.

Built as one HTML string per view, one span per token with a CSS class per shade; hovering a token
shows its exact stored activation (looked up from ``token_spans``, not stored in the document). ``token_spans`` records where
each token landed in the document (tests read it to check the shading against the store).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from PySide6.QtCore import QEvent, QTimer, QUrl, Signal
from PySide6.QtGui import QColor, QFont, QTextBlockFormat, QTextCharFormat, QTextCursor, QTextDocument
from PySide6.QtWidgets import QTextBrowser, QToolTip

from neurobrowse.state import MergedSnippet, shade_rgb


@dataclass
class TokenSpan:
    start: int  # document character position
    end: int
    snippet: int  # index into the shown snippets
    token: int  # index into that snippet's tokens
    value: float


def _visible(tok: str) -> str:
    """Tokens are shown as their text; a newline inside one stays a line break."""
    return tok.replace("\r", "")


class SnippetView(QTextBrowser):
    """Read-only view of merged snippets. Emits ``openInEditor(str)`` from a snippet's 'edit' link."""

    openInEditor = Signal(str)
    rendered = Signal()  # every snippet of the current page is in the document

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setOpenLinks(False)
        self.setOpenExternalLinks(False)
        self.anchorClicked.connect(self._anchor)
        font = QFont("DejaVu Sans Mono")
        font.setStyleHint(QFont.StyleHint.Monospace)
        font.setPointSizeF(9.5)
        self.document().setDefaultFont(font)
        self.document().setDocumentMargin(6)
        self.snippets: list[MergedSnippet] = []
        self.token_spans: list[TokenSpan] = []
        self._starts: list[int] = []
        self._formats: dict[tuple, QTextCharFormat] = {}  # (rgb, firing) -> format, shared by all pages
        self._doc: QTextDocument | None = None
        self._next = 0
        self._headers: dict[int, str] = {}
        self._more = QTimer(self)  # appends the snippets after the first batch, after the first paint
        self._more.setSingleShot(True)
        self._more.setInterval(0)
        self._more.timeout.connect(self._append_rest)
        self._font = font
        self._block_head = QTextBlockFormat()
        self._block_head.setTopMargin(6)
        self._block_tokens = QTextBlockFormat()
        self._block_tokens.setBottomMargin(4)
        self._block_section = QTextBlockFormat()
        self._block_section.setTopMargin(12)
        self.scale = 1.0
        self._fmt_plain = QTextCharFormat()
        self._fmt_head = QTextCharFormat()
        self._fmt_head.setForeground(QColor(110, 110, 110))
        hf = QFont(font)
        hf.setPointSizeF(8.5)
        self._fmt_head.setFont(hf)
        self._fmt_section = QTextCharFormat()
        sf = QFont(font)
        sf.setBold(True)
        self._fmt_section.setFont(sf)
        self._fmt_section.setForeground(QColor(60, 60, 60))
        self._fmt_link = QTextCharFormat(self._fmt_head)
        self._fmt_link.setAnchor(True)
        self._fmt_link.setForeground(QColor(40, 90, 200))
        self._fmt_link.setToolTip("Open this text in the try-your-text editor")

    def clear_snippets(self, message: str = "") -> None:
        self._more.stop()
        self.snippets, self.token_spans, self._starts, self._next = [], [], [], 0
        self.setPlainText(message)

    FIRST_BATCH = 10  # merged snippets laid out before the first paint; the rest follow right after

    def show_snippets(self, snippets: list[MergedSnippet], scale: float, empty: str = "nothing to show",
                      headers: dict[int, str] | None = None) -> None:
        """Replace the document: one paragraph per merged snippet, tokens shaded by value / scale.
        ``headers`` puts a section title before the snippet with that index (quantile bins).

        Tokens are inserted with a cursor and one cached QTextCharFormat per shade (shades are quantised,
        state.SHADE_LEVELS): the document holds a few dozen formats, not one per token (per-token
        tooltips or inline-styled HTML cost 5-10x more). Hover text is looked up in ``token_spans``.
        The first FIRST_BATCH snippets (more than a screenful) are laid out at once and painted; the
        rest are appended from a zero-delay timer, so a keypress paints the new page sooner.
        ``complete`` turns True (and ``rendered`` fires) when every snippet is in."""
        self._more.stop()
        self.snippets = list(snippets)
        self.scale = float(scale) if scale else 1.0
        self._headers = dict(headers or {})
        self.token_spans, self._starts = [], []
        doc = QTextDocument(self)
        doc.setDefaultFont(self._font)
        doc.setDocumentMargin(6)
        doc.setUndoRedoEnabled(False)
        self._cursor = QTextCursor(doc)
        if not self.snippets:
            self._cursor.insertText(empty, self._fmt_plain)
        self._next = 0
        self._append(self.FIRST_BATCH)
        self.setDocument(doc)
        if self._doc is not None:
            self._doc.deleteLater()
        self._doc = doc  # ours: QTextEdit does not delete a document it does not parent
        if self.complete:
            self.rendered.emit()
        else:
            self._more.start()

    @property
    def complete(self) -> bool:
        return self._next >= len(self.snippets)

    def _append_rest(self) -> None:
        self._append(len(self.snippets))
        self.rendered.emit()

    def _append(self, upto: int) -> None:
        cur, headers = self._cursor, self._headers
        spans = self.token_spans
        cur.beginEditBlock()  # one relayout for the whole batch, not one per token
        try:
            self._append_batch(cur, headers, spans, upto)
        finally:
            cur.endEditBlock()

    def _append_batch(self, cur, headers, spans, upto: int) -> None:
        for si in range(self._next, min(upto, len(self.snippets))):
            sn = self.snippets[si]
            if si in headers:
                if si:
                    cur.insertBlock(self._block_section)
                cur.insertText(headers[si], self._fmt_section)
            if si or si in headers:
                cur.insertBlock(self._block_head)
            head = (f"{sn.value:+.3f}  @{sn.start + (sn.firing[0] if sn.firing else 0):,}"
                    + (f"  ({sn.n_merged} firings)" if sn.n_merged > 1 else "") + "  ")
            cur.insertText(head, self._fmt_head)
            link = QTextCharFormat(self._fmt_link)
            link.setAnchorHref(f"edit:{si}")
            cur.insertText("edit", link)
            cur.insertBlock(self._block_tokens)
            firing = set(sn.firing)
            p = cur.position()
            for ti, (tok, act) in enumerate(zip(sn.tokens, sn.acts)):
                text = _visible(tok)
                if not text:
                    continue
                a = float(act)
                key = (shade_rgb(a, self.scale), ti in firing)
                fmt = self._formats.get(key)
                if fmt is None:
                    fmt = self._formats[key] = self._token_format(*key)
                cur.insertText(text, fmt)
                end = cur.position()
                spans.append(TokenSpan(p, end, si, ti, a))
                self._starts.append(p)
                p = end
            self._next = si + 1

    def _token_format(self, rgb: tuple[int, int, int], firing: bool) -> QTextCharFormat:
        fmt = QTextCharFormat()
        fmt.setBackground(QColor(*rgb))
        fmt.setForeground(QColor(0, 0, 0))
        if firing:
            fmt.setFontUnderline(True)
            fmt.setFontWeight(QFont.Weight.Bold)
        return fmt

    def tooltip_at(self, pos: int) -> str:
        """The hover text for a document position: the token's stored activation and its text."""
        i = bisect.bisect_right(self._starts, pos) - 1
        if i < 0 or pos >= self.token_spans[i].end:
            return ""
        sp = self.token_spans[i]
        return f"{sp.value:.4g}   {self.snippets[sp.snippet].tokens[sp.token]!r}"

    def viewportEvent(self, e) -> bool:
        if e.type() == QEvent.Type.ToolTip:
            pos = self.cursorForPosition(e.pos()).position()
            tip = self.tooltip_at(pos) or self.tooltip_at(pos - 1)
            if tip:
                QToolTip.showText(e.globalPos(), tip, self)
                return True
        return super().viewportEvent(e)

    def plain_text_of(self, si: int) -> str:
        """The snippet as typeable text: the visible stand-ins for newline and tab become the real ones."""
        return "".join(self.snippets[si].tokens).replace("\u23ce", "\n").replace("\u21e5", "\t")

    def _anchor(self, url: QUrl) -> None:
        s = url.toString()
        if s.startswith("edit:"):
            i = int(s.split(":", 1)[1])
            if 0 <= i < len(self.snippets):
                self.openInEditor.emit(self.plain_text_of(i))
