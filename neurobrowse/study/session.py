"""Rating: ``StudySession`` (what the rating window drives: one rater's progress through the blinded
items) and ``rate_from_answers`` (scripted ratings from a CSV or JSON answers file).
"""

from __future__ import annotations

import csv
import json
import os
import time
from pathlib import Path
from typing import Callable
from store.labels.label import VERDICTS, default_author
from neurobrowse.study.folder import RULE, StudyError, StudyItem, load_items
from neurobrowse.study.ratings import RatingsDB


class StudySession:
    """One rater's pass through a study: the current item, rating, pause / resume, timing.

    Time per item counts from the moment the item is shown to the rating, minus paused time.
    Ratings are saved at once, so closing the window and starting again resumes at the first item
    this rater has not rated. ``clock`` is injectable for tests (default time.monotonic).
    """

    def __init__(self, study: str | os.PathLike, rater: str | None = None, *,
                 clock: Callable[[], float] = time.monotonic):
        self.study = Path(study)
        self.rater = (rater or default_author()).strip()
        if not self.rater:
            raise StudyError("a rater name is needed (--rater NAME)")
        self.items = load_items(self.study)
        self.rule = RULE
        self.db = RatingsDB(self.study)
        self.clock = clock
        done = self.db.latest(self.rater)
        self.ratings: dict[str, tuple[str, float | None]] = {iid: v for (_, iid), v in done.items()}
        self.paused = False
        self._pause_started = 0.0
        self._paused_total = 0.0
        self._shown_at = self.clock()
        self._undo: list[tuple[int, int, tuple[str, float | None] | None]] = []  # (row id, item index, previous)
        self.index = self._next_unrated(0)

    def _next_unrated(self, start: int) -> int:
        for i in range(start, len(self.items)):
            if self.items[i].item_id not in self.ratings:
                return i
        for i in range(0, start):
            if self.items[i].item_id not in self.ratings:
                return i
        return len(self.items)

    @property
    def finished(self) -> bool:
        return self.index >= len(self.items)

    def current(self) -> StudyItem | None:
        return None if self.finished else self.items[self.index]

    def progress(self) -> tuple[int, int]:
        """(items rated by this rater, items in the study)."""
        return len(self.ratings), len(self.items)

    def pause(self) -> None:
        if not self.paused:
            self.paused = True
            self._pause_started = self.clock()

    def resume(self) -> None:
        if self.paused:
            self.paused = False
            self._paused_total += self.clock() - self._pause_started

    def rate(self, verdict: str) -> StudyItem | None:
        """Rate the current item; returns the next item (None when done). Refused while paused."""
        if verdict not in VERDICTS:
            raise StudyError(f"unknown verdict {verdict!r}; use one of {', '.join(VERDICTS)}")
        if self.paused:
            raise StudyError("the study is paused; resume before rating")
        item = self.current()
        if item is None:
            raise StudyError("every item of this study is rated already")
        seconds = max(0.0, self.clock() - self._shown_at - self._paused_total)
        row = self.db.add_one(self.rater, item.item_id, verdict, seconds)
        self._undo.append((row, self.index, self.ratings.get(item.item_id)))
        self.ratings[item.item_id] = (verdict, seconds)
        self.index = self._next_unrated(self.index + 1)
        self._shown_at, self._paused_total = self.clock(), 0.0
        return self.current()

    @property
    def can_undo(self) -> bool:
        return bool(self._undo) and not self.paused

    def undo(self) -> StudyItem:
        """Take back this session's last rating (its row is deleted) and show that item again."""
        if self.paused:
            raise StudyError("the study is paused; resume before undoing a rating")
        if not self._undo:
            raise StudyError("there is no rating of this session to undo")
        row, index, previous = self._undo.pop()
        self.db.remove(row)
        item = self.items[index]
        if previous is None:
            self.ratings.pop(item.item_id, None)
        else:
            self.ratings[item.item_id] = previous
        self.index = index
        self._shown_at, self._paused_total = self.clock(), 0.0
        return item

    def close(self) -> None:
        self.db.close()


def rate_from_answers(study: str | os.PathLike, rater: str, answers: str | os.PathLike) -> int:
    """Scripted rating: ``answers`` is a CSV with columns item_id,verdict or a JSON object
    {item_id: verdict}. Every line is checked first; all are saved in one transaction or none.
    Returns the number of ratings saved."""
    answers = Path(answers)
    items = {it.item_id for it in load_items(study)}
    if not answers.is_file():
        raise StudyError(f"no answers file at {answers}")
    text = answers.read_text(encoding="utf-8")
    pairs: list[tuple[int, str, str]] = []
    if text.lstrip().startswith("{"):
        try:
            doc = json.loads(text)
        except ValueError as e:
            raise StudyError(f"{answers} is not valid JSON ({e}); nothing was saved") from None
        pairs = [(0, str(k), str(v)) for k, v in doc.items()]
    else:
        rows = list(csv.reader(text.splitlines()))
        if not rows or [c.strip() for c in rows[0][:2]] != ["item_id", "verdict"]:
            raise StudyError(f"{answers}, line 1: expected the header 'item_id,verdict'; nothing was saved")
        for lineno, row in enumerate(rows[1:], start=2):
            if not row:
                continue
            if len(row) != 2:
                raise StudyError(f"{answers}, line {lineno}: expected 2 fields, got {len(row)}; nothing was saved")
            pairs.append((lineno, row[0].strip(), row[1].strip()))
    out = []
    for lineno, iid, verdict in pairs:
        where = f"{answers}, line {lineno}" if lineno else f"{answers}, item {iid!r}"
        if iid not in items:
            raise StudyError(f"{where}: no item {iid!r} in this study; nothing was saved")
        if verdict not in VERDICTS:
            raise StudyError(f"{where}: unknown verdict {verdict!r} (use {', '.join(VERDICTS)}); nothing was saved")
        out.append((rater, iid, verdict, None))
    db = RatingsDB(study)
    try:
        db.add(out)
    finally:
        db.close()
    return len(out)
