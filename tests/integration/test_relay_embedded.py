"""`softswitch run` with its embedded relay (the shipped default): relayed calls, a relay
restarted after kill -9 that keeps forwarding, the media timeout ending a call, and one
`hep:` block capturing the SIP messages and the relay's RTCP reports.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from softswitch.cdr import read_cdrs
from tests.support.hep import Collector
from tests.support.phone import answered_call, registered_phones
from tests.support.server import ServerProcess, embedded_relay_config
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


def children(pid: int) -> set[int]:
    out: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        out.update(int(p) for p in text)
    return out


@pytest.fixture(scope="module")
def hep() -> Iterator[Collector]:
    collector = Collector()
    yield collector
    collector.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, hep: Collector) -> Iterator[ServerProcess]:
    media, ports = embedded_relay_config(
        extra=f"  silence_timeout: 2\nhep:\n  collector: 127.0.0.1:{hep.port}\n  agent_id: 7\n")
    server = ServerProcess(
        tmp_path_factory.mktemp("embedded"),
        extra_config=media)
    server.port_range = ports  # type: ignore[attr-defined]
    server.start()
    try:
        yield server
    finally:
        server.stop()
    assert server.process is not None


def test_relayed_call_survives_a_relay_kill_and_ends_on_media_timeout(
        server: ServerProcess, tmp_path: Path) -> None:
    assert server.process is not None
    [relay_pid] = wait_for(lambda: children(server.process.pid), 10,  # type: ignore[union-attr]
                           "the relay child")
    a, b = registered_phones(server.udp_port, ["1001", "1002"], tmp_path)
    try:
        call, incoming = answered_call(a, b, f"sip:1002@127.0.0.1:{server.udp_port}")
        low, high = server.port_range  # type: ignore[attr-defined]
        for phone, number in ((a, call), (b, incoming)):
            host, _, port = str(phone.stats(number)["remote_rtp"]).rpartition(":")
            assert host == "127.0.0.1" and low <= int(port) <= high, (host, port)
        wait_for(lambda: a.stats(call)["rx_packets"] > 25
                 and b.stats(incoming)["rx_packets"] > 25, 10, "RTP both ways via the relay")

        os.kill(relay_pid, signal.SIGKILL)
        new = wait_for(lambda: children(server.process.pid) - {relay_pid},  # type: ignore[union-attr]
                       10, "a new relay child")
        assert len(new) == 1
        before = (a.stats(call)["rx_packets"], b.stats(incoming)["rx_packets"])
        wait_for(lambda: a.stats(call)["rx_packets"] > before[0] + 25
                 and b.stats(incoming)["rx_packets"] > before[1] + 25, 10,
                 "RTP both ways again after the restart")
        assert "relay_died" in server.log_path.read_text()

        # Both phones die (the relay, like rtpengine, times a call out when
        # all its media stops): the relay tells the softswitch, which ends
        # the call (BYE both ways, seen by phones in test_relay_control.py).
        a.kill()
        b.kill()
        record = wait_for(lambda: [r for r in read_cdrs(server.data_dir / "cdr.sqlite")
                                   if r.caller == "1001"], 20, "the CDR")[-1]
        assert "media timeout" in record.hangup_cause and record.hangup_side.value == "system"
    finally:
        a.close()
        b.close()


def test_a_relayed_call_ends_with_loss_jitter_and_mos_in_the_cdr(
        server: ServerProcess, tmp_path: Path) -> None:
    """The relay's per-stream health (query/delete) reaches the CDR's media columns."""
    a, b = registered_phones(server.udp_port, ["1001", "1002"], tmp_path)
    try:
        call, incoming = answered_call(a, b, f"sip:1002@127.0.0.1:{server.udp_port}")
        wait_for(lambda: a.stats(call)["rx_packets"] > 50
                 and b.stats(incoming)["rx_packets"] > 50, 10, "a second of RTP both ways")
        since = len(read_cdrs(server.data_dir / "cdr.sqlite"))
        a.hangup(call)
        record = wait_for(lambda: read_cdrs(server.data_dir / "cdr.sqlite")[since:], 10,
                          "the CDR")[-1]
        # Two healthy phones on loopback: nothing lost, a few ms of jitter, G.711's top score.
        assert record.a_loss == 0.0 and record.b_loss == 0.0, record
        assert record.a_jitter is not None and 0 <= record.a_jitter < 20, record
        assert record.b_jitter is not None and 0 <= record.b_jitter < 20, record
        assert record.a_mos is not None and 4.0 <= record.a_mos <= 4.5, record
        assert record.b_mos is not None and 4.0 <= record.b_mos <= 4.5, record
    finally:
        a.close()
        b.close()


def test_early_media_flows_through_the_relay_before_the_answer(
        server: ServerProcess, tmp_path: Path) -> None:
    """A 183 with SDP (ringback or an announcement from the callee) is relayed like the 200."""
    a, b = registered_phones(server.udp_port, ["1001", "1002"], tmp_path)
    try:
        since = b.mark()
        call = a.call(f"sip:1002@127.0.0.1:{server.udp_port}")
        incoming = int(b.wait_event("incoming_call", 10, since=since)["call"])
        b.answer(incoming, 183)
        a.wait_call_state(call, "EARLY", 10)
        low, high = server.port_range  # type: ignore[attr-defined]
        host, _, port = str(a.stats(call)["remote_rtp"]).rpartition(":")
        assert host == "127.0.0.1" and low <= int(port) <= high, (host, port)
        wait_for(lambda: a.stats(call)["rx_packets"] > 25, 10, "early media at the caller")
        b.answer(incoming, 200)
        a.wait_call_state(call, "CONFIRMED", 10)
        before = (a.stats(call)["rx_packets"], b.stats(incoming)["rx_packets"])
        wait_for(lambda: a.stats(call)["rx_packets"] > before[0] + 25
                 and b.stats(incoming)["rx_packets"] > before[1] + 25, 10,
                 "RTP both ways after the answer")
        a.hangup(call)
        b.wait_call_state(incoming, "DISCONNECTED", 10)
    finally:
        a.close()
        b.close()


def test_the_relays_rtcp_reports_reach_the_collector_with_the_callers_call_id(
        server: ServerProcess, hep: Collector, tmp_path: Path) -> None:
    """Homer's view of a relayed call: RTCP as JSON (payload type 5) from both phones,
    correlated by the Call-ID of the caller's SIP messages, not by the relay's uuid."""
    a, b = registered_phones(server.udp_port, ["1001", "1002"], tmp_path)
    try:
        before = len(hep.drain())  # the module's earlier calls were captured too
        call, incoming = answered_call(a, b, f"sip:1002@127.0.0.1:{server.udp_port}")
        low, high = server.port_range  # type: ignore[attr-defined]

        def invite_call_ids(inbound: bool) -> set[str]:
            return {p.correlation_id for p in hep.drain()[before:]
                    if p.payload_type == 1 and p.payload.startswith(b"INVITE ")
                    and (p.destination[1] == server.udp_port) == inbound}

        # pjsua2 sends an RR at once, then an SR about every 5 s once it sends RTP:
        # wait for both phones' first SR.
        def reports() -> list[dict[str, Any]] | None:
            callers = invite_call_ids(True)
            found = [json.loads(p.payload) for p in hep.drain()[before:]
                     if p.payload_type == 5 and p.correlation_id in callers]
            senders = {r["ssrc"] for r in found if r["type"] == 200}
            return found if len(senders) >= 2 else None

        found = wait_for(reports, 25, "RTCP sender reports from both phones over HEP")
        callees = invite_call_ids(False)
        rtcp = [p for p in hep.drain()[before:] if p.payload_type == 5]
        assert {p.correlation_id for p in rtcp} == invite_call_ids(True)  # one call, the caller's
        assert not {p.correlation_id for p in rtcp} & callees
        for packet in rtcp:
            assert packet.agent_id == 7 and packet.source[0] == "127.0.0.1"
            # As received: at the relay's RTCP port (odd, RTP's + 1) of the call's range.
            assert packet.destination[0] == "127.0.0.1"
            assert low < packet.destination[1] <= high and packet.destination[1] % 2 == 1
        phones = {r["ssrc"] for r in found if r["type"] == 200}
        for report in found:
            assert report["type"] in (200, 201) and report["ssrc"] in phones
            for block in report["report_blocks"]:
                assert {"source_ssrc", "fraction_lost", "packets_lost", "ia_jitter", "lsr",
                        "dlsr"} <= set(block)
                # A phone reports on the other one's stream, relayed unchanged.
                assert block["source_ssrc"] in (phones - {report["ssrc"]}) | {0}
                assert block["fraction_lost"] == 0  # loopback loses nothing
            if report["type"] == 200:
                assert report["sender_information"]["packets"] > 0
        assert hep.malformed == 0
    finally:
        a.close()
        b.close()
