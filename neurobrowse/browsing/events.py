"""Plain events: a browsing model tells its views what changed by calling their callbacks.

``Event.connect(fn)`` subscribes, ``Event.emit(*args)`` calls every subscriber in order, on the thread
that emits. The browsing model only emits from the thread its runner delivers results on (the GUI
thread in the app), so views never need locks. The Qt bridge (``neurobrowse.qt.bridge``) connects each
event to a Qt signal of the same name.
"""

from __future__ import annotations

from typing import Any, Callable


class Event:
    """A named list of callbacks."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._subscribers: list[Callable[..., Any]] = []

    def connect(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        self._subscribers.append(fn)
        return fn

    def disconnect(self, fn: Callable[..., Any]) -> None:
        self._subscribers.remove(fn)

    def emit(self, *args: Any) -> None:
        for fn in list(self._subscribers):
            fn(*args)

    def __repr__(self) -> str:
        return f"Event({self.name!r}, {len(self._subscribers)} subscriber(s))"


class Events:
    """A set of events named once: ``Events("a", "b").a.emit(...)``."""

    def __init__(self, *names: str) -> None:
        self.names = tuple(names)
        for n in names:
            setattr(self, n, Event(n))

    def __getitem__(self, name: str) -> Event:
        return getattr(self, name)
