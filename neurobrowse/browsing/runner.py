"""Where a browsing model's work runs.

Every store, label-database or model access of a browsing model goes through ``runner.submit(kind,
work, done, failed)``: ``work(req)`` runs off the GUI thread, ``done(result)`` / ``failed(exc, tb)``
come back on it, and a newer submit of the same kind supersedes an older one (``LatestRequests``:
a superseded job does not start, a running one can stop at ``req.check()``, a late result is
dropped). The app's runner is ``neurobrowse.qt.tasks.TaskRunner`` (a Qt thread pool);
``InlineRunner`` runs each job at once on the calling thread, for scripts and headless tests.
"""

from __future__ import annotations

import traceback
from typing import Any, Callable, Protocol

from neurobrowse.browsing.cancellation import Cancelled, LatestRequests, Request

Done = Callable[[Any], None]
Failed = Callable[[BaseException, str], None]


class Runner(Protocol):
    requests: LatestRequests

    def submit(self, kind: str, fn: Callable[[Request], Any], on_done: Done | None = None,
               on_error: Failed | None = None, payload: Any = None) -> Request: ...

    def busy(self) -> bool: ...

    def shutdown(self) -> bool: ...


class InlineRunner:
    """Runs every job immediately on the calling thread. Results and errors are delivered as the app's
    runner delivers them (an error without ``on_error`` is re-raised)."""

    def __init__(self) -> None:
        self.requests = LatestRequests()
        self._closed = False
        self._running = 0

    def submit(self, kind: str, fn: Callable[[Request], Any], on_done: Done | None = None,
               on_error: Failed | None = None, payload: Any = None) -> Request:
        req = self.requests.new(kind, payload)
        if self._closed:
            req.cancelled.set()
            return req
        self._running += 1
        try:
            result = fn(req)
        except Cancelled:
            return req
        except Exception as e:  # noqa: BLE001 - delivered like the app's runner delivers it
            if self.requests.is_current(req):
                self.requests.done(req)
                if on_error is None:
                    raise
                on_error(e, traceback.format_exc())
            return req
        finally:
            self._running -= 1
        if self.requests.is_current(req):
            self.requests.done(req)
            if on_done is not None:
                on_done(result)
        return req

    def busy(self) -> bool:
        return self._running > 0

    def shutdown(self) -> bool:
        self._closed = True
        self.requests.cancel_all()
        return True
