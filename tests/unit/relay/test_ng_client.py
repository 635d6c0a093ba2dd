"""The ng client: retries on the backoff schedule, the overall timeout, answers, teardowns."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet import task
from twisted.python.failure import Failure

from rtpmedia import ng
from softswitch.relay.ng_client import NgClient, NgFailure, NgTimeout, parse_address

RELAY = ("127.0.0.1", 2223)


class FakeUDP:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def write(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append((data, addr))


def client(**kw: Any) -> tuple[NgClient, task.Clock, FakeUDP]:
    clock = task.Clock()
    c = NgClient(clock, t1=0.25, t2=1.0, timeout=3.0, **kw)
    udp = FakeUDP()
    c.makeConnection(udp)  # type: ignore[arg-type]
    return c, clock, udp


def outcome(d: Any) -> list[Any]:
    got: list[Any] = []
    d.addBoth(got.append)
    return got


def test_resends_the_same_datagram_with_backoff_then_times_out() -> None:
    c, clock, udp = client()
    got = outcome(c.request(RELAY, {"command": "ping"}))
    times = [0.0]
    while clock.seconds() < 2.99:
        clock.advance(0.01)
        if len(udp.sent) > len(times):
            times.append(round(clock.seconds(), 2))
    # T1 doubling to T2 (0.25, 0.5, 1.0, 1.0...) up to the overall timeout of 3 s.
    assert times == pytest.approx([0.0, 0.25, 0.75, 1.75, 2.75], abs=0.02)
    assert got == []
    clock.advance(0.02)
    assert isinstance(got[0], Failure) and got[0].check(NgTimeout)
    assert len({d for d, _ in udp.sent}) == 1 and all(a == RELAY for _, a in udp.sent)
    assert c.outstanding == 0
    clock.advance(10)
    assert len(udp.sent) == 5


def test_an_answer_with_the_cookie_fires_and_stops_retries() -> None:
    c, clock, udp = client()
    got = outcome(c.request(RELAY, {"command": "offer", "sdp": "v=0"}))
    cookie, message = ng.decode(udp.sent[0][0])
    assert message == {"command": "offer", "sdp": "v=0"}
    c.datagramReceived(ng.encode(b"other", {"result": "ok"}), RELAY)  # not ours
    assert got == []
    c.datagramReceived(b"junk", RELAY)  # logged, ignored
    c.datagramReceived(ng.encode(cookie, {"result": "ok", "sdp": "v=1"}), RELAY)
    assert got == [{"result": "ok", "sdp": "v=1"}]
    clock.advance(10)
    assert len(udp.sent) == 1


def test_an_error_answer_fails_with_its_reason() -> None:
    c, _, udp = client()
    got = outcome(c.request(RELAY, {"command": "offer"}))
    cookie, _ = ng.decode(udp.sent[0][0])
    c.datagramReceived(ng.encode(cookie, {"result": "error", "error-reason": "Ran out of ports"}),
                       RELAY)
    assert got[0].check(NgFailure) and got[0].value.reason == "Ran out of ports"


def test_a_teardown_is_answered_ok_and_handed_on_each_time() -> None:
    torn: list[tuple[str, str]] = []
    c, _, udp = client(on_teardown=lambda call, reason: torn.append((call, reason)))
    teardown = ng.encode(b"r1", {"command": "teardown", "call-id": "u-1",
                                 "reason": "media timeout"})
    c.datagramReceived(teardown, ("127.0.0.1", 2223))
    c.datagramReceived(teardown, ("127.0.0.1", 2223))  # the relay did not hear us
    assert torn == [("u-1", "media timeout")] * 2
    assert [ng.decode(d) for d, _ in udp.sent] == [(b"r1", {"result": "ok"})] * 2
    c.datagramReceived(ng.encode(b"r2", {"command": "teardown"}), RELAY)
    assert ng.decode(udp.sent[-1][0])[1]["result"] == "error"
    assert len(torn) == 2


def test_cookies_differ() -> None:
    c, _, udp = client()
    c.request(RELAY, {"command": "ping"})
    c.request(RELAY, {"command": "ping"})
    assert len({ng.decode(d)[0] for d, _ in udp.sent}) == 2


def test_stop_fails_what_waits() -> None:
    c, _, _ = client()
    got = outcome(c.request(RELAY, {"command": "ping"}))
    c.stop()
    assert got[0].check(NgTimeout)


@pytest.mark.parametrize("text,expected", [
    ("udp:127.0.0.1:2223", ("127.0.0.1", 2223)), ("10.0.0.1:22222", ("10.0.0.1", 22222)),
    ("udp:[::1]:2223", ("::1", 2223))])
def test_parse_address(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize("text", ["udp:host", "udp::22", "udp:h:0", "udp:h:70000", "", "[::1]"])
def test_bad_address(text: str) -> None:
    with pytest.raises(ValueError):
        parse_address(text)


def test_a_media_event_is_answered_ok_each_time_and_handed_on_once_per_cookie() -> None:
    events: list[tuple[str, dict[str, Any]]] = []
    c, clock, udp = client(on_media_event=lambda call, message: events.append((call, message)))
    played = ng.encode(b"me1", {"command": "media event", "call-id": "u-1",
                                "from-tag": "a-tag", "event": "played"})
    c.datagramReceived(played, RELAY)
    c.datagramReceived(played, RELAY)  # our ok was lost: the relay repeats it
    assert [ng.decode(d) for d, _ in udp.sent] == [(b"me1", {"result": "ok"})] * 2
    # A repeat must not end the prompt that follows: handed on once.
    assert [(call, m["event"]) for call, m in events] == [("u-1", "played")]
    c.datagramReceived(ng.encode(b"me2", {"command": "media event", "call-id": "u-1",
                                          "from-tag": "a-tag", "event": "played"}), RELAY)
    assert len(events) == 2
    clock.advance(120)  # long after the relay stopped repeating: the cookie may come again
    c.datagramReceived(played, RELAY)
    assert len(events) == 3
