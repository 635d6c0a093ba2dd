"""The per-call message rings, the finished calls kept, and the ladder drawn from them."""

from __future__ import annotations

from softswitch.b2bua import events as ev
from softswitch.management.ladder import US, parties, render
from softswitch.management.messages import MessageLog
from softswitch.sip.message import Request, make_response, parse_message
from softswitch.sip.peer import Peer
from tests.support.calls import CallDriver, contact_dest

A = Peer("udp", "192.0.2.10", 5062)
B = Peer("udp", "192.0.2.2", 5060)


def request(method: str, call_id: str, to_tag: str = "") -> Request:
    tag = f";tag={to_tag}" if to_tag else ""
    message = parse_message(
        f"{method} sip:1002@pbx SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK{method}"
        f"\r\nFrom: <sip:1001@pbx>;tag=a\r\nTo: <sip:1002@pbx>{tag}\r\nCall-ID: {call_id}\r\n"
        f"CSeq: 1 {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n".encode())
    assert isinstance(message, Request)
    return message


def test_only_an_initial_invite_starts_a_ring_and_the_rest_of_its_call_id_follows() -> None:
    log = MessageLog()
    log.message_received(request("REGISTER", "reg-1"), A, 1.0)
    log.message_received(request("OPTIONS", "opt-1"), A, 1.0)
    log.message_received(request("BYE", "stray", to_tag="x"), A, 1.0)
    assert len(log) == 0
    invite = request("INVITE", "call-1")
    log.message_received(invite, A, 1.0)
    log.message_sent(make_response(invite, 100), A, 1.001)
    log.message_sent(make_response(invite, 180, to_tag="z"), A, 1.5)
    assert len(log) == 1


def test_rings_and_their_number_are_bounded() -> None:
    log = MessageLog(ring_size=8, max_rings=3)
    for n in range(5):
        log.message_received(request("INVITE", f"c{n}"), A, float(n))
    assert len(log) == 3
    invite = request("INVITE", "c4")
    for _ in range(20):
        log.message_sent(make_response(invite, 100), A, 9.0)
    driver = CallDriver()
    snapshot = driver.start(invite).snapshot()
    assert len(log.messages_of(snapshot)) == 8


def test_a_call_s_legs_are_merged_in_wire_order_and_kept_after_it_ends() -> None:
    driver = CallDriver(destinations={"1002": [contact_dest("1002")]})
    log = MessageLog(keep_finished=1)
    machine, caller, callee = driver.connect()
    a_invite = machine.a.invite
    assert a_invite is not None
    b_invite = driver.requests("INVITE")[-1].request
    log.message_received(a_invite, A, 1.0)
    log.message_sent(make_response(a_invite, 100), A, 1.0)  # same time: order still kept
    log.message_sent(b_invite, B, 1.0)
    log.message_received(make_response(b_invite, 200, to_tag="bt"), B, 2.0)
    log.message_sent(driver.caller_ok(machine), A, 2.0)
    snapshot = machine.snapshot()
    steps = [(c.received, c.summary) for c in log.messages_of(snapshot)]
    assert steps == [(True, "INVITE"), (False, "100 Trying"), (False, "INVITE"),
                     (True, "200 OK"), (False, "200 OK")]
    assert log.first_header(a_invite.call_id, ("user-agent",)) is None
    driver.feed(machine, ev.Shutdown("operator"))
    ended = machine.snapshot()
    log.call_ended(ended)
    assert log.finished() == [ended] and len(log.messages_of(ended)) == 5
    # Only the last `keep_finished` calls are kept: the next one pushes it out, rings too.
    other = CallDriver().start(request("INVITE", "other")).snapshot()
    log.call_ended(other)
    assert log.finished() == [other] and log.messages_of(ended) == []


def test_ladder_columns_and_arrows() -> None:
    messages = [
        {"peer": "192.0.2.10:5062", "direction": "in", "summary": "INVITE", "time": 10.0},
        {"peer": "192.0.2.10:5062", "direction": "out", "summary": "100 Trying", "time": 10.001},
        {"peer": "192.0.2.2:5060", "direction": "out", "summary": "INVITE", "time": 10.002},
        {"peer": "192.0.2.2:5060", "direction": "in", "summary": "180 Ringing", "time": 10.25},
    ]
    assert parties(messages) == ["192.0.2.10:5062", US, "192.0.2.2:5060"]
    head, rails, *rows = render(messages)
    assert head.split() == ["192.0.2.10:5062", US, "192.0.2.2:5060"]
    assert rails.count("|") == 3
    centres = [i for i, c in enumerate(rails) if c == "|"]
    assert rows[0].lstrip().startswith("0.000") and "INVITE" in rows[0]
    assert rows[0][centres[1] - 1] == ">" and rows[1][centres[0] + 1] == "<"
    assert rows[2][centres[2] - 1] == ">" and "0.250" in rows[3]
    assert rows[3][centres[1] + 1] == "<" and "180 Ringing" in rows[3]
    assert render([]) == ["(no messages kept for this call)"]
