"""CDR records, SQLiteCdrStore (real file, real writer thread) and read_cdrs."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from twisted.python.failure import Failure

from softswitch.cdr import (
    CdrRecord,
    CdrStore,
    CdrStoreError,
    Disposition,
    HangupSide,
    SQLiteCdrStore,
    read_cdrs,
)
from softswitch.storage import StorageError
from tests.support.thread_reactor import ThreadReactor, settle

T0 = 1_790_000_000.0


def answered(uuid: str = "u-1", start: float = T0, **kw: Any) -> CdrRecord:
    fields: dict[str, Any] = dict(
        call_id="a8f3@192.0.2.10", uuid=uuid, caller="1001", caller_name="Alice",
        callee="1002", dialled="1002", context="internal", start=start,
        answer=start + 4.5, end=start + 64.75, disposition=Disposition.ANSWERED,
        hangup_cause="BYE", hangup_side=HangupSide.CALLEE, sip_code=200,
        b_leg_codes=[486, 200],
    )
    fields.update(kw)
    return CdrRecord(**fields)


def busy(uuid: str = "u-2", start: float = T0 + 100) -> CdrRecord:
    return CdrRecord(
        call_id="77@trunk", uuid=uuid, caller="+441234567890", dialled="0800123456",
        context="from-trunk", trunk="carrier-a", start=start, end=start + 2.0,
        disposition=Disposition.BUSY, hangup_cause="486 Busy Here",
        hangup_side=HangupSide.CALLEE, sip_code=486, b_leg_codes=[486],
    )


@pytest.fixture
def db(tmp_path: Path) -> str:
    return str(tmp_path / "cdr.sqlite")


def open_store(db: str) -> tuple[SQLiteCdrStore, ThreadReactor]:
    reactor = ThreadReactor()
    store = SQLiteCdrStore(db, reactor)
    _interface: CdrStore = store  # mypy checks the Protocol is implemented
    store.open()
    return store, reactor


def test_durations_derive_from_the_times() -> None:
    r = answered()
    assert r.duration == pytest.approx(64.75)
    assert r.billsec == pytest.approx(60.25)
    assert busy().duration == 2.0 and busy().billsec == 0.0
    d = r.as_dict()
    assert d["duration"] == 64.75 and d["billsec"] == 60.25
    assert d["disposition"] == "ANSWERED" and d["hangup_side"] == "callee"


@pytest.mark.parametrize("code, cancelled, expected", [
    (200, False, Disposition.ANSWERED),
    (200, True, Disposition.ANSWERED),  # the answer crossed the CANCEL
    (487, True, Disposition.CANCELLED),
    (486, False, Disposition.BUSY),
    (600, False, Disposition.BUSY),
    (480, False, Disposition.NO_ANSWER),
    (408, False, Disposition.NO_ANSWER),
    (487, False, Disposition.NO_ANSWER),  # ring timeout of our own
    (404, False, Disposition.FAILED),
    (503, False, Disposition.FAILED),
])
def test_disposition_of_the_final_code(code: int, cancelled: bool, expected: Disposition) -> None:
    assert Disposition.of(code, cancelled) is expected
    assert str(Disposition.NO_ANSWER) == "NO ANSWER"


def test_records_are_durable_and_read_back_equal(db: str) -> None:
    store, reactor = open_store(db)
    records = [answered(), busy()]
    for r in records:
        assert settle(reactor, store.write(r)) is None
    # Read while the store still holds the file open, as beside a running server.
    assert read_cdrs(db) == records
    store.close()
    assert read_cdrs(db) == records
    again, _ = open_store(db)  # reopening keeps them
    again.close()
    assert read_cdrs(db) == records


def test_the_record_is_taken_when_written(db: str) -> None:
    store, reactor = open_store(db)
    r = answered()
    d = store.write(r)
    r.b_leg_codes.append(999)
    r.end += 1000
    settle(reactor, d)
    store.close()
    assert read_cdrs(db) == [answered()]


def test_same_uuid_written_twice_is_kept_once(db: str) -> None:
    store, reactor = open_store(db)
    settle(reactor, store.write(answered()))
    # After a crash between the CDR and the call state removal, the restart
    # writes the call again, with its own end time.
    assert settle(reactor, store.write(answered(end=T0 + 999))) is None
    store.close()
    assert read_cdrs(db) == [answered()]


def test_many_writes_share_few_commits(db: str) -> None:
    store, reactor = open_store(db)
    done: list[object] = []
    for i in range(500):
        store.write(answered(uuid=f"u-{i}", start=T0 + i)).addBoth(done.append)
    reactor.wait_for(lambda: len(done) == 500)
    assert done == [None] * 500
    assert store.commits < 50, store.commits
    store.close()
    assert len(read_cdrs(db)) == 500


def test_filters_and_limit(db: str) -> None:
    store, reactor = open_store(db)
    for i in range(10):
        settle(reactor, store.write(answered(uuid=f"u-{i}", start=T0 + 60 * i)))
    store.close()

    def uuids(**kw: Any) -> list[str]:
        return [r.uuid for r in read_cdrs(db, **kw)]

    assert uuids() == [f"u-{i}" for i in range(10)]  # oldest first
    assert uuids(since=T0 + 60 * 7) == ["u-7", "u-8", "u-9"]  # since is inclusive
    assert uuids(until=T0 + 60 * 2) == ["u-0", "u-1"]  # until is exclusive
    assert uuids(since=T0 + 60, until=T0 + 60 * 4) == ["u-1", "u-2", "u-3"]
    assert uuids(limit=3) == ["u-7", "u-8", "u-9"]  # the latest, still oldest first
    assert uuids(until=T0 + 60 * 5, limit=2) == ["u-3", "u-4"]
    assert uuids(since=T0 + 10_000) == []


def test_write_after_close_and_before_open_fail(db: str) -> None:
    reactor = ThreadReactor()
    store = SQLiteCdrStore(db, reactor)
    result = settle(reactor, store.write(answered()))
    assert isinstance(result, Failure) and result.check(CdrStoreError)
    store.open()
    store.close()
    store.close()
    result = settle(reactor, store.write(answered()))
    assert isinstance(result, Failure) and result.check(CdrStoreError, StorageError)
    assert "closed" in str(result.value)


def test_read_errors(tmp_path: Path) -> None:
    with pytest.raises(CdrStoreError, match="no such database"):
        read_cdrs(tmp_path / "cdr.sqlite")
    assert list(tmp_path.iterdir()) == []
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(CdrStoreError):
        read_cdrs(junk)
    other = tmp_path / "other.sqlite"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE t (x)")
    conn.close()
    with pytest.raises(CdrStoreError, match="no such table"):
        read_cdrs(other)


V1_SCHEMA = """
CREATE TABLE schema_version (version INTEGER NOT NULL);
INSERT INTO schema_version VALUES (1);
CREATE TABLE cdr (
    uuid TEXT NOT NULL UNIQUE, call_id TEXT NOT NULL, caller TEXT NOT NULL,
    caller_name TEXT NOT NULL, callee TEXT, dialled TEXT NOT NULL, context TEXT NOT NULL,
    trunk TEXT, start_time REAL NOT NULL, answer_time REAL, end_time REAL NOT NULL,
    duration REAL NOT NULL, billsec REAL NOT NULL, disposition TEXT NOT NULL,
    hangup_cause TEXT NOT NULL, hangup_side TEXT NOT NULL, sip_code INTEGER NOT NULL,
    b_leg_codes TEXT NOT NULL);
INSERT INTO cdr VALUES ('old', 'c@h', '1001', '', '1002', '1002', 'internal', NULL,
    1790000000, 1790000001, 1790000010, 10, 9, 'ANSWERED', 'BYE', 'caller', 200, '[200]');
"""


def test_media_figures_are_kept(db: str) -> None:
    store, reactor = open_store(db)
    record = answered(a_loss=0.5, a_jitter=3.25, a_mos=4.3, b_loss=None, b_jitter=1.0, b_mos=4.4)
    settle(reactor, store.write(record))
    store.close()
    [back] = read_cdrs(db)
    assert back == record
    assert back.as_dict()["a_mos"] == 4.3 and back.as_dict()["b_loss"] is None


def test_the_recording_file_is_kept(db: str) -> None:
    store, reactor = open_store(db)
    record = answered(recording="recordings/2026-12-06/u1.wav")
    settle(reactor, store.write(record))
    settle(reactor, store.write(answered(uuid="plain", start=T0 + 5)))
    store.close()
    by_uuid = {r.uuid: r for r in read_cdrs(db)}
    assert by_uuid[record.uuid].recording == "recordings/2026-12-06/u1.wav"
    assert by_uuid["plain"].recording is None
    assert by_uuid[record.uuid].as_dict()["recording"] == "recordings/2026-12-06/u1.wav"


def test_a_version_1_file_is_read_as_is_and_migrated_on_open(db: str) -> None:
    conn = sqlite3.connect(db)
    conn.executescript(V1_SCHEMA)
    conn.close()
    # Read-only (the CLI beside an old server): the media columns read as None.
    [old] = read_cdrs(db)
    assert old.uuid == "old" and old.a_mos is None and old.b_leg_codes == [200]
    store, reactor = open_store(db)  # the new server migrates the file
    settle(reactor, store.write(answered(uuid="new", start=T0 + 500, a_mos=4.1)))
    store.close()
    assert [(r.uuid, r.a_mos) for r in read_cdrs(db)] == [("old", None), ("new", 4.1)]
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT MAX(version) FROM schema_version").fetchone() == (3,)
    conn.close()
    again, _ = open_store(db)  # a second open finds nothing to do
    again.close()
