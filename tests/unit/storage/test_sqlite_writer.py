"""GroupCommitWriter and connect_readonly on real files, with the real writer thread.

The reactor is replaced by `ThreadReactor`: `callFromThread` queues the call
and the test thread runs it in `wait_for`, so Deferreds fire on the test
thread just as they would on the reactor thread.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from twisted.python.failure import Failure

from softswitch.storage import GroupCommitWriter, StorageError, WriteOp, connect_readonly
from tests.support.thread_reactor import ThreadReactor, settle

SCHEMA = "CREATE TABLE IF NOT EXISTS notes (n INTEGER PRIMARY KEY, text TEXT NOT NULL);"


@dataclass
class Note:
    n: int
    text: str

    def apply(self, conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO notes (n, text) VALUES (?, ?)", (self.n, self.text))


class NoteError(Exception):
    pass


def read_notes(conn: sqlite3.Connection) -> list[tuple[int, str]]:
    return conn.execute("SELECT n, text FROM notes ORDER BY n").fetchall()


@pytest.fixture
def db(tmp_path: Path) -> str:
    return str(tmp_path / "notes.sqlite")


def start(db: str, **kw: Any) -> tuple[GroupCommitWriter, ThreadReactor, list[tuple[int, str]]]:
    reactor = ThreadReactor()
    writer = GroupCommitWriter(db, reactor, SCHEMA, "notes", **kw)
    rows = writer.start(read_notes)
    return writer, reactor, rows


def test_writes_are_durable_across_a_reopen(db: str) -> None:
    writer, reactor, rows = start(db)
    assert rows == []
    _op: WriteOp = Note(1, "one")  # mypy checks an op implements the Protocol
    assert settle(reactor, writer.submit(Note(1, "one"))) is None
    assert settle(reactor, writer.submit(Note(2, "two"))) is None
    writer.close()
    again, _, rows = start(db)
    assert rows == [(1, "one"), (2, "two")]
    again.close()


def test_file_is_wal_with_full_sync(db: str) -> None:
    writer, _, _ = start(db)
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    assert Path(f"{db}-wal").exists()
    writer.close()
    assert not Path(f"{db}-wal").exists()  # the last connection checkpointed it away


def test_many_writes_share_few_commits_and_fire_in_order(db: str) -> None:
    writer, reactor, _ = start(db)
    fired: list[int] = []
    threads: set[str] = set()

    def note(_: None, n: int) -> None:
        fired.append(n)
        threads.add(threading.current_thread().name)

    for n in range(1000):
        writer.submit(Note(n, f"note {n}")).addCallback(note, n)
    reactor.wait_for(lambda: len(fired) == 1000)
    assert fired == list(range(1000))
    assert threads == {threading.current_thread().name}  # the "reactor" thread
    assert writer.commits < 50, writer.commits
    writer.close()


def test_batches_are_bounded(db: str) -> None:
    writer, reactor, _ = start(db, max_batch=10)
    done: list[object] = []
    for n in range(100):
        writer.submit(Note(n, "x")).addBoth(done.append)
    reactor.wait_for(lambda: len(done) == 100)
    assert writer.commits >= 10
    writer.close()


def test_close_flushes_what_is_queued(db: str) -> None:
    writer, reactor, _ = start(db)
    done: list[object] = []
    for n in range(200):
        writer.submit(Note(n, "x")).addBoth(done.append)
    writer.close()  # returns once committed; the Deferreds fire when the reactor runs
    reactor.wait_for(lambda: len(done) == 200)
    assert done == [None] * 200
    again, _, rows = start(db)
    assert len(rows) == 200
    again.close()


@dataclass
class Gate:
    """An op that holds the writer thread until opened, so the next writes queue up."""

    entered: threading.Event
    opened: threading.Event

    def apply(self, conn: sqlite3.Connection) -> None:
        self.entered.set()
        assert self.opened.wait(10)


def test_failed_batch_errbacks_every_write_and_the_writer_goes_on(db: str) -> None:
    writer, reactor, _ = start(db, error=NoteError)
    settle(reactor, writer.submit(Note(1, "one")))
    gate = Gate(threading.Event(), threading.Event())
    held = writer.submit(gate)
    assert gate.entered.wait(10)
    # Both queued behind the gate, so taken as one batch; the duplicate key
    # fails the transaction, and the good write in it is not kept either.
    good = writer.submit(Note(2, "two"))
    dup = writer.submit(Note(1, "again"))
    gate.opened.set()
    assert settle(reactor, held) is None
    results = [settle(reactor, good), settle(reactor, dup)]
    for result in results:
        assert isinstance(result, Failure) and result.check(NoteError)
        assert db in str(result.value) and "UNIQUE" in str(result.value)
    assert writer.failed_commits == 1
    assert settle(reactor, writer.submit(Note(3, "three"))) is None
    writer.close()
    again, _, rows = start(db)
    assert rows == [(1, "one"), (3, "three")]
    again.close()


def test_refusals_use_the_store_error(db: str) -> None:
    reactor = ThreadReactor()
    writer = GroupCommitWriter(db, reactor, SCHEMA, "notes", error=NoteError)
    result = settle(reactor, writer.submit(Note(1, "x")))
    assert isinstance(result, Failure) and result.check(NoteError)
    assert "notes store is not loaded" in str(result.value)
    assert not writer.running
    writer.start(lambda conn: None)
    assert writer.running and writer.refusal() is None
    with pytest.raises(NoteError, match="already loaded"):
        writer.start(lambda conn: None)
    writer.close()
    writer.close()  # idempotent
    result = settle(reactor, writer.submit(Note(1, "x")))
    assert isinstance(result, Failure) and "notes store is closed" in str(result.value)


def test_newer_schema_refused_and_version_recorded(db: str) -> None:
    writer, _, _ = start(db, schema_version=3)
    writer.close()
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(3,)]
    with pytest.raises(StorageError, match="schema version 3 is newer"):
        start(db, schema_version=2)


def test_prepare_failure_is_reported_and_starts_nothing(db: str) -> None:
    reactor = ThreadReactor()
    writer = GroupCommitWriter(db, reactor, SCHEMA, "notes")

    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("SELECT x FROM nowhere")

    with pytest.raises(StorageError, match="no such table"):
        writer.start(broken)
    assert not writer.running


def test_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "junk.sqlite"
    path.write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(StorageError):
        start(str(path))


# -- connect_readonly ---------------------------------------------------------


def test_readonly_sees_commits_of_a_running_writer(db: str) -> None:
    writer, reactor, _ = start(db)
    settle(reactor, writer.submit(Note(1, "one")))
    before = {p.name: p.stat().st_mtime_ns for p in Path(db).parent.iterdir()}
    conn = connect_readonly(db)
    try:
        assert read_notes(conn) == [(1, "one")]
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            conn.execute("INSERT INTO notes VALUES (2, 'two')")
    finally:
        conn.close()
    after = {p.name: p.stat().st_mtime_ns for p in Path(db).parent.iterdir()}
    assert after == before
    writer.close()


def test_readonly_on_a_closed_file_leaves_no_files(db: str) -> None:
    writer, reactor, _ = start(db)
    settle(reactor, writer.submit(Note(1, "one")))
    writer.close()
    names = sorted(p.name for p in Path(db).parent.iterdir())
    conn = connect_readonly(db)
    assert read_notes(conn) == [(1, "one")]
    conn.close()
    assert sorted(p.name for p in Path(db).parent.iterdir()) == names  # no -wal, no -shm


def test_readonly_missing_file_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(NoteError, match="no such database"):
        connect_readonly(tmp_path / "none.sqlite", NoteError)
    assert list(tmp_path.iterdir()) == []
