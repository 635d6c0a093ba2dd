"""Dialogs: creation as UAS and UAC, in-dialog requests, CSeq rules, target
refresh, the 2xx ACK, early dialogs per To tag, the table (RFC 3261 12, 13.2.2.4,
14, 15), and the Reason / RAck values (RFC 3326, RFC 3262)."""

from __future__ import annotations

from typing import TypedDict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from softswitch.sip.dialog import (
    CALL_COMPLETED_ELSEWHERE,
    Dialog,
    DialogRole,
    DialogState,
    DialogStateError,
    DialogTable,
    RAck,
    Reason,
    ReliableVerdict,
    parse_rseq,
    requires_100rel,
    supports_100rel,
)
from softswitch.sip.errors import MessageError
from softswitch.sip.headers import NameAddr
from softswitch.sip.message import Request, Response, make_response, parse_message
from softswitch.sip.peer import Peer
from softswitch.sip.uri import SipURI

CRLF = "\r\n"
UDP_PEER = Peer("udp", "192.0.2.1", 5060)


class SentBy(TypedDict):
    via_host: str
    via_port: int


VIA = SentBy(via_host="192.0.2.10", via_port=5060)


def _msg(*lines: str, body: str = "") -> Request | Response:
    text = CRLF.join([*lines, f"Content-Length: {len(body)}", "", body])
    return parse_message(text.encode())


def request(*lines: str) -> Request:
    message = _msg(*lines)
    assert isinstance(message, Request)
    return message


def response(*lines: str) -> Response:
    message = _msg(*lines)
    assert isinstance(message, Response)
    return message


def incoming_invite(*extra: str, uri: str = "sip:bob@192.0.2.10", to_tag: str = "") -> Request:
    """An INVITE from Alice, through two loose-routing proxies, that we answer."""
    return request(
        f"INVITE {uri} SIP/2.0",
        "Via: SIP/2.0/UDP p1.example.com;branch=z9hG4bKp1",
        "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKa1",
        "Max-Forwards: 69",
        'From: "Alice" <sip:alice@example.com>;tag=atag',
        f"To: <sip:bob@example.com>{';tag=' + to_tag if to_tag else ''}",
        "Call-ID: call-1@192.0.2.1",
        "CSeq: 10 INVITE",
        *extra,
    )


RR = "Record-Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>"
ALICE_CONTACT = "Contact: <sip:alice@192.0.2.1:5060>"


def outgoing_invite(*extra: str) -> Request:
    """An INVITE we send to Carol (B-leg)."""
    return request(
        "INVITE sip:carol@example.net SIP/2.0",
        "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKb1;rport",
        "Max-Forwards: 70",
        "From: <sip:bob@example.com>;tag=btag",
        "To: Carol <sip:carol@example.net>",
        "Call-ID: bleg-1@192.0.2.10",
        "CSeq: 1 INVITE",
        "Contact: <sip:b2bua@192.0.2.10:5060>",
        *extra,
    )


def answer(status: int, to_tag: str | None, *extra: str, method: str = "INVITE",
           seq: int = 1, call_id: str = "bleg-1@192.0.2.10") -> Response:
    """A response from Carol's side to something we sent in the B-leg."""
    reason = {100: "Trying", 180: "Ringing", 183: "Session Progress", 200: "OK"}.get(status, "X")
    return response(
        f"SIP/2.0 {status} {reason}",
        "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKb1;rport",
        "From: <sip:bob@example.com>;tag=btag",
        f"To: Carol <sip:carol@example.net>{';tag=' + to_tag if to_tag else ''}",
        f"Call-ID: {call_id}",
        f"CSeq: {seq} {method}",
        *extra,
    )


def uas_dialog(*extra: str) -> Dialog:
    return Dialog.from_uas(incoming_invite(ALICE_CONTACT, RR, *extra), "btag-a",
                           "<sip:b2bua@192.0.2.10:5060>", peer=UDP_PEER)


def uac_dialog(status: int = 200, *extra: str) -> Dialog:
    return Dialog.from_uac(
        outgoing_invite(),
        answer(status, "ctag", "Contact: <sip:carol@198.51.100.7:5070>",
               "Record-Route: <sip:q2.example.net;lr>, <sip:q1.example.com;lr>", *extra))


def in_dialog(method: str, seq: int, *extra: str, from_tag: str = "atag",
              to_tag: str = "btag-a") -> Request:
    """A request from Alice within the A-leg dialog."""
    return request(
        f"{method} sip:b2bua@192.0.2.10:5060 SIP/2.0",
        "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKin" + str(seq),
        "Max-Forwards: 70",
        f"From: <sip:alice@example.com>;tag={from_tag}",
        f"To: <sip:bob@example.com>;tag={to_tag}",
        "Call-ID: call-1@192.0.2.1",
        f"CSeq: {seq} {method}",
        *extra,
    )


# -- creation -------------------------------------------------------------------------


def test_from_uas_takes_the_dialog_state_of_rfc3261_12_1_1() -> None:
    dialog = uas_dialog()
    assert dialog.role is DialogRole.UAS and dialog.state is DialogState.EARLY
    assert dialog.id == ("call-1@192.0.2.1", "btag-a", "atag")
    assert str(dialog.remote_target) == "sip:alice@192.0.2.1:5060"
    assert [str(r) for r in dialog.route_set] == ["<sip:p1.example.com;lr>",
                                                  "<sip:p2.example.com;lr>"]
    assert (dialog.remote_cseq, dialog.local_cseq) == (10, None)
    assert str(dialog.remote_uri) == '"Alice" <sip:alice@example.com>'
    assert str(dialog.local_uri) == "<sip:bob@example.com>"
    assert str(dialog.local_contact) == "<sip:b2bua@192.0.2.10:5060>"
    assert dialog.peer == UDP_PEER and not dialog.secure


@pytest.mark.parametrize(("uri", "peer", "secure"), [
    ("sips:bob@192.0.2.10", Peer("tls", "192.0.2.1", 5061), True),
    ("sips:bob@192.0.2.10", Peer("udp", "192.0.2.1", 5060), False),
    ("sip:bob@192.0.2.10", Peer("tls", "192.0.2.1", 5061), False),
    ("sips:bob@192.0.2.10", None, True),
])
def test_secure_flag_needs_sips_and_tls(uri: str, peer: Peer | None, secure: bool) -> None:
    invite = incoming_invite(ALICE_CONTACT, uri=uri)
    assert Dialog.from_uas(invite, "t", "<sip:b@h>", peer=peer).secure is secure


@pytest.mark.parametrize("contact", [(), ("Contact: <sip:a@h>, <sip:b@h>",), ("Contact: *",)])
def test_from_uas_without_one_contact_is_a_400(contact: tuple[str, ...]) -> None:
    with pytest.raises(MessageError) as err:
        Dialog.from_uas(incoming_invite(*contact), "t", "<sip:b@h>")
    assert err.value.status == 400


def test_from_uas_refuses_an_in_dialog_request() -> None:
    with pytest.raises(ValueError):
        Dialog.from_uas(incoming_invite(ALICE_CONTACT, to_tag="x"), "t", "<sip:b@h>")


@pytest.mark.parametrize(("status", "state"), [(180, DialogState.EARLY),
                                               (200, DialogState.CONFIRMED)])
def test_from_uac_takes_the_dialog_state_of_rfc3261_12_1_2(status: int,
                                                          state: DialogState) -> None:
    dialog = uac_dialog(status)
    assert dialog.role is DialogRole.UAC and dialog.state is state
    assert dialog.id == ("bleg-1@192.0.2.10", "btag", "ctag")
    assert str(dialog.remote_target) == "sip:carol@198.51.100.7:5070"
    # 12.1.2: the Record-Route of the response, reversed.
    assert [str(r) for r in dialog.route_set] == ["<sip:q1.example.com;lr>",
                                                  "<sip:q2.example.net;lr>"]
    assert (dialog.local_cseq, dialog.remote_cseq) == (1, None)
    assert str(dialog.remote_uri) == '"Carol" <sip:carol@example.net>'
    assert str(dialog.local_contact) == "<sip:b2bua@192.0.2.10:5060>"


@pytest.mark.parametrize(("status", "tag"), [(100, None), (180, None), (200, None),
                                             (486, "ctag")])
def test_from_uac_needs_a_dialog_creating_response(status: int, tag: str | None) -> None:
    with pytest.raises(ValueError):
        Dialog.from_uac(outgoing_invite(), answer(status, tag, "Contact: <sip:c@h>"))


def test_from_uac_without_contact_targets_the_request_uri() -> None:
    dialog = Dialog.from_uac(outgoing_invite(), answer(180, "ctag"))
    assert str(dialog.remote_target) == "sip:carol@example.net"
    assert dialog.route_set == []


# -- requests we send ---------------------------------------------------------------------


def test_in_dialog_request_with_loose_routes() -> None:
    dialog = uas_dialog()
    dialog.sent_response(response_to(incoming_invite(ALICE_CONTACT, RR), 200))
    bye = dialog.create_request("BYE", **VIA)
    assert bye.method == "BYE"
    assert str(bye.uri) == "sip:alice@192.0.2.1:5060"  # the remote target
    assert bye.values("route") == ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
    assert bye.from_tag == "btag-a" and bye.to_tag == "atag"
    assert bye.from_addr.sip_uri.aor == "bob@example.com"
    assert bye.to_addr.display_name == "Alice"
    assert bye.call_id == "call-1@192.0.2.1"
    assert bye.get("max-forwards") == "70"
    via = bye.top_via
    assert (via.transport, via.host, via.port) == ("UDP", "192.0.2.10", 5060)
    assert via.branch is not None and via.branch.startswith("z9hG4bK") and "rport" in via.params
    assert not bye.has("contact")
    # What we build, the parser takes back unchanged.
    assert parse_message(bye.to_bytes()).to_bytes() == bye.to_bytes()


def test_strict_router_gets_the_request_uri_and_the_target_goes_last() -> None:
    dialog = Dialog.from_uas(
        incoming_invite(ALICE_CONTACT,
                        "Record-Route: <sip:strict.example.com;method=INVITE?x=y>, "
                        "<sip:p2.example.com;lr>"),
        "t", "<sip:b@h>")
    info = dialog.create_request("INFO", **VIA)
    # 12.2.1.1: parameters a Request-URI may not carry are stripped.
    assert str(info.uri) == "sip:strict.example.com"
    assert info.values("route") == ["<sip:p2.example.com;lr>", "<sip:alice@192.0.2.1:5060>"]
    assert str(dialog.next_hop) == "sip:strict.example.com;method=INVITE?x=y"


def test_no_route_set_means_no_route_header() -> None:
    dialog = Dialog.from_uas(incoming_invite(ALICE_CONTACT), "t", "<sip:b@h>")
    options = dialog.create_request("OPTIONS", **VIA)
    assert str(options.uri) == "sip:alice@192.0.2.1:5060" and not options.has("route")
    assert str(dialog.next_hop) == "sip:alice@192.0.2.1:5060"


def test_local_cseq_starts_below_2_31_for_a_uas_and_goes_up_by_one() -> None:
    dialog = uas_dialog()
    first = dialog.create_request("UPDATE", **VIA).cseq
    second = dialog.create_request("INFO", **VIA).cseq
    assert 0 < first.seq < 2**31 and first.method == "UPDATE"
    assert second.seq == first.seq + 1 and dialog.local_cseq == second.seq


def test_uac_cseq_continues_from_the_invite() -> None:
    dialog = uac_dialog()
    assert dialog.create_request("BYE", **VIA).cseq.seq == 2


def test_target_refresh_carries_contact_and_may_change_it() -> None:
    dialog = uac_dialog()
    reinvite = dialog.create_request("INVITE", **VIA, body=b"v=0\r\n",
                                     content_type="application/sdp")
    assert reinvite.get("contact") == "<sip:b2bua@192.0.2.10:5060>"
    assert reinvite.get("content-type") == "application/sdp"
    assert reinvite.get("content-length") == "5" and reinvite.body == b"v=0\r\n"
    moved = NameAddr.parse("<sip:b2bua@203.0.113.1:5080>")
    update = dialog.create_request("UPDATE", **VIA, contact=moved,
                                   extra_headers=[("Reason", str(CALL_COMPLETED_ELSEWHERE))])
    assert update.get("contact") == "<sip:b2bua@203.0.113.1:5080>"
    assert update.get("reason") == 'SIP;cause=200;text="Call completed elsewhere"'
    assert dialog.create_request("PRACK", **VIA).get("contact") is None


def test_via_transport_follows_the_peer_unless_given() -> None:
    dialog = uas_dialog()
    dialog.peer = Peer("tcp", "192.0.2.1", 5060, 7)
    assert dialog.create_request("INFO", **VIA).top_via.transport == "TCP"
    assert dialog.create_request("INFO", via_host="h", transport="tls").top_via.sent_by == "h"


@pytest.mark.parametrize("method", ["ACK", "CANCEL"])
def test_ack_and_cancel_are_built_elsewhere(method: str) -> None:
    with pytest.raises(ValueError):
        uac_dialog().create_request(method, **VIA)


def test_no_request_in_a_terminated_dialog() -> None:
    dialog = uac_dialog()
    dialog.terminate()
    dialog.terminate()  # idempotent
    with pytest.raises(DialogStateError):
        dialog.create_request("BYE", **VIA)


def test_only_the_caller_may_bye_an_early_dialog() -> None:
    with pytest.raises(DialogStateError):
        uas_dialog().create_request("BYE", **VIA)
    assert uac_dialog(180).create_request("BYE", **VIA).method == "BYE"


def test_ack_for_2xx_keeps_the_invite_cseq_and_credentials() -> None:
    invite = outgoing_invite('Proxy-Authorization: Digest username="b", realm="r", nonce="n", '
                             'uri="sip:carol@example.net", response="00"')
    ok = answer(200, "ctag", "Contact: <sip:carol@198.51.100.7:5070>",
                "Record-Route: <sip:q1.example.com;lr>")
    dialog = Dialog.from_uac(invite, ok)
    dialog.create_request("INFO", **VIA)  # a request in between must not matter
    ack = dialog.create_ack(invite, ok, **VIA)
    assert ack.method == "ACK" and (ack.cseq.seq, ack.cseq.method) == (1, "ACK")
    assert ack.branch != invite.branch
    assert str(ack.uri) == "sip:carol@198.51.100.7:5070"
    assert ack.values("route") == ["<sip:q1.example.com;lr>"]
    assert ack.to_tag == "ctag" and ack.from_tag == "btag"
    assert ack.get("proxy-authorization") == invite.get("proxy-authorization")
    assert dialog.local_cseq == 2


def test_ack_refuses_what_is_not_its_2xx() -> None:
    invite = outgoing_invite()
    dialog = uac_dialog(180)
    with pytest.raises(DialogStateError):
        dialog.create_ack(invite, answer(200, "ctag"), **VIA)  # not yet received
    with pytest.raises(ValueError):
        uac_dialog().create_ack(invite, answer(200, "other"), **VIA)
    with pytest.raises(ValueError):
        uac_dialog().create_ack(invite, answer(183, "ctag"), **VIA)


# -- requests we receive ------------------------------------------------------------------


@pytest.mark.parametrize(("seqs", "statuses"), [
    ([11, 12], [None, None]),
    ([11, 11], [None, None]),  # not lower: retransmissions are the transaction's job
    ([15, 12], [None, 500]),
    ([9], [500]),  # below the INVITE's 10
    ([1000], [None]),  # gaps are no error (12.2.2)
])
def test_remote_cseq_rule(seqs: list[int], statuses: list[int | None]) -> None:
    dialog = uas_dialog()
    got = [dialog.receive_request(in_dialog("INFO", seq)).status for seq in seqs]
    assert got == statuses
    assert dialog.remote_cseq == max([10] + [s for s, st in zip(seqs, got, strict=True)
                                             if st is None])


def test_uac_dialog_takes_any_first_remote_cseq() -> None:
    dialog = uac_dialog()
    bye = request("BYE sip:b2bua@192.0.2.10:5060 SIP/2.0",
                  "Via: SIP/2.0/UDP 198.51.100.7:5070;branch=z9hG4bKc1",
                  "From: <sip:carol@example.net>;tag=ctag",
                  "To: <sip:bob@example.com>;tag=btag",
                  "Call-ID: bleg-1@192.0.2.10", "CSeq: 1 BYE")
    verdict = dialog.receive_request(bye)
    assert verdict.accepted and dialog.remote_cseq == 1


def test_ack_and_cancel_skip_the_cseq_check() -> None:
    dialog = uas_dialog()
    assert dialog.receive_request(in_dialog("INFO", 20)).accepted
    assert dialog.receive_request(in_dialog("ACK", 10)).accepted
    assert dialog.remote_cseq == 20


@pytest.mark.parametrize("method", ["INVITE", "UPDATE"])
def test_target_refresh_request_moves_the_remote_target(method: str) -> None:
    dialog = uas_dialog()
    verdict = dialog.receive_request(in_dialog(method, 11, "Contact: <sip:alice@203.0.113.9>"))
    assert verdict.accepted and verdict.target_refreshed
    assert str(dialog.remote_target) == "sip:alice@203.0.113.9"


def test_other_requests_do_not_move_the_target() -> None:
    dialog = uas_dialog()
    verdict = dialog.receive_request(in_dialog("INFO", 11, "Contact: <sip:alice@203.0.113.9>"))
    assert verdict.accepted and not verdict.target_refreshed
    assert str(dialog.remote_target) == "sip:alice@192.0.2.1:5060"


def test_bad_contact_in_a_refresh_changes_nothing() -> None:
    dialog = uas_dialog()
    with pytest.raises(MessageError):
        dialog.receive_request(in_dialog("INVITE", 11, "Contact: <sip:a@h>, <sip:b@h>"))
    assert dialog.remote_cseq == 10


def test_out_of_order_refresh_does_not_move_the_target() -> None:
    dialog = uas_dialog()
    dialog.receive_request(in_dialog("INFO", 12))
    verdict = dialog.receive_request(in_dialog("UPDATE", 11, "Contact: <sip:x@203.0.113.9>"))
    assert (verdict.status, verdict.reason) == (500, "Server Internal Error")
    assert str(dialog.remote_target) == "sip:alice@192.0.2.1:5060"


def test_requests_of_another_or_ended_dialog_get_481() -> None:
    dialog = uas_dialog()
    assert dialog.receive_request(in_dialog("BYE", 11, to_tag="nope")).status == 481
    dialog.terminate()
    assert dialog.receive_request(in_dialog("BYE", 11)).status == 481


# -- responses: state changes --------------------------------------------------------------


def response_to(req: Request, status: int, to_tag: str = "btag-a") -> Response:
    return make_response(req, status, to_tag=to_tag)


@pytest.mark.parametrize(("status", "state"), [
    (180, DialogState.EARLY), (200, DialogState.CONFIRMED), (486, DialogState.TERMINATED)])
def test_responses_we_send_to_the_invite(status: int, state: DialogState) -> None:
    dialog = uas_dialog()
    dialog.sent_response(response_to(incoming_invite(ALICE_CONTACT), status))
    assert dialog.state is state


def test_non_2xx_to_a_reinvite_keeps_the_dialog_and_2xx_to_bye_ends_it() -> None:
    dialog = uas_dialog()
    dialog.sent_response(response_to(incoming_invite(ALICE_CONTACT), 200))
    dialog.sent_response(response_to(in_dialog("INVITE", 11), 488))
    assert dialog.state is DialogState.CONFIRMED
    dialog.sent_response(response_to(in_dialog("BYE", 12), 200))
    assert dialog.state is DialogState.TERMINATED
    dialog.sent_response(response_to(in_dialog("BYE", 12), 200))  # ignored now


def test_2xx_confirms_an_early_dialog_and_recomputes_the_route_set() -> None:
    dialog = uac_dialog(180)
    dialog.receive_response(answer(200, "ctag", "Contact: <sip:carol@198.51.100.8>",
                                   "Record-Route: <sip:only.example.net;lr>"))
    assert dialog.state is DialogState.CONFIRMED
    assert [str(r) for r in dialog.route_set] == ["<sip:only.example.net;lr>"]
    assert str(dialog.remote_target) == "sip:carol@198.51.100.8"


def test_provisional_moves_the_early_target_but_not_the_routes() -> None:
    dialog = uac_dialog(180)
    dialog.receive_response(answer(183, "ctag", "Contact: <sip:carol@198.51.100.9>",
                                   "Record-Route: <sip:other.example.net;lr>"))
    assert dialog.state is DialogState.EARLY
    assert str(dialog.remote_target) == "sip:carol@198.51.100.9"
    assert len(dialog.route_set) == 2


def test_failure_ends_an_early_dialog() -> None:
    dialog = uac_dialog(180)
    dialog.receive_response(answer(487, "ctag"))
    assert dialog.state is DialogState.TERMINATED
    dialog.receive_response(answer(200, "ctag", "Contact: <sip:c@h>"))  # ignored
    assert dialog.state is DialogState.TERMINATED


@pytest.mark.parametrize("method", ["INVITE", "UPDATE"])
def test_2xx_to_our_target_refresh_moves_the_target(method: str) -> None:
    dialog = uac_dialog()
    dialog.receive_response(answer(200, "ctag", "Contact: <sip:carol@203.0.113.5>",
                                   method=method, seq=2))
    assert str(dialog.remote_target) == "sip:carol@203.0.113.5"
    assert dialog.state is DialogState.CONFIRMED
    dialog.receive_response(answer(200, "ctag", method=method, seq=3))  # no Contact: kept
    assert str(dialog.remote_target) == "sip:carol@203.0.113.5"


def test_2xx_to_info_does_not_move_the_target() -> None:
    dialog = uac_dialog()
    dialog.receive_response(answer(200, "ctag", "Contact: <sip:carol@203.0.113.5>",
                                   method="INFO", seq=2))
    assert str(dialog.remote_target) == "sip:carol@198.51.100.7:5070"


@pytest.mark.parametrize(("status", "method", "state"), [
    (481, "INFO", DialogState.TERMINATED),
    (408, "INVITE", DialogState.TERMINATED),
    (481, "CANCEL", DialogState.CONFIRMED),
    (488, "INVITE", DialogState.CONFIRMED),  # a failed re-INVITE changes nothing (14.1)
    (200, "BYE", DialogState.TERMINATED),
    (100, "INVITE", DialogState.CONFIRMED),
])
def test_responses_to_in_dialog_requests(status: int, method: str, state: DialogState) -> None:
    dialog = uac_dialog()
    dialog.receive_response(answer(status, "ctag", method=method, seq=2))
    assert dialog.state is state


# -- the table -----------------------------------------------------------------------------


def test_table_finds_requests_by_to_tag_and_responses_by_from_tag() -> None:
    table = DialogTable()
    a_leg = uas_dialog()
    b_leg = uac_dialog()
    table.add(a_leg)
    table.add(b_leg)
    assert len(table) == 2 and set(table) == {a_leg, b_leg}
    assert table.find(in_dialog("BYE", 11)) is a_leg
    assert table.find(in_dialog("BYE", 11, to_tag="other")) is None
    assert table.find(incoming_invite(ALICE_CONTACT)) is None  # no To tag: no dialog
    assert table.find(answer(200, "ctag", method="BYE", seq=2)) is b_leg
    assert table.find(answer(100, None)) is None
    assert table.get(("bleg-1@192.0.2.10", "btag", "ctag")) is b_leg
    with pytest.raises(ValueError):
        table.add(uac_dialog())
    table.remove(a_leg)
    table.remove(a_leg)  # already gone: ignored
    assert table.find(in_dialog("BYE", 11)) is None and len(table) == 1


def test_a_forked_invite_makes_one_early_dialog_per_to_tag() -> None:
    table = DialogTable()
    invite = outgoing_invite()
    assert table.match_response(invite, answer(100, None)) is None
    first = table.match_response(invite, answer(180, "fork1", "Contact: <sip:c@198.51.100.1>"))
    second = table.match_response(invite, answer(183, "fork2", "Contact: <sip:c@198.51.100.2>"))
    again = table.match_response(invite, answer(180, "fork1", "Contact: <sip:c@198.51.100.1>"))
    assert first is not None and second is not None and first is again and first is not second
    assert table.match_response(invite, answer(486, "fork3")) is None
    forks = table.forks("bleg-1@192.0.2.10", "btag")
    assert {d.remote_tag for d in forks} == {"fork1", "fork2"}
    # The 2xx of one fork confirms it; the B2BUA ends the others.
    winner = table.match_response(invite, answer(200, "fork2", "Contact: <sip:c@198.51.100.2>"))
    assert winner is second
    winner.receive_response(answer(200, "fork2", "Contact: <sip:c@198.51.100.2>"))
    assert winner.state is DialogState.CONFIRMED and first.state is DialogState.EARLY
    for loser in table.forks("bleg-1@192.0.2.10", "btag"):
        if loser is not winner:
            loser.terminate()
            table.remove(loser)
    assert table.forks("bleg-1@192.0.2.10", "btag") == [winner]
    table.remove(winner)
    assert table.forks("bleg-1@192.0.2.10", "btag") == []


def test_a_2xx_from_a_new_fork_creates_a_confirmed_dialog() -> None:
    table = DialogTable()
    dialog = table.match_response(outgoing_invite(), answer(200, "late", "Contact: <sip:c@h>"),
                                  peer=UDP_PEER)
    assert dialog is not None and dialog.state is DialogState.CONFIRMED
    assert dialog.peer == UDP_PEER and table.find(answer(200, "late")) is dialog


# -- property: the CSeq rule as a machine ---------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 2**32 - 1), max_size=12))
def test_requests_are_accepted_exactly_when_not_below_the_highest(seqs: list[int]) -> None:
    dialog = uac_dialog()
    highest: int | None = None
    for seq in seqs:
        verdict = dialog.receive_request(request(
            "INFO sip:b2bua@h SIP/2.0", "Via: SIP/2.0/UDP h;branch=z9hG4bKx",
            "From: <sip:carol@example.net>;tag=ctag", "To: <sip:bob@example.com>;tag=btag",
            "Call-ID: bleg-1@192.0.2.10", f"CSeq: {seq} INFO"))
        assert verdict.accepted == (highest is None or seq >= highest)
        if verdict.accepted:
            highest = seq
        assert dialog.remote_cseq == highest


# -- Reason (RFC 3326) ---------------------------------------------------------------------


def test_reason_values() -> None:
    assert str(CALL_COMPLETED_ELSEWHERE) == 'SIP;cause=200;text="Call completed elsewhere"'
    parsed = Reason.parse('SIP ;cause=200 ;text="Call completed elsewhere"')
    assert parsed == CALL_COMPLETED_ELSEWHERE
    assert Reason.parse("Q.850;cause=16") == Reason("Q.850", 16)
    assert Reason.parse('SIP;text="a \\"b\\"; c"') == Reason("SIP", None, 'a "b"; c')
    assert str(Reason("Q.850", 16, 'say "hi"')) == 'Q.850;cause=16;text="say \\"hi\\""'
    assert Reason.parse(str(Reason("Q.850", 16, 'say "hi"'))) == Reason("Q.850", 16, 'say "hi"')


@pytest.mark.parametrize("value", ["", ";cause=1", "SIP;cause=x", "SIP;cause=1234567890",
                                   'SIP;text="open', "S I P"])
def test_bad_reason_is_a_message_error(value: str) -> None:
    with pytest.raises(MessageError):
        Reason.parse(value)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_reason_parse_gives_a_value_or_message_error(text: str) -> None:
    try:
        reason = Reason.parse(text)
    except MessageError:
        return
    assert Reason.parse(str(reason)) == reason


# -- RSeq / RAck / 100rel (RFC 3262) ---------------------------------------------------------


def test_rack_parse_and_write() -> None:
    rack = RAck.parse("1 314159 INVITE")
    assert rack == RAck(1, 314159, "INVITE") and str(rack) == "1 314159 INVITE"
    assert RAck.parse("  776656\t1   INVITE ") == RAck(776656, 1, "INVITE")


@pytest.mark.parametrize("value", ["", "1 2", "0 1 INVITE", "1 2 INVITE x", "a 1 INVITE",
                                   "1 99999999999 INVITE", "4294967296 1 INVITE", "1 1 IN<VITE"])
def test_bad_rack_is_a_message_error(value: str) -> None:
    with pytest.raises(MessageError):
        RAck.parse(value)


def test_rseq_bounds() -> None:
    assert parse_rseq("4294967295") == 2**32 - 1 and parse_rseq(" 1 ") == 1
    for bad in ("0", "4294967296", "-1", "x", "", "１"):
        with pytest.raises(MessageError):
            parse_rseq(bad)


def test_prack_matching_and_reliable_provisionals() -> None:
    ringing = answer(180, "ctag", "Contact: <sip:c@h>", "RSeq: 7", "Require: 100rel")
    rack = RAck.for_response(ringing)
    assert rack == RAck(7, 1, "INVITE") and rack == RAck.parse(str(rack))
    assert requires_100rel(ringing) and supports_100rel(ringing)
    assert supports_100rel(outgoing_invite("Supported: timer, 100REL"))
    assert not requires_100rel(outgoing_invite("Supported: 100rel"))
    with pytest.raises(MessageError):
        RAck.for_response(answer(180, "ctag"))

    dialog = uac_dialog(180)
    verdicts = [dialog.receive_reliable_provisional(answer(183, "ctag", f"RSeq: {n}"))
                for n in (7, 7, 9, 8, 6)]
    assert verdicts == [ReliableVerdict.NEW, ReliableVerdict.RETRANSMISSION,
                        ReliableVerdict.OUT_OF_ORDER, ReliableVerdict.NEW,
                        ReliableVerdict.RETRANSMISSION]
    assert dialog.remote_rseq == 8
    with pytest.raises(MessageError):
        dialog.receive_reliable_provisional(answer(183, "ctag"))


def test_next_rseq_starts_below_2_31_and_counts_up() -> None:
    dialog = uas_dialog()
    first = dialog.next_rseq()
    assert 0 < first < 2**31 and dialog.next_rseq() == first + 1


def test_sip_uri_copy_is_independent_of_the_dialog() -> None:
    dialog = uas_dialog()
    req = dialog.create_request("INFO", **VIA)
    assert isinstance(req.uri, SipURI)
    req.uri.params["x"] = "1"
    assert str(dialog.remote_target) == "sip:alice@192.0.2.1:5060"
