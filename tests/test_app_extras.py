"""What a researcher expects and missed (issue 24), offscreen on the real tiny stores: F1 lists every shortcut,
a snippet copies as text, search hits come strongest first, bookmarking leaves the splitter where it was, the
theme follows the desktop's light or dark scheme."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QAction, QKeySequence, QShortcut
from PySide6.QtWidgets import QApplication, QMessageBox

from tests.helpers import WAIT_MS, main_window, wait_page

MEDIA_KEYS = {Qt.Key.Key_Back, Qt.Key.Key_Forward, Qt.Key.Key_Help, Qt.Key.Key_Open}


def _sequences(widget) -> set[str]:
    out = set()
    for a in widget.findChildren(QAction):
        for seq in a.shortcuts():
            if seq.count() and seq[0].key() not in MEDIA_KEYS:
                out.add(seq.toString(QKeySequence.SequenceFormat.PortableText))
    for sc in widget.findChildren(QShortcut):
        if not sc.key().isEmpty():
            out.add(sc.key().toString(QKeySequence.SequenceFormat.PortableText))
    return out


def test_f1_lists_every_shortcut_of_the_window(qtbot, windows, tiny_stores):
    from neurobrowse.qt.main_window import KEYS_HELP

    w = main_window(windows, tiny_stores["solu_ln"])
    wait_page(qtbot, w, 0)
    qtbot.waitUntil(lambda: w.page.label_panel is not None, timeout=WAIT_MS)
    listed = {k.strip() for keys, _ in KEYS_HELP for k in keys.split(":")[-1].split(" / ")}
    missing = sorted(s for s in _sequences(w) if s not in listed)
    assert not missing, missing  # Ctrl+L, Ctrl+Z, ... each in the F1 list
    w.activateWindow()
    qtbot.keyClick(w, Qt.Key.Key_F1)
    box = next(b for b in QApplication.topLevelWidgets() if isinstance(b, QMessageBox) and b.isVisible())
    assert "Ctrl+L" in box.text() and "Ctrl+Z" in box.text() and "O" in box.text()
    box.close()
    # the compare window's keys (O, Ctrl+W, ...) are in the same list, and F1 there shows it too
    from neurobrowse.qt.compare_window import CompareWindow

    c = windows(CompareWindow)
    missing = sorted(s for s in _sequences(c) if s not in listed)
    assert not missing, missing
    assert "Ctrl+W" in c.show_keys().text()


def test_a_snippet_copies_as_the_text_the_model_saw(qtbot, windows, tiny_stores):
    w = main_window(windows, tiny_stores["gelu"], neuron=3)
    wait_page(qtbot, w, 3)
    sv = w.page.top_view
    qtbot.waitUntil(lambda: sv.complete, timeout=WAIT_MS)
    sv._anchor(QUrl("copy:1"))
    sn = sv.snippets[1]
    want = "".join(t for t, g in zip(sn.tokens, sn.greyed) if not g).replace("\u23ce", "\n").replace("\u21e5", "\t")
    got = QApplication.clipboard().text()
    assert got.replace("\r", "") == want.replace("\u240d", "") and "\u23ce" not in got
    assert w.copy_snippet() == QApplication.clipboard().text()  # Ctrl+Shift+C: the first in view


def test_search_hits_come_strongest_first(qtbot, windows, tiny_stores):
    w = main_window(windows, tiny_stores["solu_ln"])
    wait_page(qtbot, w, 0)
    panel, b = w.table_panel, w.browser
    table = b.table()
    tok = str(table["top_token"][int(np.argmax(table["max_act"]))]).strip()
    with qtbot.waitSignal(b.filterApplied, timeout=WAIT_MS):
        panel.search.setText(tok)
        panel._push_filter()
    rows = [panel.model.neuron_at(panel.proxy.mapToSource(panel.proxy.index(r, 0)).row())
            for r in range(panel.proxy.rowCount())]
    assert len(rows) > 1
    vals = [float(table["max_act"][n]) for n in rows]
    assert vals == sorted(vals, reverse=True)


def test_bookmarking_does_not_move_the_splitter(qtbot, windows, tiny_stores):
    w = main_window(windows, tiny_stores["gelu"], neuron=1)
    w.resize(1366, 700)
    wait_page(qtbot, w, 1)
    QApplication.processEvents()
    before = (w.split.sizes(), w.page.body_split.sizes())
    for _ in range(2):
        qtbot.keyClick(w, Qt.Key.Key_D, Qt.KeyboardModifier.ControlModifier)
        QApplication.processEvents()
        assert (w.split.sizes(), w.page.body_split.sizes()) == before


def test_the_theme_follows_the_desktop(qtbot, windows, tiny_stores):
    from neurobrowse.qt.windows import apply_color_scheme

    app = QApplication.instance()
    w = main_window(windows, tiny_stores["gelu"], neuron=1)
    wait_page(qtbot, w, 1)
    try:
        assert apply_color_scheme(app, Qt.ColorScheme.Dark) == "dark"
        assert app.palette().window().color().lightness() < 80 and app.palette().text().color().lightness() > 180
        sv = w.page.top_view
        assert sv.palette().base().color().lightness() == 255  # snippets keep their white paper
    finally:
        assert apply_color_scheme(app, Qt.ColorScheme.Light) == "light"
    assert app.palette().window().color().lightness() > 180


def test_export_the_shown_neuron_and_the_rows_the_filter_shows(qtbot, windows, tiny_stores, tmp_path):
    import json

    w = main_window(windows, tiny_stores["solu_ln"], neuron=4)
    wait_page(qtbot, w, 4)
    b, panel = w.browser, w.table_panel
    with qtbot.waitSignal(w.exported, timeout=WAIT_MS) as sig:
        w.export_neurons(tmp_path / "one.jsonl", "jsonl", "neuron")
    lines = (tmp_path / "one.jsonl").read_text(encoding="utf-8").splitlines()
    assert sig.args[0]["n_neurons"] == 1 and [json.loads(x)["neuron"] for x in lines[1:]] == [4]
    k = float(np.median(b.table()["kurtosis"]))
    with qtbot.waitSignal(b.filterApplied, timeout=WAIT_MS):
        panel.filter_edit.setText(f"kurtosis > {k}")
        qtbot.keyClick(panel.filter_edit, Qt.Key.Key_Return)
    with qtbot.waitSignal(w.exported, timeout=WAIT_MS):
        w.export_neurons(tmp_path / "rows.csv", "csv", "rows")
    import csv

    rows = list(csv.DictReader(open(tmp_path / "rows.csv", encoding="utf-8")))
    want = sorted(int(n) for n in np.flatnonzero(b.table()["kurtosis"] > k))
    assert sorted(int(r["neuron"]) for r in rows) == want
    assert str(tmp_path / "rows.csv") in w.statusBar().currentMessage()


def test_one_size_unit_for_a_store_in_info_verify_and_the_app(tiny_stores):
    """`info`, `verify` and the app's status bar all write sizes in binary units (KiB, MiB, GiB)."""
    import re

    from neurobrowse.browsing.status_lines import store_status
    from neurobrowse.formatting import human_bytes
    from store.format.reader import Store
    from store.format.verify import format_report, verify_store

    st = Store.open(tiny_stores["gelu"])
    size = st.size_on_disk()
    text = format_report(verify_store(tiny_stores["gelu"]))
    status = store_status(st, size)
    assert human_bytes(size) in status
    units = set(re.findall(r"\d\s?([KMGT]i?B)\b", text.splitlines()[0] + " " + status))
    assert units and all(u.endswith("iB") for u in units), units
