"""Shaded text: snippets with each token's background set by the neuron's activation there.

Built with QTextCursor and one QTextCharFormat per token (background colour + tooltip with the
value), so the tooltip on hover shows the exact stored activation. ``token_spans`` records where
each token landed in the document (tests read it to check the shading against the store).
"""

from __future__ import annotations

import html
from dataclasses import dataclass

from PySide6.QtCore import QUrl, Signal
from PySide6.QtGui import QColor, QFont, QTextBlockFormat, QTextCharFormat, QTextCursor
from PySide6.QtWidgets import QTextBrowser

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

    def clear_snippets(self, message: str = "") -> None:
        self.snippets, self.token_spans = [], []
        self.setPlainText(message)

    def show_snippets(self, snippets: list[MergedSnippet], scale: float, empty: str = "nothing to show",
                      headers: dict[int, str] | None = None) -> None:
        """Replace the document: one paragraph per merged snippet, tokens shaded by value / scale.
        ``headers`` puts a section title before the snippet with that index (quantile bins)."""
        self.snippets = list(snippets)
        self.scale = float(scale) if scale else 1.0
        self.token_spans = []
        doc = self.document()
        self.setUpdatesEnabled(False)
        doc.clear()
        cur = QTextCursor(doc)
        cur.beginEditBlock()
        block = QTextBlockFormat()
        block.setBottomMargin(4)
        block.setTopMargin(6)
        if not self.snippets:
            cur.insertText(empty, self._fmt_plain)
        for si, sn in enumerate(self.snippets):
            if si:
                cur.insertBlock(block)
            else:
                cur.setBlockFormat(block)
            if headers and si in headers:
                cur.insertText(headers[si], self._fmt_section)
                cur.insertBlock(block)
            head = QTextCharFormat(self._fmt_head)
            cur.insertText(f"{sn.value:+.3f}  @{sn.start + (sn.firing[0] if sn.firing else 0):,}"
                           + (f"  ({sn.n_merged} firings)" if sn.n_merged > 1 else "") + "  ", head)
            link = QTextCharFormat(self._fmt_head)
            link.setAnchor(True)
            link.setAnchorHref(f"edit:{si}")
            link.setForeground(QColor(40, 90, 200))
            link.setToolTip("Open this text in the try-your-text editor")
            cur.insertText("edit", link)
            cur.insertBlock(QTextBlockFormat())
            firing = set(sn.firing)
            for ti, (tok, act) in enumerate(zip(sn.tokens, sn.acts)):
                text = _visible(tok)
                if not text:
                    continue
                fmt = QTextCharFormat()
                r, g, b = shade_rgb(float(act), self.scale)
                fmt.setBackground(QColor(r, g, b))
                fmt.setForeground(QColor(0, 0, 0))
                fmt.setToolTip(f"{float(act):.4g}   {html.escape(repr(tok))}")
                if ti in firing:
                    fmt.setFontUnderline(True)
                    fmt.setFontWeight(QFont.Weight.Bold)
                start = cur.position()
                cur.insertText(text, fmt)
                self.token_spans.append(TokenSpan(start, cur.position(), si, ti, float(act)))
        cur.endEditBlock()
        doc.clearUndoRedoStacks()
        self.setUpdatesEnabled(True)

    def plain_text_of(self, si: int) -> str:
        """The snippet as typeable text: the visible stand-ins for newline and tab become the real ones."""
        return "".join(self.snippets[si].tokens).replace("\u23ce", "\n").replace("\u21e5", "\t")

    def _anchor(self, url: QUrl) -> None:
        s = url.toString()
        if s.startswith("edit:"):
            i = int(s.split(":", 1)[1])
            if 0 <= i < len(self.snippets):
                self.openInEditor.emit(self.plain_text_of(i))
