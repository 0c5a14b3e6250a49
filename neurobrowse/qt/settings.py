"""What the app remembers between runs, in QSettings: recent stores and bookmarks per store.

Window geometry and splitter positions are saved by each window under its own prefix ("main/...",
"compare/..."). Tests point the app at a temporary INI file by passing their own QSettings.
"""

from __future__ import annotations

import json
from pathlib import Path

from PySide6.QtCore import QSettings

from neurobrowse.browsing.navigation import Bookmarks

MAX_RECENT = 10


def app_settings() -> QSettings:
    """The app's settings (INI under the user's config dir)."""
    return QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, "neurobrowse", "neurobrowse")


def _json_list(settings: QSettings, key: str) -> list:
    raw = settings.value(key, "[]")
    try:
        items = json.loads(raw) if isinstance(raw, str) else list(raw or [])
    except ValueError:
        items = []
    return items if isinstance(items, list) else []


def recent_stores(settings: QSettings) -> list[str]:
    return [str(p) for p in _json_list(settings, "recent_stores") if isinstance(p, str)]


def add_recent(settings: QSettings, path: str | Path) -> list[str]:
    path = str(Path(path).absolute())
    items = [p for p in recent_stores(settings) if p != path]
    items.insert(0, path)
    items = items[:MAX_RECENT]
    settings.setValue("recent_stores", json.dumps(items))
    return items


def load_bookmarks(settings: QSettings, run_uuid: str) -> Bookmarks:
    """A store's bookmarks (a damaged entry is skipped, not fatal)."""
    return Bookmarks.from_list(_json_list(settings, f"bookmarks/{run_uuid}"))


def save_bookmarks(settings: QSettings, run_uuid: str, bookmarks: Bookmarks) -> None:
    settings.setValue(f"bookmarks/{run_uuid}", json.dumps(bookmarks.to_list()))


def fit_screen(widget, width: int, height: int) -> tuple[int, int]:
    """A first window size: (width, height), made smaller where the screen is (a laptop's 1366 x 768)."""
    screen = widget.screen() if hasattr(widget, "screen") else None
    if screen is None:
        return width, height
    avail = screen.availableGeometry()
    return min(width, avail.width()), min(height, avail.height())
