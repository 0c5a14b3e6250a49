"""LabelPanel offscreen on a real store and a real label database (pytest-qt; wait on signals, no sleeps)."""

from __future__ import annotations

import sqlite3
import threading

import numpy as np
import pytest
from PySide6.QtCore import Qt, QTimer

from neurobrowse.labeling import LabelModel
from neurobrowse.qt.label_panel import LabelPanel
from store.labels.db import LabelDB
from store.format.reader import Store


@pytest.fixture
def panel_of(qtbot, tmp_path, tiny_stores):
    """Makes a shown, active LabelPanel over a fresh database; on teardown closes it and checks that no
    timer or thread of ours keeps running."""
    made = []
    before = {t.ident for t in threading.enumerate()}

    def make(busy_timeout_s: float = 10.0):
        store = Store.open(tiny_stores["solu_ln"])
        db = LabelDB(tmp_path / "labels.sqlite", busy_timeout_s=busy_timeout_s, author="tester")
        model = LabelModel(db, store.run_uuid, store=store)
        panel = LabelPanel(model)
        qtbot.addWidget(panel)
        panel.show()
        panel.activateWindow()
        qtbot.waitUntil(panel.isActiveWindow)
        made.append(panel)
        return panel, model, store, db

    yield make
    for p in made:
        timers = p.findChildren(QTimer)
        p.close()
        assert not [t for t in timers if t.isActive()]
    assert not [t for t in threading.enumerate() if t.ident not in before and t.is_alive() and not t.daemon]


def test_keys_set_verdict_description_tags_and_undo(qtbot, panel_of):
    panel, model, store, db = panel_of()
    hook = store.hook_for(0, "hook_post")
    model.set_neuron(hook, 11)
    with qtbot.waitSignal(panel.labelChanged, timeout=5000) as sig:
        qtbot.keyClick(panel, Qt.Key_1)
    assert sig.args[:2] == [hook, 11] and sig.args[2].verdict == "interpretable"
    assert db.get(store.run_uuid, hook, 11).verdict == "interpretable"
    assert panel.buttons["interpretable"].isChecked() and not panel.buttons["unsure"].isChecked()

    # typing digits into the description keeps them as text (no verdict change)
    panel.description.setFocus()
    qtbot.waitUntil(panel.description.hasFocus)
    with qtbot.waitSignal(panel.labelChanged, timeout=5000) as sig:
        qtbot.keyClicks(panel.description, "digits 2 and 3")
        qtbot.keyClick(panel.description, Qt.Key_Return)
    lab = db.get(store.run_uuid, hook, 11)
    assert (lab.verdict, lab.description) == ("interpretable", "digits 2 and 3")

    panel.tags.setFocus()
    with qtbot.waitSignal(panel.labelChanged, timeout=5000):
        qtbot.keyClicks(panel.tags, "numbers, code")
        qtbot.keyClick(panel.tags, Qt.Key_Return)
    assert db.get(store.run_uuid, hook, 11).tags == ("code", "numbers")

    panel.setFocus()
    with qtbot.waitSignal(panel.labelChanged, timeout=5000) as sig:
        qtbot.keyClick(panel, Qt.Key_3)
    assert sig.args[2].verdict == "unsure" and sig.args[2].tags == ("code", "numbers")
    # undo twice: back to interpretable with tags, then without tags
    with qtbot.waitSignal(panel.labelChanged, timeout=5000) as sig:
        qtbot.keyClick(panel, Qt.Key_Z, Qt.ControlModifier)
    assert sig.args[2].verdict == "interpretable" and panel.buttons["interpretable"].isChecked()
    with qtbot.waitSignal(panel.labelChanged, timeout=5000) as sig:
        panel.undo_button.click()
    assert sig.args[2].tags == () and panel.tags.text() == ""
    hist = db.history(store.run_uuid, hook, 11)
    assert [h.verdict for h in hist] == ["interpretable", "interpretable", "interpretable", "unsure",
                                         "interpretable", "interpretable"]
    assert all(h.author == "tester" and h.source == "app" for h in hist)

    # the table's filters see the labels
    model.set_neuron(hook, 12)
    with qtbot.waitSignal(panel.labelChanged, timeout=5000):
        qtbot.keyClick(panel, Qt.Key_2)
    np.testing.assert_array_equal(model.filter_neurons(hook, verdicts=["interpretable"]), [11])
    np.testing.assert_array_equal(model.filter_neurons(hook, verdicts=["not_interpretable", "interpretable"]), [11, 12])
    assert model.label_texts(hook) == {11: "✓ digits 2 and 3", 12: "✗"}
    assert len(model.filter_neurons(hook, unlabeled=True)) == store.d_mlp - 2


def test_notes_are_saved_on_focus_out_and_clear(qtbot, panel_of):
    panel, model, store, db = panel_of()
    hook = store.hook_for(0, "hook_mid")
    model.set_neuron(hook, 3)
    panel.notes.setFocus()
    qtbot.waitUntil(panel.notes.hasFocus)
    qtbot.keyClicks(panel.notes, "fires on 'def'")
    with qtbot.waitSignal(panel.labelChanged, timeout=5000) as sig:
        panel.description.setFocus()  # leaving the notes field saves them
    assert sig.args[2].notes == "fires on 'def'" and sig.args[2].verdict == "unsure"
    with qtbot.waitSignal(panel.labelChanged, timeout=5000) as sig:
        panel.clear_button.click()
    assert sig.args[2] is None and db.get(store.run_uuid, hook, 3) is None
    assert panel.notes.toPlainText() == "" and not any(b.isChecked() for b in panel.buttons.values())


def test_locked_database_shows_an_error_and_loses_nothing(qtbot, panel_of):
    panel, model, store, db = panel_of(busy_timeout_s=0.2)
    hook = store.hook_for(0, "hook_post")
    model.set_neuron(hook, 1)
    with qtbot.waitSignal(panel.labelChanged, timeout=5000):
        qtbot.keyClick(panel, Qt.Key_1)
    holder = sqlite3.connect(db.path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with qtbot.waitSignal(panel.errorOccurred, timeout=5000) as sig:
            qtbot.keyClick(panel, Qt.Key_2)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert "stayed locked" in sig.args[0] and "stayed locked" in panel.status.text()
    assert db.get(store.run_uuid, hook, 1).verdict == "interpretable"
    assert model.current.verdict == "interpretable"
