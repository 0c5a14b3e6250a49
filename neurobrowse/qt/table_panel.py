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

from neurobrowse.browsing.filtering import TABLE_COLUMNS, TableFilter
from store.measures import columns

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
            return TABLE_COLUMNS[section][1]
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.ToolTipRole:
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
            return str(v) if v is not None else ""
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
        for i, (_key, title, _fmt) in enumerate(TABLE_COLUMNS[:-1]):
            self.view.setColumnWidth(i, max(48, fm.horizontalAdvance(title) + HEADER_PAD))

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
            layer, kind = h.split(".")[1], h.rsplit(".", 1)[-1]
            suffix = "" if h in self.browser.indexed else "  (not indexed)"
            self.hook_box.addItem(f"layer {layer} · {kind}{suffix}", h)

    def _on_hook(self, hook: str) -> None:
        i = self.hook_box.findData(hook)
        if i >= 0 and i != self.hook_box.currentIndex():
            self.hook_box.setCurrentIndex(i)

    def _on_neuron(self, ref) -> None:
        """Keep the table's current row on the shown neuron without re-emitting a selection."""
        if ref.hook != self.model.hook or not self.model.n:
            return
        src = self.model.index(int(ref.neuron), 0)  # row == neuron number within a hook
        idx = self.proxy.mapFromSource(src)
        if not idx.isValid():
            return
        sm = self.view.selectionModel()
        if sm.currentIndex().row() == idx.row():
            return
        sm.blockSignals(True)
        sm.setCurrentIndex(idx, sm.SelectionFlag.ClearAndSelect | sm.SelectionFlag.Rows)
        sm.blockSignals(False)
        self.view.scrollTo(idx)

    def _on_mask(self, mask) -> None:
        """A new filter or search result: narrow the rows without changing the shown neuron (Qt moves the
        current row off a row that is filtered out; that must not select another neuron)."""
        self._syncing = True
        try:
            self.proxy.set_mask(mask)
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
        self.proxy.sort(hh.sortIndicatorSection(), hh.sortIndicatorOrder())

    # ---- from the user ------------------------------------------------------------------------------

    def _push_filter(self) -> None:
        self._debounce.stop()
        flt = TableFilter(self.filter_edit.text().strip(), self.search.text().strip(),
                          self.search_mode.currentText(), self.bookmarked.isChecked())
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
