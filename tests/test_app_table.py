"""The neuron table's state, offscreen on the real tiny stores (issue 24, defects 1-6): J/K move the selection,
the highlighted row is always the neuron shown, sorting survives filters, the clear button re-applies, undo says
which neuron it changed, and a filter typo is an inline message, not a dialog."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QMessageBox

from neurobrowse.browsing.filtering import TABLE_COLUMNS
from tests.helpers import WAIT_MS, click_row, main_window, wait_page


def _col(key: str) -> int:
    return [k for k, _, _ in TABLE_COLUMNS].index(key)


def _visible(panel) -> list[int]:
    return [panel.model.neuron_at(panel.proxy.mapToSource(panel.proxy.index(r, 0)).row())
            for r in range(panel.proxy.rowCount())]


def _selected(panel) -> list[int]:
    sm = panel.view.selectionModel()
    return sorted(panel.model.neuron_at(panel.proxy.mapToSource(i).row()) for i in sm.selectedRows())


def _highlighted_is_shown(panel, b) -> bool:
    """Exactly the shown neuron's row is selected and current, or (when it is filtered out) none is."""
    cur = panel.view.selectionModel().currentIndex()
    cur_neuron = panel.model.neuron_at(panel.proxy.mapToSource(cur).row()) if cur.isValid() else None
    if panel.row_of(b.ref.neuron) < 0:
        return _selected(panel) == [] and cur_neuron is None
    return _selected(panel) == [b.ref.neuron] and cur_neuron == b.ref.neuron


def _filter(qtbot, b, panel, text: str) -> None:
    if text == b.filter.expression and panel.filter_edit.text() == text:
        return  # already applied
    with qtbot.waitSignal(b.filterApplied, timeout=WAIT_MS):
        panel.filter_edit.setText(text)
        qtbot.keyClick(panel.filter_edit, Qt.Key.Key_Return)


def test_j_and_k_move_the_selection_and_repaint_the_rows_they_leave(qtbot, windows, tiny_stores):
    """Defect 1: click a row sorted by rule score, J J: one row highlighted, and the view is told that the rows
    left behind are no longer selected (a selection change it does not hear about stays painted)."""
    w = main_window(windows, tiny_stores["solu_ln"])
    wait_page(qtbot, w, 0)
    panel, b = w.table_panel, w.browser
    panel.view.sortByColumn(_col("explain_score"), Qt.SortOrder.DescendingOrder)
    click_row(qtbot, panel.view, 5)
    clicked = _visible(panel)[5]
    wait_page(qtbot, w, clicked)
    told: list[list[int]] = []  # rows the view heard were deselected
    panel.view.selectionModel().selectionChanged.connect(
        lambda sel, desel: told.append(sorted({i.row() for i in desel.indexes()})))
    for step, key in ((1, Qt.Key.Key_J), (2, Qt.Key.Key_J), (1, Qt.Key.Key_K)):
        before = panel.row_of(b.ref.neuron)
        qtbot.keyClick(w, key)
        wait_page(qtbot, w, _visible(panel)[5 + step])
        assert _selected(panel) == [b.ref.neuron]
        assert told and told[-1] == [before], "the view was not told the old row is deselected"


def test_the_highlighted_row_is_the_neuron_shown_after_filters(qtbot, windows, tiny_stores):
    """Defect 2: a filter that hides the shown neuron leaves no other row highlighted (the same for a label
    filter and for bookmarked-only), and one that keeps it keeps its row highlighted."""
    w = main_window(windows, tiny_stores["solu_ln"])
    wait_page(qtbot, w, 0)
    panel, b = w.table_panel, w.browser
    table = b.table()
    k = float(np.median(table["kurtosis"]))
    hidden = int(np.flatnonzero(table["kurtosis"] <= k)[-1])  # filtered out by "kurtosis > k"
    kept = int(np.flatnonzero(table["kurtosis"] > k)[-1])
    for target, expr in ((hidden, f"kurtosis > {k}"), (kept, f"kurtosis > {k}"), (hidden, "label ~ nothing-here")):
        _filter(qtbot, b, panel, "")
        b.select(target)
        wait_page(qtbot, w, target)
        assert _highlighted_is_shown(panel, b)
        _filter(qtbot, b, panel, expr)
        assert b.ref.neuron == target and _highlighted_is_shown(panel, b), expr
    _filter(qtbot, b, panel, "")
    assert _highlighted_is_shown(panel, b)  # back in view: highlighted again
    with qtbot.waitSignal(b.filterApplied, timeout=WAIT_MS):
        panel.bookmarked.setChecked(True)  # no bookmarks: every row goes
    assert panel.proxy.rowCount() == 0 and _highlighted_is_shown(panel, b)


def test_sorting_stays_correct_after_a_filter_is_removed(qtbot, windows, tiny_stores):
    """Defect 3: sorted by rule score descending, filter, clear the filter (and the same with ★ only):
    the rows come back in order, not appended at the end."""
    w = main_window(windows, tiny_stores["solu_ln"])
    wait_page(qtbot, w, 0)
    panel, b = w.table_panel, w.browser
    panel.view.sortByColumn(_col("explain_score"), Qt.SortOrder.DescendingOrder)
    want = b.visible_order().tolist()
    assert _visible(panel) == want
    _filter(qtbot, b, panel, f"kurtosis > {float(np.median(b.table()['kurtosis']))}")
    assert 0 < panel.proxy.rowCount() < len(want)
    _filter(qtbot, b, panel, "")
    assert _visible(panel) == want
    qtbot.keyClick(w, Qt.Key.Key_D, Qt.KeyboardModifier.ControlModifier)  # one bookmark
    for on in (True, False):
        with qtbot.waitSignal(b.filterApplied, timeout=WAIT_MS):
            panel.bookmarked.setChecked(on)
    assert _visible(panel) == want


def test_the_filter_clear_button_re_applies(qtbot, windows, tiny_stores):
    """Defect 4: the line edit's clear button empties the field and the table shows every neuron at once."""
    w = main_window(windows, tiny_stores["solu_ln"])
    wait_page(qtbot, w, 0)
    panel, b = w.table_panel, w.browser
    n = len(b.table()["neuron"])
    _filter(qtbot, b, panel, f"kurtosis > {float(np.median(b.table()['kurtosis']))}")
    assert panel.proxy.rowCount() < n
    from PySide6.QtWidgets import QToolButton

    clear = next(t for t in panel.filter_edit.findChildren(QToolButton) if t.isVisible())
    with qtbot.waitSignal(b.filterApplied, timeout=WAIT_MS):
        qtbot.mouseClick(clear, Qt.MouseButton.LeftButton)
    assert panel.filter_edit.text() == "" and panel.proxy.rowCount() == n
    assert panel.count_label.text() == f"{n:,} neurons"


def test_undo_of_a_label_on_another_neuron_says_which_neuron(qtbot, windows, tiny_stores):
    """Defect 5: label neuron 4, go to 6, Ctrl+Z: the undo still reverts 4's label (the last change, as in
    any editor) and the label panel and the status bar name that neuron."""
    w = main_window(windows, tiny_stores["solu_ln"], neuron=4)
    wait_page(qtbot, w, 4)
    b = w.browser
    qtbot.waitUntil(lambda: w.page.label_panel is not None and w.label_model.neuron == 4, timeout=WAIT_MS)
    panel = w.page.label_panel
    w.table_panel.view.setFocus()
    qtbot.keyClick(w, Qt.Key.Key_1)
    qtbot.waitUntil(lambda: w.label_model.current is not None, timeout=WAIT_MS)
    assert "N4" in panel.undo_button.toolTip()
    b.select(6)
    wait_page(qtbot, w, 6)
    w.table_panel.view.setFocus()
    qtbot.keyClick(w, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: 4 not in b.labels.get(b.hook, {}), timeout=WAIT_MS)
    said = panel.status.text()
    assert "N4" in said and "undone" in said.lower(), said
    assert "N4" in w.statusBar().currentMessage(), w.statusBar().currentMessage()
    assert b.ref.neuron == 6  # the page stays where it was


def test_a_filter_typo_is_an_inline_message_not_a_dialog(qtbot, windows, tiny_stores):
    """Defect 6: `kurtosis >> banana` puts a message under the field (no modal dialog); fixing it clears it."""
    w = main_window(windows, tiny_stores["solu_ln"])
    wait_page(qtbot, w, 0)
    panel, b = w.table_panel, w.browser
    panel.filter_edit.setText("kurtosis >> banana")
    qtbot.keyClick(panel.filter_edit, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: panel.filter_error.isVisible(), timeout=WAIT_MS)
    assert "banana" in panel.filter_error.text() and "kurtosis > 10" in panel.filter_error.text()
    assert not [x for x in QApplication.topLevelWidgets() if isinstance(x, QMessageBox) and x.isVisible()]
    assert panel.filter_edit.geometry().bottom() < panel.filter_error.geometry().top()  # under the field
    # a bad search regex says so in the same place
    panel.filter_edit.setText("")
    panel.search_mode.setCurrentText("regex")
    panel.search.setText("(unclosed")
    panel._push_filter()
    assert panel.filter_error.isVisible() and "regex" in panel.filter_error.text()
    assert not [x for x in QApplication.topLevelWidgets() if isinstance(x, QMessageBox) and x.isVisible()]
    panel.search.setText("")
    _filter(qtbot, b, panel, "kurtosis > 1")
    assert not panel.filter_error.isVisible()
