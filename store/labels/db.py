"""Neuron labels in SQLite: an append-only event log plus the current label per neuron.

Why SQLite and not a JSON file: several processes (the app, CLI calls, several app windows) write
labels at once. In WAL mode with ``BEGIN IMMEDIATE`` and a busy timeout, SQLite serialises the
writers and keeps every write (800 of 800 from 4 processes, tests/test_labels.py); a JSON file with
an atomic rename kept 206 of 800 in the same measurement. ``synchronous=FULL`` makes a
committed label survive a power cut, not only a killed process.

A label is keyed by ``(run_uuid, hook, layer, neuron)``: the store's run UUID pins it to one
recording of one model, so a label can never attach to a neuron of another model. ``hook`` is the
full TransformerLens name (``blocks.0.mlp.hook_post``); ``layer`` is derived from it.

Tables (schema version ``LABELS_SCHEMA_VERSION``, kept in ``PRAGMA user_version``)::

    events   append-only (triggers refuse UPDATE and DELETE): one row per change, full history.
             verdict NULL means "label cleared".
    current  (run_uuid, hook, layer, neuron) -> event_id of the label in force.
    labels   a view joining the two: the current labels.

Migrations run in one ``BEGIN IMMEDIATE`` transaction after a rotated backup of the old file made
through the sqlite3 backup API (consistent even while another process writes). A database written
by a newer neurobrowse (user_version above ours) is refused, never touched.

The database lives in the user data directory (platformdirs) unless ``NEUROBROWSE_LABELS_DB`` or an
explicit path says otherwise. This module imports nothing above ``store`` (no Qt, no torch).
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import threading
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable
from store.format import atomic
from store.labels.label import (
    BACKUPS_KEPT, DEFAULT_BUSY_TIMEOUT_S, ENV_DB, LABELS_SCHEMA_VERSION, Label, LabelDatabaseError, VERDICTS,
    _layer_of, check_verdict, default_author, default_db_path, normalize_tags, now_iso, validate_against_store,
)


# ---- schema and migrations -------------------------------------------------------------------------
_VERDICT_CHECK = "verdict IS NULL OR verdict IN (" + ", ".join(f"'{v}'" for v in VERDICTS) + ")"


# MIGRATIONS[v] takes a database at user_version v-1 to v. Never edit a released step; add one.
MIGRATIONS: dict[int, list[str]] = {
    1: [
        f"""CREATE TABLE events (
            id          INTEGER PRIMARY KEY AUTOINCREMENT,
            run_uuid    TEXT    NOT NULL,
            hook        TEXT    NOT NULL,
            layer       INTEGER NOT NULL,
            neuron      INTEGER NOT NULL,
            verdict     TEXT    CHECK ({_VERDICT_CHECK}),
            description TEXT    NOT NULL DEFAULT '',
            tags        TEXT    NOT NULL DEFAULT '[]',   -- JSON list of strings, sorted
            notes       TEXT    NOT NULL DEFAULT '',
            author      TEXT    NOT NULL DEFAULT '',
            time        TEXT    NOT NULL                 -- ISO 8601 UTC
        )""",
        """CREATE TABLE current (
            run_uuid TEXT NOT NULL, hook TEXT NOT NULL, layer INTEGER NOT NULL, neuron INTEGER NOT NULL,
            event_id INTEGER NOT NULL REFERENCES events(id),
            PRIMARY KEY (run_uuid, hook, layer, neuron)
        ) WITHOUT ROWID""",
        """CREATE TRIGGER events_append_only_update BEFORE UPDATE ON events
           BEGIN SELECT RAISE(ABORT, 'label events are append-only'); END""",
        """CREATE TRIGGER events_append_only_delete BEFORE DELETE ON events
           BEGIN SELECT RAISE(ABORT, 'label events are append-only'); END""",
        """CREATE VIEW labels AS SELECT e.* FROM current c JOIN events e ON e.id = c.event_id""",
    ],
    2: [
        # v2: record which tool wrote an event, and find a neuron's history without a table scan
        "ALTER TABLE events ADD COLUMN source TEXT NOT NULL DEFAULT ''",
        "CREATE INDEX events_by_neuron ON events (run_uuid, hook, neuron, id)",
        "DROP VIEW labels",
        "CREATE VIEW labels AS SELECT e.* FROM current c JOIN events e ON e.id = c.event_id",
    ],
}


assert max(MIGRATIONS) == LABELS_SCHEMA_VERSION


_COLUMNS = "id, run_uuid, hook, layer, neuron, verdict, description, tags, notes, author, time, source"


def _row_to_label(row: tuple) -> Label:
    (eid, run_uuid, hook, _layer, neuron, verdict, description, tags, notes, author, time, source) = row
    return Label(run_uuid=run_uuid, hook=hook, neuron=neuron, verdict=verdict, description=description,
                 tags=tuple(json.loads(tags)), notes=notes, author=author, time=time, source=source,
                 event_id=eid)


def _is_disk_full(e: BaseException) -> bool:
    if isinstance(e, OSError) and e.errno == errno.ENOSPC:
        return True
    return isinstance(e, sqlite3.Error) and ("disk is full" in str(e) or getattr(e, "sqlite_errorcode", 0) == 13)


def _is_read_only(e: BaseException) -> bool:
    if isinstance(e, OSError) and e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return True
    text = str(e).lower()
    return isinstance(e, sqlite3.Error) and ("readonly" in text or "read-only" in text
                                             or getattr(e, "sqlite_errorcode", 0) in (8, 14))


def _is_locked(e: BaseException) -> bool:
    return isinstance(e, sqlite3.OperationalError) and ("locked" in str(e) or "busy" in str(e))


class LabelDB:
    """The label database. One instance per process (or per thread with its own instance).

    >>> db = LabelDB()                                  # default location
    >>> db.set_label(run_uuid, "blocks.0.mlp.hook_post", 17, verdict="interpretable",
    ...              description="closing parentheses", tags=["syntax"])
    >>> db.get(run_uuid, "blocks.0.mlp.hook_post", 17).verdict
    'interpretable'

    Every write is one ``BEGIN IMMEDIATE`` transaction: all of it lands or none of it.
    Errors are LabelDatabaseError (locked too long, disk full, newer schema, damaged) or
    LabelError (bad input); both carry a message naming the file and what to do.
    """

    def __init__(self, path: str | os.PathLike | None = None, *, busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S,
                 author: str | None = None):
        self.path = Path(path).expanduser() if path is not None else default_db_path()
        self.busy_timeout_s = float(busy_timeout_s)
        self.author = author or default_author()
        self._lock = threading.RLock()  # one connection, shared by threads one at a time
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise self._translate(e, "creating the folder of") from None
        try:
            self.conn = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None,
                                        check_same_thread=False)
        except sqlite3.Error as e:
            raise self._translate(e, "opening") from None
        try:
            self._configure()
            self._migrate()
        except BaseException:
            self.conn.close()
            raise

    # ---- connection set-up -------------------------------------------------------------------------
    def _configure(self) -> None:
        try:
            self.conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")
            mode = self.conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise LabelDatabaseError(f"could not switch {self.path} to WAL mode (got {mode!r}); "
                                         "is it on a network file system? Use a local path (--db).")
            self.conn.execute("PRAGMA synchronous = FULL")
            self.conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as e:
            raise self._translate(e, "opening") from None

    def schema_version(self) -> int:
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        v = self._version_checked()
        if v == LABELS_SCHEMA_VERSION:
            return
        if v > 0:
            # The backup API cannot read from a connection inside its own write transaction, so the
            # backup comes first; a write landing in between is in the database, just not the backup.
            with self._lock:
                self._backup_locked(reason=f"v{v}")

        def step(conn: sqlite3.Connection) -> None:
            cur_v = int(conn.execute("PRAGMA user_version").fetchone()[0])  # re-read under the write lock
            self._refuse_newer(cur_v)
            for target in range(cur_v + 1, LABELS_SCHEMA_VERSION + 1):
                for sql in MIGRATIONS[target]:
                    conn.execute(sql)
            conn.execute(f"PRAGMA user_version = {LABELS_SCHEMA_VERSION}")

        self._write(step, what="upgrading")

    def _version_checked(self) -> int:
        try:
            v = self.schema_version()
        except sqlite3.Error as e:
            raise self._translate(e, "reading") from None
        self._refuse_newer(v)
        return v

    def _refuse_newer(self, v: int) -> None:
        if v > LABELS_SCHEMA_VERSION:
            raise LabelDatabaseError(
                f"the label database {self.path} has schema version {v}, written by a newer neurobrowse; "
                f"this one reads up to version {LABELS_SCHEMA_VERSION}. Upgrade neurobrowse, or point --db "
                f"(or ${ENV_DB}) at another file. The database was not changed."
            )

    # ---- transactions and errors -------------------------------------------------------------------
    def _translate(self, e: BaseException, doing: str) -> LabelDatabaseError:
        if _is_disk_full(e):
            return LabelDatabaseError(
                f"the disk is full while {doing} the label database {self.path}: this change was rolled "
                "back and the labels written before are intact. Free some space and run it again."
            )
        if _is_locked(e):
            return LabelDatabaseError(
                f"the label database {self.path} stayed locked by another process for more than "
                f"{self.busy_timeout_s:g} s while {doing} it (another neurobrowse window or command, or a "
                "stuck process). Nothing was written; close the other writer or retry (--busy-timeout)."
            )
        if _is_read_only(e):
            return LabelDatabaseError(
                f"the label database {self.path} cannot be written while {doing} it ({e}): the file or its folder "
                f"is read-only. Nothing was changed; make it writable, or point --db (or ${ENV_DB}) at another file.")
        return LabelDatabaseError(f"the label database {self.path} cannot be used while {doing} it: {e}. "
                                  "If it is damaged, restore a file from its backups/ folder.")

    def _write(self, fn: Callable[[sqlite3.Connection], Any], what: str = "writing") -> Any:
        """Run fn inside BEGIN IMMEDIATE ... COMMIT; roll back and translate any failure."""
        with self._lock:
            try:
                self.conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as e:
                raise self._translate(e, what) from None
            try:
                out = fn(self.conn)
                self.conn.execute("COMMIT")
                return out
            except BaseException as e:
                if self.conn.in_transaction:
                    try:
                        self.conn.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass  # the transaction may already be gone (SQLITE_FULL rolls back itself)
                if isinstance(e, (sqlite3.Error, OSError)):
                    raise self._translate(e, what) from None
                raise

    def _read(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run fn in one read transaction: every SELECT in it sees the same snapshot (WAL)."""
        with self._lock:
            try:
                self.conn.execute("BEGIN")
                try:
                    return fn(self.conn)
                finally:
                    if self.conn.in_transaction:
                        self.conn.execute("COMMIT")
            except sqlite3.Error as e:
                raise self._translate(e, "reading") from None

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    def __enter__(self) -> "LabelDB":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- writing -----------------------------------------------------------------------------------
    def _append(self, conn: sqlite3.Connection, lab: Label) -> Label:
        check_verdict(lab.verdict, allow_none=True)
        cur = conn.execute(
            "INSERT INTO events (run_uuid, hook, layer, neuron, verdict, description, tags, notes, author, time,"
            " source) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (lab.run_uuid, lab.hook, lab.layer, lab.neuron, lab.verdict, lab.description,
             json.dumps(list(lab.tags)), lab.notes, lab.author, lab.time, lab.source),
        )
        eid = int(cur.lastrowid)
        if lab.verdict is None:
            conn.execute("DELETE FROM current WHERE run_uuid=? AND hook=? AND layer=? AND neuron=?",
                         (lab.run_uuid, lab.hook, lab.layer, lab.neuron))
        else:
            conn.execute(
                "INSERT INTO current (run_uuid, hook, layer, neuron, event_id) VALUES (?,?,?,?,?) "
                "ON CONFLICT (run_uuid, hook, layer, neuron) DO UPDATE SET event_id = excluded.event_id",
                (lab.run_uuid, lab.hook, lab.layer, lab.neuron, eid),
            )
        return replace(lab, event_id=eid)

    def _new_label(self, run_uuid: str, hook: str, neuron: int, verdict: str | None, description: str,
                   tags: Iterable[str], notes: str, author: str | None, time: str | None, source: str,
                   store: Any) -> Label:
        check_verdict(verdict, allow_none=True)
        lab = Label(run_uuid=run_uuid, hook=hook, neuron=neuron, verdict=verdict,
                    description=(description or "").strip(), tags=tuple(tags or ()), notes=notes or "",
                    author=author or self.author, time=time or now_iso(), source=source)
        if store is not None:
            validate_against_store(store, lab.run_uuid, lab.hook, lab.neuron)
        return lab

    def set_label(self, run_uuid: str, hook: str, neuron: int, *, verdict: str, description: str = "",
                  tags: Iterable[str] = (), notes: str = "", author: str | None = None, time: str | None = None,
                  source: str = "cli", store: Any = None) -> Label:
        """Set (replace) the label of one neuron; returns it with its event_id. With ``store``,
        refuses a neuron/hook the store does not have or a run UUID that is not the store's."""
        check_verdict(verdict)
        lab = self._new_label(run_uuid, hook, neuron, verdict, description, tags, notes, author, time, source, store)
        return self._write(lambda conn: self._append(conn, lab))

    def clear_label(self, run_uuid: str, hook: str, neuron: int, *, author: str | None = None,
                    source: str = "cli") -> Label:
        """Remove the current label (history keeps it, and an event with verdict None records the clear)."""
        lab = self._new_label(run_uuid, hook, neuron, None, "", (), "", author, None, source, None)
        return self._write(lambda conn: self._append(conn, lab))

    def set_many(self, labels: Iterable[Label], *, source: str | None = None, skip_unchanged: bool = True,
                 store: Any = None) -> int:
        """Write many labels in ONE transaction (all or nothing). Author and time are kept as given
        (an import restores them); a label whose content equals the current one is skipped, so
        importing the same file twice adds nothing. Returns the number of events written."""
        labels = list(labels)
        for lab in labels:
            check_verdict(lab.verdict, allow_none=True)
            if store is not None:
                validate_against_store(store, lab.run_uuid, lab.hook, lab.neuron)

        def fn(conn: sqlite3.Connection) -> int:
            n = 0
            for lab in labels:
                if skip_unchanged:
                    cur = self._get(conn, lab.run_uuid, lab.hook, lab.neuron)
                    if (cur.content() if cur else (None, "", (), "")) == lab.content():
                        continue
                fixed = replace(lab, event_id=0, author=lab.author or self.author, time=lab.time or now_iso(),
                                source=source if source is not None else lab.source)
                self._append(conn, fixed)
                n += 1
            return n

        return self._write(fn, what="importing into")

    # ---- reading -----------------------------------------------------------------------------------
    @staticmethod
    def _get(conn: sqlite3.Connection, run_uuid: str, hook: str, neuron: int) -> Label | None:
        # one primary-key lookup in `current` (layer is part of its key), then one row of `events`: a
        # query on the `labels` view without the layer scanned the run's labels, so an import into a
        # database of 50k events took 4.5x as long as into an empty one
        cols = ", ".join(f"e.{c.strip()}" for c in _COLUMNS.split(","))
        row = conn.execute(f"SELECT {cols} FROM current c JOIN events e ON e.id = c.event_id "
                           "WHERE c.run_uuid=? AND c.hook=? AND c.layer=? AND c.neuron=?",
                           (run_uuid, hook, _layer_of(hook), int(neuron))).fetchone()
        return _row_to_label(row) if row else None

    def get(self, run_uuid: str, hook: str, neuron: int) -> Label | None:
        """The current label of a neuron, or None."""
        return self._read(lambda conn: self._get(conn, run_uuid, hook, neuron))

    def labels(self, run_uuid: str | None = None, *, hook: str | None = None, layers: Iterable[int] | None = None,
               verdicts: Iterable[str] | None = None, tags: Iterable[str] | None = None) -> list[Label]:
        """Current labels, filtered; one read transaction (a consistent snapshot). ``tags``: a label
        matches when it has ANY of them. Sorted by run, hook, neuron."""
        where, args = [], []
        if run_uuid is not None:
            where.append("run_uuid = ?")
            args.append(run_uuid)
        if hook is not None:
            where.append("hook = ?")
            args.append(hook)
        if layers is not None:
            layers = [int(x) for x in layers]
            where.append(f"layer IN ({','.join('?' * len(layers))})")
            args += layers
        if verdicts is not None:
            verdicts = list(verdicts)
            for v in verdicts:
                check_verdict(v)
            where.append(f"verdict IN ({','.join('?' * len(verdicts))})")
            args += verdicts
        sql = f"SELECT {_COLUMNS} FROM labels" + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY run_uuid, hook, neuron"
        rows = self._read(lambda conn: conn.execute(sql, args).fetchall())
        out = [_row_to_label(r) for r in rows]
        if tags is not None:
            want = set(normalize_tags(tags))
            out = [lab for lab in out if want & set(lab.tags)]
        return out

    def snapshot(self, run_uuid: str) -> dict[tuple[str, int], Label]:
        """All current labels of one store, ``{(hook, neuron): Label}``, read in one transaction."""
        return {(lab.hook, lab.neuron): lab for lab in self.labels(run_uuid)}

    def history(self, run_uuid: str, hook: str, neuron: int) -> list[Label]:
        """Every event of one neuron, oldest first (cleared labels have verdict None)."""
        rows = self._read(lambda conn: conn.execute(
            f"SELECT {_COLUMNS} FROM events WHERE run_uuid=? AND hook=? AND neuron=? ORDER BY id",
            (run_uuid, hook, int(neuron))).fetchall())
        return [_row_to_label(r) for r in rows]

    def all_tags(self, run_uuid: str | None = None) -> list[str]:
        """Every tag in use by a current label (for a tag filter's choices)."""
        out: set[str] = set()
        for lab in self.labels(run_uuid):
            out.update(lab.tags)
        return sorted(out)

    def count_events(self) -> int:
        return int(self._read(lambda conn: conn.execute("SELECT count(*) FROM events").fetchone()[0]))

    def integrity_check(self) -> str:
        """'ok' for a healthy database (PRAGMA integrity_check)."""
        return str(self._read(lambda conn: conn.execute("PRAGMA integrity_check").fetchone()[0]))

    # ---- backups -----------------------------------------------------------------------------------
    def backup_dir(self) -> Path:
        return self.path.parent / "backups"

    def backup(self, dest: str | os.PathLike | None = None) -> Path:
        """Copy the database through the sqlite3 backup API (consistent while others write).
        Without ``dest``, a rotated backup in ``backups/`` next to it (the newest BACKUPS_KEPT kept)."""
        with self._lock:
            return self._backup_locked(dest=dest)

    def _backup_locked(self, dest: str | os.PathLike | None = None, reason: str = "manual") -> Path:
        if dest is None:
            stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
            target = self.backup_dir() / f"{self.path.stem}-{stamp}-{reason}.sqlite"
        else:
            target = Path(dest).expanduser()
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with atomic.writing(target) as tmp:
                dst = sqlite3.connect(tmp)
                try:
                    self.conn.backup(dst)
                finally:
                    dst.close()
        except (sqlite3.Error, OSError) as e:
            raise self._translate(e, f"backing up to {target}") from None
        if dest is None:
            olds = sorted(self.backup_dir().glob(f"{self.path.stem}-*.sqlite"))
            for old in olds[:-BACKUPS_KEPT]:
                old.unlink(missing_ok=True)
        return target
