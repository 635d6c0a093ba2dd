"""An INVITE with Replaces (RFC 3891) takes one side of an established call."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

import pytest

from tests.support.cdrs import wait_for_cdrs
from tests.support.phone import answered_call, registered_phones
from tests.support.server import ServerProcess, free_port
from tests.support.sipp import SCENARIOS, SippResult, run_sipp
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


def _b_leg(server: ServerProcess) -> tuple[str, str, str] | None:
    """The callee's dialog of the one saved call, from its snapshot."""
    path = server.data_dir / "calls.sqlite"
    if not path.exists():
        return None
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        rows = [json.loads(text) for (text,) in conn.execute("SELECT snapshot FROM call_snapshots")]
    for snapshot in rows:
        callee = next(leg for leg in snapshot["legs"] if leg["name"] == snapshot["bridge"][1])
        dialog = callee["dialog"]
        return dialog["call_id"], dialog["local_tag"], dialog["remote_tag"]
    return None


def test_a_third_phone_picks_up_the_callee_side(own_server: ServerProcess,
                                                tmp_path: Path) -> None:
    own_server.start()
    port = own_server.udp_port
    alice, bob = registered_phones(port, ("1001", "1002"), tmp_path)
    try:
        call, at_bob = answered_call(alice, bob, f"sip:1002@127.0.0.1:{port}")
        call_id, our_tag, bobs_tag = wait_for(lambda: _b_leg(own_server), 10, "the saved call")
        # 1004 (MD5 only, as sipp needs) replaces Bob's dialog with us.
        results: list[SippResult] = []
        sipp = threading.Thread(target=lambda: results.append(run_sipp(
            [f"127.0.0.1:{port}", "-sf", str(SCENARIOS / "invite_replaces.xml"),
             "-s", "1002", "-key", "caller", "1004",
             "-key", "replaces", f"{call_id};to-tag={our_tag};from-tag={bobs_tag}",
             "-au", "1004", "-ap", "1004pass", "-auth_uri", f"1002@127.0.0.1:{port}",
             "-i", "127.0.0.1", "-p", str(free_port()), "-mi", "127.0.0.1",
             "-mp", str(free_port()), "-m", "1", "-timeout", "30"], tmp_path)), daemon=True)
        sipp.start()
        bob.wait_call_state(at_bob, "DISCONNECTED", 10)  # replaced: BYE
        alice.wait_call_state(call, "DISCONNECTED", 15)  # sipp hangs up after a second
        sipp.join(30)
        [result] = results
        assert result.successful == 1 and result.failed == 0, result.output
        [record] = wait_for_cdrs(own_server.data_dir)
        assert record.caller == "1001" and record.callee == "user/1004"
        assert record.hangup_side.value == "callee"
    finally:
        alice.close()
        bob.close()
