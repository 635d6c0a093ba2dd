"""An established call outlives a restart of the softswitch."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from softswitch.cdr import Disposition, read_cdrs
from tests.support.phone import start_phones
from tests.support.server import ServerProcess

pytestmark = pytest.mark.integration


def _wait(predicate, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _saved_calls(server: ServerProcess) -> int:
    path = server.data_dir / "calls.sqlite"
    if not path.exists():
        return 0
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0])


def test_call_survives_kill_9_and_ends_cleanly_after_restart(own_server: ServerProcess,
                                                             tmp_path: Path) -> None:
    own_server.start()
    a, b = start_phones([
        dict(user="1001", password="1001pass", server_port=own_server.udp_port, log_dir=tmp_path),
        dict(user="1002", password="1002pass", server_port=own_server.udp_port, log_dir=tmp_path),
    ])
    try:
        assert a.register() == 200 and b.register() == 200
        call = a.call(f"sip:1002@127.0.0.1:{own_server.udp_port}")
        incoming = b.wait_event("incoming_call", 10)
        b.answer(incoming["call"], 200)
        a.wait_call_state(call, "CONFIRMED", 10)
        _wait(lambda: _saved_calls(own_server) == 1, 10, "the call state on disk")

        own_server.kill9()
        own_server.start()
        assert '"call_restored"' in own_server.log()

        # The callee hangs up: the restarted server must still BYE the caller.
        b.hangup(incoming["call"])
        a.wait_call_state(call, "DISCONNECTED", 10)
        records = _wait(lambda: read_cdrs(own_server.data_dir / "cdr.sqlite"), 10, "the CDR")
        [record] = records
        assert record.disposition is Disposition.ANSWERED
        assert record.caller == "1001" and record.dialled == "1002"
        assert record.hangup_side.value == "callee"
        _wait(lambda: _saved_calls(own_server) == 0, 10, "the call state removed")
    finally:
        a.close()
        b.close()
