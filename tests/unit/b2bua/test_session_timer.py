"""RFC 4028 negotiation and the per-leg session timer."""

from __future__ import annotations

import pytest

from softswitch.b2bua.session_timer import (
    EXPIRE,
    REFRESH,
    Refresher,
    SessionExpires,
    SessionTimer,
    UasNegotiation,
    negotiate_as_uac,
    negotiate_as_uas,
)
from softswitch.sip.errors import MessageError
from softswitch.sip.message import parse_message


def invite(*headers: str) -> bytes:
    lines = ["INVITE sip:1002@pbx.example.com SIP/2.0",
             "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1", "From: <sip:1001@x>;tag=a",
             "To: <sip:1002@x>", "Call-ID: c1", "CSeq: 1 INVITE", *headers, "Content-Length: 0"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@pytest.mark.parametrize("headers,expected", [
    # a caller that supports timers refreshes itself (RFC 4028 9)
    (("Supported: timer", "Session-Expires: 600"), ("600;refresher=uac", Refresher.PEER, True)),
    (("Supported: timer",), ("1800;refresher=uac", Refresher.PEER, True)),
    # the caller may ask us to refresh
    (("Supported: timer", "Session-Expires: 900;refresher=uas"),
     ("900;refresher=uas", Refresher.US, True)),
    # a caller without timer support: we refresh, and Require is not sent
    ((), ("1800;refresher=uas", Refresher.US, False)),
])
def test_uas_negotiation(headers: tuple[str, ...], expected: tuple[str, Refresher, bool]) -> None:
    result = negotiate_as_uas(parse_message(invite(*headers)), 1800, 90)
    assert isinstance(result, UasNegotiation)
    assert (str(result.expires), result.refresher, result.require_timer) == expected


def test_too_small_an_interval_gets_422_with_our_min_se() -> None:
    assert negotiate_as_uas(parse_message(invite("Session-Expires: 30")), 1800, 90) == 90


def test_bad_session_expires_is_a_message_error() -> None:
    with pytest.raises(MessageError):
        SessionExpires.parse("soon;refresher=uac")
    with pytest.raises(MessageError):
        SessionExpires.parse("100;refresher=nobody")


def test_uac_negotiation_from_the_2xx() -> None:
    ok = parse_message(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
                       b"From: <sip:a@x>;tag=a\r\nTo: <sip:b@x>;tag=b\r\nCall-ID: c\r\n"
                       b"CSeq: 1 INVITE\r\nSession-Expires: 1200;refresher=uas\r\n"
                       b"Content-Length: 0\r\n\r\n")
    assert negotiate_as_uac(ok) == (1200, Refresher.PEER)
    ok.set("Session-Expires", "1200;refresher=uac")
    assert negotiate_as_uac(ok) == (1200, Refresher.US)
    ok.remove("session-expires")
    assert negotiate_as_uac(ok) is None


def test_refresher_refreshes_every_half_interval() -> None:
    timer = SessionTimer(100, Refresher.US)
    assert timer.delay == 50
    assert timer.on_fire == REFRESH


def test_non_refresher_expires_with_a_margin_for_the_refresher() -> None:
    # RFC 4028 10: interval minus min(32, interval/3).
    assert SessionTimer(90, Refresher.PEER).delay == 60
    assert SessionTimer(1800, Refresher.PEER).delay == 1768
    assert SessionTimer(90, Refresher.PEER).on_fire == EXPIRE
