"""Shaded text: snippets with each token's background set by the neuron's activation there.

Built with a QTextCursor and one cached QTextCharFormat per (run kind, shade, firing, greyed,
highlighted); the text of each token is cut into runs by ``neurobrowse.snippet_text`` (line breaks
and indentation kept, whitespace never a solid bar, a small shaded end-of-line mark for newline
tokens). Hovering a token shows its exact stored activation (looked up from ``token_spans``, not
stored in the document). ``token_spans`` records where each token landed in the document (tests read
it to check the shading against the store).

The API other code uses: ``show_snippets(snippets, scale, empty, headers, scales=, highlights=)`` where
``highlights`` maps a snippet index to token ranges ``[(lo, hi), ...]`` drawn as matches (search);
``expandRequested(int)`` asks for a snippet's whole context (the page reads it off the GUI thread)
and ``expand(i, passage)`` / ``collapse(i)`` swap it in place.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from PySide6.QtCore import QEvent, QMetaMethod, QPoint, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QColor, QFont, QTextBlockFormat, QTextCharFormat, QTextCursor, QTextDocument
from PySide6.QtWidgets import QApplication, QTextBrowser, QToolTip

from neurobrowse.snippet_text import decode_pieces, highlighted, raw_text, shade_rgb, snippet_runs
from neurobrowse.browsing.pages import MergedSnippet

GREY = (150, 150, 150)  # text outside the context the model saw
FIRING_BG = (150, 0, 0)  # background of the firing token (its value is in the line above the snippet)
FIRING_BG_NEG = (20, 40, 170)  # the same for a negative firing (bottom-k)
SPACE_LINE_BELOW = 200  # whitespace gets its dotted line when the shade's darkest channel is below this
HIGHLIGHT = (0, 60, 200)  # search matches


@dataclass
class TokenSpan:
    start: int  # document character position
    end: int
    snippet: int  # index into the shown snippets
    token: int  # index into that snippet's tokens
    value: float


class SnippetView(QTextBrowser):
    """Read-only view of merged snippets. Emits ``openInEditor(str)`` from a snippet's 'edit' link and
    ``expandRequested(i)`` from its 'context' link or the E key (the snippet under the mouse, else the
    first one in view)."""

    openInEditor = Signal(str)
    editRequested = Signal(int)  # a snippet's 'edit' link: the page loads the text the model saw with it
    rendered = Signal()  # every snippet of the current page is in the document
    expandRequested = Signal(int)  # a snippet's "context" link (or the E key): show its whole context

    def __init__(self, parent=None, *, heads: bool = True, values: bool = True) -> None:
        """``heads=False``: no line above each snippet (value, position, links) and no E key: the
        blinded study shows the text alone. ``values=False``: hovering a token shows its text only, never
        its activation (the study: a raw value would tell the models' scales apart)."""
        super().__init__(parent)
        self.heads = heads
        self.values = values
        paper = self.palette()  # white paper in a dark theme too: the shading is drawn for it
        paper.setColor(paper.ColorRole.Base, QColor(255, 255, 255))
        paper.setColor(paper.ColorRole.Text, QColor(0, 0, 0))
        self.setPalette(paper)
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
        self._formats: dict[tuple, QTextCharFormat] = {}  # (kind, rgb, firing, grey, highlighted) -> format
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
        self._fmt_link.setToolTip("Run the model again on the text it saw with this firing (try-your-text editor)")
        self._fmt_more = QTextCharFormat(self._fmt_head)
        self._fmt_more.setForeground(QColor(150, 60, 60))
        self.scales: list[tuple[float, float]] | None = None
        self.highlights: dict[int, list[tuple[int, int]]] = {}
        self.expanded: dict[int, MergedSnippet] = {}  # snippet index -> the snippet it replaced
        self._empty = ""
        self._snippet_starts: list[int] = []  # document position where each snippet's paragraph begins

    def clear_snippets(self, message: str = "") -> None:
        self._more.stop()
        self.snippets, self.token_spans, self._starts, self._next = [], [], [], 0
        self._snippet_starts, self.expanded = [], {}
        self.setPlainText(message)

    FIRST_BATCH = 4  # snippets laid out before the first paint (a screenful of 64 + 16-token windows)

    def show_snippets(self, snippets: list[MergedSnippet], scale: float, empty: str = "nothing to show",
                      headers: dict[int, str] | None = None, *, scales: list[tuple[float, float]] | None = None,
                      highlights: dict[int, list[tuple[int, int]]] | None = None) -> None:
        """Replace the document: one paragraph per merged snippet, tokens shaded by value / scale
        (``scales``: (negative, positive) scales per snippet instead, e.g. the bottom-k list or each
        quantile bin on its own). ``headers`` puts a
        section title before the snippet with that index (quantile bins); ``highlights`` marks token
        ranges [lo, hi) of a snippet (search matches).

        The first FIRST_BATCH snippets (a screenful) are laid out at once and painted; the rest are
        appended from a zero-delay timer, so a keypress paints the new page sooner.
        ``complete`` turns True (and ``rendered`` fires) when every snippet is in."""
        self.snippets = list(snippets)
        self.scale = float(scale) if scale else 1.0
        self.scales = list(scales) if scales is not None else None
        self._headers = dict(headers or {})
        self.highlights = {int(k): list(v) for k, v in (highlights or {}).items()}
        self.expanded = {}
        self._empty = empty
        self._render(self.FIRST_BATCH)

    def set_highlights(self, highlights: dict[int, list[tuple[int, int]]] | None) -> None:
        """Mark token ranges of the shown snippets (replaces earlier marks); redraws in place."""
        self.highlights = {int(k): list(v) for k, v in (highlights or {}).items()}
        self._rerender()

    def expand(self, si: int, passage: MergedSnippet) -> None:
        """Show snippet ``si`` as ``passage`` (its whole context and greyed document) in place."""
        if not 0 <= si < len(self.snippets):
            return
        self.expanded.setdefault(si, self.snippets[si])
        self.snippets[si] = passage
        self._rerender()

    def collapse(self, si: int) -> None:
        if si in self.expanded:
            self.snippets[si] = self.expanded.pop(si)
            self._rerender()

    def _rerender(self) -> None:
        bar = self.verticalScrollBar()
        at = bar.value()
        self._render(len(self.snippets))
        bar.setValue(at)

    def _render(self, first: int) -> None:
        self._more.stop()
        self.token_spans, self._starts, self._snippet_starts = [], [], []
        doc = QTextDocument(self)
        doc.setDefaultFont(self._font)
        doc.setDocumentMargin(6)
        doc.setUndoRedoEnabled(False)
        self._cursor = QTextCursor(doc)
        if not self.snippets:
            self._cursor.insertText(self._empty, self._fmt_plain)
        self._next = 0
        self._append(first)
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
                cur.insertBlock(self._block_head if self.heads else self._block_section)
            self._snippet_starts.append(cur.position())
            if self.heads:
                self._insert_head(cur, si, sn)
            else:  # the study: a small number per snippet (nothing about the neuron or the model)
                cur.insertText(f"{si + 1}", self._fmt_head)
                cur.insertBlock(self._block_tokens)
            scale_pair = (self.scales[si] if self.scales is not None and si < len(self.scales)
                          else (self.scale, self.scale))
            self._insert_tokens(cur, spans, si, sn, scale_pair)
            self._next = si + 1

    def _insert_head(self, cur, si: int, sn: MergedSnippet) -> None:
        """The line above a snippet: value, position, further firings, the edit and context links."""
        head = f"{sn.value:+.3f}  @{sn.start + (sn.firing[0] if sn.firing else 0):,}"
        cur.insertText(head + (f"  ({sn.n_merged} firings)" if sn.n_merged > 1 else "") + "  ", self._fmt_head)
        if sn.more:
            cur.insertText(f"+{sn.more} more firing{'s' if sn.more > 1 else ''} in this context  ", self._fmt_more)
        link = QTextCharFormat(self._fmt_link)
        link.setAnchorHref(f"edit:{si}")
        cur.insertText("edit", link)
        cur.insertText("  ", self._fmt_head)
        link = QTextCharFormat(self._fmt_link)
        link.setAnchorHref(f"copy:{si}")
        link.setToolTip("Copy this snippet's text (what the model saw, with its real line breaks) [Ctrl+Shift+C]")
        cur.insertText("copy", link)
        cur.insertText("  ", self._fmt_head)
        link = QTextCharFormat(self._fmt_link)
        link.setAnchorHref(f"expand:{si}")
        link.setToolTip("Show the whole context the model saw (and, greyed, its document around it) [E]")
        cur.insertText("collapse ▴" if si in self.expanded else "context ▾", link)
        cur.insertBlock(self._block_tokens)

    def _insert_tokens(self, cur, spans, si: int, sn: MergedSnippet, scale_pair: tuple[float, float]) -> None:
        neg_scale, scale = scale_pair
        marks = highlighted(len(sn.tokens), self.highlights.get(si, ()))
        greyed = sn.greyed
        fire = set(sn.firing)
        p = cur.position()
        last = -1
        for run in snippet_runs(decode_pieces(sn.tokens), sn.firing):  # UTF-8 split over tokens decoded
            ti = run.token
            if ti != last:
                if last >= 0:
                    spans.append(TokenSpan(p, cur.position(), si, last, float(sn.acts[last])))
                    self._starts.append(p)
                p = cur.position()
                last = ti
            a = float(sn.acts[ti])
            grey = bool(greyed[ti])
            rgb = (255, 255, 255) if grey else shade_rgb(a, neg_scale if a < 0 else scale)
            key = (run.kind, rgb, ti in fire and not grey, grey, marks[ti])
            fmt = self._formats.get(key)
            if fmt is None:
                fmt = self._formats[key] = self._token_format(*key)
            cur.insertText(run.text, fmt)
        if last >= 0:
            spans.append(TokenSpan(p, cur.position(), si, last, float(sn.acts[last])))
            self._starts.append(p)

    def _token_format(self, kind: str, rgb: tuple[int, int, int], firing: bool, grey: bool,
                      hl: bool) -> QTextCharFormat:
        fmt = QTextCharFormat()
        if kind == "break":
            return fmt
        shaded = rgb != (255, 255, 255)
        if grey:
            fmt.setForeground(QColor(*GREY))
        else:
            fmt.setForeground(QColor(*HIGHLIGHT) if hl else QColor(0, 0, 0))
        if kind == "space":  # never a solid bar: a dotted line in the token's colour, when it is clearly shaded
            if firing or (not grey and min(rgb) < SPACE_LINE_BELOW):
                fmt.setUnderlineStyle(QTextCharFormat.UnderlineStyle.DotLine)
                fmt.setUnderlineColor(QColor(*FIRING_BG) if firing else QColor(*rgb))
            return fmt
        if firing:  # the firing token stands out: light text on a dark red (blue when negative) box
            fmt.setBackground(QColor(*(FIRING_BG if rgb[0] >= rgb[2] else FIRING_BG_NEG)))
            fmt.setForeground(QColor(255, 255, 255))
        elif shaded:
            fmt.setBackground(QColor(*rgb))
        if kind == "eol" and not firing:
            small = QFont(self._font)
            small.setPointSizeF(self._font.pointSizeF() * 0.8)
            fmt.setFont(small)
            if not grey:
                fmt.setForeground(QColor(120, 120, 120))
        if firing:
            fmt.setFontWeight(QFont.Weight.Bold)
        if hl:
            fmt.setFontOverline(True)
            fmt.setFontWeight(QFont.Weight.Bold)
        return fmt

    def tooltip_at(self, pos: int) -> str:
        """The hover text for a document position: the token's stored activation and its text."""
        i = bisect.bisect_right(self._starts, pos) - 1
        if i < 0 or pos >= self.token_spans[i].end:
            return ""
        sp = self.token_spans[i]
        sn = self.snippets[sp.snippet]
        if sn.greyed[sp.token]:
            return f"outside the model's context here (no activation)   {sn.tokens[sp.token]!r}"
        if not self.values:
            return repr(sn.tokens[sp.token])
        return f"{sp.value:.4g}   {sn.tokens[sp.token]!r}"

    def snippet_at(self, pos: int) -> int:
        """Index of the snippet whose paragraph holds document position ``pos`` (-1: none)."""
        return bisect.bisect_right(self._snippet_starts, pos) - 1

    def viewportEvent(self, e) -> bool:
        if e.type() == QEvent.Type.ToolTip:
            pos = self.cursorForPosition(e.pos()).position()
            tip = self.tooltip_at(pos) or self.tooltip_at(pos - 1)
            if tip:
                QToolTip.showText(e.globalPos(), tip, self)
                return True
        return super().viewportEvent(e)

    def keyPressEvent(self, e) -> None:
        if self.heads and e.key() == Qt.Key.Key_E and not e.modifiers() & ~Qt.KeyboardModifier.KeypadModifier:
            self.toggle_expand(self._snippet_in_view())
            return
        super().keyPressEvent(e)

    def _snippet_in_view(self) -> int:
        """The snippet under the mouse, else the first one whose text is in view."""
        vp = self.viewport()
        local = vp.mapFromGlobal(self.cursor().pos())
        if vp.rect().contains(local):
            si = self.snippet_at(self.cursorForPosition(local).position())
            if si >= 0:
                return si
        return max(0, self.snippet_at(self.cursorForPosition(QPoint(4, 4)).position()))

    def toggle_expand(self, si: int) -> None:
        if si in self.expanded:
            self.collapse(si)
        elif 0 <= si < len(self.snippets):
            self.expandRequested.emit(si)

    def plain_text_of(self, si: int) -> str:
        """The snippet as typeable text: the visible stand-ins for newline and tab become the real ones."""
        return raw_text(self.snippets[si].tokens)

    def _anchor(self, url: QUrl) -> None:
        s = url.toString()
        kind, _, num = s.partition(":")
        if not num.isdigit() or not 0 <= int(num) < len(self.snippets):
            return
        i = int(num)
        if kind == "edit":
            if self.isSignalConnected(QMetaMethod.fromSignal(self.editRequested)):  # a page reads the context first
                self.editRequested.emit(i)
            else:
                self.openInEditor.emit(self.plain_text_of(i))
        elif kind == "expand":
            self.toggle_expand(i)
        elif kind == "copy":
            self.copy_snippet(i)

    def snippet_text(self, si: int) -> str:
        """A snippet as plain text: the tokens the model saw (not the greyed document around them), with real
        newlines and tabs and UTF-8 split over tokens decoded."""
        sn = self.snippets[si]
        return raw_text([t for t, g in zip(sn.tokens, sn.greyed) if not g])

    def copy_snippet(self, si: int | None = None) -> str:
        """Put a snippet's text on the clipboard (``si`` None: the one under the mouse, else the first in view)."""
        if not self.snippets:
            return ""
        si = self._snippet_in_view() if si is None else si
        text = self.snippet_text(si)
        QApplication.clipboard().setText(text)
        return text
