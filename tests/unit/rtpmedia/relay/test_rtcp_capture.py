"""RTCP over HEP: Homer's JSON of SRs and RRs, and the capture seen from a real forwarder."""

from __future__ import annotations

import json
import random
import socket
import struct
from typing import Any

from rtpmedia.hep import RTCP_JSON, decode
from rtpmedia.relay.calls import MediaEnd
from rtpmedia.relay.control import Bind, Control
from rtpmedia.relay.fastpath import NoFastPath
from rtpmedia.relay.forwarder import Forwarder
from rtpmedia.relay.ports import PortPool
from rtpmedia.relay.quality import ReportBlock, RtcpReport, parse_rtcp
from rtpmedia.relay.rtcp_capture import RtcpCapture, rtcp_json
from tests.unit.rtpmedia.relay.test_relay_forwarder import FakeReactor

HOST = "127.0.0.1"
BLOCK = ReportBlock(ssrc=0x1234, fraction_lost=64, cumulative_lost=17, highest_seq=70000,
                    jitter=33, lsr=0xAABBCCDD, dlsr=65536)
SR = RtcpReport(0xCAFE, (BLOCK,), ntp=(3900000000 << 32) | 0x80000000, rtp_timestamp=160000,
                packet_count=500, octet_count=80000)
RR = RtcpReport(0xBEEF, (BLOCK,))
# An SDES with one CNAME item: skipped by the parser, as in every real compound packet.
SDES = bytes([0x81, 202, 0, 3]) + struct.pack("!I", 0xCAFE) + bytes([1, 2]) + b"ab" + bytes(4)


def test_a_sender_report_is_homers_json() -> None:
    report = json.loads(rtcp_json(parse_rtcp(SR.serialize() + SDES)) or "")
    assert report == {
        "type": 200, "ssrc": 0xCAFE, "report_count": 1,
        "sender_information": {"ntp_timestamp_sec": 3900000000, "ntp_timestamp_usec": 0x80000000,
                               "rtp_timestamp": 160000, "packets": 500, "octets": 80000},
        "report_blocks": [{"source_ssrc": 0x1234, "fraction_lost": 64, "packets_lost": 17,
                           "highest_seq_no": 70000, "ia_jitter": 33, "lsr": 0xAABBCCDD,
                           "dlsr": 65536}],
    }


def test_a_receiver_report_has_no_sender_information() -> None:
    report = json.loads(rtcp_json(parse_rtcp(RR.serialize())) or "")
    assert report["type"] == 201 and report["ssrc"] == 0xBEEF
    assert "sender_information" not in report and len(report["report_blocks"]) == 1


def test_duplicates_never_report_negative_loss() -> None:
    dup = RtcpReport(1, (ReportBlock(2, 0, -3, 10, 0, 0, 0),))
    assert json.loads(rtcp_json(parse_rtcp(dup.serialize())) or "")[
        "report_blocks"][0]["packets_lost"] == 0


def test_without_sr_or_rr_there_is_no_report() -> None:
    assert rtcp_json(parse_rtcp(SDES)) is None
    assert rtcp_json(parse_rtcp(b"\x80\xc8junk")) is None


def end(call_id: str = "uuid-1", port: int = 30000) -> MediaEnd:
    return MediaEnd(call_id, "A", 0, port)


def test_capture_correlates_by_the_sip_call_id_with_the_packets_addresses() -> None:
    sent: list[bytes] = []
    capture = RtcpCapture(sent.append, {"uuid-1": "abc@phone"}.__getitem__, agent_id=7,
                          auth_key="k")
    capture(end(), SR.serialize(), ("192.0.2.9", 4001), ("192.0.2.1", 30001), 1700000000.5)
    capture(end(), SDES, ("192.0.2.9", 4001), ("192.0.2.1", 30001), 1700000001.0)
    capture(end(), SR.serialize(), ("::1", 4001), ("192.0.2.1", 30001), 1700000001.0)
    [datagram] = sent
    packet = decode(datagram)
    assert packet.payload_type == RTCP_JSON and packet.correlation_id == "abc@phone"
    assert packet.source == ("192.0.2.9", 4001) and packet.destination == ("192.0.2.1", 30001)
    assert packet.agent_id == 7 and packet.auth_key == "k" and packet.time == 1700000000.5
    assert packet.protocol == socket.IPPROTO_UDP
    assert json.loads(packet.payload)["ssrc"] == 0xCAFE
    assert capture.sent == 1 and capture.skipped == 2


def test_a_wildcard_listen_address_is_named_by_the_advertised_one() -> None:
    sent: list[bytes] = []
    capture = RtcpCapture(sent.append, lambda call_id: call_id, local_host="203.0.113.5")
    capture(end(), RR.serialize(), ("198.51.100.7", 4001), ("0.0.0.0", 30001), 1.0)
    packet = decode(sent[0])
    assert packet.destination == ("203.0.113.5", 30001) and packet.correlation_id == "uuid-1"


def test_the_forwarder_shows_each_rtcp_packet_it_passes_on_with_the_sip_call_id() -> None:
    """Real sockets: an RR sent to the relay's RTCP port reaches the other party and the
    capture, which names the caller leg's Call-ID the softswitch gave in the offer."""
    reactor = FakeReactor()
    taps: list[tuple[MediaEnd, bytes, Any, Any, float]] = []
    forwarder = Forwarder(reactor, HOST, NoFastPath(), lambda end: None,
                          capture=lambda *seen: taps.append(seen))
    low = random.randrange(20000, 32000, 2)
    control = Control(PortPool(low, low + 19), HOST)
    a_rtcp, b_rtcp = (socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2))
    try:
        for s in (a_rtcp, b_rtcp):
            s.bind((HOST, 0))
            s.settimeout(1.0)

        def sdp(rtcp: socket.socket) -> str:
            port = rtcp.getsockname()[1] - 1
            return (f"v=0\r\no=- 1 1 IN IP4 {HOST}\r\ns=-\r\nc=IN IP4 {HOST}\r\nt=0 0\r\n"
                    f"m=audio {port} RTP/AVP 0\r\na=rtcp:{port + 1}\r\n")

        for command, body in (("offer", sdp(a_rtcp)), ("answer", sdp(b_rtcp))):
            answer, effects = control.handle(
                {"command": command, "call-id": "uuid-9", "from-tag": "A", "to-tag": "B",
                 "sdp": body, "sip-call-id": "caller-cid@192.0.2.1"}, 0)
            assert answer["result"] == "ok", answer
            for effect in effects:
                if isinstance(effect, Bind):
                    forwarder.bind(effect.end)
        call = control.calls["uuid-9"]
        assert call.sip_call_id == "caller-cid@192.0.2.1"
        a_end, b_end = (call.monologues[t].ends[0] for t in ("A", "B"))
        rr = RR.serialize()
        a_rtcp.sendto(rr, (HOST, a_end.port + 1))
        reactor.pump()
        assert b_rtcp.recvfrom(2048) == (rr, (HOST, b_end.port + 1))  # forwarded as before
        [(seen_end, data, source, local, _)] = taps
        assert seen_end is a_end and data == rr
        assert source == a_rtcp.getsockname() and local == (HOST, a_end.port + 1)
    finally:
        forwarder.close()
        a_rtcp.close()
        b_rtcp.close()
