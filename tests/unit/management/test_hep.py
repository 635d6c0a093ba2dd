"""SIP capture over HEP v3: each message with its addresses and Call-ID (the wire format
is tested in tests/unit/rtpmedia/test_hep_format.py)."""

from __future__ import annotations

import socket

from rtpmedia import hep
from softswitch.management import hep as management_hep
from softswitch.management.hep import HepCapture, decode
from softswitch.sip.message import parse_message
from softswitch.sip.peer import Peer


def test_the_wire_format_names_are_the_shared_ones() -> None:
    """Callers of softswitch.management.hep keep working on rtpmedia.hep's functions."""
    for name in ("MAGIC", "SIP", "RTCP_JSON", "HepError", "HepPacket", "encode", "decode",
                 "decode_chunks"):
        assert getattr(management_hep, name) is getattr(hep, name), name


def test_capture_sends_each_message_with_its_addresses_and_skips_host_names() -> None:
    sent: list[bytes] = []
    capture = HepCapture(sent.append, lambda peer: ("10.0.0.1", 5060), agent_id=3)
    message = parse_message(b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2;branch=z9hG4bK1"
                            b"\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: cid-1\r\n"
                            b"CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
    capture.message_received(message, Peer("tcp", "10.0.0.2", 40000), 12.5)
    capture.message_sent(message, Peer("udp", "10.0.0.2", 5062), 13.0)
    capture.message_sent(message, Peer("udp", "phone.example", 5062), 13.0)
    first, second = (decode(d) for d in sent)
    assert first.source == ("10.0.0.2", 40000) and first.destination == ("10.0.0.1", 5060)
    assert first.protocol == socket.IPPROTO_TCP and first.correlation_id == "cid-1"
    assert second.source == ("10.0.0.1", 5060) and second.destination == ("10.0.0.2", 5062)
    assert capture.sent == 2 and capture.skipped == 1
