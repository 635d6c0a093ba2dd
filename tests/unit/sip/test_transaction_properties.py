"""Property tests of the transaction machines (RFC 3261 17, RFC 6026).

Whatever a peer and the TU do, in any order — retransmit, answer with any
code, ACK, let time pass, break the transport — no transaction raises, the TU
never sees a request twice nor two endings of one transaction, and once the
TU has answered and enough time has passed every transaction is Terminated
and the layer's tables are empty.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock

from softswitch.sip.message import Message, Request, Response, make_response, parse_message
from softswitch.sip.peer import Peer
from softswitch.sip.transaction import (
    ServerTransaction,
    TimerSettings,
    TransactionLayer,
    TransactionState,
    TransportError,
)

CODES = [100, 180, 183, 200, 202, 302, 404, 408, 486, 487, 500, 603]
TICKS = [0.1, 0.2, 0.5, 1.0, 2.0, 4.0, 5.0, 16.0, 32.0, 33.0]


def make_request(method: str, transport: str, *, branch: str = "z9hG4bKp1",
                 to_tag: str | None = None) -> Request:
    to = "<sip:bob@example.com>" + (f";tag={to_tag}" if to_tag else "")
    text = (
        f"{method} sip:bob@198.51.100.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} 192.0.2.10:5060;branch={branch};rport\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:alice@example.com>;tag=ft\r\n"
        f"To: {to}\r\n"
        "Call-ID: prop@192.0.2.10\r\n"
        f"CSeq: 7 {method}\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    message = parse_message(text.encode())
    assert isinstance(message, Request)
    return message


class World:
    def __init__(self) -> None:
        self.clock = Clock()
        self.fail = False
        self.wire: list[Message] = []
        self.requests: list[ServerTransaction] = []
        self.acks: list[Request] = []
        self.strays: list[Response] = []
        self.layer = TransactionLayer(self.clock, self.send, TimerSettings(), self)

    def send(self, message: Message, peer: Peer) -> None:
        if self.fail:
            raise TransportError("down")
        self.wire.append(message)

    def on_request(self, tx: ServerTransaction, request: Request) -> None:
        self.requests.append(tx)

    def on_ack(self, request: Request, source: Peer) -> None:
        self.acks.append(request)

    def on_stray_response(self, response: Response, source: Peer) -> None:
        self.strays.append(response)

    def settle(self) -> None:
        for _ in range(80):
            self.clock.advance(1.0)

    def empty(self) -> bool:
        return self.layer.active_server_count() == 0 and self.layer.active_client_count() == 0


server_events = st.lists(
    st.one_of(
        st.tuples(st.just("retransmit"), st.none()),
        st.tuples(st.just("respond"), st.sampled_from(CODES)),
        st.tuples(st.just("tick"), st.sampled_from(TICKS)),
        st.tuples(st.just("ack"), st.none()),
        st.tuples(st.just("ack-2xx"), st.none()),
        st.tuples(st.just("toggle-transport"), st.none()),
    ),
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(method=st.sampled_from(["INVITE", "OPTIONS"]), reliable=st.booleans(),
       events=server_events)
def test_server_transactions_always_end(method: str, reliable: bool,
                                        events: list[tuple[str, object]]) -> None:
    transport = "TCP" if reliable else "UDP"
    source = Peer(transport.lower(), "203.0.113.9", 61000, 3 if reliable else None)
    w = World()
    w.layer.receive_request(make_request(method, transport), source)
    assert len(w.requests) == 1
    for kind, arg in events:
        current = w.requests[-1]
        if kind == "retransmit":
            before = len(w.requests)
            w.layer.receive_request(make_request(method, transport), source)
            if not current.terminated:
                # Absorbed: the TU never sees a live transaction's request again.
                assert len(w.requests) == before
        elif kind == "respond":
            assert isinstance(arg, int)
            if not current.terminated:
                current.respond(make_response(current.request, arg, to_tag="uas"))
        elif kind == "tick":
            assert isinstance(arg, float)
            w.clock.advance(arg)
        elif kind == "ack":
            w.layer.receive_request(make_request("ACK", transport, to_tag="uas"), source)
        elif kind == "ack-2xx":
            w.layer.receive_request(
                make_request("ACK", transport, branch="z9hG4bKack", to_tag="uas"), source)
        else:
            w.fail = not w.fail
    # The TU's duty: every request gets a final response.
    w.fail = False
    for tx in w.requests:
        if tx.is_pending:
            tx.respond(make_response(tx.request, 500, to_tag="uas"))
    w.settle()
    assert all(tx.state is TransactionState.TERMINATED for tx in w.requests)
    assert w.empty()


client_events = st.lists(
    st.one_of(
        st.tuples(st.just("response"), st.tuples(st.sampled_from(CODES),
                                                  st.sampled_from(["a", "b"]))),
        st.tuples(st.just("tick"), st.sampled_from(TICKS)),
        st.tuples(st.just("toggle-transport"), st.none()),
        st.tuples(st.just("cancel-sent"), st.none()),
    ),
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(method=st.sampled_from(["INVITE", "OPTIONS"]), reliable=st.booleans(),
       events=client_events)
def test_client_transactions_always_end_once(method: str, reliable: bool,
                                             events: list[tuple[str, object]]) -> None:
    transport = "TCP" if reliable else "UDP"
    peer = Peer(transport.lower(), "198.51.100.1", 5060)
    w = World()
    endings: list[str] = []  # what ends a transaction for its TU
    oks: list[Response] = []

    def on_response(response: Response) -> None:
        if 200 <= response.status < 300 and method == "INVITE":
            oks.append(response)
        elif response.status >= 200:
            endings.append(str(response.status))

    request = make_request(method, transport)
    tx = w.layer.send_request(request, peer, on_response, lambda: endings.append("timeout"),
                              lambda: endings.append("transport"))
    for kind, arg in events:
        if kind == "response":
            assert isinstance(arg, tuple)
            code, tag = arg
            wire = make_response(request, code, to_tag=None if code == 100 else tag)
            parsed = parse_message(wire.to_bytes())
            assert isinstance(parsed, Response)
            w.layer.receive_response(parsed, peer)
        elif kind == "tick":
            assert isinstance(arg, float)
            w.clock.advance(arg)
        elif kind == "cancel-sent":
            tx.cancel_sent()
        else:
            w.fail = not w.fail
        assert len(endings) <= 1
        assert not (oks and endings)
    if tx.state is TransactionState.PROCEEDING:
        tx.cancel_sent()  # the TU CANCELs a call that rings too long
    w.settle()
    assert tx.state is TransactionState.TERMINATED and w.empty()
    assert len(endings) + (1 if oks else 0) == 1
