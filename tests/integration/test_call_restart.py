"""An established call outlives a restart of the softswitch."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from softswitch.cdr import Disposition, read_cdrs
from tests.support.phone import answered_call, registered_phones
from tests.support.server import ServerProcess
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration




def _saved_calls(server: ServerProcess) -> int:
    path = server.data_dir / "calls.sqlite"
    if not path.exists():
        return 0
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM call_snapshots").fetchone()[0])


def test_call_survives_kill_9_and_ends_cleanly_after_restart(own_server: ServerProcess,
                                                             tmp_path: Path) -> None:
    own_server.start()
    a, b = registered_phones(own_server.udp_port, ("1001", "1002"), tmp_path)
    try:
        call, at_b = answered_call(a, b, f"sip:1002@127.0.0.1:{own_server.udp_port}")
        wait_for(lambda: _saved_calls(own_server) == 1, 10, "the call state on disk")

        own_server.kill9()
        own_server.start()
        assert '"call_restored"' in own_server.log()

        # The callee hangs up: the restarted server must still BYE the caller.
        b.hangup(at_b)
        a.wait_call_state(call, "DISCONNECTED", 10)
        records = wait_for(lambda: read_cdrs(own_server.data_dir / "cdr.sqlite"), 10, "the CDR")
        [record] = records
        assert record.disposition is Disposition.ANSWERED
        assert record.caller == "1001" and record.dialled == "1002"
        assert record.hangup_side.value == "callee"
        wait_for(lambda: _saved_calls(own_server) == 0, 10, "the call state removed")
    finally:
        a.close()
        b.close()
