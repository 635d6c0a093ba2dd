"""The SIP core's seams: routing by method and dialog, the ACK and stray
response chains, and message observers.

Real parts: requests are bytes through `SipCore.receive`, the real parser and
transaction layer, on Twisted's `task.Clock`; what the core sends is what the
transport would get.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from structlog.testing import capture_logs
from twisted.internet import task

from softswitch.core import Handler, SipCore
from softswitch.sip.message import Message, Request, Response, make_response, parse_message
from softswitch.sip.peer import Peer
from softswitch.sip.transaction import ServerTransaction

PHONE = Peer("udp", "192.0.2.10", 5062)
_branches = iter(range(1, 1_000_000))


def request(method: str, *, to_tag: str | None = None, user: str | None = "1002",
            seq: int | None = None, branch: str | None = None) -> bytes:
    to = "<sip:1002@pbx.example.com>" + (f";tag={to_tag}" if to_tag else "")
    target = f"sip:{user}@pbx.example.com" if user else "sip:pbx.example.com"
    number = next(_branches)
    branch = branch or f"z9hG4bKcore{number}"
    # A new CSeq number each time unless asked (a CANCEL shares its INVITE's),
    # so that the transaction layer does not take them for merged (482).
    seq = number if seq is None else seq
    return (
        f"{method} {target} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 192.0.2.10:5062;branch={branch}\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:1001@pbx.example.com>;tag=from1\r\n"
        f"To: {to}\r\n"
        "Call-ID: core-test@192.0.2.10\r\n"
        f"CSeq: {seq} {method}\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def response(status: int, *, method: str = "INVITE") -> bytes:
    return (
        f"SIP/2.0 {status} OK\r\n"
        "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKnobodysent\r\n"
        "From: <sip:1001@pbx.example.com>;tag=from1\r\n"
        "To: <sip:1002@pbx.example.com>;tag=to1\r\n"
        "Call-ID: core-test@192.0.2.10\r\n"
        f"CSeq: 1 {method}\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


@dataclass
class Harness:
    clock: task.Clock = field(default_factory=task.Clock)
    sent: list[Message] = field(default_factory=list)
    core: SipCore = field(init=False)

    def __post_init__(self) -> None:
        self.core = SipCore(self.clock, lambda message, peer: self.sent.append(message))

    def responses(self) -> list[Response]:
        out = []
        for message in self.sent:
            parsed = parse_message(message.to_bytes())
            if isinstance(parsed, Response):
                out.append(parsed)
        return out

    def last_status(self) -> int:
        return self.responses()[-1].status


def answering(status: int, seen: list[str]) -> Handler:
    def handler(tx: ServerTransaction, req: Request) -> None:
        seen.append(req.method)
        tx.respond(make_response(req, status, to_tag=req.to_tag or "uas1"))
    return handler


# -- routing ---------------------------------------------------------------------


def test_a_route_for_both_sides_takes_requests_with_and_without_to_tag() -> None:
    h, seen = Harness(), []
    h.core.route("MESSAGE", answering(202, seen))
    h.core.receive(request("MESSAGE"), PHONE)
    h.core.receive(request("MESSAGE", to_tag="t1"), PHONE)
    assert seen == ["MESSAGE", "MESSAGE"]
    assert [r.status for r in h.responses()] == [202, 202]


def test_a_specific_in_dialog_route_wins_over_the_route_for_both() -> None:
    h, outside, inside = Harness(), [], []
    h.core.route("INFO", answering(200, outside))
    h.core.route("INFO", answering(202, inside), in_dialog=True)
    h.core.receive(request("INFO"), PHONE)
    h.core.receive(request("INFO", to_tag="t1"), PHONE)
    assert (outside, inside) == (["INFO"], ["INFO"])
    assert [r.status for r in h.responses()] == [200, 202]


def test_a_specific_out_of_dialog_route_wins_whatever_the_order() -> None:
    h, outside, both = Harness(), [], []
    h.core.route("INVITE", answering(486, outside), in_dialog=False)
    h.core.route("INVITE", answering(200, both))  # added after: still loses for new requests
    h.core.receive(request("INVITE"), PHONE)
    h.core.receive(request("INVITE", to_tag="t1"), PHONE)
    assert (outside, both) == (["INVITE"], ["INVITE"])


def test_a_method_routed_only_in_dialog_answers_481_outside_one() -> None:
    h, seen = Harness(), []
    h.core.route("BYE", answering(200, seen), in_dialog=True)
    h.core.receive(request("BYE"), PHONE)
    assert seen == []
    assert h.last_status() == 481
    h.core.receive(request("BYE", to_tag="t1"), PHONE)
    assert seen == ["BYE"] and h.last_status() == 200


def test_options_outside_a_dialog_is_the_core_s_and_can_be_relayed_inside_one() -> None:
    h, inside = Harness(), []
    h.core.route("OPTIONS", answering(202, inside), in_dialog=True)
    h.core.receive(request("OPTIONS", user=None), PHONE)
    ok = h.responses()[-1]
    assert ok.status == 200 and ok.get("allow") is not None
    h.core.receive(request("OPTIONS", to_tag="t1"), PHONE)
    assert inside == ["OPTIONS"] and h.last_status() == 202


def test_allow_lists_every_routed_method_in_405_and_options() -> None:
    h = Harness()
    h.core.route("REGISTER", answering(200, []))
    h.core.route("BYE", answering(200, []), in_dialog=True)
    h.core.receive(request("SUBSCRIBE"), PHONE)
    refused = h.responses()[-1]
    assert refused.status == 405
    expected = "ACK, BYE, CANCEL, OPTIONS, REGISTER"
    assert refused.get("allow") == expected
    h.core.receive(request("OPTIONS", user=None), PHONE)
    assert h.responses()[-1].get("allow") == expected
    h.core.route("INFO", answering(200, []))
    h.core.receive(request("OPTIONS", user=None), PHONE)
    assert h.responses()[-1].get("allow") == "ACK, BYE, CANCEL, INFO, OPTIONS, REGISTER"


def test_cancel_goes_to_the_cancel_route_with_the_invite_transaction() -> None:
    h, cancelled = Harness(), []
    ringing: list[ServerTransaction] = []
    h.core.route("INVITE", lambda tx, req: ringing.append(tx))

    def on_cancel(invite_tx: ServerTransaction, cancel: Request) -> None:
        cancelled.append((invite_tx, cancel.method))
        invite_tx.reply(487)

    h.core.route("CANCEL", on_cancel)
    h.core.receive(request("INVITE", seq=7, branch="z9hG4bKinv1"), PHONE)
    h.core.receive(request("CANCEL", seq=7, branch="z9hG4bKinv1"), PHONE)
    assert cancelled == [(ringing[0], "CANCEL")]
    statuses = [(r.status, r.cseq.method) for r in h.responses()]
    assert (200, "CANCEL") in statuses and (487, "INVITE") in statuses


def test_cancel_without_a_cancel_route_ends_the_invite_with_487() -> None:
    h = Harness()
    h.core.route("INVITE", lambda tx, req: None)
    h.core.receive(request("INVITE", seq=8, branch="z9hG4bKinv2"), PHONE)
    h.core.receive(request("CANCEL", seq=8, branch="z9hG4bKinv2"), PHONE)
    statuses = [(r.status, r.cseq.method) for r in h.responses()]
    assert (200, "CANCEL") in statuses and (487, "INVITE") in statuses


# -- ACK and stray response chains --------------------------------------------------


def test_ack_handlers_are_tried_in_order_until_one_takes_it() -> None:
    h, calls = Harness(), []

    def first(req: Request, peer: Peer) -> bool:
        calls.append("first")
        return False

    def second(req: Request, peer: Peer) -> bool:
        calls.append("second")
        return True

    def third(req: Request, peer: Peer) -> bool:
        calls.append("third")
        return True

    for handler in (first, second, third):
        h.core.add_ack_handler(handler)
    h.core.receive(request("ACK", to_tag="t1"), PHONE)
    assert calls == ["first", "second"]


def test_stray_responses_are_offered_in_order_until_one_takes_it() -> None:
    h, calls = Harness(), []
    h.core.add_stray_response_handler(lambda r, p: calls.append(("a", r.status)) is not None)
    h.core.add_stray_response_handler(lambda r, p: calls.append(("b", r.status)) is None)
    h.core.add_stray_response_handler(lambda r, p: calls.append(("c", r.status)) is None)
    h.core.receive(response(200), PHONE)
    assert calls == [("a", 200), ("b", 200)]


def test_no_handler_at_all_drops_acks_and_stray_responses() -> None:
    h = Harness()
    h.core.receive(request("ACK", to_tag="t1"), PHONE)
    h.core.receive(response(200), PHONE)
    assert h.sent == []


# -- observers ------------------------------------------------------------------------


@dataclass
class Ladder:
    seen: list[tuple[str, str, float]] = field(default_factory=list)

    def message_received(self, message: Request | Response, peer: Peer, now: float) -> None:
        self.seen.append(("in", _label(message), now))

    def message_sent(self, message: Request | Response, peer: Peer, now: float) -> None:
        self.seen.append(("out", _label(message), now))


def _label(message: Request | Response) -> str:
    return message.method if isinstance(message, Request) else str(message.status)


class Broken:
    def __init__(self) -> None:
        self.calls = 0

    def message_received(self, message: Request | Response, peer: Peer, now: float) -> None:
        self.calls += 1
        raise RuntimeError("recorder full")

    def message_sent(self, message: Request | Response, peer: Peer, now: float) -> None:
        self.calls += 1
        raise RuntimeError("recorder full")


def test_observers_see_both_directions_in_order_with_the_time() -> None:
    h = Harness()
    h.clock.advance(42)
    first, second = Ladder(), Ladder()
    h.core.add_observer(first)
    h.core.add_observer(second)
    h.core.receive(request("OPTIONS", user=None), PHONE)
    h.core.receive(response(200), PHONE)  # stray, and still observed
    assert first.seen == [("in", "OPTIONS", 42.0), ("out", "200", 42.0), ("in", "200", 42.0)]
    assert second.seen == first.seen


def test_observers_see_retransmissions() -> None:
    h, ladder = Harness(), Ladder()
    h.core.add_observer(ladder)
    data = request("OPTIONS", user=None)
    h.core.receive(data, PHONE)
    h.core.receive(data, PHONE)  # absorbed by the transaction, answered again
    assert [direction for direction, _, _ in ladder.seen] == ["in", "out", "in", "out"]


def test_a_raising_observer_breaks_nothing_and_is_logged_once() -> None:
    with capture_logs() as logs:
        h, broken, ladder = Harness(), Broken(), Ladder()
        h.core.add_observer(broken)
        h.core.add_observer(ladder)
        h.core.receive(request("OPTIONS", user=None), PHONE)
        h.core.receive(request("OPTIONS", user=None), PHONE)
    assert [r.status for r in h.responses()] == [200, 200]
    assert broken.calls == 4
    assert len(ladder.seen) == 4  # observers after the broken one still see everything
    failures = [e for e in logs if e["event"] == "sip_observer_failed"]
    assert len(failures) == 1
