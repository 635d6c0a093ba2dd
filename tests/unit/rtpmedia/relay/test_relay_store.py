"""The relay's SQLite store: calls survive a reopen; one relay per store."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from rtpmedia.relay.control import Control, Save
from rtpmedia.relay.ports import PortPool
from rtpmedia.relay.store import CallStore, StoreError

SDP = ("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
       "m=audio 4000 RTP/AVP 0\r\n")


def test_calls_survive_reopen_and_forget_removes(tmp_path: Path) -> None:
    control = Control(PortPool(30000, 30019), "203.0.113.1")
    _, effects = control.handle({"command": "offer", "call-id": "c", "from-tag": "A",
                                 "to-tag": "B", "sdp": SDP}, 0)
    store = CallStore(tmp_path / "relay.sqlite")
    store.apply([e.call for e in effects if isinstance(e, Save)], [])
    store.close()
    store = CallStore(tmp_path / "relay.sqlite")
    calls, bad = store.load()
    assert bad == [] and [c.record() for c in calls] == [control.calls["c"].record()]
    store.apply([], ["c"])
    assert store.load() == ([], [])
    store.close()


def test_one_relay_per_store(tmp_path: Path) -> None:
    first = CallStore(tmp_path / "relay.sqlite")
    with pytest.raises(StoreError):
        CallStore(tmp_path / "relay.sqlite")
    first.close()
    CallStore(tmp_path / "relay.sqlite").close()


def test_unreadable_row_is_reported_not_fatal(tmp_path: Path) -> None:
    store = CallStore(tmp_path / "relay.sqlite")
    with sqlite3.connect(tmp_path / "relay.sqlite") as db:  # a damaged row
        db.execute("INSERT INTO calls VALUES ('x', '{not json')")
    assert store.load() == ([], ["x"])
    store.close()
