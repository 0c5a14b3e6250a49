"""The label database: history, migrations, concurrency, crashes and faults (real SQLite files)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from store.labels.label import ENV_DB, LABELS_SCHEMA_VERSION, Label, LabelDatabaseError, LabelError, default_db_path
from store.labels.db import LabelDB, MIGRATIONS
from tests.builders import run_cli

ROOT = Path(__file__).resolve().parents[1]
RUN = "11111111-2222-3333-4444-555555555555"
HOOK = "blocks.0.mlp.hook_post"


def test_set_get_history_clear(tmp_path):
    db = LabelDB(tmp_path / "l.sqlite", author="ada")
    a = db.set_label(RUN, HOOK, 7, verdict="unsure", description=" brackets ", tags=["syntax", " code", "syntax"])
    assert (a.verdict, a.description, a.tags, a.author, a.layer) == ("unsure", "brackets", ("code", "syntax"), "ada", 0)
    b = db.set_label(RUN, HOOK, 7, verdict="interpretable", description="closing brackets", notes="clear")
    assert db.get(RUN, HOOK, 7) == b
    db.clear_label(RUN, HOOK, 7)
    assert db.get(RUN, HOOK, 7) is None
    hist = db.history(RUN, HOOK, 7)
    assert [h.verdict for h in hist] == ["unsure", "interpretable", None]
    assert hist[1].notes == "clear" and hist[0].event_id < hist[1].event_id < hist[2].event_id
    # append-only: the events table refuses to be rewritten
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.conn.execute("UPDATE events SET verdict = 'unsure'")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.conn.execute("DELETE FROM events")
    with pytest.raises(LabelError, match="unknown verdict"):
        db.set_label(RUN, HOOK, 1, verdict="maybe")
    with pytest.raises(LabelError, match="not an MLP hook name"):
        db.set_label(RUN, "attn.0", 1, verdict="unsure")
    assert db.integrity_check() == "ok"
    mode = db.conn.execute("PRAGMA journal_mode").fetchone()[0]
    sync = db.conn.execute("PRAGMA synchronous").fetchone()[0]
    assert (mode, sync) == ("wal", 2)  # 2 == FULL


def test_filters_and_snapshot(tmp_path):
    db = LabelDB(tmp_path / "l.sqlite")
    db.set_label(RUN, HOOK, 1, verdict="interpretable", tags=["a"])
    db.set_label(RUN, HOOK, 2, verdict="not_interpretable", tags=["b"])
    db.set_label(RUN, "blocks.1.mlp.hook_mid", 3, verdict="interpretable", tags=["a", "b"])
    db.set_label("other-run", HOOK, 1, verdict="unsure")
    assert [x.neuron for x in db.labels(RUN, verdicts=["interpretable"])] == [1, 3]
    assert [x.neuron for x in db.labels(RUN, tags=["b"])] == [2, 3]
    assert [x.neuron for x in db.labels(RUN, layers=[1])] == [3]
    assert set(db.snapshot(RUN)) == {(HOOK, 1), (HOOK, 2), ("blocks.1.mlp.hook_mid", 3)}
    assert db.all_tags(RUN) == ["a", "b"]


def test_default_location_and_env_override(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_DB, raising=False)
    assert default_db_path().name == "labels.sqlite" and "neurobrowse" in str(default_db_path())
    monkeypatch.setenv(ENV_DB, str(tmp_path / "env.sqlite"))
    db = LabelDB()
    assert db.path == tmp_path / "env.sqlite"
    db.set_label(RUN, HOOK, 0, verdict="unsure")
    assert (tmp_path / "env.sqlite").exists()


def _make_v1(path: Path) -> None:
    c = sqlite3.connect(path, isolation_level=None)
    for sql in MIGRATIONS[1]:
        c.execute(sql)
    c.execute("INSERT INTO events (run_uuid, hook, layer, neuron, verdict, description, tags, notes, author, time) "
              f"VALUES ('{RUN}', '{HOOK}', 0, 5, 'interpretable', 'old', '[\"x\"]', 'n', 'bob', '2024-01-01T00:00:00')")
    c.execute(f"INSERT INTO current VALUES ('{RUN}', '{HOOK}', 0, 5, 1)")
    c.execute("PRAGMA user_version = 1")
    c.close()


def test_migration_keeps_labels_and_makes_a_backup(tmp_path):
    path = tmp_path / "l.sqlite"
    _make_v1(path)
    db = LabelDB(path)
    assert db.schema_version() == LABELS_SCHEMA_VERSION
    lab = db.get(RUN, HOOK, 5)
    assert (lab.verdict, lab.description, lab.tags, lab.author, lab.source) == (
        "interpretable", "old", ("x",), "bob", "")
    backups = list(db.backup_dir().glob("l-*-v1.sqlite"))
    assert len(backups) == 1
    old = sqlite3.connect(backups[0])
    assert old.execute("PRAGMA user_version").fetchone()[0] == 1
    assert old.execute("SELECT description FROM events").fetchall() == [("old",)]
    old.close()
    # a second open does not migrate (nor back up) again
    LabelDB(path).close()
    assert len(list(db.backup_dir().glob("l-*.sqlite"))) == 1


def test_backup_rotation(tmp_path):
    from store.labels.label import BACKUPS_KEPT

    db = LabelDB(tmp_path / "l.sqlite")
    db.set_label(RUN, HOOK, 1, verdict="unsure")
    made = [db.backup() for _ in range(BACKUPS_KEPT + 2)]
    kept = sorted(db.backup_dir().glob("l-*.sqlite"))
    assert kept == sorted(made[-BACKUPS_KEPT:])
    copy = LabelDB(kept[-1])
    assert copy.get(RUN, HOOK, 1).verdict == "unsure"


def test_newer_schema_is_refused_untouched(tmp_path):
    path = tmp_path / "l.sqlite"
    LabelDB(path).close()
    c = sqlite3.connect(path)
    c.execute("PRAGMA user_version = 99")
    c.commit()
    c.close()
    before = path.read_bytes()
    with pytest.raises(LabelDatabaseError, match="schema version 99.*newer neurobrowse"):
        LabelDB(path)
    assert path.read_bytes() == before
    r = run_cli(["labels", "list", "--db", str(path)])
    assert r.returncode == 2 and "newer neurobrowse" in r.stderr


def test_locked_too_long_is_a_clear_error_and_loses_nothing(tmp_path):
    path = tmp_path / "l.sqlite"
    db = LabelDB(path, busy_timeout_s=0.2)
    db.set_label(RUN, HOOK, 1, verdict="unsure")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holding the write lock
    try:
        with pytest.raises(LabelDatabaseError, match="stayed locked .* more than 0.2 s"):
            db.set_label(RUN, HOOK, 2, verdict="interpretable")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert [x.neuron for x in db.labels(RUN)] == [1]
    db.set_label(RUN, HOOK, 2, verdict="interpretable")  # works once the lock is gone
    assert [x.neuron for x in db.labels(RUN)] == [1, 2]


def test_disk_full_is_a_clear_error_and_loses_nothing(tmp_path):
    db = LabelDB(tmp_path / "l.sqlite")
    for i in range(5):
        db.set_label(RUN, HOOK, i, verdict="interpretable", notes=f"note {i}")
    pages = db.conn.execute("PRAGMA page_count").fetchone()[0]
    db.conn.execute(f"PRAGMA max_page_count = {pages + 2}")  # SQLite reports SQLITE_FULL past this
    with pytest.raises(LabelDatabaseError, match="disk is full"):
        for i in range(5, 500):
            db.set_label(RUN, HOOK, i, verdict="unsure", notes="x" * 3000)
    db.conn.execute("PRAGMA max_page_count = 1073741823")
    kept = db.labels(RUN)
    assert [x.notes for x in kept[:5]] == [f"note {i}" for i in range(5)]
    assert all(x.notes == "x" * 3000 for x in kept[5:])  # the writes before the fault are whole
    assert db.integrity_check() == "ok"
    assert db.count_events() == len(kept)


def test_set_many_is_all_or_nothing(tmp_path):
    db = LabelDB(tmp_path / "l.sqlite")
    good = Label(RUN, HOOK, 1, "interpretable", author="a", time="t1")
    with pytest.raises(LabelError):
        db.set_many([good, Label(RUN, HOOK, 2, "bogus")])
    assert db.labels(RUN) == []
    assert db.set_many([good]) == 1
    assert db.set_many([good]) == 0  # unchanged content: nothing new
    got = db.get(RUN, HOOK, 1)
    assert (got.author, got.time) == ("a", "t1")


_WRITER = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    from store.labels.db import LabelDB
    from store.labels.label import Label
    db = LabelDB(sys.argv[1], busy_timeout_s=60)
    p, n = int(sys.argv[2]), int(sys.argv[3])
    for i in range(n):
        db.set_label({run!r}, {hook!r}, p * n + i, verdict="interpretable", description=f"p{{p}} i{{i}}",
                     tags=[f"p{{p}}"], author=f"proc{{p}}")
    print("done", flush=True)
""")


def test_four_processes_times_200_writes_keep_800(tmp_path):
    path = tmp_path / "l.sqlite"
    LabelDB(path).close()
    code = _WRITER.format(root=str(ROOT), run=RUN, hook=HOOK)
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path), str(p), "200"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for p in range(4)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]
    db = LabelDB(path)
    labs = db.labels(RUN)
    assert len(labs) == 800 and db.count_events() == 800
    want = {(p * 200 + i, f"p{p} i{i}") for p in range(4) for i in range(200)}
    assert {(x.neuron, x.description) for x in labs} == want
    assert db.integrity_check() == "ok"


_KILLED = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    from store.labels.db import LabelDB
    from store.labels.label import Label
    db = LabelDB(sys.argv[1], busy_timeout_s=60)
    t = 0
    while True:
        # one transaction writes 3 labels; a whole write is all 3 or none
        db.set_many([Label({run!r}, {hook!r}, 3 * t + j, "interpretable", description=f"txn {{t}}",
                           notes="n" * 500) for j in range(3)])
        print(t, flush=True)
        t += 1
""")


def test_kill_9_during_writes_keeps_only_whole_writes(tmp_path):
    path = tmp_path / "l.sqlite"
    code = _KILLED.format(root=str(ROOT), run=RUN, hook=HOOK)
    proc = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True)
    committed = -1
    for line in proc.stdout:  # wait until a good number of commits went through, then kill -9
        committed = int(line)
        if committed >= 40:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    db = LabelDB(path)
    assert db.integrity_check() == "ok"
    labs = db.labels(RUN)
    n_events = db.count_events()
    assert n_events % 3 == 0 and len(labs) == n_events  # only whole transactions
    txns = {}
    for lab in labs:
        txns.setdefault(lab.description, []).append(lab.neuron)
    n_txn = n_events // 3
    assert n_txn >= committed + 1  # everything reported as committed is there
    assert txns == {f"txn {t}": [3 * t, 3 * t + 1, 3 * t + 2] for t in range(n_txn)}


def test_cli_backup_and_list_without_store(tmp_path):
    path = tmp_path / "l.sqlite"
    db = LabelDB(path)
    db.set_label(RUN, HOOK, 3, verdict="interpretable", description="quotes", tags=["t"])
    db.close()
    r = run_cli(["labels", "list", "--run", RUN, "--tag", "t", "--json"], env={ENV_DB: str(path)})
    assert r.returncode == 0, r.stderr
    assert '"description": "quotes"' in r.stdout
    r = run_cli(["labels", "backup", "--db", str(path), "--out", str(tmp_path / "copy.sqlite")])
    assert r.returncode == 0, r.stderr
    assert LabelDB(tmp_path / "copy.sqlite").get(RUN, HOOK, 3).description == "quotes"
