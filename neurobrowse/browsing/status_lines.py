"""What the window says about a store: its title, its status line and its problems.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable
from neurobrowse.formatting import human_bytes


def store_title(store) -> str:
    act = store.model_config.get("act_fn", "?")
    return f"{Path(store.path).name} · {act} · {store.n_tokens:,} tokens"


def store_status(store, size_bytes: int | None = None, indexed: Iterable[str] | None = None) -> str:
    """One line for the status bar: size, completeness, which hooks are indexed (``indexed``: as already
    read, so the GUI thread does not read the index state from disk)."""
    indexed = [h for h in store.hooks if store.is_indexed(h)] if indexed is None else list(indexed)
    parts = [store_title(store)]
    if size_bytes is not None:
        parts.append(human_bytes(size_bytes))
    parts.append("complete" if store.complete else "INCOMPLETE recording")
    parts.append(f"{len(indexed)}/{len(store.hooks)} hooks indexed")
    return " · ".join(parts)


def store_problems(store) -> list[str]:
    """Problems worth a dialog on open, each saying how to fix it."""
    out = []
    if not store.complete:
        resume = getattr(store, "resume_command", None)
        how = f"`{resume()}`" if callable(resume) else "`neurobrowse record` again with the same arguments"
        out.append(f"The recording in {store.path} is incomplete (it was interrupted). "
                   f"Run {how} to resume it, then `neurobrowse index {store.path}`. Until then only what is "
                   "already indexed can be browsed.")
    missing = [h for h in store.hooks if not store.is_indexed(h)]
    if missing and store.complete:
        out.append(f"{', '.join(missing)} not indexed yet: run `neurobrowse index {store.path}`.")
    return out
