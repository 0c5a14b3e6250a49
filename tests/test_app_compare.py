"""The compare window read at a glance (issue 24, defects 10-12), offscreen on the real tiny stores: one
sentence, then a forest plot of SoLU-LN minus GeLU (the study first), details folded; plots with ticks,
labels and a legend; one name per metric; both windows usable at 1366 x 768."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QFont, QFontMetrics

from store.measures import columns
from store.format.reader import Store
from tests.helpers import WAIT_MS, main_window, wait_page


def _compare(qtbot, windows, tiny_stores):
    from neurobrowse.qt.compare_window import CompareWindow

    w = windows(CompareWindow)
    w.open_stores(tiny_stores["gelu"], tiny_stores["solu_ln"])
    qtbot.waitUntil(lambda: w.cmp_model.comparison is not None and all(b.page is not None for b in w.browsers),
                    timeout=WAIT_MS)
    return w


def _report_a_study(tmp_path, tiny_stores, k=(40, 20), n=(60, 60)):
    """Copies of the two tiny stores with a reported study recorded inside them, as `neurobrowse study
    report` records it (neurobrowse.study.registry); returns the copies as a tiny_stores-like dict."""
    import shutil

    from neurobrowse.study.registry import REPORTED_FILE

    copies = {a: shutil.copytree(tiny_stores[a], tmp_path / a) for a in ("gelu", "solu_ln")}
    solu, gelu = Store.open(copies["solu_ln"]), Store.open(copies["gelu"])
    line = {"kind": "neurobrowse-study-report", "study": str(tmp_path), "raters": 2, "created": "2026-12-07",
            "models": [{"name": "SoLU-LN", "act_fn": "solu_ln", "run_uuid": solu.run_uuid, "hook_kind": "hook_post",
                        "items_rated": n[0], "items_interpretable": k[0]},
                       {"name": "GeLU", "act_fn": "gelu", "run_uuid": gelu.run_uuid, "hook_kind": "hook_post",
                        "items_rated": n[1], "items_interpretable": k[1]}]}
    for st in (solu, gelu):
        (st.path / REPORTED_FILE).write_text(json.dumps([line]) + "\n")
    return copies


def test_one_sentence_then_a_forest_plot_study_first_details_folded(qtbot, windows, tiny_stores, tmp_path):
    """Defect 10: the first line is one sentence naming the study's difference and saying the proxies
    disagree when they do; the forest plot draws the study first, then each proxy, with 95% intervals;
    the evidence lines are folded away until asked for."""
    w = _compare(qtbot, windows, _report_a_study(tmp_path, tiny_stores))
    ev = w.cmp_model.comparison.evidence
    panel = w.panel
    rows = panel.forest.rows
    assert rows and rows[0].kind == "study" and all(r.kind != "study" for r in rows[1:])
    assert rows[0].diff == pytest.approx(ev.study.diff)
    assert (rows[0].lo, rows[0].hi) == pytest.approx(ev.study.diff_interval)
    proxies = [r for r in rows if r.kind == "proxy"]
    items = getattr(ev, "items", None)
    if items:  # the comparison's evidence list, drawn as it is (study first, then proxies, then controls)
        assert [(r.name, r.diff) for r in rows] == [(i.name, pytest.approx(i.diff, nan_ok=True)) for i in items]
    else:
        assert [r.diff for r in proxies] == pytest.approx([e.diff for e in ev.evidence])
    for r in rows:
        assert r.lo <= r.diff <= r.hi and r.word
    x, y = panel.forest.points.getData()
    assert len(x) == len(rows) and y[0] == max(y)  # the study on top
    sentence = panel.verdict.text()
    assert "\n" not in sentence and sentence.endswith(".") and sentence.count(". ") == 0, sentence
    assert sentence.startswith("Blinded study") and "+33 points" in sentence  # 40/60 - 20/60
    signs = {r.diff > 0 for r in proxies if r.decides and r.diff != 0} | {True}
    assert ("disagree" in sentence) == (len(signs) > 1)
    assert not panel.details_scroll.isVisible() and panel.details_button.text().startswith("Details")
    panel.details_button.click()
    assert panel.details_scroll.isVisible() and "Fisher exact" in panel.evidence.text()
    # proxies that point different ways are named in the sentence (pure: the rows as the plot has them)
    from neurobrowse.qt.compare_window import ForestRow, one_sentence

    mixed = [ForestRow("rule explanation score ≥ 0.7", "proxy", -0.06, -0.12, 0.0, "does not hold", 0.05),
             ForestRow("token-rule score ≥ 0.5", "proxy", 0.10, 0.04, 0.16, "holds", 0.00042)]
    said = one_sentence(mixed)
    assert "disagree" in said and "token-rule score ≥ 0.5 +10" in said and "No blinded study" in said
    assert "disagree" not in one_sentence([mixed[1], ForestRow("b", "proxy", 0.05, -0.01, 0.1, "same way, not "
                                                               "significant")])


def test_population_plots_have_ticks_labels_a_legend_and_one_name_per_metric(qtbot, windows, tiny_stores):
    """Defect 11: every histogram has x tick values and a y axis wide enough for its labels, a legend names
    both models, and each score is called by its one title in the plots, the share table, the forest plot and
    the neuron table's header (never its array name or another short form)."""
    w = _compare(qtbot, windows, tiny_stores)
    panel = w.panel
    panel.views.setCurrentIndex(1)
    qtbot.waitUntil(lambda: panel.pop_scroll.isVisible(), timeout=WAIT_MS)
    for key, pw in panel.plots.items():
        pw.resize(420, 200)
        bottom, left = pw.getPlotItem().getAxis("bottom"), pw.getPlotItem().getAxis("left")
        lo, hi = pw.getPlotItem().viewRange()[0]
        ticks = [v for level in bottom.tickValues(lo, hi, 400) for v in level[1]]
        assert len(ticks) >= 2 and bottom.style["showValues"] and bottom.height() >= 20, key
        ylo, yhi = pw.getPlotItem().viewRange()[1]
        labels = left.tickStrings(list(np.linspace(ylo, yhi, 5)), 1, (yhi - ylo) / 4)
        fm = QFontMetrics(left.style.get("tickFont") or QFont())
        label_room = fm.height() + 4  # the rotated axis label beside the numbers
        assert left.width() >= max(fm.horizontalAdvance(t) for t in labels) + label_room, (key, left.width(), labels)
    for label in w.cmp_model.comparison.labels:
        assert label in panel.legend.text()
    names = {s: columns.BY_NAME[s].title for s in columns.SCORES}
    texts = [pw.getPlotItem().titleLabel.text for pw in panel.plots.values()]
    texts += [t for level in panel.share_plot.getPlotItem().getAxis("bottom")._tickLevels for _, t in level]
    texts += [r.name for r in panel.forest.rows] + [panel.shares_label.text()]
    panel_text = " | ".join(texts)
    for s, title in names.items():
        assert title in panel_text, title
        assert s not in panel_text.replace(title, ""), s
    header = [w.sides[1].table_panel.model.headerData(i, Qt.Orientation.Horizontal)
              for i in range(w.sides[1].table_panel.model.columnCount())]
    flat = [" ".join(str(h).split()) for h in header]
    for title in names.values():
        assert any(h.lower() == title.lower() for h in flat), (title, flat)


def test_both_windows_fit_a_1366_by_768_screen(qtbot, windows, tiny_stores):
    """Defect 12: neither window needs more than a 1366 x 768 laptop screen (less a panel and a title bar),
    and at that size the neuron table, the snippets and the plots are all on screen."""
    room = (1366, 768 - 70)
    w = main_window(windows, tiny_stores["solu_ln"])
    wait_page(qtbot, w, 0)
    qtbot.waitUntil(lambda: w.page.label_panel is not None, timeout=WAIT_MS)
    c = _compare(qtbot, windows, tiny_stores)
    for win in (w, c):
        hint = win.minimumSizeHint()
        assert hint.width() <= room[0] and hint.height() <= room[1], (type(win).__name__, hint)
        win.resize(*room)
        qtbot.waitUntil(lambda win=win: win.height() <= room[1], timeout=WAIT_MS)
    for view in (w.table_panel.view, w.page.top_view, c.sides[0].page.top_view, c.panel.forest):
        assert view.isVisible() and view.height() >= 80 and view.width() >= 200, (view, view.size())
    assert c.panel.verdict.isVisible()
