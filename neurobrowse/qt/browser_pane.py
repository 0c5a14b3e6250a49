"""One store's neuron table beside its neuron page: the body of the browser window and of each side of
the compare window. The table's search is marked in the page's snippets."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QSplitter, QVBoxLayout, QWidget

from neurobrowse.qt.neuron_page import NeuronPageWidget
from neurobrowse.qt.snippet_view import SnippetView
from neurobrowse.qt.table_panel import NeuronTablePanel


class BrowserPane(QWidget):
    """``table_panel`` | ``page`` in a splitter (``split``), both over one BrowserBridge."""

    def __init__(self, browser, label_panel: QWidget | None = None, sizes: tuple[int, int] = (540, 1060),
                 parent=None) -> None:
        super().__init__(parent)
        self.browser = browser
        self.table_panel = NeuronTablePanel(browser)
        self.page = NeuronPageWidget(browser, label_panel=label_panel)
        self.split = QSplitter(Qt.Orientation.Horizontal)
        self.split.addWidget(self.table_panel)
        self.split.addWidget(self.page)
        self.split.setStretchFactor(0, 2)
        self.split.setStretchFactor(1, 5)
        self.split.setSizes(list(sizes))
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.split)
        self._marked = ("", "token")  # the search whose matches the shown snippets mark
        browser.filterApplied.connect(self._mark_search)

    def _mark_search(self, mask) -> None:
        """A new search: mark its matches in the snippets already shown (new pages mark them as drawn)."""
        flt = self.browser.filter
        if (flt.search, flt.search_mode) == self._marked:
            return
        self._marked = (flt.search, flt.search_mode)
        for view in self.page.findChildren(SnippetView):
            if view.snippets:
                view.set_highlights(self.browser.search_highlights(view.snippets))
