"""Session timers (RFC 4028) between real phones: refreshes, and a dead peer."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from softswitch.cdr import Disposition
from tests.support.cdrs import wait_for_cdrs
from tests.support.phone import answered_call, registered_phones
from tests.support.server import ServerProcess

pytestmark = pytest.mark.integration


def _sent_updates(server: ServerProcess) -> int:
    count = 0
    for line in server.log_path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            event = json.loads(line)
            if event.get("event") == "sip_out" and event.get("method") == "UPDATE" \
                    and "status" not in event:
                count += 1
    return count


def test_calls_are_refreshed_and_a_dead_callee_ends_its_call(own_server: ServerProcess,
                                                             tmp_path: Path) -> None:
    # The shortest interval RFC 4028 allows (90 s: we refresh the B-legs every
    # 45 s) and a short T1, so that an unanswered refresh fails in 6.4 s.
    own_server.extra_config = "sip:\n  t1: 0.1\n  session_expires: 90\n  min_se: 90\n"
    own_server.start()
    port = own_server.udp_port
    alice, bob, carol, dave = registered_phones(port, ("1001", "1002", "1003", "1004"),
                                                tmp_path)
    try:
        healthy, at_bob = answered_call(alice, bob, f"sip:1002@127.0.0.1:{port}")
        doomed, _ = answered_call(carol, dave, f"sip:1004@127.0.0.1:{port}")
        dave.kill()  # a phone that loses power: it answers nothing any more

        # Within 45 s + Timer F the dead callee's call ends; the other goes on.
        carol.wait_call_state(doomed, "DISCONNECTED", 70)
        assert _sent_updates(own_server) >= 2  # a refresh to each callee
        time.sleep(0.5)  # let a wrong BYE to the healthy call show up, if any
        assert not [e for e in alice.events_named("call_state")
                    if e["call"] == healthy and e["state"] == "DISCONNECTED"]
        alice.hangup(healthy)
        bob.wait_call_state(at_bob, "DISCONNECTED", 10)
        records = wait_for_cdrs(own_server.data_dir, 2)
        by_caller = {r.caller: r for r in records}
        assert by_caller["1003"].hangup_side.value == "system"
        assert "answer" in by_caller["1003"].hangup_cause  # "peer does not answer"
        assert by_caller["1001"].hangup_side.value == "caller"
        assert all(r.disposition is Disposition.ANSWERED for r in records)
    finally:
        for phone in (alice, bob, carol, dave):
            phone.close()


def test_calls_end_at_the_maximum_duration(own_server: ServerProcess, tmp_path: Path) -> None:
    own_server.extra_config = "max_call_duration: 2\n"
    own_server.start()
    port = own_server.udp_port
    alice, bob = registered_phones(port, ("1001", "1002"), tmp_path)
    try:
        call, at_bob = answered_call(alice, bob, f"sip:1002@127.0.0.1:{port}")
        start = time.monotonic()
        alice.wait_call_state(call, "DISCONNECTED", 10)
        bob.wait_call_state(at_bob, "DISCONNECTED", 10)
        assert 1.0 < time.monotonic() - start < 5
        [record] = wait_for_cdrs(own_server.data_dir)
        assert record.hangup_side.value == "system"
        assert record.hangup_cause == "maximum call duration"
        assert 1.5 < record.billsec < 4
    finally:
        alice.close()
        bob.close()
