"""The SIP core while shedding load: what is refused, dropped and still served.

Real parts: bytes through `SipCore.receive`, the real parser and transaction
layer on `task.Clock`, the real controller driven to a level by a sample.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from hypothesis import given
from hypothesis import strategies as st

from softswitch.overload import Level, OverloadController, Signals, Thresholds
from softswitch.overload_gate import OVERLOAD_TAG, OverloadGate
from softswitch.sip.message import Request, Response, parse_message
from softswitch.sip.peer import Peer
from softswitch.sip.prefilter import has_credentials, request_method, to_tag, to_value
from tests.unit.test_core import PHONE, Harness, answering, request, response

LIMITS = Thresholds(max_lag=0.2, max_udp_datagrams=0, max_transactions=0, drop_factor=4.0,
                    recover_after=1.0, lag_samples=1, loss_step=1.0)


@dataclass
class GateHarness(Harness):
    targets: list[Peer] = field(default_factory=list)  # where raw bytes went


def raw_sender(h: GateHarness) -> Callable[[bytes, Peer], None]:
    """What the transport would send, parsed into the harness's list."""
    def send(data: bytes, peer: Peer) -> None:
        message = parse_message(data)
        assert isinstance(message, Response)
        h.sent.append(message)
        h.targets.append(peer)
    return send


def shedding(level: Level, refresh_for: set[str] | None = None) -> tuple[GateHarness, list[str]]:
    h, seen = GateHarness(), []
    controller = OverloadController(LIMITS)
    gate = OverloadGate(controller, h.core.send, raw_sender(h), retry_after=7,
                        has_transaction=h.core.transactions.has_server_transaction,
                        has_transaction_at=h.core.transactions.has_server_transaction_at)
    if refresh_for is not None:
        gate.is_refresh = lambda uri: str(uri) in refresh_for
    h.core.overload = gate
    for method in ("INVITE", "REGISTER", "BYE", "INFO"):
        h.core.route(method, answering(200, seen))
    lag = {Level.NORMAL: 0.0, Level.REFUSE: 0.3, Level.DROP: 1.0}[level]
    controller.update(Signals(lag=lag), 0.0)
    assert controller.level is level
    return h, seen


def test_normal_admits_new_invites() -> None:
    h, seen = shedding(Level.NORMAL)
    h.core.receive(request("INVITE"), PHONE)
    assert seen == ["INVITE"] and h.last_status() == 200


def test_refusing_answers_a_new_invite_503_with_retry_after_and_no_transaction() -> None:
    h, seen = shedding(Level.REFUSE)
    h.core.receive(request("INVITE"), PHONE)
    assert seen == []
    [answer] = h.responses()
    assert answer.status == 503 and answer.get("retry-after") == "7"
    assert answer.to_tag is not None and answer.to_tag.startswith(OVERLOAD_TAG)
    assert h.core.transactions.active_server_count() == 0


def test_the_fast_503_is_stamped_and_goes_to_the_source_port() -> None:
    h, _ = shedding(Level.REFUSE)
    nat = Peer("udp", "198.51.100.7", 40000, 1)
    h.core.receive(request("INVITE").replace(b";branch=", b";rport;branch="), nat)
    [answer] = h.responses()
    assert answer.status == 503 and answer.reason == "Service Unavailable"
    assert answer.top_via.params["received"] == "198.51.100.7"
    assert answer.top_via.params["rport"] == "40000"
    assert (h.targets[-1].host, h.targets[-1].port) == ("198.51.100.7", 40000)
    assert answer.call_id == "core-test@192.0.2.10" and answer.cseq.method == "INVITE"


def test_an_invite_the_fast_path_cannot_read_is_refused_the_parsing_way() -> None:
    for data in (request("INVITE", branch="rfc2543-old"),
                 request("INVITE").replace(b"Max-Forwards: 70\r\n", b"Subject: a\r\n b\r\n")):
        h, seen = shedding(Level.REFUSE)
        h.core.receive(data, PHONE)
        assert seen == [] and h.last_status() == 503
        assert h.responses()[-1].get("retry-after") == "7"


def test_a_share_of_new_invites_is_refused_the_rest_served() -> None:
    h, seen = GateHarness(), []
    controller = OverloadController(Thresholds(max_lag=0.2, max_udp_datagrams=0, max_transactions=0,
                                               lag_samples=1, loss_step=0.25))
    h.core.overload = OverloadGate(
        controller, h.core.send, raw_sender(h),
        has_transaction=h.core.transactions.has_server_transaction,
        has_transaction_at=h.core.transactions.has_server_transaction_at)
    h.core.route("INVITE", answering(180, seen))
    controller.update(Signals(lag=0.3), 0.0)
    for _ in range(8):
        h.core.receive(request("INVITE"), PHONE)
    assert len(seen) == 6
    assert sorted(r.status for r in h.responses()) == [180] * 6 + [503] * 2


def test_refusing_still_serves_in_dialog_requests_bye_and_responses() -> None:
    h, seen = shedding(Level.REFUSE)
    h.core.receive(request("BYE", to_tag="t1"), PHONE)
    h.core.receive(request("INVITE", to_tag="t1"), PHONE)  # a re-INVITE
    h.core.receive(request("INFO", to_tag="t1"), PHONE)
    h.core.receive(response(200), PHONE)  # a stray response: no crash, no answer
    assert seen == ["BYE", "INVITE", "INFO"]
    assert [r.status for r in h.responses()] == [200, 200, 200]


def test_refusing_admits_register_refreshes_and_refuses_initial_registers() -> None:
    h, seen = shedding(Level.REFUSE, refresh_for={"sip:1002@pbx.example.com"})
    h.core.receive(request("REGISTER", user=None), PHONE)
    assert seen == ["REGISTER"]
    h2, seen2 = shedding(Level.REFUSE, refresh_for=set())
    h2.core.receive(request("REGISTER", user=None), PHONE)
    assert seen2 == [] and h2.last_status() == 503
    [answer] = h2.responses()
    assert answer.get("retry-after") == "7" and answer.cseq.method == "REGISTER"
    assert answer.to_tag is not None and answer.to_tag.startswith(OVERLOAD_TAG)
    assert h2.core.transactions.active_server_count() == 0


def with_credentials(data: bytes, header: str = "Authorization") -> bytes:
    return data.replace(b"Content-Length:", f'{header}: Digest username="1002", '
                        'realm="pbx.example.com", nonce="n", uri="sip:pbx.example.com", '
                        'response="00"\r\nContent-Length:'.encode())


def test_a_request_answering_our_challenge_is_served_while_refusing_and_dropping() -> None:
    """The REGISTER (or INVITE) with credentials is the second half of work we
    took on with the 401/407: refusing it wastes that and starts it over."""
    for level in (Level.REFUSE, Level.DROP):
        h, seen = shedding(level, refresh_for=set())
        h.core.receive(with_credentials(request("REGISTER", user=None)), PHONE)
        h.core.receive(with_credentials(request("INVITE"), "Proxy-Authorization"), PHONE)
        assert seen == ["REGISTER", "INVITE"]
        # Folded lines send it the parsing way: the same answer.
        folded = with_credentials(request("REGISTER", user=None)).replace(
            b"Max-Forwards: 70\r\n", b"Subject: a\r\n b\r\n")
        h.core.receive(folded, PHONE)
        assert seen == ["REGISTER", "INVITE", "REGISTER"]


def test_an_initial_register_the_fast_path_cannot_read_is_refused_the_parsing_way() -> None:
    for data in (request("REGISTER", user=None, branch="rfc2543-old"),
                 request("REGISTER", user=None).replace(b"Max-Forwards: 70\r\n",
                                                         b"Subject: a\r\n b\r\n")):
        h, seen = shedding(Level.REFUSE, refresh_for=set())
        h.core.receive(data, PHONE)
        assert seen == [] and h.last_status() == 503
        h2, seen2 = shedding(Level.REFUSE, refresh_for={"sip:1002@pbx.example.com"})
        h2.core.receive(data, PHONE)
        assert seen2 == ["REGISTER"]


def test_a_retransmitted_invite_admitted_before_the_overload_is_not_refused() -> None:
    h, seen = GateHarness(), []
    controller = OverloadController(LIMITS)
    h.core.overload = OverloadGate(
        controller, h.core.send, raw_sender(h),
        has_transaction=h.core.transactions.has_server_transaction,
        has_transaction_at=h.core.transactions.has_server_transaction_at)
    h.core.route("INVITE", lambda tx, req: seen.append(req.method))  # rings, no final answer
    invite = request("INVITE", branch="z9hG4bKearly")
    h.core.receive(invite, PHONE)
    controller.update(Signals(lag=0.3), 0.0)
    h.core.receive(invite, PHONE)  # its retransmission
    assert seen == ["INVITE"]
    assert all(r.status != 503 for r in h.responses())


def test_the_ack_of_our_503_is_dropped_unparsed_and_other_acks_pass() -> None:
    h, _ = shedding(Level.REFUSE)
    h.core.receive(request("INVITE"), PHONE)
    tag = h.responses()[-1].to_tag
    gate = h.core.overload
    assert gate is not None
    h.core.receive(request("ACK", to_tag=tag), PHONE)
    assert gate.acks_dropped == 1
    h.core.receive(request("ACK", to_tag="t1"), PHONE)
    assert gate.acks_dropped == 1


def test_dropping_answers_nothing_to_new_work_but_serves_a_bye() -> None:
    h, seen = shedding(Level.DROP)
    h.core.receive(request("INVITE"), PHONE)
    h.core.receive(request("REGISTER", user=None), PHONE)
    assert h.responses() == [] and seen == []
    h.core.receive(request("BYE", to_tag="t1"), PHONE)
    assert seen == ["BYE"]
    assert h.core.overload is not None and h.core.overload.controller.dropped == 2


def test_malformed_input_while_shedding_still_gets_its_400() -> None:
    h, _ = shedding(Level.REFUSE)
    h.core.receive(b"INVITE sip:x SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bKb\r\n"
                   b"\r\n", PHONE)
    [answer] = h.sent
    assert isinstance(answer, Response) and answer.status == 400


def with_oc(data: bytes) -> bytes:
    return data.replace(b";branch=", b";oc;oc-algo=\"loss\";branch=", 1)


def test_a_client_asking_for_rfc7339_is_told_the_loss_in_every_answer() -> None:
    h, _ = shedding(Level.REFUSE)  # loss 1.0 (loss_step 1.0)
    h.core.receive(with_oc(request("INVITE")), PHONE)  # the fast, unparsed 503
    h.core.receive(with_oc(request("INVITE", branch="rfc2543-x")), PHONE)  # the parsed one
    h.core.receive(with_oc(request("BYE", to_tag="t1")), PHONE)  # served: 200
    for answer in h.responses():
        via = answer.top_via
        assert via.params["oc"] == "100" and via.params["oc-validity"] == "500"
        assert via.params["oc-algo"] == '"loss"' and via.params["oc-seq"]
    assert [r.status for r in h.responses()] == [503, 503, 200]
    # No overload: 0, and control ends; a client that did not ask hears nothing.
    h2, _ = shedding(Level.NORMAL)
    h2.core.receive(with_oc(request("BYE", to_tag="t1")), PHONE)
    h2.core.receive(request("BYE", to_tag="t1"), PHONE)
    asked, plain = h2.responses()
    assert asked.top_via.params["oc"] == "0" and asked.top_via.params["oc-validity"] == "0"
    assert "oc" not in plain.top_via.params


# -- the prefilter --------------------------------------------------------------------


def test_prefilter_reads_method_and_to_tag_like_the_parser() -> None:
    for raw in (request("INVITE"), request("BYE", to_tag="abc"), request("REGISTER", user=None)):
        parsed = parse_message(raw)
        assert isinstance(parsed, Request)
        assert request_method(raw) == parsed.method.encode()
        tag = to_tag(raw)
        assert (tag.decode() if tag else None) == parsed.to_tag
    assert request_method(response(200)) is None
    compact = b"INVITE sip:a@b SIP/2.0\r\nt: <sip:a@b;tag=uri>;tag=hdr\r\n\r\n"
    assert to_tag(compact) == b"hdr"
    assert to_tag(b"INVITE sip:a@b SIP/2.0\r\nTo: <sip:a@b;tag=inuri>\r\n\r\n") is None
    assert to_value(request("REGISTER", user=None)) == b" <sip:1002@pbx.example.com>"
    assert has_credentials(with_credentials(request("REGISTER")))
    assert has_credentials(b"REGISTER sip:b SIP/2.0\r\nproxy-authorization : x\r\n\r\n")
    assert not has_credentials(request("REGISTER"))
    # In the body, not the header section: not credentials.
    assert not has_credentials(b"MESSAGE sip:b SIP/2.0\r\n\r\nAuthorization: x")


@given(st.binary(max_size=300))
def test_prefilter_never_raises(data: bytes) -> None:
    method = request_method(data)
    assert method is None or isinstance(method, bytes)
    tag = to_tag(data)
    assert tag is None or isinstance(tag, bytes)
    value = to_value(data)
    assert value is None or isinstance(value, bytes)
    assert has_credentials(data) in (True, False)


@given(st.binary(max_size=300))
def test_shedding_core_takes_arbitrary_bytes_without_raising(data: bytes) -> None:
    h, _ = shedding(Level.REFUSE)
    h.core.receive(b"INVITE " + data, PHONE)
    h.core.receive(data, PHONE)
    for message in h.sent:
        assert isinstance(message, Response)


@given(st.sampled_from(["INVITE", "REGISTER", "OPTIONS"]), st.booleans(),
       st.sampled_from(["192.0.2.10", "198.51.100.7"]), st.integers(1, 65535))
def test_stateless_response_says_what_make_response_says(method: str, compact: bool,
                                                         host: str, port: int) -> None:
    from softswitch.sip.message import make_response
    from softswitch.sip.peer import response_peer, stamp_via
    from softswitch.sip.prefilter import stateless_response
    data = request(method).replace(b";branch=", b";rport;branch=")
    if compact:
        data = data.replace(b"\r\nFrom:", b"\r\nf:").replace(b"\r\nTo:", b"\r\nt:")
    source = Peer("udp", host, port, 1)
    reply = stateless_response(data, source, 503, "Service Unavailable", "ovlx",
                               [("Retry-After", "5")])
    assert reply is not None
    raw, target, _ = reply
    fast = parse_message(raw)
    parsed = parse_message(data)
    assert isinstance(fast, Response) and isinstance(parsed, Request)
    stamp_via(parsed, source)
    slow = make_response(parsed, 503, to_tag="ovlx")
    for name in ("via", "from", "to", "call-id", "cseq"):
        assert fast.values(name) == slow.values(name), name
    assert target == response_peer(parsed.top_via, source)
    assert fast.get("retry-after") == "5"
