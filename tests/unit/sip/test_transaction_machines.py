"""The four transaction machines and the layer (RFC 3261 17, RFC 6026).

Driven by `twisted.internet.task.Clock`, a `send` that records what would go
on the wire and when, and real parsed messages.
"""

from __future__ import annotations

from dataclasses import FrozenInstanceError

import pytest
from twisted.internet.task import Clock

from softswitch.sip.message import Message, Request, Response, make_response, parse_message
from softswitch.sip.peer import Peer
from softswitch.sip.transaction import (
    ClientTransaction,
    ServerTransaction,
    TimerSettings,
    TransactionLayer,
    TransactionState,
    TransportError,
    make_ack,
    make_cancel,
)

S = TransactionState
UDP = Peer("udp", "192.0.2.10", 5060)
TCP = Peer("tcp", "192.0.2.10", 40001, connection=7)
NEXT_HOP_UDP = Peer("udp", "198.51.100.1", 5060)
NEXT_HOP_TCP = Peer("tcp", "198.51.100.1", 5060)
STEP = 1 / 64  # exact in binary: clock times stay exact


def request(method: str = "INVITE", *, branch: str | None = "z9hG4bKaaa", transport: str = "UDP",
            host: str = "192.0.2.10:5060", to_tag: str | None = None, from_tag: str = "ft1",
            call_id: str = "c1@192.0.2.10", cseq: int = 1, cseq_method: str | None = None,
            uri: str = "sip:bob@198.51.100.1", via_params: str = "") -> Request:
    via_branch = f";branch={branch}" if branch is not None else ""
    to = "<sip:bob@example.com>" + (f";tag={to_tag}" if to_tag else "")
    text = (
        f"{method} {uri} SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} {host}{via_branch}{via_params}\r\n"
        "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKlower\r\n"
        "Max-Forwards: 70\r\n"
        f"From: \"Alice\" <sip:alice@example.com>;tag={from_tag}\r\n"
        f"To: {to}\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: {cseq} {cseq_method or method}\r\n"
        "Route: <sip:p1.example.com;lr>\r\n"
        "Route: <sip:p2.example.com;lr>\r\n"
        "Contact: <sip:alice@192.0.2.10:5060>\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    message = parse_message(text.encode())
    assert isinstance(message, Request)
    return message


def reparse(message: Message) -> Message:
    return parse_message(message.to_bytes())


def response(req: Request, status: int, to_tag: str | None = "uas1") -> Response:
    """The response a peer would send to `req`, as it comes off the wire."""
    parsed = reparse(make_response(req, status, to_tag=to_tag))
    assert isinstance(parsed, Response)
    return parsed


class User:
    """A TransactionUser that records what reaches it, and answers nothing."""

    def __init__(self) -> None:
        self.requests: list[tuple[ServerTransaction, Request]] = []
        self.acks: list[Request] = []
        self.strays: list[Response] = []

    def on_request(self, tx: ServerTransaction, request: Request) -> None:
        self.requests.append((tx, request))

    def on_ack(self, request: Request, source: Peer) -> None:
        self.acks.append(request)

    def on_stray_response(self, response: Response, source: Peer) -> None:
        self.strays.append(response)


class Harness:
    def __init__(self, timers: TimerSettings | None = None) -> None:
        self.clock = Clock()
        self.user = User()
        self.wire: list[tuple[float, Message, Peer]] = []
        self.fail = False
        self.layer = TransactionLayer(self.clock, self.send, timers or TimerSettings(), self.user)
        # What a client transaction reported to its TU.
        self.responses: list[Response] = []
        self.timeouts = 0
        self.transport_errors = 0

    def send(self, message: Message, peer: Peer) -> None:
        if self.fail:
            raise TransportError("connection refused")
        self.wire.append((self.clock.seconds(), message, peer))

    def run(self, seconds: float) -> None:
        """Let `seconds` pass in small steps, as a reactor would."""
        for _ in range(round(seconds / STEP)):
            self.clock.advance(STEP)

    def times(self, what: str) -> list[float]:
        """When messages whose start line begins with `what` were sent."""
        return [t for t, m, _ in self.wire if m.start_line().startswith(what)]

    def sent(self, what: str) -> list[Message]:
        return [m for _, m, _ in self.wire if m.start_line().startswith(what)]

    def statuses(self) -> list[int]:
        return [m.status for _, m, _ in self.wire if isinstance(m, Response)]

    # -- client side --

    def client(self, req: Request, peer: Peer = NEXT_HOP_UDP, *,
               callbacks: bool = True) -> ClientTransaction:
        if not callbacks:
            return self.layer.send_request(req, peer, self.responses.append)
        return self.layer.send_request(req, peer, self.responses.append,
                                       self.on_timeout, self.on_transport_error)

    def on_timeout(self) -> None:
        self.timeouts += 1

    def on_transport_error(self) -> None:
        self.transport_errors += 1

    def answer(self, req: Request, status: int, to_tag: str | None = "uas1",
               source: Peer = NEXT_HOP_UDP) -> Response:
        resp = response(req, status, to_tag)
        self.layer.receive_response(resp, source)
        return resp

    # -- server side --

    def receive(self, req: Request, source: Peer = UDP) -> ServerTransaction | None:
        before = len(self.user.requests)
        # The transport hands over a fresh parse each time, as from the wire.
        fresh = reparse(req)
        assert isinstance(fresh, Request)
        self.layer.receive_request(fresh, source)
        return self.user.requests[-1][0] if len(self.user.requests) > before else None

    def empty(self) -> bool:
        return self.layer.active_client_count() == 0 and self.layer.active_server_count() == 0


def approx(values: list[float]) -> object:
    return pytest.approx(values, abs=0.02)


# -- timer settings -------------------------------------------------------------


def test_timer_settings_are_those_of_rfc3261_table_4_and_rfc6026() -> None:
    t = TimerSettings()
    assert (t.t1, t.t2, t.t4) == (0.5, 4.0, 5.0)
    assert t.b == t.f == t.h == t.l == t.m == 32.0
    assert t.j(False) == 32.0 and t.j(True) == 0.0
    assert t.d(False) == 32.0 and t.d(True) == 0.0
    assert t.i(False) == t.k(False) == 5.0
    assert t.i(True) == t.k(True) == 0.0
    assert t.trying_delay == 0.2


def test_timer_settings_derive_from_t1_and_are_frozen() -> None:
    t = TimerSettings(t1=0.1, t2=1.0, t4=2.0)
    assert t.b == pytest.approx(6.4) and t.j(False) == pytest.approx(6.4)
    assert t.d(False) == 32.0  # D never drops under the RFC's 32 s
    assert TimerSettings(t1=1.0, t2=4.0).d(False) == 64.0  # it must outlast H
    with pytest.raises(FrozenInstanceError):
        t.t1 = 1.0  # type: ignore[misc]
    with pytest.raises(ValueError):
        TimerSettings(t1=1.0, t2=0.5)


# -- non-INVITE client (RFC 3261 17.1.2) ---------------------------------------------


def test_non_invite_client_udp_retransmits_doubling_to_t2_and_times_out_at_64_t1() -> None:
    h = Harness()
    tx = h.client(request("OPTIONS"))
    assert tx.state is S.TRYING
    h.run(40)
    assert h.times("OPTIONS") == approx(
        [0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5])
    assert h.timeouts == 1 and h.responses == []
    assert tx.state is S.TERMINATED and h.empty()


def test_non_invite_client_without_on_timeout_gets_a_local_408() -> None:
    h = Harness()
    h.client(request("OPTIONS"), callbacks=False)
    h.run(33)
    assert [r.status for r in h.responses] == [408]
    assert h.empty()


def test_non_invite_client_retransmits_every_t2_once_a_provisional_came() -> None:
    h = Harness()
    req = request("OPTIONS")
    tx = h.client(req)
    h.run(1.0)
    h.answer(req, 100)
    assert tx.state is S.PROCEEDING
    h.run(14)
    assert h.times("OPTIONS") == approx([0, 0.5, 1.5, 5.5, 9.5, 13.5])
    assert [r.status for r in h.responses] == [100]


def test_non_invite_client_final_completes_absorbs_retransmissions_then_timer_k() -> None:
    h = Harness()
    req = request("OPTIONS")
    tx = h.client(req)
    h.run(0.75)
    h.answer(req, 180)
    h.answer(req, 200)
    assert tx.state is S.COMPLETED
    h.answer(req, 200)  # a retransmission: absorbed
    assert [r.status for r in h.responses] == [180, 200]
    h.run(4.9)
    assert tx.state is S.COMPLETED
    h.run(0.2)
    assert tx.state is S.TERMINATED and h.empty()
    assert h.times("OPTIONS") == approx([0, 0.5])  # nothing after the final
    h.answer(req, 200)  # after Timer K: nobody's
    assert [r.status for r in h.user.strays] == [200]


def test_non_invite_client_timer_f_runs_in_proceeding() -> None:
    h = Harness()
    req = request("OPTIONS")
    tx = h.client(req)
    h.answer(req, 100)
    h.run(31.9)
    assert tx.state is S.PROCEEDING
    h.run(0.2)
    assert tx.state is S.TERMINATED and h.timeouts == 1


def test_non_invite_client_tcp_no_retransmission_and_zero_timer_k() -> None:
    h = Harness()
    req = request("OPTIONS", transport="TCP")
    tx = h.client(req, NEXT_HOP_TCP)
    h.run(10)
    assert h.times("OPTIONS") == [0]
    h.answer(req, 404)
    assert tx.state is S.TERMINATED and h.empty()
    assert [r.status for r in h.responses] == [404]


def test_non_invite_client_tcp_still_times_out_with_timer_f() -> None:
    h = Harness()
    tx = h.client(request("OPTIONS", transport="TCP"), NEXT_HOP_TCP)
    h.run(33)
    assert h.times("OPTIONS") == [0]
    assert tx.state is S.TERMINATED and h.timeouts == 1


def test_client_transport_error_on_first_send_is_reported_on_the_next_tick() -> None:
    h = Harness()
    h.fail = True
    tx = h.client(request("OPTIONS", transport="TCP"), NEXT_HOP_TCP)
    assert tx.state is S.TERMINATED and h.empty()
    assert h.transport_errors == 0  # not from inside send_request
    h.clock.advance(0)
    assert h.transport_errors == 1 and h.timeouts == 0


def test_client_transport_error_without_callback_is_a_local_503() -> None:
    h = Harness()
    h.fail = True
    h.client(request("INVITE"), callbacks=False)
    h.clock.advance(0)
    assert [r.status for r in h.responses] == [503]


def test_client_transport_error_on_a_retransmission() -> None:
    h = Harness()
    tx = h.client(request("INVITE"))
    h.run(0.25)
    h.fail = True
    h.run(0.5)
    assert tx.state is S.TERMINATED and h.transport_errors == 1 and h.empty()
    h.run(40)
    assert h.timeouts == 0


def test_connection_failed_ends_pending_client_transactions_to_that_peer() -> None:
    h = Harness()
    pending = h.client(request("OPTIONS", transport="TCP"), NEXT_HOP_TCP)
    elsewhere = h.client(request("OPTIONS", transport="TCP", branch="z9hG4bKb2"),
                         Peer("tcp", "198.51.100.2", 5060))
    accepted_req = request(transport="TCP", branch="z9hG4bKb3")
    accepted = h.client(accepted_req, NEXT_HOP_TCP)
    h.answer(accepted_req, 200, source=NEXT_HOP_TCP)
    h.layer.connection_failed(Peer("tcp", "198.51.100.1", 5060, connection=12))
    assert pending.state is S.TERMINATED and h.transport_errors == 1
    assert elsewhere.state is S.TRYING
    assert accepted.state is S.ACCEPTED  # still passes 2xx retransmissions up


# -- INVITE client (RFC 3261 17.1.1, RFC 6026 7.2) ----------------------------------------


def test_invite_client_udp_timer_a_doubles_without_cap_until_timer_b() -> None:
    h = Harness()
    tx = h.client(request())
    assert tx.state is S.CALLING
    h.run(40)
    assert h.times("INVITE") == approx([0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5])
    assert tx.state is S.TERMINATED and h.timeouts == 1 and h.empty()


def test_invite_client_provisional_stops_timer_a_and_timer_b() -> None:
    h = Harness()
    req = request()
    tx = h.client(req)
    h.run(0.75)
    h.answer(req, 100, to_tag=None)
    h.answer(req, 180)
    assert tx.state is S.PROCEEDING
    h.run(100)
    assert h.times("INVITE") == approx([0, 0.5])
    assert tx.state is S.PROCEEDING and h.timeouts == 0
    assert [r.status for r in h.responses] == [100, 180]


def test_invite_client_cancel_sent_bounds_proceeding_to_64_t1() -> None:
    h = Harness()
    req = request()
    tx = h.client(req)
    h.answer(req, 180)
    h.run(10)
    tx.cancel_sent()
    h.run(31.9)
    assert tx.state is S.PROCEEDING
    h.run(0.2)
    assert tx.state is S.TERMINATED and h.timeouts == 1 and h.empty()


def test_invite_client_acks_a_486_and_reacks_its_retransmission() -> None:
    h = Harness()
    req = request()
    tx = h.client(req)
    h.answer(req, 180)
    busy = h.answer(req, 486)
    assert tx.state is S.COMPLETED
    acks = h.sent("ACK")
    assert len(acks) == 1
    ack = acks[0]
    assert isinstance(ack, Request)
    # RFC 3261 17.1.1.3.
    assert str(ack.uri) == str(req.uri)
    assert ack.call_id == req.call_id
    assert ack.get("from") == req.get("from")
    assert (ack.cseq.seq, ack.cseq.method) == (1, "ACK")
    assert ack.to_tag == busy.to_tag == "uas1"
    assert ack.get_all("via") == [req.values("via")[0]]
    assert ack.get_all("route") == req.get_all("route")
    assert ack.get("max-forwards") == "70" and ack.get("content-length") == "0"
    assert reparse(ack).to_bytes() == ack.to_bytes()  # it is a well-formed message
    assert h.wire[-1][2] == NEXT_HOP_UDP  # where the INVITE went

    h.answer(req, 486)
    assert len(h.sent("ACK")) == 2 and h.sent("ACK")[1] is ack
    assert [r.status for r in h.responses] == [180, 486]  # the retransmission stays here
    h.run(31.9)
    assert tx.state is S.COMPLETED
    h.run(0.2)
    assert tx.state is S.TERMINATED and h.empty()
    assert h.times("INVITE") == [0]


def test_invite_client_final_in_calling_stops_timer_a() -> None:
    h = Harness()
    req = request()
    tx = h.client(req)
    h.run(0.75)
    h.answer(req, 603)
    h.run(10)
    assert h.times("INVITE") == approx([0, 0.5])
    assert tx.state is S.COMPLETED and len(h.sent("ACK")) == 1


def test_invite_client_tcp_no_timer_a_and_zero_timer_d() -> None:
    h = Harness()
    req = request(transport="TCP")
    tx = h.client(req, NEXT_HOP_TCP)
    h.run(5)
    assert h.times("INVITE") == [0]
    h.answer(req, 486, source=NEXT_HOP_TCP)
    assert len(h.sent("ACK")) == 1
    assert tx.state is S.TERMINATED and h.empty()


def test_invite_client_tcp_timer_b() -> None:
    h = Harness()
    tx = h.client(request(transport="TCP"), NEXT_HOP_TCP)
    h.run(31.9)
    assert tx.state is S.CALLING
    h.run(0.2)
    assert tx.state is S.TERMINATED and h.timeouts == 1


def test_invite_client_2xx_accepted_passes_every_2xx_then_timer_m() -> None:
    h = Harness()
    req = request()
    tx = h.client(req)
    h.answer(req, 183, to_tag="fork1")
    h.answer(req, 200, to_tag="fork1")
    assert tx.state is S.ACCEPTED
    h.answer(req, 200, to_tag="fork1")  # retransmission
    h.answer(req, 200, to_tag="fork2")  # another fork
    h.answer(req, 180, to_tag="fork3")  # provisional: ignored in Accepted
    h.answer(req, 486, to_tag="fork3")  # non-2xx: ignored in Accepted
    assert [(r.status, r.to_tag) for r in h.responses] == [
        (183, "fork1"), (200, "fork1"), (200, "fork1"), (200, "fork2")]
    assert h.sent("ACK") == []  # the dialog ACKs a 2xx, not the transaction
    h.run(31.9)
    assert tx.state is S.ACCEPTED
    h.run(0.2)
    assert tx.state is S.TERMINATED and h.empty()
    h.answer(req, 200, to_tag="fork1")
    assert [r.status for r in h.user.strays] == [200]


def test_invite_client_tcp_accepted_still_lasts_timer_m() -> None:
    h = Harness()
    req = request(transport="TCP")
    tx = h.client(req, NEXT_HOP_TCP)
    h.answer(req, 200)
    h.run(31.9)
    assert tx.state is S.ACCEPTED
    h.run(0.2)
    assert tx.state is S.TERMINATED


def test_invite_client_failed_ack_ends_quietly() -> None:
    h = Harness()
    req = request()
    tx = h.client(req)
    h.fail = True
    h.answer(req, 486)
    assert [r.status for r in h.responses] == [486]
    assert tx.state is S.TERMINATED and h.transport_errors == 0 and h.empty()


# -- INVITE server (RFC 3261 17.2.1, RFC 6026 7.1) ------------------------------------------


def test_invite_server_sends_100_trying_after_200_ms_of_silence() -> None:
    h = Harness()
    tx = h.receive(request())
    assert tx is not None and tx.state is S.PROCEEDING and tx.is_pending
    h.run(0.1875)
    assert h.statuses() == []
    h.run(0.03125)
    assert h.statuses() == [100]
    trying = h.wire[0][1]
    assert trying.to_tag is None  # RFC 3261 8.2.6.2
    assert h.wire[0][2] == UDP
    h.receive(request())  # Timer A fired at the client: resend the 100
    assert h.statuses() == [100, 100]
    assert len(h.user.requests) == 1


def test_invite_server_no_100_when_the_tu_answers_first_or_when_disabled() -> None:
    h = Harness()
    tx = h.receive(request())
    assert tx is not None
    h.run(0.1)
    tx.reply(180, to_tag="t1")
    h.run(1)
    assert h.statuses() == [180]

    h = Harness(TimerSettings(trying_delay=None))
    h.receive(request())
    h.run(1)
    h.receive(request())  # a retransmission gets nothing either
    assert h.statuses() == []


def test_invite_server_retransmission_in_proceeding_resends_last_provisional() -> None:
    h = Harness()
    tx = h.receive(request())
    assert tx is not None
    tx.reply(180, to_tag="t1")
    tx.reply(183, to_tag="t1")
    h.receive(request())
    assert h.statuses() == [180, 183, 183]
    assert h.wire[-1][1] is tx.last_provisional
    assert len(h.user.requests) == 1


def test_invite_server_non_2xx_timer_g_capped_at_t2_then_timer_h() -> None:
    h = Harness()
    tx = h.receive(request())
    assert tx is not None
    timeouts: list[str] = []
    tx.on_timeout = lambda: timeouts.append("H")
    tx.reply(486, to_tag="t1")
    assert tx.state is S.COMPLETED and not tx.is_pending
    h.run(40)
    assert h.times("SIP/2.0 486") == approx(
        [0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5])
    assert timeouts == ["H"]
    assert tx.state is S.TERMINATED and h.empty()


def test_invite_server_retransmission_in_completed_resends_the_final() -> None:
    h = Harness()
    tx = h.receive(request())
    assert tx is not None
    final = tx.reply(404, to_tag="t1")
    h.receive(request())
    assert h.statuses() == [404, 404]
    assert h.wire[-1][1] is final
    assert len(h.user.requests) == 1


def test_invite_server_ack_confirms_stops_timer_g_and_timer_i_ends_it() -> None:
    h = Harness()
    req = request()
    tx = h.receive(req)
    assert tx is not None
    tx.reply(486, to_tag="t1")
    h.run(0.75)
    h.receive(request("ACK", to_tag="t1"))
    assert tx.state is S.CONFIRMED
    assert h.user.acks == []  # consumed
    h.receive(request("ACK", to_tag="t1"))  # absorbed in Confirmed too
    h.receive(request())  # and so is the INVITE
    h.run(4.9)
    assert h.times("SIP/2.0 486") == approx([0, 0.5])
    assert tx.state is S.CONFIRMED
    h.run(0.2)
    assert tx.state is S.TERMINATED and h.empty()
    assert h.user.acks == [] and len(h.user.requests) == 1


def test_invite_server_tcp_no_timer_g_zero_timer_i() -> None:
    h = Harness()
    tx = h.receive(request(transport="TCP"), TCP)
    assert tx is not None
    assert tx.peer == Peer("tcp", "192.0.2.10", 5060, 7)  # same connection
    tx.reply(486, to_tag="t1")
    h.run(10)
    assert h.statuses() == [486]
    assert h.times("SIP/2.0 486") == [0]
    h.receive(request("ACK", transport="TCP", to_tag="t1"), TCP)
    assert tx.state is S.TERMINATED and h.empty()


def test_invite_server_tcp_timer_h_without_ack() -> None:
    h = Harness()
    tx = h.receive(request(transport="TCP"), TCP)
    assert tx is not None
    timeouts: list[str] = []
    tx.on_timeout = lambda: timeouts.append("H")
    tx.reply(500, to_tag="t1")
    h.run(33)
    assert timeouts == ["H"] and h.empty()


def test_invite_server_2xx_accepted_absorbs_invites_passes_acks_then_timer_l() -> None:
    h = Harness()
    tx = h.receive(request())
    assert tx is not None
    ok = tx.reply(200, to_tag="t1")
    assert tx.state is S.ACCEPTED and tx.final_response is ok
    h.receive(request())  # retransmitted INVITE: not the TU's again
    assert len(h.user.requests) == 1 and h.statuses() == [200]
    h.run(4)
    assert h.statuses() == [200]  # the layer never retransmits a 2xx
    assert tx.respond(ok)  # the TU/dialog does (RFC 3261 13.3.1.4)
    assert not tx.respond(response(tx.request, 486))
    assert h.statuses() == [200, 200]
    # An ACK on the INVITE's branch (as some UAs send) and one on its own
    # branch (RFC 3261 13.2.2.4) both reach the TU.
    h.receive(request("ACK", to_tag="t1"))
    h.receive(request("ACK", to_tag="t1", branch="z9hG4bKack2"))
    assert len(h.user.acks) == 2
    h.run(27.9)
    assert tx.state is S.ACCEPTED
    h.run(0.2)
    assert tx.state is S.TERMINATED and h.empty()


def test_invite_server_transport_error_terminates_and_tells_the_tu() -> None:
    h = Harness()
    tx = h.receive(request(transport="TCP"), TCP)
    assert tx is not None
    errors: list[str] = []
    tx.on_transport_error = lambda: errors.append("x")
    h.fail = True
    tx.reply(486, to_tag="t1")
    assert h.statuses() == []
    assert tx.state is S.TERMINATED and errors == ["x"] and h.empty()
    assert not tx.respond(response(tx.request, 500))


def test_invite_server_transport_error_on_a_2xx_keeps_accepted() -> None:
    h = Harness()
    tx = h.receive(request())
    assert tx is not None
    tx.reply(200, to_tag="t1")
    errors: list[str] = []
    tx.on_transport_error = lambda: errors.append("x")
    h.fail = True
    assert not tx.respond(response(tx.request, 200, "t1"))
    assert tx.state is S.ACCEPTED and errors == ["x"]
    h.fail = False
    h.receive(request())
    assert len(h.user.requests) == 1  # still absorbing


def test_invite_server_transport_error_on_automatic_100() -> None:
    h = Harness()
    tx = h.receive(request())
    assert tx is not None
    h.fail = True
    h.run(0.25)
    assert tx.state is S.TERMINATED and h.empty()


def test_invite_server_timer_g_transport_error_terminates() -> None:
    h = Harness(TimerSettings(trying_delay=None))
    tx = h.receive(request())
    assert tx is not None
    tx.reply(486, to_tag="t1")
    h.fail = True
    h.run(0.75)
    assert tx.state is S.TERMINATED and h.empty()


# -- non-INVITE server (RFC 3261 17.2.2) ------------------------------------------------------


def test_non_invite_server_trying_proceeding_completed_timer_j() -> None:
    h = Harness()
    req = request("OPTIONS")
    tx = h.receive(req)
    assert tx is not None and tx.state is S.TRYING
    h.run(1)
    assert h.statuses() == []  # no automatic 100 for non-INVITE
    h.receive(req)  # absorbed in Trying: nothing to resend
    assert h.statuses() == [] and len(h.user.requests) == 1
    tx.reply(100)
    assert tx.state is S.PROCEEDING
    h.receive(req)
    assert h.statuses() == [100, 100]
    ok = tx.reply(200, to_tag="t1")
    assert tx.state is S.COMPLETED
    h.receive(req)
    assert h.statuses() == [100, 100, 200, 200]
    assert h.wire[-1][1].to_bytes() == ok.to_bytes()  # resent as packed bytes
    assert not tx.respond(response(req, 500))  # a second final is discarded
    h.run(31.9)
    assert tx.state is S.COMPLETED
    h.run(0.2)
    assert tx.state is S.TERMINATED and h.empty()
    assert h.times("SIP/2.0 200") == approx([1, 1])  # no Timer G for non-INVITE


def test_non_invite_server_tcp_zero_timer_j() -> None:
    h = Harness()
    tx = h.receive(request("REGISTER", transport="TCP"), TCP)
    assert tx is not None
    tx.reply(200, to_tag="t1")
    assert tx.state is S.TERMINATED and h.empty()


def test_non_invite_server_transport_error_terminates() -> None:
    h = Harness()
    tx = h.receive(request("OPTIONS"))
    assert tx is not None
    h.fail = True
    tx.reply(180, to_tag="t1")
    assert tx.state is S.TERMINATED and h.empty()


# -- the layer ----------------------------------------------------------------------------------


def test_responses_go_to_the_rport_and_received_address() -> None:
    h = Harness()
    nat = Peer("udp", "203.0.113.9", 61000)
    tx = h.receive(request(via_params=";rport"), nat)
    assert tx is not None
    assert tx.peer == Peer("udp", "203.0.113.9", 61000)
    tx.reply(486, to_tag="t1")
    sent = h.wire[-1][1]
    assert sent.top_via.params["received"] == "203.0.113.9"
    assert sent.top_via.params["rport"] == "61000"
    assert h.wire[-1][2] == tx.peer


def test_retransmission_from_another_sent_by_is_another_transaction() -> None:
    h = Harness()
    h.receive(request("OPTIONS"))
    h.receive(request("OPTIONS", host="192.0.2.99:5060", call_id="c2"))
    assert len(h.user.requests) == 2


def test_cancel_has_its_own_transaction_and_finds_its_invite() -> None:
    h = Harness()
    invite_tx = h.receive(request())
    assert invite_tx is not None
    invite_tx.reply(180, to_tag="t1")
    cancel_tx = h.receive(request("CANCEL"))
    assert cancel_tx is not None and cancel_tx is not invite_tx
    assert cancel_tx.request.method == "CANCEL"
    assert h.layer.find_invite_for_cancel(cancel_tx.request) is invite_tx
    # What the core does (RFC 3261 9.2): 200 the CANCEL, 487 the INVITE.
    cancel_tx.reply(200, to_tag="t1")
    invite_tx.reply(487, to_tag="t1")
    assert h.statuses() == [180, 200, 487]
    h.receive(request("ACK", to_tag="t1"))
    assert invite_tx.state is S.CONFIRMED and h.user.acks == []
    other = request("CANCEL", branch="z9hG4bKother")
    h.layer.receive_request(other, UDP)
    assert h.layer.find_invite_for_cancel(other) is None
    h.run(40)
    assert h.empty()


def test_cancel_of_a_non_invite_finds_nothing() -> None:
    h = Harness()
    h.receive(request("OPTIONS"))
    cancel_tx = h.receive(request("CANCEL"))
    assert cancel_tx is not None
    assert h.layer.find_invite_for_cancel(cancel_tx.request) is None


def test_merged_request_gets_482_from_the_layer() -> None:
    h = Harness()
    first = h.receive(request())
    assert first is not None
    h.receive(request(branch="z9hG4bKsecondpath"))  # same From tag, Call-ID, CSeq
    assert len(h.user.requests) == 1
    assert h.statuses() == [482]
    loop = h.wire[-1][1]
    assert loop.to_tag  # a final response carries a To tag
    h.receive(request(branch="z9hG4bKsecondpath"))  # its retransmission
    assert h.statuses() == [482, 482] and len(h.user.requests) == 1
    h.receive(request("ACK", branch="z9hG4bKsecondpath", to_tag=loop.to_tag))
    assert h.user.acks == []  # consumed by the 482's transaction
    assert h.layer.active_server_count() == 2
    # A request with a To tag is in a dialog: never "merged".
    h.receive(request("INFO", to_tag="t9", branch="z9hG4bKi1"))
    h.receive(request("INFO", to_tag="t9", branch="z9hG4bKi2"))
    assert len(h.user.requests) == 3
    for tx, _ in h.user.requests:
        tx.reply(486, to_tag="t1")
    h.run(40)
    assert h.empty()


def test_request_reusing_from_tag_call_id_cseq_after_the_first_ended_is_new() -> None:
    h = Harness()
    first = h.receive(request("OPTIONS", transport="TCP"), TCP)
    assert first is not None
    first.reply(200, to_tag="t1")
    h.receive(request("OPTIONS", transport="TCP", branch="z9hG4bKlater"), TCP)
    assert len(h.user.requests) == 2


def test_rfc2543_requests_match_without_the_magic_cookie() -> None:
    h = Harness()
    tx = h.receive(request(branch=None))
    assert tx is not None
    tx.reply(180, to_tag="t1")
    h.receive(request(branch=None))  # retransmission: resend the 180
    assert len(h.user.requests) == 1 and h.statuses() == [180, 180]
    tx.reply(486, to_tag="t1")
    h.receive(request("ACK", branch=None, to_tag="t1"))
    assert tx.state is S.CONFIRMED
    h.receive(request("OPTIONS", branch="1234old", call_id="c9"))
    h.receive(request("OPTIONS", branch="1234old", call_id="c9"))
    assert len(h.user.requests) == 2


def test_unmatched_ack_goes_to_on_ack() -> None:
    h = Harness()
    h.receive(request("ACK", to_tag="t1", branch="z9hG4bKnothing"))
    assert len(h.user.acks) == 1 and h.empty()


def test_ack_in_proceeding_is_dropped() -> None:
    h = Harness()
    tx = h.receive(request())
    assert tx is not None
    h.receive(request("ACK", to_tag="t1"))
    assert h.user.acks == [] and tx.state is S.PROCEEDING


def test_responses_match_on_branch_and_cseq_method() -> None:
    h = Harness()
    invite = request(branch=None)
    h.client(invite)
    branch = invite.branch
    assert branch is not None and branch.startswith("z9hG4bK")  # added for us
    cancel = make_cancel(invite)
    cancel_tx = h.client(cancel)
    h.answer(cancel, 200)
    assert cancel_tx.state is S.COMPLETED
    assert [r.cseq.method for r in h.responses] == ["CANCEL"]
    h.answer(invite, 487)
    assert [r.cseq.method for r in h.responses] == ["CANCEL", "INVITE"]
    other = request("OPTIONS", branch="z9hG4bKunknown")
    h.layer.receive_response(response(other, 200), NEXT_HOP_UDP)
    assert [r.status for r in h.user.strays] == [200]


def test_send_request_refuses_acks_and_reused_branches() -> None:
    h = Harness()
    with pytest.raises(ValueError):
        h.client(request("ACK", to_tag="t1"))
    h.client(request("OPTIONS", branch="z9hG4bKsame"))
    with pytest.raises(ValueError):
        h.client(request("OPTIONS", branch="z9hG4bKsame"))
    h.client(request("MESSAGE", branch="z9hG4bKsame"))  # another method: another key
    assert h.layer.active_client_count() == 2


def test_make_cancel_follows_rfc3261_9_1() -> None:
    invite = request(to_tag=None)
    cancel = make_cancel(invite)
    assert cancel.method == "CANCEL" and str(cancel.uri) == str(invite.uri)
    assert cancel.get_all("via") == [invite.values("via")[0]]
    assert cancel.branch == invite.branch
    assert (cancel.cseq.seq, cancel.cseq.method) == (invite.cseq.seq, "CANCEL")
    for name in ("from", "to", "call-id", "max-forwards"):
        assert cancel.get(name) == invite.get(name)
    assert cancel.get_all("route") == invite.get_all("route")
    assert cancel.get("contact") is None
    parsed = reparse(cancel)
    assert isinstance(parsed, Request) and parsed.method == "CANCEL"


def test_make_ack_takes_to_from_the_response() -> None:
    invite = request()
    ack = make_ack(invite, response(invite, 404, to_tag="uas9"))
    assert ack.to_tag == "uas9" and ack.method == "ACK"
    assert ack.get("contact") is None


def test_terminate_all_empties_the_tables_without_callbacks() -> None:
    h = Harness()
    h.client(request("OPTIONS"))
    h.receive(request())
    h.layer.terminate_all()
    assert h.empty()
    h.run(40)
    assert h.timeouts == 0 and h.statuses() == []


def test_user_can_be_set_after_construction() -> None:
    layer = TransactionLayer(Clock(), lambda m, p: None, TimerSettings())
    with pytest.raises(RuntimeError):
        layer.receive_request(request(), UDP)
    user = User()
    layer.user = user
    layer.receive_request(request(call_id="c2"), UDP)
    assert len(user.requests) == 1


def test_a_thousand_transactions_leave_empty_tables() -> None:
    h = Harness()
    for n in range(1000):
        kind = n % 5
        branch = f"z9hG4bK{n}"
        call_id = f"leak{n}"
        transport, source = ("TCP", TCP) if n % 2 else ("UDP", UDP)
        if kind == 0:  # INVITE server: 486 and ACK
            tx = h.receive(request(branch=branch, call_id=call_id, transport=transport), source)
            assert tx is not None
            tx.reply(486, to_tag="t")
            h.receive(request("ACK", branch=branch, call_id=call_id, transport=transport,
                              to_tag="t"), source)
        elif kind == 1:  # INVITE server: 200, the TU's ACK
            tx = h.receive(request(branch=branch, call_id=call_id, transport=transport), source)
            assert tx is not None
            tx.reply(200, to_tag="t")
        elif kind == 2:  # non-INVITE server
            tx = h.receive(request("BYE", branch=branch, call_id=call_id, to_tag="x",
                                   transport=transport), source)
            assert tx is not None
            tx.reply(200)
        elif kind == 3:  # INVITE client: 180, 486
            req = request(branch=branch, call_id=call_id, transport=transport)
            h.client(req, NEXT_HOP_TCP if n % 2 else NEXT_HOP_UDP)
            h.answer(req, 180)
            h.answer(req, 486)
        else:  # non-INVITE client that times out
            h.client(request("OPTIONS", branch=branch, call_id=call_id, transport=transport),
                     NEXT_HOP_TCP if n % 2 else NEXT_HOP_UDP)
    assert h.layer.active_server_count() > 0 and h.layer.active_client_count() > 0
    h.clock.advance(0.25)
    for _ in range(20):
        h.clock.advance(4)  # big steps are fine for an end-of-life sweep
    assert h.empty()
    assert h.timeouts == 200
