"""STUDY/ratings.sqlite: every rating (rater, item id, verdict, seconds spent, time), append-only, the
latest per rater and item counting; SQLite (WAL, BEGIN IMMEDIATE) so several raters rate at once.
"""

from __future__ import annotations

import os
import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from neurobrowse.study.folder import StudyError


# ---- ratings ---------------------------------------------------------------------------------------
class RatingsDB:
    """STUDY/ratings.sqlite: append-only ratings, the latest per (rater, item) counts."""

    def __init__(self, study: str | os.PathLike, busy_timeout_s: float = 10.0):
        self.path = Path(study) / "ratings.sqlite"
        self.conn = sqlite3.connect(self.path, timeout=busy_timeout_s, isolation_level=None)
        try:
            self.conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
            self.conn.execute("PRAGMA journal_mode = WAL")
            self.conn.execute("PRAGMA synchronous = FULL")
            self.conn.execute(
                "CREATE TABLE IF NOT EXISTS ratings (id INTEGER PRIMARY KEY AUTOINCREMENT, rater TEXT NOT NULL, "
                "item_id TEXT NOT NULL, verdict TEXT NOT NULL CHECK (verdict IN ('interpretable', "
                "'not_interpretable', 'unsure')), seconds REAL, time TEXT NOT NULL)")
        except sqlite3.Error as e:
            self.conn.close()
            raise StudyError(f"the ratings database {self.path} cannot be used: {e}") from None

    def add(self, rows: list[tuple[str, str, str, float | None]]) -> None:
        """Append (rater, item_id, verdict, seconds) rows in one transaction (all or nothing)."""
        now = datetime.now(timezone.utc).isoformat(timespec="microseconds")
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                self.conn.executemany("INSERT INTO ratings (rater, item_id, verdict, seconds, time) VALUES (?,?,?,?,?)",
                                      [(*r, now) for r in rows])
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as e:
            what = "stayed locked by another rater" if "locked" in str(e) else f"failed ({e})"
            raise StudyError(f"saving ratings to {self.path} {what}; nothing of this step was saved, "
                             "retry") from None

    def add_one(self, rater: str, item_id: str, verdict: str, seconds: float | None) -> int:
        """Append one rating; returns its row id (what ``remove`` takes to undo it)."""
        self.add([(rater, item_id, verdict, seconds)])
        row = self.conn.execute("SELECT max(id) FROM ratings WHERE rater = ? AND item_id = ?", (rater, item_id))
        return int(row.fetchone()[0])

    def remove(self, row_id: int) -> None:
        """Delete one rating row (undo): the rater's previous rating of that item, if any, counts again."""
        try:
            self.conn.execute("DELETE FROM ratings WHERE id = ?", (int(row_id),))
        except sqlite3.Error as e:
            raise StudyError(f"undoing a rating in {self.path} failed ({e}); retry") from None

    def latest(self, rater: str | None = None) -> dict[tuple[str, str], tuple[str, float | None]]:
        """{(rater, item_id): (verdict, seconds)} of the latest rating of each."""
        sql = ("SELECT rater, item_id, verdict, seconds FROM ratings r WHERE id = (SELECT max(id) FROM ratings "
               "WHERE rater = r.rater AND item_id = r.item_id)")
        args: tuple = ()
        if rater is not None:
            sql += " AND rater = ?"
            args = (rater,)
        return {(a, b): (v, s) for a, b, v, s in self.conn.execute(sql, args).fetchall()}

    def raters(self) -> list[str]:
        return [r for (r,) in self.conn.execute("SELECT DISTINCT rater FROM ratings ORDER BY rater")]

    def close(self) -> None:
        self.conn.close()


def latest_ratings(study) -> dict[tuple[str, str], tuple[str, float | None]]:
    """``RatingsDB(study).latest()``, the database opened and closed again: {(rater, item_id): (verdict, seconds)}."""
    db = RatingsDB(study)
    try:
        return db.latest()
    finally:
        db.close()
