"""Background work for the app: a QThreadPool whose results come back on the GUI thread.

Every disk or model access goes through ``TaskRunner.submit(kind, fn)``. A newer submit of the same
kind cancels the older request (``neurobrowse.browsing.cancellation.LatestRequests``): a queued job that was
superseded never runs, a running one can stop at its next ``req.check()``, and a result that arrives
for a superseded request is dropped. ``fn(req)`` runs in a pool thread; ``on_done(result)`` /
``on_error(exc)`` run on the GUI thread through a queued signal.
"""

from __future__ import annotations

import sys
import traceback
import weakref
from typing import Any, Callable

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

from neurobrowse.browsing.cancellation import Cancelled, LatestRequests, Request

_RUNNERS: "weakref.WeakSet[TaskRunner]" = weakref.WeakSet()


def live_runners() -> list["TaskRunner"]:
    """Runners that still exist (tests check none of them has a thread running after a window closes)."""
    from shiboken6 import isValid

    return [r for r in list(_RUNNERS) if isValid(r) and isValid(r.pool)]


class _Relay(QObject):
    """Lives on the GUI thread; worker threads emit through it (a queued connection)."""

    # one tuple (request, result, exception, traceback text): a single object per queued emit keeps
    # None out of PySide's cross-thread argument conversion
    finished = Signal(object)


class _Job(QRunnable):
    def __init__(self, req: Request, fn: Callable[[Request], Any], relay: _Relay) -> None:
        super().__init__()
        self.setAutoDelete(True)
        self.req, self.fn, self.relay = req, fn, relay

    def run(self) -> None:  # a pool thread
        if self.req.cancelled.is_set():
            self.relay.finished.emit((self.req, None, Cancelled(), ""))
            return
        try:
            result = self.fn(self.req)
        except BaseException as e:  # noqa: BLE001 - every failure is reported on the GUI thread
            self.relay.finished.emit((self.req, None, e, traceback.format_exc()))
        else:
            self.relay.finished.emit((self.req, result, None, ""))


GIL_SWITCH_INTERVAL = 0.001  # seconds; Python's default 0.005 makes the GUI thread wait behind workers


def tune_gil_for_gui() -> None:
    """A GUI thread that shares the GIL with workers waits up to one switch interval each time a worker
    holds it (handing a job to a pool thread measured ~5 ms per submit at the default 5 ms). The app
    runs with a 1 ms interval: the workers lose a little throughput, the event loop stays responsive."""
    if sys.getswitchinterval() > GIL_SWITCH_INTERVAL:
        sys.setswitchinterval(GIL_SWITCH_INTERVAL)


class TaskRunner(QObject):
    """Runs callables off the GUI thread; newest request of a kind wins.

    Signals: ``busyChanged(bool)`` when work starts/stops (status bar spinner),
    ``failed(kind, exception, traceback_text)`` for errors without an on_error callback.
    """

    busyChanged = Signal(bool)
    failed = Signal(str, object, str)

    def __init__(self, parent: QObject | None = None, max_threads: int = 2) -> None:
        super().__init__(parent)
        tune_gil_for_gui()
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(max_threads)
        self.pool.setExpiryTimeout(-1)  # keep the threads: starting one costs milliseconds per request
        self.requests = LatestRequests()
        self._relay = _Relay(self)
        self._relay.finished.connect(self._finished)
        self._callbacks: dict[int, tuple[Callable | None, Callable | None]] = {}
        self._jobs: dict[int, _Job] = {}  # keeps the Python side of queued runnables alive
        self._closed = False
        _RUNNERS.add(self)

    def submit(self, kind: str, fn: Callable[[Request], Any], on_done: Callable[[Any], None] | None = None,
               on_error: Callable[[BaseException, str], None] | None = None, payload: Any = None) -> Request:
        req = self.requests.new(kind, payload)
        if self._closed:
            req.cancelled.set()
            return req
        was_busy = bool(self._jobs)
        self._callbacks[req.id] = (on_done, on_error)
        job = _Job(req, fn, self._relay)
        self._jobs[req.id] = job
        self.pool.start(job)
        if not was_busy:
            self.busyChanged.emit(True)
        return req

    def busy(self) -> bool:
        return bool(self._jobs)

    def _finished(self, msg: tuple) -> None:  # GUI thread
        req, result, exc, tb = msg
        self._jobs.pop(req.id, None)
        on_done, on_error = self._callbacks.pop(req.id, (None, None))
        current = self.requests.is_current(req)
        if current:
            self.requests.done(req)
        if not self._jobs:
            self.busyChanged.emit(False)
        if self._closed or not current or isinstance(exc, Cancelled):
            return  # superseded: a newer request of this kind owns the screen now
        if exc is not None:
            if on_error is not None:
                on_error(exc, tb)
            else:
                self.failed.emit(req.kind, exc, tb)
        elif on_done is not None:
            on_done(result)

    def shutdown(self, timeout_ms: int = 30000) -> bool:
        """Cancel everything, wait for running jobs, stop the pool's threads. Call before closing a window."""
        self._closed = True
        self.requests.cancel_all()
        self.pool.clear()  # drop queued jobs that never started
        ok = self.pool.waitForDone(timeout_ms)
        self._jobs.clear()
        self._callbacks.clear()
        return ok
