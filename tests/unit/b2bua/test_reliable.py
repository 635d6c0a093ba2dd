"""Reliable provisional responses towards the caller (RFC 3262 3)."""

from __future__ import annotations

from twisted.internet.task import Clock

from softswitch.b2bua.reliable import ReliableProvisionals
from softswitch.sip.dialog import RAck
from softswitch.sip.message import Response, parse_message


def ringing(rseq: int, status: int = 180) -> Response:
    message = parse_message(
        f"SIP/2.0 {status} Ringing\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
        f"From: <sip:a@x>;tag=a\r\nTo: <sip:b@x>;tag=b\r\nCall-ID: c\r\nCSeq: 7 INVITE\r\n"
        f"Require: 100rel\r\nRSeq: {rseq}\r\nContent-Length: 0\r\n\r\n".encode())
    assert isinstance(message, Response)
    return message


def test_resent_until_pracked_then_the_next_goes() -> None:
    clock, sent = Clock(), []
    reliable = ReliableProvisionals(clock, 0.5, 4.0, sent.append)
    first, second = ringing(1), ringing(2, 183)
    reliable.send(first)
    reliable.send(second)  # waits: one reliable provisional at a time
    assert sent == [first]
    clock.advance(0.5)
    clock.advance(1.0)
    assert sent == [first, first, first]  # T1, then doubled
    assert not reliable.prack(RAck(2, 7, "INVITE"))  # not the one in flight
    assert reliable.prack(RAck(1, 7, "INVITE"))
    assert sent[-1] is second
    assert reliable.prack(RAck(2, 7, "INVITE"))
    clock.advance(10)
    assert sent.count(second) == 1  # acknowledged: no more resends
    # A PRACK repeated, or crossing the final response, still matches.
    reliable.stop()
    assert reliable.prack(RAck(1, 7, "INVITE"))
    assert not reliable.prack(RAck(9, 7, "INVITE"))


def test_gives_up_after_64_t1() -> None:
    clock, sent = Clock(), []
    reliable = ReliableProvisionals(clock, 0.5, 4.0, sent.append)
    reliable.send(ringing(1))
    clock.pump([0.5] * 100)
    count = len(sent)
    clock.advance(100)
    assert len(sent) == count and reliable.pending is None
