"""Blind transfer (REFER, RFC 3515) between real pjsua2 phones."""

from __future__ import annotations

from pathlib import Path

import pytest

from softswitch.cdr import Disposition, read_cdrs
from tests.support.phone import answered_call, registered_phones
from tests.support.server import ServerProcess
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration




def test_callee_blind_transfers_the_caller_to_a_third_phone(own_server: ServerProcess,
                                                             tmp_path: Path) -> None:
    own_server.start()
    port = own_server.udp_port
    alice, bob, carol = registered_phones(port, ("1001", "1002", "1003"), tmp_path)
    try:
        call, at_bob = answered_call(alice, bob, f"sip:1002@127.0.0.1:{port}")
        bobs_media = wait_for(lambda: alice.stats(call)["remote_rtp"], 10, "media to Bob")

        bob.transfer(at_bob, f"sip:1003@127.0.0.1:{port}")
        at_carol = carol.wait_event("incoming_call", 10)
        assert "1001" in at_carol["remote_uri"]  # Carol sees who is being transferred
        carol.answer(at_carol["call"], 200)
        carol.wait_call_state(at_carol["call"], "CONFIRMED", 10)
        # Bob is out of the call; Alice and Carol hear each other.
        bob.wait_call_state(at_bob, "DISCONNECTED", 10)
        wait_for(lambda: carol.stats(at_carol["call"])["rx_packets"] > 25, 10, "RTP at Carol")
        before = alice.stats(call)["rx_packets"]
        wait_for(lambda: alice.stats(call)["rx_packets"] > before + 25, 10, "RTP at Alice")
        # Alice's media now goes to Carol, not to Bob (direct media).
        assert alice.stats(call)["remote_rtp"] != bobs_media

        alice.hangup(call)
        carol.wait_call_state(at_carol["call"], "DISCONNECTED", 10)
        [record] = wait_for(lambda: read_cdrs(own_server.data_dir / "cdr.sqlite"), 10, "the CDR")
        assert record.disposition is Disposition.ANSWERED
        assert record.callee == "user/1003" and record.hangup_side.value == "caller"
    finally:
        for phone in (alice, bob, carol):
            phone.close()


def test_attended_transfer_joins_the_callers_two_calls(own_server: ServerProcess,
                                                        tmp_path: Path) -> None:
    own_server.start()
    port = own_server.udp_port
    alice, bob, carol = registered_phones(port, ("1001", "1002", "1003"), tmp_path)
    try:
        to_bob, from_alice = answered_call(alice, bob, f"sip:1002@127.0.0.1:{port}")
        # Bob consults Carol on a second call, then joins Alice and Carol.
        to_carol, from_bob = answered_call(bob, carol, f"sip:1003@127.0.0.1:{port}")
        before = alice.stats(to_bob)["remote_rtp"]

        bob.transfer_replaces(from_alice, to_carol)
        bob.wait_call_state(from_alice, "DISCONNECTED", 10)
        bob.wait_call_state(to_carol, "DISCONNECTED", 10, since=0)
        # Alice's and Carol's calls go on, now with each other.
        wait_for(lambda: alice.stats(to_bob)["remote_rtp"] != before, 10, "Alice's media moved")
        rx = carol.stats(from_bob)["rx_packets"]
        wait_for(lambda: carol.stats(from_bob)["rx_packets"] > rx + 25, 10, "RTP at Carol")

        alice.hangup(to_bob)
        carol.wait_call_state(from_bob, "DISCONNECTED", 10)
        records = wait_for(lambda: len(read_cdrs(own_server.data_dir / "cdr.sqlite")) == 2
                        and read_cdrs(own_server.data_dir / "cdr.sqlite"), 10, "two CDRs")
        by_caller = {r.caller: r for r in records}
        assert by_caller["1002"].hangup_cause == "attended transfer"
        assert by_caller["1001"].callee == "user/1003"
        assert all(r.disposition is Disposition.ANSWERED for r in records)
    finally:
        for phone in (alice, bob, carol):
            phone.close()
