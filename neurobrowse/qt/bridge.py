"""The one bridge between the Qt-free browsing model and Qt: each event becomes a Qt signal.

``BrowserBridge`` wraps a ``neurobrowse.browsing.Browser`` that runs its work on a ``TaskRunner`` (a Qt
thread pool whose results come back on the GUI thread) and re-emits each of the browser's events as
the Qt signal of the same name, so widgets connect to signals in their ``__init__`` as Qt widgets do.
Its other attributes are the browser's (``bridge.store``, ``bridge.select``): the browser owns the state
and the actions; the bridge adds only signals. ``ComparisonBridge`` does
the same for ``neurobrowse.browsing.CompareBrowser``.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from neurobrowse.browsing import EVENTS, Browser, CompareBrowser
from neurobrowse.qt.tasks import TaskRunner


class BrowserBridge(QObject):
    """Qt signals for one ``Browser`` (see its module docstring for what each one carries)."""

    storeOpened = Signal(object)
    labelsReady = Signal(object)
    statusChanged = Signal(str)
    hookChanged = Signal(str)
    tableReady = Signal(str, object)
    filterApplied = Signal(object)
    sortChanged = Signal(str, bool)
    neuronChanged = Signal(object)
    pageReady = Signal(object)
    historyChanged = Signal(bool, bool)
    bookmarksChanged = Signal()
    labelsChanged = Signal(str)
    liveReady = Signal(object)
    liveStateChanged = Signal(str)
    errorRaised = Signal(str, str)
    busyChanged = Signal(bool)  # from the runner: work started / all work done

    def __init__(self, parent: QObject | None = None, prefetch: bool = True, labels: bool = True) -> None:
        super().__init__(parent)
        tasks = TaskRunner(self)
        self.session = Browser(tasks, prefetch=prefetch, labels=labels)
        for name in EVENTS:
            self.session.events[name].connect(getattr(self, name).emit)
        tasks.busyChanged.connect(self.busyChanged)
        tasks.failed.connect(lambda kind, exc, tb: self.session._error(f"{kind} failed", exc, tb))

    def __getattr__(self, name: str):  # anything not forwarded below
        session = self.__dict__.get("session")
        if session is None:
            raise AttributeError(name)
        return getattr(session, name)


def _forward(cls, names: tuple[str, ...]) -> None:
    """Class-level properties reading (and setting) the session's attribute: a failed attribute lookup on a
    QObject costs ~20 us before ``__getattr__`` runs, and widgets read these on every page."""
    for name in names:
        setattr(cls, name, property(lambda self, n=name: getattr(self.session, n),
                                    lambda self, value, n=name: setattr(self.session, n, value)))


_forward(BrowserBridge, (
    "store", "indexed", "hook", "ref", "page", "tables", "label_model", "labels", "filter", "mask", "sort_key",
    "sort_desc", "history", "bookmarks", "prefetch", "tasks", "live_text", "open_store", "set_hook", "table",
    "label_column", "set_labels", "set_filter", "set_sort", "sort_ranks", "visible_order", "select", "step_neuron",
    "step_layer", "toggle_ln_side", "back", "forward", "set_bookmarks", "toggle_bookmark", "checkpoint_dir",
    "set_checkpoint", "run_live", "search_highlights", "request_passage", "shutdown",
))


class ComparisonBridge(QObject):
    """Qt signals for a ``CompareBrowser``; its two sides are BrowserBridges (``sides``)."""

    ready = Signal(object)  # neurobrowse.compare.Comparison
    errorRaised = Signal(str, str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.sides = (BrowserBridge(self), BrowserBridge(self))
        self.session = CompareBrowser((self.sides[0].session, self.sides[1].session), TaskRunner(self))
        self.session.events.ready.connect(self.ready.emit)
        self.session.events.errorRaised.connect(self.errorRaised.emit)

    def __getattr__(self, name: str):
        session = self.__dict__.get("session")
        if session is None:
            raise AttributeError(name)
        return getattr(session, name)
