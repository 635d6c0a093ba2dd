"""SQLiteCallStateStore on a real file with its real writer thread.

`ThreadReactor` stands in for the reactor, as in the location store tests:
`callFromThread` queues, the test thread runs the calls in `wait_for`.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from twisted.python.failure import Failure

from softswitch.callstate import (
    CallRecord,
    CallStateError,
    CallStateStore,
    LegState,
    SQLiteCallStateStore,
)
from softswitch.cdr import Disposition, HangupSide
from tests.support.thread_reactor import ThreadReactor, settle

REPO = Path(__file__).resolve().parents[2]
T0 = 1_790_000_000.0


def call(uuid: str = "c-1", start: float = T0, **kw: Any) -> CallRecord:
    fields: dict[str, Any] = dict(
        uuid=uuid,
        a_leg=LegState(
            call_id=f"{uuid}-a@192.0.2.10", local_tag="sw-a1", remote_tag="ph-1001",
            local_uri="<sip:1002@pbx.example.com>", remote_uri='"Alice" <sip:1001@pbx.example.com>',
            local_cseq=1, remote_target="sip:1001@192.0.2.10:5062;transport=tcp",
            route_set=["<sip:edge.example.net;lr>"], transport="tcp", host="192.0.2.10",
            port=5062),
        b_leg=LegState(
            call_id=f"{uuid}-b@pbx.example.com", local_tag="sw-b1", remote_tag="gw-99",
            local_uri="<sip:+441234567890@pbx.example.com>",
            remote_uri="<sip:0800123456@carrier.example>", local_cseq=102,
            remote_target="sip:gw@198.51.100.20", route_set=[], transport="udp",
            host="198.51.100.20", port=5060),
        start=start, answer=start + 3.0, caller="1001", caller_name="Alice",
        callee="0800123456", dialled="0800123456", context="internal", trunk="carrier-a",
        b_leg_codes=[503, 200],
    )
    fields.update(kw)
    return CallRecord(**fields)


@pytest.fixture
def db(tmp_path: Path) -> str:
    return str(tmp_path / "calls.sqlite")


def open_store(db: str) -> tuple[SQLiteCallStateStore, ThreadReactor, list[CallRecord]]:
    reactor = ThreadReactor()
    store = SQLiteCallStateStore(db, reactor)
    _interface: CallStateStore = store  # mypy checks the Protocol is implemented
    loaded = store.load()
    return store, reactor, loaded


def test_calls_survive_a_reopen(db: str) -> None:
    store, reactor, loaded = open_store(db)
    assert loaded == [] and store.list() == []
    first, second = call("c-1", T0), call("c-2", T0 - 50, trunk=None, b_leg_codes=[])
    assert settle(reactor, store.save(first)) is None
    assert settle(reactor, store.save(second)) is None
    assert store.list() == [second, first]  # oldest first
    assert store.get("c-1") == first and store.get("nope") is None
    store.close()

    again, _, loaded = open_store(db)
    assert loaded == [second, first]
    restored = again.get("c-1")
    assert restored == first
    assert restored is not None and restored.a_leg.route_set == ["<sip:edge.example.net;lr>"]
    again.close()


def test_save_replaces_and_remove_forgets(db: str) -> None:
    store, reactor, _ = open_store(db)
    settle(reactor, store.save(call("c-1")))
    settle(reactor, store.save(call("c-2")))
    moved = call("c-1")
    moved.a_leg.local_cseq = 7
    moved.b_leg.remote_target = "sip:gw2@198.51.100.21"  # after a re-INVITE
    settle(reactor, store.save(moved))
    assert store.get("c-1") == moved and len(store) == 2
    assert settle(reactor, store.remove("c-2")) is None
    assert settle(reactor, store.remove("unknown")) is None
    assert [r.uuid for r in store.list()] == ["c-1"]
    store.close()

    again, _, loaded = open_store(db)
    assert loaded == [moved]
    again.close()
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT COUNT(*) FROM call_legs").fetchone() == (2,)  # no orphan legs
    conn.close()


def test_memory_holds_what_was_saved_and_only_once_durable(db: str) -> None:
    store, reactor, _ = open_store(db)
    record = call()
    d = store.save(record)
    record.a_leg.local_cseq = 99  # the B2BUA goes on using its object
    record.b_leg_codes.append(1)
    settle(reactor, d)
    assert store.get(record.uuid) == call()
    removing = store.remove(record.uuid)
    assert store.get(record.uuid) is not None  # not durable yet
    settle(reactor, removing)
    assert store.get(record.uuid) is None
    store.close()


def test_many_saves_share_few_commits(db: str) -> None:
    store, reactor, _ = open_store(db)
    done: list[object] = []
    for i in range(500):
        store.save(call(f"c-{i}", T0 + i)).addBoth(done.append)
    reactor.wait_for(lambda: len(done) == 500)
    assert done == [None] * 500
    assert store.commits < 50, store.commits
    store.close()
    again, _, loaded = open_store(db)
    assert len(loaded) == 500
    again.close()


def test_cdr_of_a_call() -> None:
    record = call()
    cdr = record.cdr(T0 + 63.0, "BYE", HangupSide.CALLER)
    assert cdr.uuid == "c-1" and cdr.call_id == "c-1-a@192.0.2.10"
    assert cdr.disposition is Disposition.ANSWERED and cdr.sip_code == 200
    assert cdr.duration == 63.0 and cdr.billsec == 60.0
    assert (cdr.caller, cdr.caller_name, cdr.callee, cdr.dialled, cdr.context, cdr.trunk) == (
        "1001", "Alice", "0800123456", "0800123456", "internal", "carrier-a")
    assert cdr.b_leg_codes == [503, 200] and cdr.b_leg_codes is not record.b_leg_codes


def test_writes_refused_before_load_and_after_close(db: str) -> None:
    reactor = ThreadReactor()
    store = SQLiteCallStateStore(db, reactor)
    result = settle(reactor, store.save(call()))
    assert isinstance(result, Failure) and result.check(CallStateError)
    assert "not loaded" in str(result.value)
    store.load()
    with pytest.raises(CallStateError, match="already loaded"):
        store.load()
    store.close()
    result = settle(reactor, store.remove("c-1"))
    assert isinstance(result, Failure) and "closed" in str(result.value)


def test_unreadable_row_is_reported(db: str) -> None:
    store, reactor, _ = open_store(db)
    settle(reactor, store.save(call()))
    store.close()
    conn = sqlite3.connect(db)
    conn.execute("UPDATE call_legs SET route_set = 'not json'")
    conn.commit()
    conn.close()
    with pytest.raises(CallStateError, match="unreadable"):
        open_store(db)


CHILD = textwrap.dedent(
    """
    import sys, threading, time
    from tests.unit.test_callstate import call
    from softswitch.callstate import SQLiteCallStateStore

    class Direct:
        def callFromThread(self, f, *args, **kw):
            f(*args, **kw)

    store = SQLiteCallStateStore(sys.argv[1], Direct())
    store.load()
    done = threading.Event()
    store.save(call("c-killed")).addCallback(lambda _: done.set())
    done.wait(10)
    print("durable", flush=True)
    time.sleep(60)
    """
)


def test_call_survives_kill_9(db: str) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, db], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "durable"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    again, _, loaded = open_store(db)
    assert loaded == [call("c-killed")]
    again.close()
