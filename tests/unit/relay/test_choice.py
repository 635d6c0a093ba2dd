"""Relayed or direct per call: dialplan variable, then trunk, then the server's mode; NAT."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from twisted.internet import task

from softswitch.b2bua.legs import Leg, LegId, LegState
from softswitch.b2bua.media import DirectMedia
from softswitch.relay.choice import MediaChoice, nat_source
from softswitch.relay.pool import RelayPool
from softswitch.relay.seam import RelayMedia
from softswitch.sip.message import Request, parse_message
from softswitch.sip.peer import Peer, stamp_via


def invite(via: str, source: tuple[str, int]) -> Request:
    data = (f"INVITE sip:1002@pbx SIP/2.0\r\nVia: SIP/2.0/UDP {via};branch=z9hG4bKx\r\n"
            "From: <sip:1001@pbx>;tag=f\r\nTo: <sip:1002@pbx>\r\nCall-ID: c1\r\n"
            "CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n").encode()
    request = parse_message(data)
    assert isinstance(request, Request)
    stamp_via(request, Peer("udp", *source))
    return request


def caller_leg(request: Request | None) -> Leg:
    return Leg("a", True, "1001", Peer("udp", "127.0.0.1", 5060), LegId("c1", "t", "f"),
               LegState.INCOMING, invite=request)


@dataclass
class FakeMachine:
    uuid: str = "u1"
    trunk: str | None = None
    variables: dict[str, str] = field(default_factory=dict)
    legs: list[Any] = field(default_factory=list)


def relay() -> RelayMedia:
    return RelayMedia(object(), RelayPool([("udp:127.0.0.1:2223", 1)]), task.Clock())  # type: ignore[arg-type]


def test_the_dialplan_wins_then_the_trunk_then_the_server() -> None:
    choice = MediaChoice("relay", relay(), {"carrier": "direct", "other": None})
    assert choice.mode({}, None) == "relay"
    assert choice.mode({}, "carrier") == "direct"
    assert choice.mode({}, "other") == "relay"
    assert choice.mode({"media": "relay"}, "carrier") == "relay"
    assert choice.mode({"media": " Direct "}, None) == "direct"
    assert choice.mode({"media": "bogus"}, "carrier") == "direct"  # unknown: as if unset


def test_seam_and_what_the_call_remembers() -> None:
    seam = relay()
    choice = MediaChoice("relay", seam)
    machine = FakeMachine()
    got, remember = choice.seam_for(machine)
    assert got is seam and remember == {"media": "relay", "media_relay": "udp:127.0.0.1:2223"}
    direct, remember = choice.seam_for(FakeMachine(variables={"media": "direct"}))
    assert isinstance(direct, DirectMedia) and remember == {"media": "direct"}
    # A restored call names its relay: it goes back there even if the pool has others.
    restored = FakeMachine(uuid="u2", variables={"media": "relay",
                                                 "media_relay": "udp:10.0.0.9:2223"})
    choice.seam_for(restored)
    assert seam.calls["u2"] == "udp:10.0.0.9:2223"
    # No relay configured: everything is direct.
    assert isinstance(MediaChoice("relay", None).seam_for(machine)[0], DirectMedia)


def test_nat_seen_from_the_via() -> None:
    assert nat_source(caller_leg(invite("192.168.1.20:5060;rport", ("203.0.113.7", 40123)))) \
        == "203.0.113.7"
    assert nat_source(caller_leg(invite("203.0.113.7:5060;rport", ("203.0.113.7", 40123)))) \
        == "203.0.113.7"  # same address, another port: a NAT that kept the address
    assert nat_source(caller_leg(invite("127.0.0.1:5070;rport", ("127.0.0.1", 5070)))) is None
    assert nat_source(caller_leg(invite("127.0.0.1:5070", ("127.0.0.1", 5070)))) is None
    assert nat_source(caller_leg(None)) is None


def test_a_caller_behind_nat_is_offered_with_its_source() -> None:
    asked: list[dict[str, Any]] = []

    class Client:
        def request(self, address: Any, message: dict[str, Any], timeout: Any = None) -> Any:
            from twisted.internet.defer import succeed
            asked.append(message)
            return succeed({"result": "ok", "sdp": "v=0"})

    seam = RelayMedia(Client(), RelayPool([("udp:127.0.0.1:2223", 1)]), task.Clock())  # type: ignore[arg-type]
    leg = caller_leg(invite("192.168.1.20:5060;rport", ("203.0.113.7", 40123)))
    machine = FakeMachine(legs=[leg])
    got, _ = MediaChoice("relay", seam).seam_for(machine)
    got.offer("u1", leg.id, LegId("c2", "b"), b"v=0", None)
    assert asked[0]["received-from"] == ["IP4", "203.0.113.7"]


def test_a_callee_behind_nat_is_answered_with_the_address_we_reach_it_at() -> None:
    """Its Contact says 192.168.1.30; its REGISTER came from 203.0.113.8, where
    the INVITE went: its RTP will come from there, so the relay is told."""
    asked: list[dict[str, Any]] = []

    class Client:
        def request(self, address: Any, message: dict[str, Any], timeout: Any = None) -> Any:
            from twisted.internet.defer import succeed
            asked.append(message)
            return succeed({"result": "ok", "sdp": "v=0"})

    seam = RelayMedia(Client(), RelayPool([("udp:127.0.0.1:2223", 1)]), task.Clock())  # type: ignore[arg-type]
    ours = parse_message(
        b"INVITE sip:1002@192.168.1.30:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.1;branch=z9hG4bKx\r\n"
        b"From: <sip:1001@pbx>;tag=f\r\nTo: <sip:1002@pbx>\r\nCall-ID: c2\r\n"
        b"CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")
    assert isinstance(ours, Request)
    callee = Leg("b1", False, "1002", Peer("udp", "203.0.113.8", 40500), LegId("c2", "f", "t"),
                 LegState.EARLY, invite=ours)
    same = Leg("b2", False, "1003", Peer("udp", "192.168.1.30", 5060), LegId("c3", "f", "t"),
               LegState.EARLY, invite=ours)
    caller = caller_leg(invite("127.0.0.1:5070", ("127.0.0.1", 5070)))
    got, _ = MediaChoice("relay", seam).seam_for(FakeMachine(legs=[caller, callee, same]))
    got.answer("u1", callee.id, caller.id, b"v=0", None)
    got.answer("u1", same.id, caller.id, b"v=0", None)
    assert asked[0]["received-from"] == ["IP4", "203.0.113.8"]
    assert "received-from" not in asked[1]  # reached where its Contact says: no NAT


def test_offers_name_the_caller_legs_sip_call_id_for_hep() -> None:
    asked: list[dict[str, Any]] = []

    class Client:
        def request(self, address: Any, message: dict[str, Any], timeout: Any = None) -> Any:
            from twisted.internet.defer import succeed
            asked.append(message)
            return succeed({"result": "ok", "sdp": "v=0"})

    seam = RelayMedia(Client(), RelayPool([("udp:127.0.0.1:2223", 1)]), task.Clock())  # type: ignore[arg-type]
    caller = caller_leg(invite("127.0.0.1:5070", ("127.0.0.1", 5070)))
    callee = Leg("b1", False, "1002", Peer("udp", "127.0.0.1", 5080), LegId("c9", "f", "t"),
                 LegState.CALLING)
    got, _ = MediaChoice("relay", seam).seam_for(FakeMachine(legs=[callee, caller]))
    got.offer("u1", caller.id, callee.id, b"v=0", None)
    got.answer("u1", callee.id, caller.id, b"v=0", None)
    assert [m["sip-call-id"] for m in asked] == ["c1", "c1"]
    assert asked[0]["call-id"] == "u1"  # the relay still names the call by its uuid


def test_a_recorded_call_asks_the_relay_with_its_file_and_remembers_it() -> None:
    asked: list[dict[str, Any]] = []

    class Client:
        def request(self, address: Any, message: dict[str, Any], timeout: Any = None) -> Any:
            from twisted.internet.defer import succeed
            asked.append(message)
            return succeed({"result": "ok", "sdp": "v=0"})

    clock = task.Clock()
    clock.advance(1_780_000_000)  # 2026-05-28 UTC
    seam = RelayMedia(Client(), RelayPool([("udp:127.0.0.1:2223", 1)]), clock)  # type: ignore[arg-type]
    choice = MediaChoice("relay", seam, trunk_records={"carrier": True})
    leg = caller_leg(None)

    @dataclass
    class Machine(FakeMachine):
        call_id: str = "c1"  # the caller leg's

    # The dialplan's record_call, else the trunk's record_calls.
    assert choice.records({"record_call": "yes"}, None)
    assert choice.records({}, "carrier") and not choice.records({}, "other")
    assert not choice.records({"record_call": "no"}, "carrier")  # the dialplan wins
    machine = Machine(variables={"record_call": "yes"}, legs=[leg])
    got, remember = choice.seam_for(machine)
    assert remember["recording"] == "recordings/2026-05-28/u1.wav"
    got.offer("u1", leg.id, LegId("c2", "b"), b"v=0", None)
    assert asked[-1]["record-call"] == "yes"
    assert asked[-1]["recording-file"] == "recordings/2026-05-28/u1.wav"
    assert asked[-1]["sip-call-id"] == "c1"
    # A call not recorded asks nothing of the kind.
    plain = Machine(uuid="u9", legs=[leg])
    got, remember = choice.seam_for(plain)
    got.offer("u9", leg.id, LegId("c2", "b"), b"v=0", None)
    assert "recording" not in remember and "record-call" not in asked[-1]
    # A restored call keeps its file even on another day.
    clock.advance(86400)
    restored = Machine(uuid="u3", variables={"record_call": "yes",
                                             "recording": "recordings/2026-05-28/u3.wav"})
    assert choice.seam_for(restored)[1]["recording"] == "recordings/2026-05-28/u3.wav"
