"""The desktop app, offscreen, real widgets on the real tiny stores (pytest-qt). Tests wait on signals
and conditions, never sleep; the window fixture fails a test that leaves a worker thread or timer running."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QMessageBox

from neurobrowse.browsing.filtering import TABLE_COLUMNS
from neurobrowse.browsing.pages import merge_snippets
from neurobrowse.browsing.navigation import paired_hook
from neurobrowse.snippet_text import shade_rgb
from store.format.reader import Store
from tests.helpers import WAIT_MS, click_row, main_window, wait_page

def test_clicking_a_row_shows_that_neurons_snippets(qtbot, windows, tiny_stores):
    w = main_window(windows, tiny_stores["solu_ln"])
    wait_page(qtbot, w, 0)
    panel = w.table_panel
    store = Store.open(tiny_stores["solu_ln"])
    target = 7
    row = panel.row_of(target)
    assert row >= 0
    with qtbot.waitSignal(w.browser.pageReady, timeout=WAIT_MS, check_params_cb=lambda p: p.ref.neuron == target):
        click_row(qtbot, panel.view, row)
    view = store.neuron(w.browser.hook, target)
    want = merge_snippets(view.top)
    qtbot.waitUntil(lambda: w.page.top_view.complete, timeout=WAIT_MS)
    shown = w.page.top_view.snippets
    assert {sp.snippet for sp in w.page.top_view.token_spans} == set(range(len(want)))
    assert [m.start for m in shown] == [m.start for m in want]
    assert [m.tokens for m in shown] == [m.tokens for m in want]
    assert w.page.title.text() == f"Layer 0 · neuron {target}"
    # the document holds the tokens' text in order
    text = w.page.top_view.toPlainText()
    from neurobrowse.snippet_text import BREAK, snippet_runs

    # as the renderer writes it: a newline token is an end-of-line mark and a line break
    assert "".join(r.text for r in snippet_runs(want[0].tokens)).replace(BREAK, "\n")[:20] in text


def test_shading_matches_the_stored_values(qtbot, windows, tiny_stores):
    w = main_window(windows, tiny_stores["gelu"], neuron=3)
    page = wait_page(qtbot, w, 3)
    store = Store.open(tiny_stores["gelu"])
    view = store.neuron(page.ref.hook, 3)
    stored = {}
    for s in view.top:
        for i, a in enumerate(s.acts):
            if s.ctx_lo <= i < s.ctx_hi:  # the activations the model produced with this firing's context
                stored[s.position - s.center + i] = float(a)
    sv = w.page.top_view
    qtbot.waitUntil(lambda: sv.complete, timeout=WAIT_MS)  # the snippets after the first screenful follow
    doc = sv.document()
    from PySide6.QtGui import QTextCursor

    assert len(sv.token_spans) > 50
    from neurobrowse.qt.snippet_view import FIRING_BG
    from neurobrowse.snippet_text import decode_pieces, token_runs

    for span in sv.token_spans:
        snip = sv.snippets[span.snippet]
        pos = snip.start + span.token
        if snip.greyed[span.token]:  # outside the context the model saw: no activation, grey text
            assert "outside" in sv.tooltip_at(span.start)
            continue
        assert span.value == pytest.approx(stored[pos], abs=1e-6)
        cur = QTextCursor(doc)
        cur.setPosition(span.start)
        cur.setPosition(span.end, QTextCursor.MoveMode.KeepAnchor)
        runs = token_runs(decode_pieces(snip.tokens)[span.token], span.token, span.token in snip.firing)
        assert cur.selectedText() == "".join(r.text for r in runs)  # the token's runs sit at its recorded span
        at = span.start
        for r in runs:  # shaded runs carry the token's colour; whitespace runs never a background bar
            cur.setPosition(at + 1)  # the format of the run's first character
            c = cur.charFormat().background().color()
            rgb = shade_rgb(stored[pos], page.scale)
            if r.kind in ("text", "eol", "mark") and span.token in snip.firing:  # the firing token: a dark box
                assert (c.red(), c.green(), c.blue()) == FIRING_BG
                assert cur.charFormat().foreground().color().red() == 255
            elif r.kind in ("text", "eol", "mark") and rgb != (255, 255, 255):
                assert (c.red(), c.green(), c.blue()) == rgb
            elif r.kind == "space":
                assert cur.charFormat().background().style() == Qt.BrushStyle.NoBrush
            at += len(r.text)
        assert float(sv.tooltip_at(span.start).split()[0]) == pytest.approx(stored[pos], rel=1e-3, abs=1e-4)
        assert sv.tooltip_at(span.end - 1) == sv.tooltip_at(span.start)
    # the strongest firing is the darkest red on the page
    top_val = max(stored.values())
    assert shade_rgb(top_val, page.scale)[1] == min(shade_rgb(v, page.scale)[1] for v in stored.values())


def test_filters_and_search_narrow_the_table(qtbot, windows, tiny_stores):
    w = main_window(windows, tiny_stores["solu_ln"])
    wait_page(qtbot, w)
    panel, b = w.table_panel, w.browser
    table = b.table()
    n = len(table["neuron"])
    assert panel.proxy.rowCount() == n
    k = float(np.median(table["kurtosis"]))
    with qtbot.waitSignal(b.filterApplied, timeout=WAIT_MS):
        panel.filter_edit.setText(f"kurtosis > {k}")
        qtbot.keyClick(panel.filter_edit, Qt.Key.Key_Return)
    want = int((table["kurtosis"] > k).sum())
    assert 0 < panel.proxy.rowCount() == want < n
    shown = {panel.model.neuron_at(panel.proxy.mapToSource(panel.proxy.index(r, 0)).row())
             for r in range(panel.proxy.rowCount())}
    assert shown == set(np.flatnonzero(table["kurtosis"] > k).tolist())
    # search by the top token of the strongest neuron (token mode), typed: debounced, runs in a worker
    tok = str(table["top_token"][int(np.argmax(table["max_act"]))]).strip()
    with qtbot.waitSignal(b.filterApplied, timeout=WAIT_MS):
        qtbot.keyClicks(panel.search, tok)
    narrowed = panel.proxy.rowCount()
    assert 0 < narrowed <= want
    # clearing both restores every row
    with qtbot.waitSignal(b.filterApplied, timeout=WAIT_MS):
        panel.filter_edit.clear()
        panel.search.clear()
        panel._push_filter()
    assert panel.proxy.rowCount() == n
    # sorting by a column orders rows by it
    panel.view.sortByColumn(1, Qt.SortOrder.DescendingOrder)
    vals = [table["max_act"][panel.proxy.mapToSource(panel.proxy.index(r, 0)).row()] for r in range(10)]
    assert vals == sorted(vals, reverse=True)


def test_keyboard_navigation_history_and_bookmarks(qtbot, windows, tiny_stores):
    w = main_window(windows, tiny_stores["solu_ln"])
    wait_page(qtbot, w, 0)
    b = w.browser
    w.page.top_view.setFocus()
    qtbot.keyClick(w, Qt.Key.Key_J)
    wait_page(qtbot, w, 1)
    qtbot.keyClick(w, Qt.Key.Key_J)
    wait_page(qtbot, w, 2)
    qtbot.keyClick(w, Qt.Key.Key_K)
    wait_page(qtbot, w, 1)
    qtbot.keyClick(w, Qt.Key.Key_Left, Qt.KeyboardModifier.AltModifier)  # back: 2
    wait_page(qtbot, w, 2)
    assert w.a_fwd.isEnabled()
    qtbot.keyClick(w, Qt.Key.Key_Right, Qt.KeyboardModifier.AltModifier)  # forward: 1
    wait_page(qtbot, w, 1)
    # M flips to the other side of the LayerNorm, same neuron
    hook = b.hook
    qtbot.keyClick(w, Qt.Key.Key_M)
    wait_page(qtbot, w, 1, hook=paired_hook(b.store.hooks, hook))
    assert b.hook != hook
    # the table follows the shown neuron
    cur = w.table_panel.view.currentIndex()
    assert w.table_panel.model.neuron_at(w.table_panel.proxy.mapToSource(cur).row()) == 1
    # J follows the table's sort order
    w.table_panel.view.sortByColumn(1, Qt.SortOrder.DescendingOrder)
    order = b.visible_order()
    b.select(int(order[0]))
    wait_page(qtbot, w, int(order[0]))
    qtbot.keyClick(w, Qt.Key.Key_J)
    wait_page(qtbot, w, int(order[1]))
    # bookmark with Ctrl+D; persisted per store in the settings
    qtbot.keyClick(w, Qt.Key.Key_D, Qt.KeyboardModifier.ControlModifier)
    assert b.ref in b.bookmarks and w.page.bookmark_btn.isChecked()
    assert str(int(order[1])) in str(w.settings.value(f"bookmarks/{b.store.run_uuid}"))
    # jump by number through the browser (the dialog's action)
    b.select(5)
    wait_page(qtbot, w, 5)


def _find_error_box(w) -> QMessageBox | None:
    boxes = [x for x in QApplication.topLevelWidgets() if isinstance(x, QMessageBox) and x.isVisible()]
    return boxes[0] if boxes else None


def test_corrupt_chunk_shows_a_dialog_and_the_app_stays_usable(qtbot, windows, tiny_stores, tmp_path):
    bad = tmp_path / "corrupt"
    shutil.copytree(tiny_stores["solu_ln"], bad)
    post = next(h for h in Store.open(bad).hooks if h.endswith("hook_post"))
    chunk = bad / "index" / post / "top_context_acts" / "c" / "0" / "0" / "0"
    raw = bytearray(chunk.read_bytes())
    for i in range(8, min(len(raw), 64)):
        raw[i] ^= 0xFF
    chunk.write_bytes(bytes(raw))
    w = main_window(windows, bad, hook=post, neuron=0)
    qtbot.waitUntil(lambda: _find_error_box(w) is not None, timeout=WAIT_MS)
    box = _find_error_box(w)
    text = box.text() + " " + box.informativeText()
    assert "top_context_acts" in text, text
    box.button(QMessageBox.StandardButton.Ok).click()
    qtbot.waitUntil(lambda: _find_error_box(w) is None, timeout=WAIT_MS)
    # neurons in other chunks still browse
    far = int(w.browser.store.d_mlp) - 1
    w.browser.select(far)
    page = wait_page(qtbot, w, far)
    assert page.top


def test_missing_store_and_bad_filter_show_dialogs(qtbot, windows, tmp_path):
    from neurobrowse.qt.main_window import MainWindow

    w = windows(MainWindow)
    w.open_store(tmp_path / "nope")
    qtbot.waitUntil(lambda: _find_error_box(w) is not None, timeout=WAIT_MS)
    assert "no store" in _find_error_box(w).informativeText()
    _find_error_box(w).button(QMessageBox.StandardButton.Ok).click()


def test_compare_window_shows_both_models(qtbot, windows, tiny_stores):
    from neurobrowse.qt.compare_window import CompareWindow

    w = windows(CompareWindow)
    w.open_stores(tiny_stores["gelu"], tiny_stores["solu_ln"])
    qtbot.waitUntil(lambda: w.cmp_model.comparison is not None and all(b.page is not None for b in w.browsers),
                    timeout=WAIT_MS)
    cmp = w.cmp_model.comparison
    assert cmp.labels == ("gelu", "solu_ln")
    assert "SoLU-LN" in cmp.verdict and cmp.verdict.startswith("Calibrated rule proxy")
    sentence = w.panel.verdict.text()  # one sentence on the evidence (tests/test_app_compare.py), details folded
    assert "SoLU-LN minus GeLU" in sentence and sentence.endswith(".")
    assert cmp.verdict in w.panel.evidence.text() or cmp.verdict.replace("'", "&#x27;") in w.panel.evidence.text()
    assert "What “holds” means" in w.panel.evidence.text() and "'Holds' means" in w.panel.verdict.toolTip()
    assert "gelu" in w.tabs.tabText(0) and "solu_ln" in w.tabs.tabText(1)
    for key, curves in w.panel.curves.items():
        for side, c in enumerate(curves):
            x, y = c.getData()
            # the LayerNorm overlap exists only on the SoLU-LN side (GeLU has no hook_mid)
            total = 0.0 if (key == "ln_overlap" and cmp.labels[side] == "gelu") else 1.0
            assert y is not None and len(y) == 40 and abs(float(np.sum(y)) - total) < 1e-6, key
    label = w.panel.shares_label.text()
    for shares in cmp.shares:
        for r in shares:
            assert f"{r.k}/{r.n}" in label
    # a neuron picked from the scatter opens on its side
    side, (hook, neuron) = 0, w.panel.scatters[0].data[0]["data"]
    with qtbot.waitSignal(w.browsers[0].pageReady, timeout=WAIT_MS):
        w.panel.neuronPicked.emit(side, hook, int(neuron))
    assert w.browsers[0].page.ref.neuron == int(neuron) and w.tabs.currentIndex() == 0


def test_try_your_text_shades_from_the_real_checkpoint(qtbot, windows, tiny_stores):
    import torch

    from solu_core.checkpoint import load_checkpoint

    w = main_window(windows, tiny_stores["solu_ln"], neuron=4)
    page = wait_page(qtbot, w, 4)
    live = w.page.live
    text = "def parse(self, value): return value + 1"  # QTest types ASCII without newlines
    with qtbot.waitSignal(live.shaded, timeout=WAIT_MS):
        qtbot.keyClicks(live.editor, text)  # debounced: one run after typing stops
    res = live.result
    assert res.text == text and (res.hook, res.neuron) == (page.ref.hook, 4)
    ckpt = load_checkpoint(w.browser.checkpoint_dir(), device="cpu")
    ids = ckpt.tokenizer.encode(text).ids
    assert res.token_ids == ids
    acts = ckpt.model.run_with_mlp_cache(torch.tensor([ids]), [res.hook], dtype=torch.float32)[res.hook][0, :, 4]
    np.testing.assert_allclose(res.acts, acts.numpy(), rtol=1e-5, atol=1e-6)
    scale = max(page.scale, float(np.max(np.abs(res.acts))))
    shading = live.shading()
    assert len(shading) == sum(1 for a, b in res.spans if b > a)
    for (start, end, rgb), (a, b), act in zip(shading, [s for s in res.spans if s[1] > s[0]],
                                               [x for s, x in zip(res.spans, res.acts) if s[1] > s[0]]):
        assert (start, end) == (a, b) and rgb == shade_rgb(float(act), scale)
    # "edit" on a snippet opens it in the editor and runs at once
    with qtbot.waitSignal(live.shaded, timeout=WAIT_MS):
        w.page.top_view.openInEditor.emit("x = 1")
    assert live.text() == "x = 1" and live.result.text == "x = 1"
    # switching neurons re-runs the editor's text for the new neuron
    with qtbot.waitSignal(live.shaded, timeout=WAIT_MS, check_params_cb=lambda r: r.neuron == 5):
        w.browser.select(5)


def test_missing_checkpoint_says_how_to_fix(qtbot, windows, tiny_stores, tmp_path):
    w = main_window(windows, tiny_stores["gelu"])
    wait_page(qtbot, w)
    w.browser.set_checkpoint(tmp_path / "gone")
    w.page.live.set_text("hello world")
    qtbot.waitUntil(lambda: _find_error_box(w) is not None, timeout=WAIT_MS)
    assert "not found" in _find_error_box(w).informativeText()
    assert "not found" in w.page.live.status.text()
    _find_error_box(w).button(QMessageBox.StandardButton.Ok).click()


def test_newer_request_supersedes_older(qtbot, windows, tiny_stores):
    """Many quick neuron switches: only the last one lands on the page."""
    w = main_window(windows, tiny_stores["solu_ln"])
    wait_page(qtbot, w, 0)
    b = w.browser
    b.session.prefetch = False
    shown = []
    b.pageReady.connect(lambda p: shown.append(p.ref.neuron))
    for n in range(20, 40):
        b.select(n)
    wait_page(qtbot, w, 39)
    qtbot.waitUntil(lambda: not b.tasks.busy(), timeout=WAIT_MS)
    assert shown[-1] == 39 and len(shown) < 20
    assert w.page.title.text().endswith("neuron 39")


def test_settings_and_recent_stores_persist(qtbot, windows, tiny_stores, settings):
    from neurobrowse.qt.main_window import MainWindow
    from neurobrowse.qt.settings import recent_stores

    w = main_window(windows, tiny_stores["gelu"])
    wait_page(qtbot, w)
    w.page.log_box.setChecked(True)
    w.close()
    assert str(tiny_stores["gelu"]) in recent_stores(settings)[0]
    w2 = windows(MainWindow)
    assert w2.page.log_box.isChecked() and w2.page.hist.log
    assert w2.recent_menu.actions() and str(tiny_stores["gelu"]) in w2.recent_menu.actions()[0].text()


def test_label_panel_labels_the_shown_neuron_and_the_table_filters_on_it(qtbot, windows, tiny_stores):
    w = main_window(windows, tiny_stores["solu_ln"], neuron=6)
    wait_page(qtbot, w, 6)
    qtbot.waitUntil(lambda: w.page.label_panel is not None, timeout=WAIT_MS)
    assert w.label_model.neuron == 6
    w.table_panel.view.setFocus()
    qtbot.keyClick(w, Qt.Key.Key_1)  # the label panel: 1 = interpretable
    qtbot.waitUntil(lambda: w.label_model.current is not None, timeout=WAIT_MS)
    assert w.label_model.current.verdict == "interpretable"
    col = [k for k, _, _ in TABLE_COLUMNS].index("label")
    panel = w.table_panel
    qtbot.waitUntil(lambda: "✓" in str(panel.model.data(panel.model.index(6, col))), timeout=WAIT_MS)
    with qtbot.waitSignal(w.browser.filterApplied, timeout=WAIT_MS):
        panel.filter_edit.setText("label ~ ✓")
        panel._push_filter()
    assert panel.proxy.rowCount() == 1 and panel.row_of(6) == 0


def test_incomplete_store_says_how_to_resume(qtbot, windows, tiny_stores, tmp_path):
    """A recording that stopped early: the dialog names the store and the command that resumes it."""
    from store.format.writer import StoreWriter

    src = Store.open(tiny_stores["gelu"])
    path = tmp_path / "half"
    w = StoreWriter.create_or_resume(path, model_config=dict(src.model_config), hooks=list(src.hooks),
                                     n_tokens=src.n_tokens, context_len=src.context_len,
                                     tokenizer_json=src.tokenizer_json, manifest={}, fsync=False)
    assert w.pending_chunks(src.hooks[0])  # nothing written: the recording "stopped" at once
    win = main_window(windows, path)
    qtbot.waitUntil(lambda: _find_error_box(win) is not None, timeout=WAIT_MS)
    text = _find_error_box(win).informativeText()
    assert "incomplete" in text and str(path) in text and "neurobrowse record" in text
    _find_error_box(win).button(QMessageBox.StandardButton.Ok).click()
    assert "INCOMPLETE" in win.status_label.text()


def test_keys_help_keeps_text_that_looks_like_html():
    from PySide6.QtGui import QTextDocument

    from neurobrowse.qt.main_window import KEYS_HELP, keys_html

    doc = QTextDocument()
    doc.setHtml(keys_html())
    text = doc.toPlainText()
    assert "hook_mid <-> hook_post" in text
    for _, desc in KEYS_HELP:
        assert desc in text


def test_long_errors_fit_the_status_bar_and_keep_their_whole_text(qtbot, windows, tiny_stores):
    w = main_window(windows, tiny_stores["gelu"], neuron=0)
    wait_page(qtbot, w, 0)
    w.resize(1000, 700)
    message = "chunk index/blocks.0.mlp.hook_post/top_values/c/0/0 of " + "/very/long/path" * 30 + " is damaged"
    w.show_status(f"Cannot show L0 N0: {message}")
    bar = w.statusBar()
    shown = bar.currentMessage()
    assert bar.fontMetrics().horizontalAdvance(shown) <= bar.width()
    assert shown.startswith("Cannot show") and shown.endswith("is damaged")  # both ends visible, middle elided
    assert bar.toolTip() == f"Cannot show L0 N0: {message}"


def test_right_column_tables_show_every_row_and_whole_numbers_at_1600x1000(qtbot, windows, tiny_stores):
    w = main_window(windows, tiny_stores["solu_ln"], neuron=2)
    w.resize(1600, 1000)
    wait_page(qtbot, w, 2)
    page = w.page
    for i, tables in enumerate(([page.top_tokens], [page.logit_up, page.logit_down], [page.stats])):
        page.info_tabs.setCurrentIndex(i)
        qtbot.waitUntil(lambda t=tables: all(x.isVisible() for x in t), timeout=WAIT_MS)
        for t in tables:
            assert t.verticalScrollBar().maximum() == 0, f"{t.horizontalHeaderItem(0).text()} table needs a scrollbar"
            fm = t.fontMetrics()
            for r in range(t.rowCount()):
                for c in range(1, t.columnCount()):
                    assert fm.horizontalAdvance(t.item(r, c).text()) < t.columnWidth(c), t.item(r, c).text()
    # the neuron table's label column is in view at the default width
    view = w.table_panel.view
    col = [k for k, _, _ in TABLE_COLUMNS].index("label")
    assert view.columnViewportPosition(col) + 60 <= view.viewport().width()
    hh = view.horizontalHeader()
    for i, (_k, title, _f) in enumerate(TABLE_COLUMNS[:-1]):  # no header clipped ("Top token")
        assert hh.fontMetrics().horizontalAdvance(title) + 12 <= hh.sectionSize(i), title


def test_before_after_ln_tab_leaves_the_right_column_as_it_was(qtbot, windows, tiny_stores):
    w = main_window(windows, tiny_stores["solu_ln"], neuron=3)
    w.resize(1600, 1000)
    page = wait_page(qtbot, w, 3)
    assert page.paired is not None
    qtbot.waitUntil(lambda: w.page.body_split.sizes()[1] > 0, timeout=WAIT_MS)
    before = w.page.body_split.sizes()[1]
    w.page.tabs.setCurrentIndex(w.page.ln_tab)
    qtbot.waitUntil(lambda: w.page.mid_view.isVisible(), timeout=WAIT_MS)
    during = w.page.body_split.sizes()[1]
    w.page.tabs.setCurrentIndex(0)
    qtbot.waitUntil(lambda: w.page.top_view.isVisible(), timeout=WAIT_MS)
    assert w.page.body_split.sizes()[1] == before and during == before


def test_a_snippet_expands_to_its_whole_context_and_folds_back(qtbot, windows, tiny_stores):
    w = main_window(windows, tiny_stores["gelu"], neuron=5)
    page = wait_page(qtbot, w, 5)
    sv = w.page.top_view
    qtbot.waitUntil(lambda: sv.complete, timeout=WAIT_MS)
    before = sv.snippets[1]
    store = Store.open(tiny_stores["gelu"])
    L = store.context_len
    pos = before.start + before.firing[0]
    with qtbot.waitSignal(sv.rendered, timeout=WAIT_MS):
        sv._anchor(__import__("PySide6.QtCore", fromlist=["QUrl"]).QUrl("expand:1"))
    got = sv.snippets[1]
    assert sv.expanded[1] is before
    c0 = pos // L * L
    seen = [p for p, g in zip(got.positions, got.greyed) if not g]
    assert seen == list(range(c0, c0 + L))  # every token the model saw with this firing, nothing else unshaded
    dense = store.activations(page.ref.hook)[c0:c0 + L, 5].astype(np.float32)
    np.testing.assert_allclose(got.acts[~got.greyed], dense, rtol=1e-3, atol=1e-6)
    assert not got.acts[got.greyed].any()
    np.testing.assert_array_equal(got.token_ids, store.tokens[got.start:got.start + len(got.tokens)])
    assert "collapse" in sv.toPlainText()
    # E folds it back (the snippet under the mouse, else the first in view: here the expanded one is hovered or not;
    # toggling by index is what the key does)
    sv.toggle_expand(1)
    assert sv.snippets[1] is before and not sv.expanded


def test_bottom_and_quantile_tabs_shade_on_their_own_scales_with_ranges(qtbot, windows, tiny_stores):
    w = main_window(windows, tiny_stores["gelu"], neuron=7)
    page = wait_page(qtbot, w, 7)
    w.page.render_all()
    bv, qv = w.page.bottom_view, w.page.samples_view
    qtbot.waitUntil(lambda: bv.complete and qv.complete, timeout=WAIT_MS)
    low = min(s.value for s in page.bottom)
    assert low < 0 and bv.scales[0][0] == pytest.approx(-low)
    # negative tokens are shaded on the bottom tab's own scale: its most negative firing is full blue
    assert shade_rgb(low, -low)[0] < 60
    from PySide6.QtGui import QTextCursor

    from neurobrowse.snippet_text import token_runs

    checked = 0
    for sp in bv.token_spans:
        sn = bv.snippets[sp.snippet]
        if sp.value >= 0 or sn.greyed[sp.token] or sp.token in sn.firing:
            continue
        if token_runs(sn.tokens[sp.token], sp.token)[0].kind != "text":
            continue
        cur = QTextCursor(bv.document())
        cur.setPosition(sp.start + 1)
        c = cur.charFormat().background().color()
        want = shade_rgb(sp.value, -low)
        if want != (255, 255, 255):
            assert (c.red(), c.green(), c.blue()) == want
            checked += 1
    assert checked > 5
    text = qv.toPlainText()
    for name, (lo, hi) in page.bin_ranges.items():
        if page.samples[name]:
            from neurobrowse.snippet_text import bin_title

            assert bin_title(name, lo, hi) in text
    i = 0
    for name, snips in page.samples.items():
        for _ in snips:
            assert qv.scales[i] == pytest.approx(page.sample_scales[name])
            i += 1
    for name, snips in page.samples.items():  # a bin's strongest firing takes the bin's full colour
        if snips and name != "random":
            neg, pos = page.sample_scales[name]
            v = max(snips, key=lambda s: abs(s.value)).value
            assert abs(v) == pytest.approx(neg if v < 0 else pos)
