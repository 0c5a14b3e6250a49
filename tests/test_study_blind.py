"""The blinded study is truly blind (issue 24, defects 7-9): what a rater sees, in the app's study window and in
the text that docs/studies/render_for_rater.py makes, depends only on each item's relative activations above
zero; the key sits in a folder the rater is not handed; the draw has no long runs of one model; old study
folders still open."""

from __future__ import annotations

import gzip
import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QTimer

from neurobrowse.qt.study_window import StudyWindow
from neurobrowse.study.draw import MAX_RUN, StudyConfig, new_study
from neurobrowse.study.folder import key_path, load_items, load_key
from neurobrowse.study.session import StudySession

DOCS = Path(__file__).resolve().parents[1] / "docs" / "studies"


def _renderer():
    spec = importlib.util.spec_from_file_location("render_for_rater", DOCS / "render_for_rater.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


TOKENS = [["def", " f", "(", "x", "):", "\n", "    ", "return", " x", " +", " 1"],
          [" the", " cat", " sat", " on", " the", " mat", "."]]
RELATIVE = [[0.0, 0.1, 0.0, 0.35, 0.0, 0.2, 0.0, 1.0, 0.5, 0.05, 0.0],
            [0.0, 0.6, 0.0, 0.0, 0.25, 0.9, 0.0]]


def _item(iid: str, scale: float, negatives: float) -> dict:
    """The same tokens and relative activations above zero at another scale; zeros become ``negatives``."""
    snippets = []
    for toks, rel in zip(TOKENS, RELATIVE):
        acts = [round(scale * r, 6) if r > 0 else negatives * (1 + i % 3) for i, r in enumerate(rel)]
        snippets.append({"tokens": toks, "acts": acts, "center": int(np.argmax(rel))})
    return {"item_id": iid, "snippets": snippets}


@pytest.fixture
def hand_study(tmp_path):
    """A study folder with two items: 'GeLU-like' (peak 4, no negatives) and 'SoLU-LN-like' (peak 26, strongly
    negative elsewhere), written as new_study writes study.json."""
    study = tmp_path / "hand"
    study.mkdir()
    doc = {"kind": "neurobrowse-study", "version": 1, "created": "2026-12-07T00:00:00+00:00",
           "rule": "rule text", "n_items": 2, "items": [_item("aaaa0001", 4.0, 0.0), _item("bbbb0002", 26.0, -3.7)]}
    (study / "study.json").write_text(json.dumps(doc))
    return study, doc


def _close(w):
    timers = w.findChildren(QTimer)
    w.close()
    assert not [t for t in timers if t.isActive()]


def test_two_items_with_the_same_relative_activations_render_identically(qtbot, hand_study):
    """Defects 7 and 8: the study window's document (HTML: text, colours, formats) and every hover text are
    the same for both items, no hover shows a number, no negative is shaded; the rater's text is the same too."""
    study, doc = hand_study
    w = StudyWindow(StudySession(study, "rita"))
    qtbot.addWidget(w)
    w.show()
    shown = []
    for _ in range(2):
        v = w.view
        qtbot.waitUntil(lambda: v.complete, timeout=5000)
        tips = [v.tooltip_at(p) for p in range(v.document().characterCount())]
        shown.append((v.toHtml(), tips))
        numbers = [t for t in tips if re.match(r"\s*[-+]?\d", t) or re.search(r"\d\.\d", t)]
        assert not numbers, numbers  # a hover names the token, never its value
        html = v.toHtml().lower()
        assert "#e5e5ff" not in html and not re.search(r"background-color:#(..)(..)ff", html)  # no blue shading
        w.rate("unsure")
    assert shown[0] == shown[1]
    _close(w)
    render = _renderer()
    a, b = (render.render_item(it) for it in doc["items"])
    assert a == b and not any(re.search(r"\d+\.\d", line) for line in a)
    text = render.render(doc)
    assert "4.00" not in text and "26" not in text and "max" not in text.lower().replace("maximum", "")


def test_the_key_is_kept_apart_and_runs_of_one_model_are_bounded(tiny_stores, tmp_path):
    """Defect 9: the folder a rater is handed has no key (and nothing names a model or a neuron); the key is in
    its own folder; the study order has no run of one model longer than MAX_RUN; items carry relative
    activations only."""
    study = new_study([tiny_stores["gelu"], tiny_stores["solu_ln"]], tmp_path / "s", StudyConfig(per_model=12, seed=3))
    handed = sorted(p.name for p in study.iterdir())
    assert "key.json" not in handed and not any("key" in n for n in handed), handed
    kp = key_path(study)
    assert kp.is_file() and study not in kp.parents
    key = load_key(study)
    order = [key["items"][it.item_id]["model"] for it in load_items(study)]
    runs = [len(list(g)) for _, g in __import__("itertools").groupby(order)]
    assert sorted(set(order)) == [0, 1] and max(runs) <= MAX_RUN, order
    raw = (study / "study.json").read_text()
    for word in ("gelu", "solu", "hook_", "blocks.", "run_uuid", "max_act", str(tiny_stores["gelu"])):
        assert word.lower() not in raw.lower(), word
    for it in load_items(study):
        acts = np.concatenate([np.asarray(s["acts"], float) for s in it.snippets])
        assert acts.min() >= 0 and acts.max() == pytest.approx(1.0)
    # every seed keeps runs bounded
    for seed in range(4):
        s = new_study([tiny_stores["gelu"], tiny_stores["solu_ln"]], tmp_path / f"r{seed}",
                      StudyConfig(per_model=12, seed=seed, snippets=2))
        k = load_key(s)
        order = [k["items"][it.item_id]["model"] for it in load_items(s)]
        assert max(len(list(g)) for _, g in __import__("itertools").groupby(order)) <= MAX_RUN


@pytest.mark.parametrize("name", sorted(p.name for p in DOCS.iterdir() if (p / "study.json.gz").is_file()))
def test_old_study_folders_still_open(qtbot, tmp_path, name):
    """docs/studies: study.json.gz with key.json beside it (the old layout) still loads, rates and renders."""
    import shutil

    study = tmp_path / name
    shutil.copytree(DOCS / name, study)
    items = load_items(study)
    key = load_key(study)
    assert len(items) >= 20 and set(key["items"]) == {it.item_id for it in items}
    w = StudyWindow(StudySession(study, "rita"))
    qtbot.addWidget(w)
    w.show()
    qtbot.waitUntil(lambda: w.view.complete, timeout=5000)
    assert f"Item 1 of {len(items)}" in w.progress.text() and w.view.token_spans
    assert max(sp.value for sp in w.view.token_spans) == pytest.approx(1.0)
    _close(w)
    with gzip.open(study / "study.json.gz", "rt", encoding="utf-8") as f:
        text = _renderer().render(json.load(f))
    assert text.count("=== item ") == len(items)
