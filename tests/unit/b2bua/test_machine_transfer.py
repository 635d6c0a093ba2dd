"""The call machine moving a call to another party: blind and attended REFER, Replaces."""

from __future__ import annotations

from dataclasses import replace

from softswitch.b2bua import events as ev
from softswitch.b2bua.machine import CallMachine, CallState
from softswitch.config import TrunkSettings
from softswitch.sip.message import Response, new_tag
from softswitch.sip.peer import Peer
from tests.support.calls import SDP, SDP_B, CallDriver, Party, contact_dest, invite

SDP_Z = SDP.replace(b"192.0.2.1", b"192.0.2.3")
TRUNK = TrunkSettings(name="provider", host="192.0.2.9", username="pbx", password="secret")


def dests() -> dict[str, list]:
    return {"1002": [contact_dest("1002")], "1003": [contact_dest("1003", "192.0.2.3")],
            "1004": [contact_dest("1004", "192.0.2.4")],
            "95551234": [contact_dest("+15551234", "192.0.2.9", trunk="provider")]}


def driver(**overrides: object) -> CallDriver:
    return CallDriver(destinations=dests(),
                      settings_overrides={"trunks": {"provider": TRUNK}, **overrides})


def refer(d: CallDriver, machine: CallMachine, referrer: Party, target: str) -> int:
    request = referrer.request("REFER", headers=[
        ("Refer-To", f"<sip:{target}@pbx.example.com>"),
        ("Referred-By", "<sip:x@pbx.example.com>")])
    return referrer.send(d, machine, request)


def notifies(d: CallDriver, host: str) -> list[bytes]:
    return [e.request.body.split(b"\r\n")[0] for e in d.requests("NOTIFY", host)]


def target_invite(d: CallDriver, host: str) -> ev.SendRequest:
    return d.requests("INVITE", host)[-1]


def complete(d: CallDriver, machine: CallMachine, z: ev.SendRequest, transferee_host: str,
             referrer_host: str) -> Response:
    """Z answers with its offer; the transferee takes it; the final NOTIFY is answered."""
    ok = d.answer(machine, z, 200, to_tag=new_tag(), body=SDP_Z)
    reinvite = d.requests("INVITE", transferee_host)[-1]
    assert reinvite.request.body == SDP_Z
    d.answer(machine, reinvite, 200, body=SDP_B if transferee_host == "192.0.2.2" else SDP)
    final = d.requests("NOTIFY", referrer_host)[-1]
    assert final.request.body.startswith(b"SIP/2.0 200")
    assert "terminated" in (final.request.get("subscription-state") or "")
    assert d.requests("BYE", referrer_host) == []  # not before it heard of the success
    d.answer(machine, final, 200)
    return ok


def test_blind_transfer_by_the_callee() -> None:
    d = driver()
    machine, caller, callee = d.connect()
    ref = refer(d, machine, callee, "1003")
    assert d.responses(ref) == [202]
    z = target_invite(d, "192.0.2.3")
    assert z.request.body == b""  # the target's 2xx will hold the offer
    assert notifies(d, "192.0.2.2") == [b"SIP/2.0 100 Trying"]
    d.answer(machine, z, 180, to_tag="z")
    assert notifies(d, "192.0.2.2")[-1] == b"SIP/2.0 180 Ringing"
    complete(d, machine, z, "192.0.2.1", "192.0.2.2")
    # Z gets the transferee's answer in our ACK; the referrer gets BYE.
    (ack,) = d.of(ev.SendAck, lambda e: e.peer.host == "192.0.2.3")
    assert ack.request.body == SDP
    assert len(d.requests("BYE", "192.0.2.2")) == 1
    assert machine.b is not None and machine.b.target == "user/1003"
    assert machine.state is CallState.CONFIRMED
    assert d.saved[-1].callee == "user/1003"
    # The new pair talks: a BYE from the caller reaches Z, one CDR.
    caller.send(d, machine, caller.request("BYE"))
    assert len(d.requests("BYE", "192.0.2.3")) == 1
    (cdr,) = d.cdrs
    assert cdr.callee == "user/1003"


def test_blind_transfer_by_the_caller() -> None:
    d = driver()
    machine, caller, callee = d.connect()
    assert d.responses(refer(d, machine, caller, "1003")) == [202]
    z = target_invite(d, "192.0.2.3")
    complete(d, machine, z, "192.0.2.2", "192.0.2.1")
    assert len(d.requests("BYE", "192.0.2.1")) == 1
    assert machine.a.target == "user/1003"


def test_a_failed_transfer_notifies_the_final_code_and_keeps_the_call() -> None:
    d = driver()
    machine, caller, callee = d.connect()
    refer(d, machine, callee, "1003")
    d.answer(machine, target_invite(d, "192.0.2.3"), 486, to_tag="z")
    assert notifies(d, "192.0.2.2")[-1].startswith(b"SIP/2.0 486")
    assert d.requests("BYE") == []
    assert machine.state is CallState.CONFIRMED and d.cdrs == []
    # A second REFER may follow.
    assert d.responses(refer(d, machine, callee, "1003")) == [202]


def test_transfer_to_a_target_resolved_late() -> None:
    # Bug: a transfer to a DNS target dropped the pending resolution and ended in 480.
    d = driver()
    d.hold_resolve.add("95551234")
    machine, _, callee = d.connect()
    refer(d, machine, callee, "95551234")
    assert d.requests("INVITE", "192.0.2.9") == []
    d.resolve_held()
    z = target_invite(d, "192.0.2.9")
    complete(d, machine, z, "192.0.2.1", "192.0.2.2")
    assert machine.b is not None and machine.b.target.startswith("user/+15551234")


def test_transfer_to_a_trunk_answers_401_with_credentials() -> None:
    d = driver()
    machine, _, callee = d.connect()
    refer(d, machine, callee, "95551234")
    first = target_invite(d, "192.0.2.9")
    d.answer(machine, first, 407, to_tag="x", headers=[
        ("Proxy-Authenticate", 'Digest realm="provider", nonce="n1", algorithm=MD5')])
    again = target_invite(d, "192.0.2.9")
    assert again is not first
    assert 'username="pbx"' in (again.request.get("proxy-authorization") or "")
    complete(d, machine, again, "192.0.2.1", "192.0.2.2")


def test_transfer_fails_over_on_503() -> None:
    d = driver()
    dest = d.destinations["1003"][0]
    d.destinations["1003"] = [replace(dest, alternates=(Peer("udp", "192.0.2.33", 5060),))]
    machine, _, callee = d.connect()
    refer(d, machine, callee, "1003")
    d.answer(machine, target_invite(d, "192.0.2.3"), 503, to_tag="x")
    z = target_invite(d, "192.0.2.33")
    complete(d, machine, z, "192.0.2.1", "192.0.2.2")


def test_transfer_retries_a_422_with_the_targets_min_se() -> None:
    d = driver()
    machine, _, callee = d.connect()
    refer(d, machine, callee, "1003")
    d.answer(machine, target_invite(d, "192.0.2.3"), 422, to_tag="x",
             headers=[("Min-SE", "3600")])
    again = target_invite(d, "192.0.2.3")
    assert again.request.get("min-se") == "3600"
    complete(d, machine, again, "192.0.2.1", "192.0.2.2")


def test_transfer_to_two_phones_cancels_the_loser_with_a_reason_after_its_1xx() -> None:
    # Bug: the transfer's CANCEL had no Reason and skipped the RFC 3261 9.1 rules.
    d = driver()
    machine, _, callee = d.connect()
    refer(d, machine, callee, "2000")
    z3, z4 = d.requests("INVITE", "192.0.2.2")[1:] + d.requests("INVITE", "192.0.2.3")
    # 2000 rings 1002 and 1003; 1002 is the referrer's own phone here.
    d.answer(machine, z3, 100)
    complete(d, machine, z4, "192.0.2.1", "192.0.2.2")
    (cancel,) = d.of(ev.SendCancel)
    assert cancel.invite_ref == z3.ref
    assert cancel.cancel.get("reason") == 'SIP;cause=200;text="Call completed elsewhere"'


def test_transfer_forks_get_no_cancel_before_a_provisional() -> None:
    d = driver()
    machine, _, callee = d.connect()
    refer(d, machine, callee, "2000")
    z2 = d.requests("INVITE", "192.0.2.2")[-1]
    z3 = target_invite(d, "192.0.2.3")
    complete(d, machine, z3, "192.0.2.1", "192.0.2.2")
    assert d.of(ev.SendCancel) == []
    d.answer(machine, z2, 180, to_tag="late")
    (cancel,) = d.of(ev.SendCancel)
    assert cancel.invite_ref == z2.ref and "cause=200" in (cancel.cancel.get("reason") or "")


def test_a_restored_call_can_be_transferred() -> None:
    # Bug: a call restored after a restart could not be transferred.
    d = driver()
    machine, caller, callee = d.connect()
    again = d.restore(machine)
    assert d.responses(refer(d, again, callee, "1003")) == [202]
    z = target_invite(d, "192.0.2.3")
    complete(d, again, z, "192.0.2.1", "192.0.2.2")
    assert again.b is not None and again.b.target == "user/1003"
    caller.send(d, again, caller.request("BYE"))
    assert len(d.requests("BYE", "192.0.2.3")) == 1
    assert len(d.cdrs) == 1


def test_attended_transfer_joins_two_calls_and_ends_the_other() -> None:
    d = driver()
    first, caller1, callee2 = d.connect("1002")
    second, caller1b, callee3 = d.connect("1003")
    a2 = second.a
    replaces = f"{a2.id.call_id}%3Bto-tag%3D{a2.id.local_tag}%3Bfrom-tag%3D{a2.id.remote_tag}"
    request = caller1.request("REFER", headers=[
        ("Refer-To", f"<sip:1003@pbx.example.com?Replaces={replaces}>")])
    ref = caller1.send(d, first, request)
    assert d.responses(ref) == [202]
    solicit = d.requests("INVITE", "192.0.2.3")[-1]
    assert solicit.request.body == b""
    assert solicit.request.call_id == second.b.id.call_id  # type: ignore[union-attr]
    d.answer(first, solicit, 200, body=SDP_Z)
    reinvite = d.requests("INVITE", "192.0.2.2")[-1]
    assert reinvite.request.body == SDP_Z
    d.answer(first, reinvite, 200, body=SDP_B)
    ack3 = d.of(ev.SendAck, lambda e: e.peer.host == "192.0.2.3")[-1]
    assert ack3.request.body == SDP_B
    # The other call ended: BYE to the referrer's leg there, its CDR.
    assert len(d.requests("BYE", "192.0.2.1")) == 1
    (cdr,) = d.cdrs
    assert cdr.uuid == second.uuid and cdr.hangup_cause == "attended transfer"
    final = d.requests("NOTIFY", "192.0.2.1")[-1]
    d.answer(first, final, 200)
    assert len(d.requests("BYE", "192.0.2.1")) == 2
    # 1002 and 1003 now talk in the first call.
    assert first.b is not None and first.a.target == "user/1003"
    callee2.send(d, first, callee2.request("BYE"))
    assert len(d.requests("BYE", "192.0.2.3")) == 1
    assert [c.uuid for c in d.cdrs] == [second.uuid, first.uuid]


def test_invite_with_replaces_swaps_the_replaced_party() -> None:
    d = driver()
    machine, caller, callee = d.connect()
    b = machine.b
    assert b is not None
    request = invite("1002", body=SDP_Z, headers=[
        f"Replaces: {b.id.call_id};to-tag={b.id.local_tag};from-tag={b.id.remote_tag}"])
    newcomer = Peer("udp", "192.0.2.4", 5060)
    d.feed(machine, ev.ReplacingInvite(77, request, newcomer, "1004"))
    reinvite = d.requests("INVITE", "192.0.2.1")[-1]
    assert reinvite.request.body == SDP_Z
    d.answer(machine, reinvite, 200, body=SDP)
    ok = [e.response for e in d.of(ev.Respond) if e.ref == 77][-1]
    assert ok.status == 200 and ok.body == SDP
    (bye,) = d.requests("BYE", "192.0.2.2")
    assert bye.request.get("reason") == 'SIP;cause=200;text="Call replaced"'
    assert d.saved[-1].callee == "user/1004"
    new_party = Party.caller(d, machine, request, newcomer)
    d.feed(machine, ev.AckReceived(new_party.ack(request, ok)))
    d.advance(10)
    assert [e.response.status for e in d.of(ev.Respond) if e.ref == 77].count(200) == 1
    caller.send(d, machine, caller.request("BYE"))
    assert len(d.requests("BYE", "192.0.2.4")) == 1
    (cdr,) = d.cdrs
    assert cdr.callee == "user/1004"


def test_a_blind_target_that_answered_is_acked_and_byed_when_the_call_ends_meanwhile() -> None:
    # Bug: the transferee hung up while its re-INVITE was out; the target's 2xx
    # was never ACKed nor BYEd, and the target was left in a dead call.
    d = driver()
    machine, caller, callee = d.connect()
    refer(d, machine, callee, "1003")
    z = target_invite(d, "192.0.2.3")
    d.answer(machine, z, 200, to_tag="z", body=SDP_Z)
    reinvite = d.requests("INVITE", "192.0.2.1")[-1]
    assert d.responses(caller.send(d, machine, caller.request("BYE"))) == [200]
    assert len(d.of(ev.SendAck, lambda e: e.peer.host == "192.0.2.3")) == 1
    assert len(d.requests("BYE", "192.0.2.3")) == 1
    assert len(d.requests("BYE", "192.0.2.2")) == 1
    d.answer(machine, reinvite, 481)
    (cdr,) = d.cdrs
    assert cdr.hangup_side == "caller"
    assert machine.finished and d.dialogs == {}


def test_an_attended_target_keeps_its_call_when_the_transferring_call_ends_meanwhile() -> None:
    d = driver()
    first, caller1, transferee = d.connect("1002")
    second, _, _ = d.connect("1003")
    a2 = second.a
    replaces = f"{a2.id.call_id}%3Bto-tag%3D{a2.id.local_tag}%3Bfrom-tag%3D{a2.id.remote_tag}"
    caller1.send(d, first, caller1.request("REFER", headers=[
        ("Refer-To", f"<sip:1003@pbx.example.com?Replaces={replaces}>")]))
    solicit = d.requests("INVITE", "192.0.2.3")[-1]
    d.answer(first, solicit, 200, body=SDP_Z)
    transferee.send(d, first, transferee.request("BYE"))
    # Z's offer is answered with the session it had, and its own call goes on.
    ack = d.of(ev.SendAck, lambda e: e.peer.host == "192.0.2.3")[-1]
    assert ack.request.cseq.seq == solicit.request.cseq.seq and ack.request.body
    assert d.requests("BYE", "192.0.2.3") == []
    assert [c.uuid for c in d.cdrs] == [first.uuid]
    assert second.state is CallState.CONFIRMED



def test_an_attended_targets_late_2xx_is_acked_after_the_transferring_call_ended() -> None:
    # The solicit re-INVITE is out when the transferee hangs up: its 2xx must
    # still be ACKed, or the target ends its own call (RFC 3261 13.3.1.4).
    d = driver()
    first, caller1, transferee = d.connect("1002")
    second, _, _ = d.connect("1003")
    a2 = second.a
    replaces = f"{a2.id.call_id}%3Bto-tag%3D{a2.id.local_tag}%3Bfrom-tag%3D{a2.id.remote_tag}"
    caller1.send(d, first, caller1.request("REFER", headers=[
        ("Refer-To", f"<sip:1003@pbx.example.com?Replaces={replaces}>")]))
    solicit = d.requests("INVITE", "192.0.2.3")[-1]
    transferee.send(d, first, transferee.request("BYE"))
    assert [c.uuid for c in d.cdrs] == [first.uuid]
    assert not first.finished  # still waiting for the target's answer
    d.answer(first, solicit, 200, body=SDP_Z)
    ack = d.of(ev.SendAck, lambda e: e.peer.host == "192.0.2.3")[-1]
    assert ack.request.cseq.seq == solicit.request.cseq.seq and ack.request.body
    assert first.finished
    assert d.requests("BYE", "192.0.2.3") == [] and second.state is CallState.CONFIRMED
