import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("NUMBA_CACHE_DIR", os.path.join(os.path.dirname(__file__), "..", ".venv", "numba-cache"))

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _reported_studies_stay_in_their_test(tmp_path_factory):
    """`study report` records a study inside the stores it covers; the session's shared tiny stores must not
    carry one test's study into the next test's comparison."""
    yield
    for p in tmp_path_factory.getbasetemp().glob("tiny*/stores/*/reported_studies.json"):
        p.unlink(missing_ok=True)


# ---- real tiny artifacts (see tests/builders.py) -------------------------------------------------


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory):
    """A directory with a tiny real corpus (corpus/) and a fairly trained tiny pair (models/<act_fn>/)."""
    from tests.builders import build_tiny_models

    root = tmp_path_factory.mktemp("tiny")
    build_tiny_models(root)
    return root


@pytest.fixture(scope="session")
def tiny_stores(tiny_root):
    """{"gelu": Path, "solu_ln": Path}: recorded (~20k tokens) and indexed stores, built once per session."""
    from tests.builders import build_tiny_store

    return {a: build_tiny_store(tiny_root, a) for a in ("gelu", "solu_ln")}


@pytest.fixture(scope="module")
def gelu(tiny_stores):
    """The tiny GeLU store, opened."""
    from store.format.reader import Store

    return Store.open(tiny_stores["gelu"])


@pytest.fixture(scope="module")
def solu(tiny_stores):
    """The tiny SoLU-LN store, opened."""
    from store.format.reader import Store

    return Store.open(tiny_stores["solu_ln"])


# ---- app windows (pytest-qt): temp settings and labels, and a check that nothing keeps running ------------
import threading  # noqa: E402


@pytest.fixture
def settings(tmp_path, monkeypatch):
    """Settings in a temp INI file and labels in a temp database: tests never touch the user's."""
    monkeypatch.setenv("NEUROBROWSE_LABELS_DB", str(tmp_path / "labels.sqlite"))
    from PySide6.QtCore import QSettings

    return QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)


def _library_thread(t: threading.Thread) -> bool:
    # zarr's event loop and I/O pool threads are process-wide and reused; they are not ours to stop.
    # Dummy threads are Python's record of Qt pool threads (checked through the pools' activeThreadCount).
    return isinstance(t, threading._DummyThread) or t.daemon and (
        t.name.startswith(("ThreadPoolExecutor", "asyncio", "zarr")) or "loop" in t.name.lower())


@pytest.fixture
def windows(qtbot, settings):
    """Creates windows through ``make(cls, ...)``; closes them after the test and checks that nothing keeps
    running: no busy worker pool, no active timer, no new Python thread of ours."""
    from PySide6.QtCore import QTimer

    from neurobrowse.qt.tasks import live_runners

    made = []
    before = {t.ident for t in threading.enumerate()}

    def make(cls, *args, **kwargs):
        w = cls(*args, settings=settings, **kwargs)
        qtbot.addWidget(w)
        w.resize(1400, 900)
        w.show()
        made.append(w)
        return w

    yield make
    for w in made:
        timers = w.findChildren(QTimer)
        w.close()
        assert not [t for t in timers if t.isActive()], "a timer kept running after the window closed"
    for r in live_runners():
        assert r.pool.activeThreadCount() == 0, "a worker thread kept running after its window closed"
    new = [t for t in threading.enumerate() if t.ident not in before and t.is_alive() and not _library_thread(t)]
    assert not new, f"threads left running: {[t.name for t in new]}"
