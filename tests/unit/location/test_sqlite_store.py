"""SQLiteLocationStore on a real file with its real writer thread.

The reactor is replaced by `ThreadReactor`: `callFromThread` queues the call
and the test thread runs it in `wait_for`, so memory updates and Deferred
callbacks happen on the test thread just as they would on the reactor thread.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from twisted.python.failure import Failure

from softswitch.location import Binding, LocationStore, LocationStoreError
from softswitch.location.sqlite import SQLiteLocationStore
from tests.support.thread_reactor import ThreadReactor, settle

REPO = Path(__file__).resolve().parents[3]
NOW = 1_700_000_000.0


def b(aor: str, contact: str, expires_at: float = NOW + 3600, **kw: Any) -> Binding:
    return Binding(aor=aor, contact=contact, expires_at=expires_at, **kw)


@pytest.fixture
def db(tmp_path: Path) -> str:
    return str(tmp_path / "location.sqlite")


def open_store(db: str, now: float = NOW) -> tuple[SQLiteLocationStore, ThreadReactor]:
    reactor = ThreadReactor()
    store = SQLiteLocationStore(db, reactor)
    _interface: LocationStore = store  # mypy checks the Protocol is implemented
    store.load(now)
    return store, reactor


def test_save_then_reopen_sees_bindings(db: str) -> None:
    store, reactor = open_store(db)
    full = b(
        "1001@pbx.example.com",
        "sip:1001@192.0.2.10:5060",
        q=0.5,
        call_id="abc@host",
        cseq=7,
        received="198.51.100.1:40000",
        transport="tcp",
        path=["<sip:edge1.example.com;lr>", "<sip:edge2.example.com;lr>"],
        instance='"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"',
        reg_id=1,
        user_agent="pjsua2",
        registered_at=NOW,
    )
    other = b("1001@pbx.example.com", "sip:1001@192.0.2.11", q=1.0)
    assert store.lookup("1001@pbx.example.com") == []
    assert settle(reactor, store.save("1001@pbx.example.com", [full, other])) is None
    assert store.lookup("1001@pbx.example.com") == [other, full]  # q order
    store.close()

    again, _ = open_store(db)
    assert again.lookup("1001@pbx.example.com") == [other, full]
    again.close()


def test_save_removes_contacts_and_remove_drops_aor(db: str) -> None:
    store, reactor = open_store(db)
    aor = "1002@pbx.example.com"
    settle(reactor, store.save(aor, [b(aor, "sip:a"), b(aor, "sip:b")]))
    settle(reactor, store.save(aor, [b(aor, "sip:c")], ["sip:a"]))
    assert {x.contact for x in store.lookup(aor)} == {"sip:b", "sip:c"}
    settle(reactor, store.save("1003@pbx.example.com", [b("1003@pbx.example.com", "sip:z")]))
    settle(reactor, store.remove(aor))
    assert store.lookup(aor) == []
    assert [x.aor for x in store.list()] == ["1003@pbx.example.com"]
    store.close()

    again, _ = open_store(db)
    assert again.lookup(aor) == []
    assert len(again) == 1
    again.close()


def test_list_by_prefix(db: str) -> None:
    store, reactor = open_store(db)
    for user in ("1001", "1002", "2001"):
        aor = f"{user}@pbx.example.com"
        settle(reactor, store.save(aor, [b(aor, f"sip:{user}@h")]))
    assert [x.aor for x in store.list("10")] == ["1001@pbx.example.com", "1002@pbx.example.com"]
    assert len(store.list()) == 3
    store.close()


def test_expire_removes_from_memory_and_disk(db: str) -> None:
    store, reactor = open_store(db)
    aor = "1001@pbx.example.com"
    settle(reactor, store.save(aor, [b(aor, "sip:old", NOW + 10), b(aor, "sip:new", NOW + 100)]))
    assert store.expire(NOW + 5) == []
    removed = store.expire(NOW + 10)
    assert [x.contact for x in removed] == ["sip:old"]
    assert [x.contact for x in store.lookup(aor)] == ["sip:new"]
    store.close()  # flushes the batched delete

    # Reopen "before" the expiry time: the row must be gone from disk, not
    # merely filtered out by load().
    again, _ = open_store(db, now=NOW)
    assert [x.contact for x in again.lookup(aor)] == ["sip:new"]
    again.close()


def test_refresh_queued_before_expiry_survives_it(db: str) -> None:
    store, reactor = open_store(db)
    aor = "1001@pbx.example.com"
    settle(reactor, store.save(aor, [b(aor, "sip:x", NOW + 10)]))
    refresh = store.save(aor, [b(aor, "sip:x", NOW + 3600)])
    assert [x.contact for x in store.expire(NOW + 20)] == ["sip:x"]
    settle(reactor, refresh)
    assert store.lookup(aor)[0].expires_at == NOW + 3600
    store.close()
    again, _ = open_store(db, now=NOW + 20)
    assert [x.expires_at for x in again.lookup(aor)] == [NOW + 3600]
    again.close()


def test_load_drops_expired_rows(db: str) -> None:
    store, reactor = open_store(db)
    aor = "1001@pbx.example.com"
    settle(reactor, store.save(aor, [b(aor, "sip:short", NOW + 10), b(aor, "sip:long", NOW + 99)]))
    store.close()
    again, _ = open_store(db, now=NOW + 50)
    assert [x.contact for x in again.lookup(aor)] == ["sip:long"]
    assert again.expire(NOW + 50) == []
    again.close()


def test_thousand_concurrent_saves_share_few_commits(db: str) -> None:
    store, reactor = open_store(db)
    deferreds = []
    for i in range(1000):
        aor = f"{i}@pbx.example.com"
        deferreds.append(store.save(aor, [b(aor, f"sip:{i}@192.0.2.1")]))
    done: list[object] = []
    for d in deferreds:
        d.addBoth(done.append)
    reactor.wait_for(lambda: len(done) == 1000)
    assert all(r is None for r in done)
    assert len(store) == 1000
    # Group commit: one transaction per batch the writer found queued, not per save.
    assert store.commits < 50, store.commits
    store.close()


def test_write_after_close_fails_clearly(db: str) -> None:
    store, reactor = open_store(db)
    store.close()
    store.close()  # idempotent
    for d in (store.save("a@b", [b("a@b", "sip:a")]), store.remove("a@b")):
        result = settle(reactor, d)
        assert isinstance(result, Failure)
        assert result.check(LocationStoreError)
        assert "closed" in str(result.value)


def test_write_before_load_fails(db: str) -> None:
    store = SQLiteLocationStore(db, ThreadReactor())
    results: list[object] = []
    store.save("a@b", [b("a@b", "sip:a")]).addErrback(results.append)
    assert isinstance(results[0], Failure) and "not loaded" in str(results[0].value)


def test_binding_under_wrong_aor_refused(db: str) -> None:
    store, reactor = open_store(db)
    result = settle(reactor, store.save("a@b", [b("c@d", "sip:a")]))
    assert isinstance(result, Failure) and result.check(LocationStoreError)
    store.close()


def test_newer_schema_refused(db: str) -> None:
    import sqlite3

    store, _ = open_store(db)
    store.close()
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(LocationStoreError, match="schema version 99"):
        open_store(db)


CHILD = textwrap.dedent(
    """
    import sys, threading, time
    from softswitch.location import Binding
    from softswitch.location.sqlite import SQLiteLocationStore

    class Direct:
        def callFromThread(self, f, *args, **kw):
            f(*args, **kw)

    store = SQLiteLocationStore(sys.argv[1], Direct())
    store.load(0.0)
    done = threading.Event()
    binding = Binding(aor="1001@pbx.example.com", contact="sip:1001@192.0.2.7",
                      expires_at=4e9)
    store.save(binding.aor, [binding]).addCallback(lambda _: done.set())
    done.wait(10)
    print("durable", flush=True)
    time.sleep(60)
    """
)


def test_binding_survives_kill_9(db: str) -> None:
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
    again, _ = open_store(db)
    assert [x.contact for x in again.lookup("1001@pbx.example.com")] == ["sip:1001@192.0.2.7"]
    again.close()


def test_failed_commit_errbacks_and_leaves_memory_alone(db: str) -> None:
    import sqlite3

    store, reactor = open_store(db)
    with sqlite3.connect(db) as conn:
        conn.execute("ALTER TABLE bindings RENAME TO gone")
    result = settle(reactor, store.save("a@b", [b("a@b", "sip:a")]))
    assert isinstance(result, Failure) and result.check(LocationStoreError)
    assert store.lookup("a@b") == []
    assert store.failed_commits == 1
    with sqlite3.connect(db) as conn:
        conn.execute("ALTER TABLE gone RENAME TO bindings")
    assert settle(reactor, store.save("a@b", [b("a@b", "sip:a")])) is None  # writer survived
    assert len(store.lookup("a@b")) == 1
    store.close()
