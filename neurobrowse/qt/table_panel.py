"""The neuron table: Qt model/view over one hook's neuron table, sortable and filterable.

``NeuronTableModel`` exposes the columns as read from the store (numpy arrays, one row per neuron).
``NeuronFilterProxy`` filters rows by the mask the browser computes (column expressions, a
token/regex search over top contexts, bookmarks) and sorts by precomputed unique ranks, so the
table's order and the J/K stepping order are the same thing.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QAbstractTableModel, QModelIndex, QSortFilterProxyModel, Qt, QTimer, Signal
from PySide6.QtWidgets import (QAbstractItemView, QCheckBox, QComboBox, QHBoxLayout, QHeaderView, QLabel,
                               QLineEdit, QTableView, QVBoxLayout, QWidget)

from neurobrowse.browsing import filtering
from neurobrowse.browsing.filtering import TABLE_COLUMNS, TableFilter
from neurobrowse.snippet_text import visible_token
from store.measures import columns
from store.schema import parse_hook_name

SORT_ROLE = Qt.ItemDataRole.UserRole + 1


class NeuronTableModel(QAbstractTableModel):
    """Rows = neurons of the current hook; columns = TABLE_COLUMNS."""

    def __init__(self, browser, parent=None) -> None:
        super().__init__(parent)
        self.browser = browser
        self.hook: str | None = None
        self.cols: dict[str, np.ndarray] = {}
        self.n = 0
        self._bookmarked: set[int] = set()
        browser.tableReady.connect(self._on_table)
        browser.labelsChanged.connect(self._on_labels)
        browser.bookmarksChanged.connect(self._on_bookmarks)

    def _on_table(self, hook: str, table: dict) -> None:
        self.beginResetModel()
        self.hook = hook
        self.cols = dict(table)
        self.n = len(table["neuron"])
        self.cols["label"] = self.browser.label_column(hook, self.n)
        self._bookmarked = {r.neuron for r in self.browser.bookmarks if r.hook == hook}
        self.endResetModel()

    def _on_labels(self, hook: str) -> None:
        if hook == self.hook and self.n:
            self.cols["label"] = self.browser.label_column(hook, self.n)
            col = [k for k, _, _ in TABLE_COLUMNS].index("label")
            self.dataChanged.emit(self.index(0, col), self.index(self.n - 1, col))

    def _on_bookmarks(self) -> None:
        self._bookmarked = {r.neuron for r in self.browser.bookmarks if r.hook == self.hook}
        if self.n:
            self.dataChanged.emit(self.index(0, 0), self.index(self.n - 1, 0))

    def rowCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else self.n

    def columnCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(TABLE_COLUMNS)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return header_text(TABLE_COLUMNS[section][0], TABLE_COLUMNS[section][1])
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.ToolTipRole:
            if TABLE_COLUMNS[section][0] == "top_token" and "top_token_count" in self.cols:
                return "the token most of the neuron's top firings are on (hover a cell for how many)"
            col = columns.BY_NAME.get(TABLE_COLUMNS[section][0])
            return col.tip or None if col is not None else None
        return None

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        key = TABLE_COLUMNS[index.column()][0]
        col = self.cols.get(key)
        if role == Qt.ItemDataRole.DisplayRole:
            if col is None:
                return ""
            v = col[index.row()]
            if key == "neuron":
                star = "★ " if int(v) in self._bookmarked else ""
                return f"{star}{int(v)}"
            if isinstance(v, (float, np.floating)):
                return columns.format_value(key, v)
            if key == "top_token":
                return visible_token(str(v))
            return str(v) if v is not None else ""
        if role == Qt.ItemDataRole.ToolTipRole and key == "top_token" and "top_token_count" in self.cols:
            r = index.row()
            return (f"{int(self.cols['top_token_count'][r])} of {int(self.cols['top_token_k'][r])} top firings are on "
                    f"{str(self.cols['top_token'][r])!r}")
        if role == Qt.ItemDataRole.TextAlignmentRole and key not in ("top_token", "label"):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == SORT_ROLE:
            return None if col is None else col[index.row()]
        return None

    def neuron_at(self, row: int) -> int:
        return int(self.cols["neuron"][row])


class NeuronFilterProxy(QSortFilterProxyModel):
    """Filter by the browser's mask; sort by unique ranks (numpy), not by Python value comparison."""

    def __init__(self, browser, parent=None) -> None:
        super().__init__(parent)
        self.browser = browser
        self._mask: np.ndarray | None = None
        self._ranks: dict[int, np.ndarray] = {}
        self.setDynamicSortFilter(False)
        browser.tableReady.connect(lambda hook, table: self._reset_ranks())
        browser.labelsChanged.connect(lambda hook: self._reset_ranks())

    def _reset_ranks(self) -> None:
        self._ranks.clear()
        self._mask = None

    def set_mask(self, mask: np.ndarray) -> None:
        if hasattr(self, "beginFilterChange"):  # Qt >= 6.10
            self.beginFilterChange()
            self._mask = np.asarray(mask, dtype=bool)
            self.endFilterChange(QSortFilterProxyModel.Direction.Rows)
        else:
            self._mask = np.asarray(mask, dtype=bool)
            self.invalidateFilter()

    def filterAcceptsRow(self, source_row: int, source_parent) -> bool:
        m = self._mask
        return True if m is None or source_row >= len(m) else bool(m[source_row])

    def lessThan(self, left, right) -> bool:
        col = left.column()
        ranks = self._ranks.get(col)
        if ranks is None:
            ranks = self._ranks[col] = self.browser.sort_ranks(TABLE_COLUMNS[col][0])
        return bool(ranks[left.row()] < ranks[right.row()])


def header_text(key: str, short: str) -> str:
    """A column's header. A score is called by its one name (store.columns' title, as the page, the compare
    window and the verdict call it), on two lines when long; other columns keep their short header."""
    col = columns.BY_NAME.get(key)
    if col is None or not col.score:
        return short
    title = col.title[0].upper() + col.title[1:]
    words = title.split()
    if len(title) <= 12 or len(words) < 2:
        return title
    cut = min(range(1, len(words)), key=lambda i: abs(len(" ".join(words[:i])) - len(title) / 2))
    return " ".join(words[:cut]) + "\n" + " ".join(words[cut:])


def filter_problem(flt: TableFilter) -> str:
    """What is wrong with a filter expression or search pattern ('' when both can be read)."""
    from store.errors import NeurobrowseError

    try:
        filtering.parse_filter(flt.expression)
    except NeurobrowseError as e:
        msg = str(e)
        return msg if "e.g." in msg else f"{msg}; write e.g. 'kurtosis > 10, density < 0.05, label ~ quote'"
    try:
        if flt.search:
            filtering._search_regex(flt.search, flt.search_mode)
    except NeurobrowseError as e:
        return str(e)
    return ""


HEADER_PAD = 22  # pixels beside a header's text: margins and the sort indicator


class NeuronTablePanel(QWidget):
    """Search box, filter expression, hook picker, bookmarked-only switch and the table itself.

    Emits ``neuronActivated(int)`` when the user picks a row (click or keyboard)."""

    neuronActivated = Signal(int)

    def __init__(self, browser, parent=None) -> None:
        super().__init__(parent)
        self.browser = browser
        self.model = NeuronTableModel(browser, self)
        self.proxy = NeuronFilterProxy(browser, self)
        self.proxy.setSourceModel(self.model)

        self.hook_box = QComboBox()
        self.hook_box.setToolTip("Layer and hook (] / [ step layers; M flips before/after LayerNorm)")
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search top contexts: a token, e.g.  the  or  \\d+")
        self.search.setClearButtonEnabled(True)
        self.search_mode = QComboBox()
        self.search_mode.addItems(["token", "regex"])
        self.search_mode.setToolTip("token: neurons whose top firings are on a matching token\n"
                                    "regex: a regular expression over the text of the top contexts")
        self.filter_edit = QLineEdit()
        self.filter_edit.setPlaceholderText("Filter, e.g.  kurtosis > 10, density < 0.05, label ~ quote")
        self.filter_edit.setClearButtonEnabled(True)
        # a filter or search that cannot be read says so here, under the field (no dialog)
        self.filter_error = QLabel("")
        self.filter_error.setObjectName("filter_error")
        self.filter_error.setWordWrap(True)
        self.filter_error.setStyleSheet("color: #b00020;")
        self.filter_error.setVisible(False)
        self.bookmarked = QCheckBox("★ only")
        self.count_label = QLabel("")
        self.count_label.setStyleSheet("color: palette(mid);")

        self.view = QTableView()
        self.view.setModel(self.proxy)
        self.view.setSortingEnabled(True)
        self.view.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        self.view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.view.verticalHeader().setVisible(False)
        self.view.verticalHeader().setDefaultSectionSize(22)
        self.view.setAlternatingRowColors(True)
        self.view.setWordWrap(False)
        hh = self.view.horizontalHeader()
        hh.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        hh.setStretchLastSection(True)
        # each column as wide as its header and sort arrow, no wider: the label column stays in view
        fm = hh.fontMetrics()
        for i, (key, title, _fmt) in enumerate(TABLE_COLUMNS[:-1]):
            lines = header_text(key, title).split("\n")
            self.view.setColumnWidth(i, max(48, max(fm.horizontalAdvance(t) for t in lines) + HEADER_PAD))

        row1 = QHBoxLayout()
        row1.addWidget(self.hook_box, 1)
        row1.addWidget(self.bookmarked)
        row2 = QHBoxLayout()
        row2.addWidget(self.search, 1)
        row2.addWidget(self.search_mode)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addLayout(row1)
        lay.addLayout(row2)
        lay.addWidget(self.filter_edit)
        lay.addWidget(self.filter_error)
        lay.addWidget(self.view, 1)
        lay.addWidget(self.count_label)

        # typing is debounced: the search runs over every top context in a worker
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(250)
        self._debounce.timeout.connect(self._push_filter)
        self.search.textChanged.connect(self._debounce.start)
        self.filter_edit.returnPressed.connect(self._push_filter)
        self.filter_edit.editingFinished.connect(self._push_filter)
        self.filter_edit.textChanged.connect(self._filter_edited)  # the clear button (or emptied by hand)
        self.search_mode.currentIndexChanged.connect(self._push_filter)
        self.bookmarked.toggled.connect(self._push_filter)
        self.hook_box.activated.connect(self._hook_picked)
        self._syncing = False  # True while the table follows the model: row changes then select nothing
        self.view.selectionModel().currentRowChanged.connect(self._row_changed)
        self.view.horizontalHeader().sortIndicatorChanged.connect(self._sort_changed)

        browser.storeOpened.connect(self._on_store)
        browser.hookChanged.connect(self._on_hook)
        browser.neuronChanged.connect(self._on_neuron)
        browser.filterApplied.connect(self._on_mask)
        browser.tableReady.connect(lambda hook, table: self._resort())

    # ---- from the model -------------------------------------------------------------------------------

    def _on_store(self, store) -> None:
        self.hook_box.clear()
        for h in store.hooks:
            layer, kind = parse_hook_name(h)
            suffix = "" if h in self.browser.indexed else "  (not indexed)"
            self.hook_box.addItem(f"layer {layer} · {kind}{suffix}", h)

    def _on_hook(self, hook: str) -> None:
        i = self.hook_box.findData(hook)
        if i >= 0 and i != self.hook_box.currentIndex():
            self.hook_box.setCurrentIndex(i)

    def _on_neuron(self, ref) -> None:
        """Highlight the shown neuron's row, and only it (none when the filter hides it), without selecting a
        neuron in turn. The selection model's signals stay on: the view repaints the rows it leaves."""
        if ref.hook != self.model.hook or not self.model.n:
            return
        src = self.model.index(int(ref.neuron), 0)  # row == neuron number within a hook
        idx = self.proxy.mapFromSource(src)
        sm = self.view.selectionModel()
        self._syncing = True
        try:
            if not idx.isValid():  # filtered out: the page stays, no other row pretends to be it
                sm.clear()
                return
            rows = sm.selectedRows()
            if sm.currentIndex().row() == idx.row() and len(rows) == 1 and rows[0].row() == idx.row():
                return
            sm.setCurrentIndex(idx, sm.SelectionFlag.ClearAndSelect | sm.SelectionFlag.Rows)
        finally:
            self._syncing = False
        self.view.scrollTo(idx)

    def _on_mask(self, mask) -> None:
        """A new filter or search result: narrow the rows without changing the shown neuron (Qt moves the
        current row off a row that is filtered out; that must not select another neuron), then sort the rows
        that came back (the proxy does not sort rows a filter lets in again by itself)."""
        self._syncing = True
        try:
            self.proxy.set_mask(mask)
            self._resort()
        finally:
            self._syncing = False
        if self.browser.ref is not None:
            self._on_neuron(self.browser.ref)
        self._update_count(mask)

    def _update_count(self, mask) -> None:
        n = len(mask)
        shown = int(np.count_nonzero(mask))
        self.count_label.setText(f"{shown:,} of {n:,} neurons" if shown != n else f"{n:,} neurons")

    def _resort(self) -> None:
        hh = self.view.horizontalHeader()
        was, self._syncing = self._syncing, True
        try:
            self.proxy.sort(hh.sortIndicatorSection(), hh.sortIndicatorOrder())
        finally:
            self._syncing = was

    # ---- from the user ------------------------------------------------------------------------------

    def _filter_edited(self, text: str) -> None:
        """An emptied filter applies at once (the clear button); other edits wait for Return or focus out."""
        if not text.strip():
            self._push_filter()

    def _push_filter(self) -> None:
        """Apply the filter, search and ★-only switch; an expression or regex that cannot be read is shown
        under the field and nothing changes."""
        self._debounce.stop()
        flt = TableFilter(self.filter_edit.text().strip(), self.search.text().strip(),
                          self.search_mode.currentText(), self.bookmarked.isChecked())
        problem = filter_problem(flt)
        self.filter_error.setText(problem)
        self.filter_error.setVisible(bool(problem))
        if problem:
            return
        if flt.search and flt.search != self.browser.filter.search:  # a new search: its hits strongest first
            hh = self.view.horizontalHeader()
            col = [k for k, _, _ in TABLE_COLUMNS].index("max_act")
            if (hh.sortIndicatorSection(), hh.sortIndicatorOrder()) != (col, Qt.SortOrder.DescendingOrder):
                self.view.sortByColumn(col, Qt.SortOrder.DescendingOrder)
        if flt != self.browser.filter:
            self.browser.set_filter(flt)

    def _hook_picked(self, i: int) -> None:
        hook = self.hook_box.itemData(i)
        if hook:
            self.browser.set_hook(hook)

    def _row_changed(self, current, previous) -> None:
        if self._syncing or not current.isValid():
            return
        neuron = self.model.neuron_at(self.proxy.mapToSource(current).row())
        if self.browser.ref is None or neuron != self.browser.ref.neuron:
            self.neuronActivated.emit(neuron)
            self.browser.select(neuron)

    def _sort_changed(self, section: int, order) -> None:
        self.browser.set_sort(TABLE_COLUMNS[section][0], order == Qt.SortOrder.DescendingOrder)

    def row_of(self, neuron: int) -> int:
        """Visible row of a neuron, -1 when filtered out (tests and keyboard navigation)."""
        idx = self.proxy.mapFromSource(self.model.index(int(neuron), 0))
        return idx.row() if idx.isValid() else -1
