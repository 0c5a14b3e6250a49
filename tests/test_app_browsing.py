"""App behaviour around hooks, search and stepping, offscreen on the real tiny stores: the table always shows
the hook whose page is shown, a search never moves the page, and J/K walk the filtered table."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt

from neurobrowse.browsing.filtering import ContextSearch, TABLE_COLUMNS
from neurobrowse.browsing.navigation import paired_hook
from store.measures.columns import format_value
from store.format.reader import Store
from tests.helpers import WAIT_MS, main_window, wait_page


def _column(panel, key):
    col = [k for k, _, _ in TABLE_COLUMNS].index(key)
    return [panel.model.data(panel.model.index(r, col)) for r in range(panel.model.rowCount())]


def _visible(panel):
    return [panel.model.neuron_at(panel.proxy.mapToSource(panel.proxy.index(r, 0)).row())
            for r in range(panel.proxy.rowCount())]


def test_switching_hooks_shows_that_hooks_numbers_and_marks(qtbot, windows, tiny_stores):
    store = Store.open(tiny_stores["solu_ln"])
    w = main_window(windows, tiny_stores["solu_ln"])
    wait_page(qtbot, w, 0)
    b, panel = w.browser, w.table_panel
    first = b.hook
    other = paired_hook(store.hooks, first)
    assert other is not None
    # a bookmark on neuron 0 and a label on neuron 1, both on the first hook
    qtbot.keyClick(w, Qt.Key.Key_D, Qt.KeyboardModifier.ControlModifier)
    b.select(1)
    wait_page(qtbot, w, 1)
    qtbot.waitUntil(lambda: w.page.label_panel is not None and w.label_model.neuron == 1, timeout=WAIT_MS)
    w.table_panel.view.setFocus()
    qtbot.keyClick(w, Qt.Key.Key_1)
    qtbot.waitUntil(lambda: "✓" in str(_column(panel, "label")[1]), timeout=WAIT_MS)

    for hook in (other, first, other, first):  # the second visit of each hook comes from the cache
        qtbot.keyClick(w, Qt.Key.Key_M)
        wait_page(qtbot, w, 1, hook=hook)
        want = store.neuron_table(hook)
        qtbot.waitUntil(lambda: _column(panel, "max_act") == [format_value("max_act", v) for v in want["max_act"]],
                        timeout=WAIT_MS)
        assert _column(panel, "kurtosis") == [format_value("kurtosis", v) for v in want["kurtosis"]]
        marks = _column(panel, "neuron")
        labels = _column(panel, "label")
        if hook == first:
            assert marks[0].startswith("★") and "✓" in labels[1]
        else:
            assert not any(str(m).startswith("★") for m in marks) and not any(labels)
        # sorting orders the rows by this hook's numbers (descending: the ascending order, ties by neuron, reversed)
        panel.view.sortByColumn(1, Qt.SortOrder.DescendingOrder)
        n = len(want["max_act"])
        assert _visible(panel) == np.lexsort((np.arange(n), want["max_act"]))[::-1].tolist()
        panel.view.sortByColumn(0, Qt.SortOrder.AscendingOrder)


def test_the_hook_picker_switches_the_table_too(qtbot, windows, tiny_stores):
    store = Store.open(tiny_stores["solu_ln"])
    w = main_window(windows, tiny_stores["solu_ln"])
    wait_page(qtbot, w, 0)
    panel = w.table_panel
    first = w.browser.hook
    other = paired_hook(store.hooks, first)
    for hook in (other, first):
        i = panel.hook_box.findData(hook)
        panel.hook_box.setCurrentIndex(i)
        panel.hook_box.activated.emit(i)
        wait_page(qtbot, w, 0, hook=hook)
        want = [format_value("max_act", v) for v in store.neuron_table(hook)["max_act"]]
        qtbot.waitUntil(lambda: _column(panel, "max_act") == want, timeout=WAIT_MS)


def test_searching_while_on_a_hit_stays_on_it(qtbot, windows, tiny_stores):
    w = main_window(windows, tiny_stores["solu_ln"])
    wait_page(qtbot, w, 0)
    b, panel = w.browser, w.table_panel
    table = b.table()
    search = ContextSearch.from_store(Store.open(tiny_stores["solu_ln"]), b.hook)
    # a neuron that is a hit of a word but not of the word's first letters, typed one letter at a time
    words = sorted({w for w in (str(t).strip() for t in table["top_token"]) if len(w) >= 3 and w.isalpha()})
    tok, hit = next((t, int(np.flatnonzero(search.search(t))[0])) for t in words
                    if search.search(t).any() and not search.search(t[:1]).all())
    assert not search.search(tok[:1])[hit] or not search.search(tok[:2])[hit]
    b.select(hit)
    wait_page(qtbot, w, hit)
    shown = []
    b.neuronChanged.connect(lambda r: shown.append(r.neuron))
    for i in range(1, len(tok) + 1):  # each letter pushed as if typed slowly
        with qtbot.waitSignal(b.filterApplied, timeout=WAIT_MS):
            panel.search.setText(tok[:i])
            panel._push_filter()
        assert b.ref.neuron == hit
    assert set(shown) <= {hit} and panel.row_of(hit) >= 0
    assert 0 < panel.proxy.rowCount() < len(table["neuron"])
    # the matches are marked in the shown snippets
    qtbot.waitUntil(lambda: w.page.top_view.complete, timeout=WAIT_MS)
    view = w.page.top_view
    marked = [view.snippets[si].tokens[t] for si, ranges in view.highlights.items() for lo, hi in ranges
              for t in range(lo, hi)]
    assert marked and all(t.strip().lower() == tok.lower() for t in marked)


def _filter_and_show_first(qtbot, b, panel, column: str) -> list[int]:
    """Type ``column > its median`` into the filter box, show the first row; the rows shown, in order."""
    table = b.table()
    with qtbot.waitSignal(b.filterApplied, timeout=WAIT_MS):
        panel.filter_edit.setText(f"{column} > {float(np.median(table[column]))}")
        qtbot.keyClick(panel.filter_edit, Qt.Key.Key_Return)
    visible = _visible(panel)
    assert 0 < len(visible) < len(table["neuron"])
    b.select(visible[0])
    qtbot.waitUntil(lambda: b.page is not None and b.page.ref.neuron == visible[0], timeout=WAIT_MS)
    return visible


def test_j_and_k_walk_the_filtered_table(qtbot, windows, tiny_stores):
    w = main_window(windows, tiny_stores["solu_ln"])
    wait_page(qtbot, w, 0)
    b, panel = w.browser, w.table_panel
    visible = _filter_and_show_first(qtbot, b, panel, "kurtosis")
    w.page.top_view.setFocus()
    for n in visible[1:4]:
        qtbot.keyClick(w, Qt.Key.Key_J)
        wait_page(qtbot, w, n)
    qtbot.keyClick(w, Qt.Key.Key_K)
    wait_page(qtbot, w, visible[2])
    # to the other side of the LayerNorm and back (the second visit from the cache): J walks the rows shown
    hook = b.hook
    for _ in range(2):
        qtbot.keyClick(w, Qt.Key.Key_M)
        qtbot.waitUntil(lambda: b.page.ref.hook != hook, timeout=WAIT_MS)
        hook = b.hook
    qtbot.waitUntil(lambda: panel.model.hook == b.hook, timeout=WAIT_MS)
    rows = _visible(panel)
    assert rows == visible
    start = b.ref.neuron
    qtbot.keyClick(w, Qt.Key.Key_J)
    wait_page(qtbot, w, rows[rows.index(start) + 1])


def test_j_walks_the_filtered_table_in_the_compare_window(qtbot, windows, tiny_stores):
    from neurobrowse.qt.compare_window import CompareWindow

    w = windows(CompareWindow)
    w.open_stores(tiny_stores["gelu"], tiny_stores["solu_ln"])
    qtbot.waitUntil(lambda: all(b.page is not None for b in w.browsers), timeout=WAIT_MS)
    w.tabs.setCurrentIndex(1)
    b, panel = w.browsers[1], w.sides[1].table_panel
    visible = _filter_and_show_first(qtbot, b, panel, "density")
    w.sides[1].page.top_view.setFocus()
    for n in visible[1:3]:
        qtbot.keyClick(w, Qt.Key.Key_J)
        qtbot.waitUntil(lambda: b.page.ref.neuron == n, timeout=WAIT_MS)
