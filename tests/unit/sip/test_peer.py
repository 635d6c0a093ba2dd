"""Where answers go: received/rport stamping and response routing (RFC 3261 18.2, RFC 3581)."""

from __future__ import annotations

from softswitch.sip.headers import Via
from softswitch.sip.message import Request, parse_message
from softswitch.sip.peer import Peer, response_peer, stamp_via
from tests.sipcases.malformed import request


def _req(via: str) -> Request:
    msg = parse_message(request(replace={"Via": f"Via: {via}"}, extra=(
        "Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKsecond",)))
    assert isinstance(msg, Request)
    return msg


def test_peer() -> None:
    assert str(Peer("udp", "192.0.2.1", 5060)) == "udp:192.0.2.1:5060"
    assert str(Peer("tls", "2001:db8::1", 5061)) == "tls:[2001:db8::1]:5061"
    assert Peer("tcp", "h", 1).reliable and not Peer("udp", "h", 1).reliable


def test_stamp_received_and_rport() -> None:
    req = _req("SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bK1;rport")
    stamp_via(req, Peer("udp", "203.0.113.9", 40123))
    assert req.top_via.params["received"] == "203.0.113.9"
    assert req.top_via.params["rport"] == "40123"
    # the header text changed too, so responses copy the stamped Via
    again = parse_message(req.to_bytes())
    assert again.top_via.params == req.top_via.params
    assert [v.branch for v in again.vias] == ["z9hG4bK1", "z9hG4bKsecond"]


def test_no_stamp_when_sent_by_is_the_source() -> None:
    req = _req("SIP/2.0/UDP 203.0.113.9:5060;branch=z9hG4bK1")
    before = req.to_bytes()
    stamp_via(req, Peer("udp", "203.0.113.9", 5060))
    assert req.to_bytes() == before


def test_response_peer_udp() -> None:
    src = Peer("udp", "203.0.113.9", 40123, connection=3)
    assert response_peer(Via.parse("SIP/2.0/UDP h:5070;rport=40123;received=203.0.113.9"),
                         src) == Peer("udp", "203.0.113.9", 40123, 3)
    assert response_peer(Via.parse("SIP/2.0/UDP h:5070;received=203.0.113.9"),
                         src) == Peer("udp", "203.0.113.9", 5070, 3)
    assert response_peer(Via.parse("SIP/2.0/UDP h;maddr=[2001:db8::5]"),
                         src).host == "2001:db8::5"
    assert response_peer(Via.parse("SIP/2.0/UDP h"), src).port == 5060


def test_response_peer_stream_reuses_the_connection() -> None:
    src = Peer("tls", "203.0.113.9", 40999, connection=7)
    peer = response_peer(Via.parse("SIP/2.0/TLS h;rport=40999"), src)
    assert (peer.host, peer.port, peer.connection) == ("203.0.113.9", 5061, 7)
