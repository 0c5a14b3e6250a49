"""StudyWindow offscreen on a real study drawn from the real tiny stores: blinded, keyboard-driven."""

from __future__ import annotations

import json
import re
import threading

import pytest
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QAbstractButton, QLabel

from neurobrowse.qt.study_window import StudyWindow
from neurobrowse.study.ratings import RatingsDB
from neurobrowse.study.draw import StudyConfig, new_study
from neurobrowse.study.session import StudySession
from neurobrowse.study.folder import key_path
from store.format.reader import Store


@pytest.fixture
def study_window(qtbot, tmp_path, tiny_stores):
    made = []
    before = {t.ident for t in threading.enumerate()}
    study = new_study([tiny_stores["gelu"], tiny_stores["solu_ln"]], tmp_path / "study",
                      StudyConfig(per_model=2, seed=5))

    def make(rater="rita"):
        w = StudyWindow(StudySession(study, rater))
        qtbot.addWidget(w)
        w.show()
        w.activateWindow()
        qtbot.waitUntil(w.isActiveWindow)
        made.append(w)
        return w

    yield study, make
    for w in made:
        timers = w.findChildren(QTimer)
        w.close()
        assert not [t for t in timers if t.isActive()]
    assert not [t for t in threading.enumerate() if t.ident not in before and t.is_alive() and not t.daemon]


def _visible_text(w: StudyWindow) -> str:
    parts = [w.windowTitle()] + [lab.text() for lab in w.findChildren(QLabel)]
    parts += [b.text() for b in w.findChildren(QAbstractButton)]
    return "\n".join(parts)


def test_rating_screen_shows_snippets_and_rule_only(qtbot, study_window, tiny_stores):
    study, make = study_window
    w = make()
    key = json.loads(key_path(study).read_text())
    chrome = _visible_text(w)
    shown = w.view.toPlainText()
    forbidden = ["gelu", "solu", "GeLU", "SoLU", "blocks.", "hook_", "run uuid", "score", "max_act"]
    for path in tiny_stores.values():
        st = Store.open(path)
        forbidden += [st.run_uuid, str(path), path.name]
    for word in forbidden:
        assert word.lower() not in chrome.lower(), word
    assert not re.search(r"neuron\s*#?\d", chrome + shown, re.I)
    assert "80%" in chrome and "Item 1 of 4" in chrome
    # the snippet view holds exactly the item's tokens, nothing more, drawn by the app's renderer
    from neurobrowse.snippet_text import decode_pieces, snippet_runs
    from neurobrowse.snippet_text import shade_rgb

    item = w.session.current()
    expected = "\u2029".join(f"{i + 1}\u2029" + "".join(r.text for r in snippet_runs(decode_pieces(s["tokens"]),
                                                                                      [s["center"]]))
                              for i, s in enumerate(item.snippets))  # a small number above each snippet
    assert w.view.document().toRawText() == expected
    assert len(item.snippets) >= 2 and any(len(s["tokens"]) > 40 for s in item.snippets)  # several lines each
    # the strongest firing is shaded full red; each token's colour follows its activation / the item's peak
    # (relative activations above zero only: tests/test_study_blind.py)
    peak = max(max(s["acts"]) for s in item.snippets)
    for span in w.view.token_spans:
        assert span.value == pytest.approx(max(item.snippets[span.snippet]["acts"][span.token], 0) / peak, abs=1e-6)
    assert w.view.scale == 1.0 and max(sp.value for sp in w.view.token_spans) == pytest.approx(1.0)
    assert shade_rgb(1.0, w.view.scale) == shade_rgb(peak, peak)
    assert item.item_id in key["items"]  # the key (never opened by the window) does map the item


def test_keys_rate_pause_resume_and_finish(qtbot, study_window):
    study, make = study_window
    w = make()
    first = w.session.current().item_id
    with qtbot.waitSignal(w.rated, timeout=5000) as sig:
        qtbot.keyClick(w, Qt.Key_1)
    assert sig.args == [first, "interpretable"]
    assert "Item 2 of 4 - 1 rated" in w.progress.text()
    with qtbot.waitSignal(w.pausedChanged, timeout=5000) as sig:
        qtbot.keyClick(w, Qt.Key_P)
    assert sig.args == [True] and "Paused" in w.progress.text() and "hidden" in w.view.toPlainText()
    qtbot.keyClick(w, Qt.Key_2)  # ignored while paused
    assert w.session.progress() == (1, 4) and not w.buttons["not_interpretable"].isEnabled()
    with qtbot.waitSignal(w.pausedChanged, timeout=5000) as sig:
        qtbot.keyClick(w, Qt.Key_P)
    assert sig.args == [False]
    with qtbot.waitSignal(w.rated, timeout=5000) as sig:
        qtbot.keyClick(w, Qt.Key_2)
    assert sig.args[1] == "not_interpretable"
    w.close()  # stop half-way; a new window resumes at item 3

    w2 = make()
    assert "Item 3 of 4 - 2 rated" in w2.progress.text()
    with qtbot.waitSignal(w2.rated, timeout=5000):
        qtbot.keyClick(w2, Qt.Key_3)
    with qtbot.waitSignal(w2.finished, timeout=5000):
        w2.buttons["interpretable"].click()
    assert "All 4 items rated" in w2.progress.text()
    db = RatingsDB(study)
    got = db.latest("rita")
    db.close()
    assert sorted(v for v, _ in got.values()) == ["interpretable", "interpretable", "not_interpretable", "unsure"]
    assert all(s is not None and s >= 0 for _, s in got.values())

    # undo (U) takes back the last rating: the item is shown again and its row is gone
    last = w2.session.items[-1].item_id
    with qtbot.waitSignal(w2.undone, timeout=5000) as sig:
        qtbot.keyClick(w2, Qt.Key_U)
    assert sig.args == [last] and "Item 4 of 4 - 3 rated" in w2.progress.text()
    db = RatingsDB(study)
    assert (("rita", last) not in db.latest("rita")) and len(db.latest("rita")) == 3
    db.close()
    with qtbot.waitSignal(w2.finished, timeout=5000):
        qtbot.keyClick(w2, Qt.Key_3)
    db = RatingsDB(study)
    assert db.latest("rita")[("rita", last)][0] == "unsure"
    db.close()

    # another rater rates independently: starts at item 1
    w3 = make("otto")
    assert "Item 1 of 4 - 0 rated" in w3.progress.text()
