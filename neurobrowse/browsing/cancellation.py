"""Request cancellation: every disk or model access runs in a worker; a newer request of the same kind
cancels the older one, and a result that arrives for a superseded request is dropped. The Qt layer
only marshals results to the GUI thread; the bookkeeping is here so it can be tested without Qt.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field
from typing import Any


class Cancelled(Exception):
    """Raised inside a worker that notices its request was superseded; never shown to the user."""


@dataclass
class Request:
    """One unit of background work. ``cancelled`` is set when a newer request of the same kind starts."""

    kind: str  # "open", "table", "neuron", "live", "search", ...
    id: int
    payload: Any = None
    cancelled: threading.Event = field(default_factory=threading.Event)

    def check(self) -> None:
        """Call between steps of long work: stops a superseded request early."""
        if self.cancelled.is_set():
            raise Cancelled(f"{self.kind} request {self.id} superseded")


class LatestRequests:
    """Hands out requests; only the newest of each kind is current. Thread-safe."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._latest: dict[str, Request] = {}
        self._lock = threading.Lock()

    def new(self, kind: str, payload: Any = None) -> Request:
        with self._lock:
            old = self._latest.get(kind)
            if old is not None:
                old.cancelled.set()
            req = Request(kind, next(self._ids), payload)
            self._latest[kind] = req
            return req

    def is_current(self, req: Request) -> bool:
        with self._lock:
            cur = self._latest.get(req.kind)
            return cur is not None and cur.id == req.id and not req.cancelled.is_set()

    def pending(self) -> list[str]:
        """Kinds whose newest request has not finished yet (for the status bar)."""
        with self._lock:
            return sorted(k for k, r in self._latest.items() if not r.cancelled.is_set())

    def done(self, req: Request) -> None:
        """Mark a request finished; it stays current (so its result is accepted) but no longer pending."""
        with self._lock:
            if self._latest.get(req.kind) is req:
                del self._latest[req.kind]

    def cancel_all(self) -> None:
        with self._lock:
            for r in self._latest.values():
                r.cancelled.set()
            self._latest.clear()
