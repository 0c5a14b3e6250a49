"""The Qt-free browsing model (neurobrowse.browsing) on the real tiny stores, without a display: what a
window shows is its state, and what changes reaches views as events."""

from __future__ import annotations

import sys
import subprocess

import numpy as np
import pytest

from neurobrowse.browsing.navigation import NeuronRef, paired_hook
from neurobrowse.browsing.filtering import TableFilter, search_marker
from neurobrowse.browsing import Browser, CompareBrowser, InlineRunner
from neurobrowse.labeling import label_text
from store.format.reader import Store


@pytest.fixture
def labels_db(tmp_path, monkeypatch):
    path = tmp_path / "labels.sqlite"
    monkeypatch.setenv("NEUROBROWSE_LABELS_DB", str(path))
    return path


def _recorder(browser: Browser) -> list[tuple]:
    seen: list[tuple] = []
    for name in browser.events.names:
        browser.events[name].connect(lambda *args, name=name: seen.append((name, *args)))
    return seen


def _names(seen):
    return [e[0] for e in seen]


def test_opening_a_store_shows_the_first_indexed_hook_and_neuron_zero(tiny_stores, labels_db):
    b = Browser()
    seen = _recorder(b)
    b.open_store(tiny_stores["solu_ln"])
    store = Store.open(tiny_stores["solu_ln"])
    assert b.store.path == store.path and b.indexed == set(store.hooks)
    assert b.hook == store.hooks[0] and b.ref == NeuronRef(store.hooks[0], 0)
    assert b.page.ref == b.ref and b.page.view.stats["max_act"] == store.neuron_table(b.hook)["max_act"][0]
    names = _names(seen)
    for before, after in (("storeOpened", "tableReady"), ("tableReady", "filterApplied"),
                          ("filterApplied", "neuronChanged"), ("neuronChanged", "pageReady")):
        assert names.index(before) < names.index(after)
    assert b.label_model is not None and b.label_model.neuron == 0
    b.shutdown()


def test_switching_hooks_sends_that_hooks_table_every_time(tiny_stores, labels_db):
    b = Browser()
    b.open_store(tiny_stores["solu_ln"])
    store = Store.open(tiny_stores["solu_ln"])
    first = b.hook
    other = paired_hook(store.hooks, first)
    tables = []
    b.events.tableReady.connect(lambda hook, table: tables.append((hook, table)))
    for hook in (other, first, other):  # the last two come from the cache
        b.toggle_ln_side()
        assert b.hook == hook and b.page.ref.hook == hook
        assert tables[-1][0] == hook
        np.testing.assert_array_equal(tables[-1][1]["max_act"], store.neuron_table(hook)["max_act"])
    assert len(tables) == 3
    b.shutdown()


def test_j_k_follow_the_filtered_and_sorted_table(tiny_stores, labels_db):
    b = Browser()
    b.open_store(tiny_stores["solu_ln"])
    table = b.table()
    k = float(np.median(table["kurtosis"]))
    b.set_filter(TableFilter(f"kurtosis > {k}"))
    b.set_sort("max_act", True)
    keep = np.flatnonzero(table["kurtosis"] > k)
    order = keep[np.argsort(-table["max_act"][keep], kind="stable")]
    np.testing.assert_array_equal(np.sort(b.visible_order()), np.sort(order))
    b.select(int(b.visible_order()[0]))
    walked = [b.ref.neuron]
    for _ in range(4):
        b.step_neuron(1)
        walked.append(b.ref.neuron)
    assert walked == b.visible_order()[:5].tolist()
    assert all(table["kurtosis"][n] > k for n in walked)
    assert np.all(np.diff(table["max_act"][walked]) <= 0)
    b.step_neuron(-1)
    assert b.ref.neuron == walked[3]
    # the filter of one hook does not steer J on another
    b.toggle_ln_side()
    assert b.mask_hook == b.hook
    b.shutdown()


def test_labels_and_bookmarks_reach_the_table_column_and_the_filter(tiny_stores, labels_db):
    b = Browser()
    b.open_store(tiny_stores["gelu"])
    changed = []
    b.events.labelsChanged.connect(changed.append)
    b.select(4)
    lab = b.label_model.set_verdict("interpretable")
    assert changed == [b.hook] and b.label_column(b.hook, 8)[4] == label_text(lab) == "✓"
    b.set_filter(TableFilter("label ~ ✓"))
    assert b.visible_order().tolist() == [4]
    b.set_filter(TableFilter(bookmarked_only=True))
    assert b.visible_order().tolist() == []
    assert b.toggle_bookmark() and b.visible_order().tolist() == [4]
    b.shutdown()
    # a new session reads the labels back with the store (in its worker)
    b2 = Browser()
    b2.open_store(tiny_stores["gelu"])
    assert b2.labels[b2.hook] == {4: "✓"}
    b2.shutdown()


def test_a_search_narrows_the_table_but_keeps_the_shown_neuron(tiny_stores, labels_db):
    b = Browser()
    b.open_store(tiny_stores["solu_ln"])
    table = b.table()
    tok = str(table["top_token"][int(np.argmax(table["max_act"]))]).strip()
    b.select(5)
    b.set_filter(TableFilter(search=tok))
    assert 0 < b.mask.sum() < len(b.mask) and b.ref.neuron == 5
    marker = search_marker(tok, "token")
    page = b.page
    marked = [s.tokens[i] for s in page.top for i in marker(s.tokens)]
    assert all(tok.lower() in t.lower() for t in marked)
    b.shutdown()


def test_history_and_errors_are_events(tiny_stores, labels_db, tmp_path):
    b = Browser()
    errors = []
    b.events.errorRaised.connect(lambda title, msg: errors.append((title, msg)))
    b.open_store(tmp_path / "missing")
    assert errors and errors[0][0] == "Cannot open store" and str(tmp_path / "missing") in errors[0][1]
    b.open_store(tiny_stores["gelu"])
    for n in (3, 7):
        b.select(n)
    b.back()
    assert b.ref.neuron == 3 and b.history.can_forward()
    b.forward()
    assert b.ref.neuron == 7
    b.select(10_000)
    assert errors[-1][0] == "No such neuron" and "0-" in errors[-1][1]
    b.shutdown()


def test_comparison_opens_both_sides_and_compares(tiny_stores, labels_db):
    c = CompareBrowser()
    ready = []
    c.events.ready.connect(ready.append)
    c.open_stores(tiny_stores["gelu"], tiny_stores["solu_ln"])
    assert ready and ready[0].labels == ("gelu", "solu_ln")
    assert all(s.page is not None for s in c.sides)
    c.sides[0].select(6)
    c.same_on_other(0)
    assert c.sides[1].ref.neuron == 6
    c.shutdown()


def test_the_browsing_model_does_not_load_qt():
    code = ("import sys, neurobrowse.browsing, neurobrowse.compare, neurobrowse.study, neurobrowse.cli\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('PySide6', 'pyqtgraph', 'shiboken6')))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr


def test_inline_runner_drops_superseded_results():
    r = InlineRunner()
    got = []
    inner = {}

    def outer(req):
        inner["req"] = r.submit("k", lambda q: "newer", got.append)  # superseded the outer one
        return "older"

    r.submit("k", outer, got.append)
    assert got == ["newer"]
