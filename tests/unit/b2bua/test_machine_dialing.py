"""The call machine from the caller's INVITE to the answer: forks, CANCEL, early media, PRACK.

No reactor, no sockets: `CallDriver` feeds events and keeps the effects.
"""

from __future__ import annotations

from datetime import UTC, datetime

from softswitch.b2bua import events as ev
from softswitch.b2bua.machine import CallState
from softswitch.config import TrunkSettings
from tests.support.calls import SDP, SDP_B, CallDriver, Party, contact_dest, invite

TWO = {"1002": [contact_dest("1002")], "1003": [contact_dest("1003", "192.0.2.3")]}


def forked() -> tuple[CallDriver, object, list[ev.SendRequest]]:
    driver = CallDriver(destinations=dict(TWO))
    machine = driver.start(invite("2000"))
    return driver, machine, driver.requests("INVITE")


def test_forking_first_2xx_wins_and_the_other_fork_is_cancelled_with_a_reason() -> None:
    driver, machine, (b1, b2) = forked()
    assert {b1.peer.host, b2.peer.host} == {"192.0.2.2", "192.0.2.3"}
    driver.answer(machine, b1, 180, to_tag="t1")
    driver.answer(machine, b2, 180, to_tag="t2")
    driver.answer(machine, b1, 200, to_tag="t1", body=SDP_B)
    assert driver.responses(machine.a_ref)[-1] == 200
    (cancel,) = driver.of(ev.SendCancel)
    assert cancel.invite_ref == b2.ref
    assert cancel.cancel.get("reason") == 'SIP;cause=200;text="Call completed elsewhere"'
    assert driver.caller_ok(machine).body == SDP_B
    assert ev.StartTimer("no_answer:1", 60.0) in driver.effects
    assert ev.StopTimer("no_answer:1") in driver.effects
    assert len(driver.of(ev.DialogOpened)) == 2  # the caller's and the winner's
    # The cancelled fork's media is freed.
    assert (machine.uuid, machine.legs[2].id) in driver.released


def test_a_2xx_from_the_losing_fork_is_acked_then_byed() -> None:
    driver, machine, (b1, b2) = forked()
    driver.answer(machine, b1, 180, to_tag="t1")
    driver.answer(machine, b2, 180, to_tag="t2")
    driver.answer(machine, b1, 200, to_tag="t1", body=SDP_B)
    driver.answer(machine, b2, 200, to_tag="t2", body=SDP_B)
    acks = driver.of(ev.SendAck, lambda e: e.peer.host == "192.0.2.3")
    byes = driver.requests("BYE", "192.0.2.3")
    assert len(acks) == 1 and len(byes) == 1
    assert byes[0].request.get("reason") == 'SIP;cause=200;text="Call completed elsewhere"'
    assert driver.requests("BYE", "192.0.2.2") == []
    assert machine.state is CallState.ANSWERED


def test_caller_cancel_gives_487_and_cancels_ringing_forks_with_reason_487() -> None:
    driver, machine, (b1, b2) = forked()
    driver.answer(machine, b1, 180, to_tag="t1")
    driver.answer(machine, b2, 100)
    driver.feed(machine, ev.CancelReceived())
    assert driver.responses(machine.a_ref)[-1] == 487
    cancels = driver.of(ev.SendCancel)
    assert sorted(c.invite_ref for c in cancels) == sorted([b1.ref, b2.ref])
    assert all(c.cancel.get("reason") == 'SIP;cause=487;text="Caller cancelled"'
               for c in cancels)
    (cdr,) = driver.cdrs
    assert cdr.disposition == "CANCELLED" and cdr.hangup_side == "caller"


def test_no_cancel_before_a_provisional_it_goes_when_the_1xx_arrives() -> None:
    # RFC 3261 9.1: a CANCEL may only follow a provisional response.
    driver, machine, (b1, b2) = forked()
    driver.feed(machine, ev.CancelReceived())
    assert driver.of(ev.SendCancel) == []
    assert driver.responses(machine.a_ref)[-1] == 487
    driver.answer(machine, b1, 100)
    (cancel,) = driver.of(ev.SendCancel)
    assert cancel.invite_ref == b1.ref
    assert "cause=487" in (cancel.cancel.get("reason") or "")
    driver.answer(machine, b1, 487)
    driver.answer(machine, b1, 100)
    assert len(driver.of(ev.SendCancel)) == 1
    assert len(driver.cdrs) == 1


def test_a_200_racing_the_cancel_is_acked_and_byed_and_the_cdr_says_cancelled() -> None:
    driver = CallDriver(destinations=dict(TWO))
    machine = driver.start(invite("1002"))
    (b1,) = driver.requests("INVITE")
    driver.answer(machine, b1, 180, to_tag="t1")
    driver.feed(machine, ev.CancelReceived())
    assert len(driver.of(ev.SendCancel)) == 1
    driver.answer(machine, b1, 200, to_tag="t1", body=SDP_B)
    assert len(driver.of(ev.SendAck)) == 1
    assert len(driver.requests("BYE", "192.0.2.2")) == 1
    assert driver.responses(machine.a_ref)[-1] == 487
    (cdr,) = driver.cdrs
    assert cdr.disposition == "CANCELLED"
    assert machine.finished


def test_early_media_183_with_sdp_is_relayed_with_its_body() -> None:
    driver = CallDriver(destinations=dict(TWO))
    machine = driver.start(invite("1002"))
    (b1,) = driver.requests("INVITE")
    driver.answer(machine, b1, 183, to_tag="t1", body=SDP_B)
    early = [e.response for e in driver.of(ev.Respond) if e.response.status == 183]
    assert len(early) == 1 and early[0].body == SDP_B
    assert driver.of(ev.MediaAnswer)[-1].body == SDP_B


def test_a_183_without_body_is_not_relayed() -> None:
    driver = CallDriver(destinations=dict(TWO))
    machine = driver.start(invite("1002"))
    (b1,) = driver.requests("INVITE")
    driver.answer(machine, b1, 183, to_tag="t1")
    assert 183 not in driver.responses(machine.a_ref)


def test_a_reliable_18x_from_the_callee_is_pracked_with_rack() -> None:
    driver = CallDriver(destinations=dict(TWO))
    machine = driver.start(invite("1002"))
    (b1,) = driver.requests("INVITE")
    assert "100rel" in (b1.request.get("supported") or "")
    headers = [("Require", "100rel"), ("RSeq", "7")]
    driver.answer(machine, b1, 180, to_tag="t1", headers=headers)
    (prack,) = driver.requests("PRACK")
    assert prack.request.get("rack") == f"7 {b1.request.cseq.seq} INVITE"
    # A retransmission of the same 18x is neither PRACKed again nor relayed again.
    driver.answer(machine, b1, 180, to_tag="t1", headers=headers)
    assert len(driver.requests("PRACK")) == 1
    assert driver.responses(machine.a_ref).count(180) == 1


def reliable_call() -> tuple[CallDriver, object, ev.SendRequest]:
    driver = CallDriver(destinations=dict(TWO))
    machine = driver.start(invite("1002", headers=["Supported: 100rel"]))
    (b1,) = driver.requests("INVITE")
    return driver, machine, b1


def test_18x_to_a_100rel_caller_is_reliable_and_resent_until_prack() -> None:
    driver, machine, b1 = reliable_call()
    driver.answer(machine, b1, 180, to_tag="t1")
    sent = [e.response for e in driver.of(ev.Respond) if e.response.status == 180]
    assert len(sent) == 1
    ringing = sent[0]
    assert ringing.get("require") == "100rel" and ringing.get("rseq")
    driver.advance(0.5)  # T1
    driver.advance(1.0)  # 2*T1
    assert driver.responses(machine.a_ref).count(180) == 3
    # A second 18x waits its turn.
    driver.answer(machine, b1, 183, to_tag="t1", body=SDP_B)
    assert 183 not in driver.responses(machine.a_ref)
    caller = Party.caller(driver, machine)
    prack = caller.request("PRACK", headers=[
        ("RAck", f"{ringing.get('rseq')} {ringing.cseq.seq} INVITE")])
    ref = caller.send(driver, machine, prack)
    assert driver.responses(ref) == [200]
    assert driver.responses(machine.a_ref).count(183) == 1
    after = driver.responses(machine.a_ref).count(180)
    driver.advance(2.0)
    assert driver.responses(machine.a_ref).count(180) == after  # no more 180s


def test_reliable_18x_resending_gives_up_after_64_t1() -> None:
    driver = CallDriver(destinations=dict(TWO), settings_overrides={"t1": 0.1, "t2": 0.4})
    machine = driver.start(invite("1002", headers=["Supported: 100rel"]))
    (b1,) = driver.requests("INVITE")
    driver.answer(machine, b1, 180, to_tag="t1")
    driver.advance(64 * 0.1 + 0.4)
    count = driver.responses(machine.a_ref).count(180)
    assert 10 <= count <= 20
    driver.advance(10)
    assert driver.responses(machine.a_ref).count(180) == count
    assert machine.state is CallState.DIALING  # the call goes on


def test_dial_timeout_cancels_with_reason_480_and_fails_480() -> None:
    driver = CallDriver(destinations=dict(TWO))
    machine = driver.start(invite("1002"))  # rule "one": timeout 20
    (b1,) = driver.requests("INVITE")
    driver.answer(machine, b1, 180, to_tag="t1")
    driver.advance(19)
    assert driver.of(ev.SendCancel) == []
    driver.advance(2)
    (cancel,) = driver.of(ev.SendCancel)
    assert "cause=480" in (cancel.cancel.get("reason") or "")
    assert driver.responses(machine.a_ref)[-1] == 480
    (cdr,) = driver.cdrs
    assert cdr.disposition == "NO ANSWER" and cdr.hangup_side == "system"


def test_dial_timeout_runs_on_no_answer() -> None:
    text = """
    contexts:
      internal:
        rules:
          - name: ring-then-other
            match: "5000"
            actions:
              - dial: {to: user/1002, timeout: 5, on_no_answer: [dial: user/1003]}
    """
    from tests.support.calls import plan
    driver = CallDriver(plan=plan(text), destinations=dict(TWO))
    machine = driver.start(invite("5000"))
    (b1,) = driver.requests("INVITE")
    driver.answer(machine, b1, 180, to_tag="t1")
    driver.advance(6)
    assert len(driver.of(ev.SendCancel)) == 1
    (b2,) = driver.requests("INVITE", "192.0.2.3")
    driver.answer(machine, b2, 200, to_tag="t2", body=SDP_B)
    assert driver.responses(machine.a_ref)[-1] == 200
    assert machine.callee == "user/1003"


def test_best_failure_busy_beats_other_codes_and_6xx_beats_busy() -> None:
    driver, machine, (b1, b2) = forked()
    driver.answer(machine, b1, 486, to_tag="t1")
    driver.answer(machine, b2, 404, to_tag="t2")
    assert driver.responses(machine.a_ref)[-1] == 486
    assert driver.cdrs[-1].disposition == "BUSY"
    driver, machine, (b1, b2) = forked()
    driver.answer(machine, b1, 486, to_tag="t1")
    driver.answer(machine, b2, 603, to_tag="t2")
    assert driver.responses(machine.a_ref)[-1] == 603
    # A 487 says nothing about the callee: the other fork's answer is given.
    driver, machine, (b1, b2) = forked()
    driver.answer(machine, b1, 487, to_tag="t1")
    driver.answer(machine, b2, 480, to_tag="t2")
    assert driver.responses(machine.a_ref)[-1] == 480


def test_a_busy_callee_whose_voicemail_cannot_run_gives_the_caller_486() -> None:
    # Bug: the caller got 480 "Voicemail not available" and lost the 486.
    driver = CallDriver(destinations=dict(TWO))
    machine = driver.start(invite("3000"))
    (b1,) = driver.requests("INVITE")
    driver.answer(machine, b1, 486, to_tag="t1")
    assert driver.responses(machine.a_ref)[-1] == 486
    (cdr,) = driver.cdrs
    assert cdr.disposition == "BUSY" and cdr.sip_code == 486


def test_late_offer_the_callees_offer_goes_to_the_caller_and_its_ack_answer_to_the_callee(
) -> None:
    driver = CallDriver(destinations=dict(TWO))
    machine = driver.start(invite("1002", body=b""))
    (b1,) = driver.requests("INVITE")
    assert b1.request.body == b""
    driver.answer(machine, b1, 200, to_tag="t1", body=SDP_B)
    ok = driver.caller_ok(machine)
    assert ok.body == SDP_B
    assert driver.of(ev.SendAck) == []  # our ACK waits for the caller's answer
    caller = Party.caller(driver, machine)
    assert machine.a.invite is not None
    driver.feed(machine, ev.AckReceived(caller.ack(machine.a.invite, ok, body=SDP)))
    (ack,) = driver.of(ev.SendAck)
    assert ack.request.body == SDP and ack.peer.host == "192.0.2.2"
    assert machine.state is CallState.CONFIRMED


def test_the_2xx_is_resent_until_the_callers_ack() -> None:
    driver = CallDriver(destinations=dict(TWO))
    machine, caller, _ = driver.connect(ack=False)
    driver.advance(0.5 + 1.0 + 2.0)
    assert driver.responses(machine.a_ref).count(200) == 4
    assert machine.a.invite is not None
    driver.feed(machine, ev.AckReceived(caller.ack(machine.a.invite, driver.caller_ok(machine))))
    driver.advance(10)
    assert driver.responses(machine.a_ref).count(200) == 4
    assert machine.state is CallState.CONFIRMED


def test_no_ack_after_64_t1_ends_the_call() -> None:
    driver = CallDriver(destinations=dict(TWO))
    machine, _, _ = driver.connect(ack=False)
    driver.advance(64 * 0.5 - 1)
    assert driver.cdrs == []
    driver.advance(4 + 1)  # the give-up comes with the next resend due after 64*T1
    (cdr,) = driver.cdrs
    assert cdr.hangup_cause == "no ACK"
    assert len(driver.requests("BYE", "192.0.2.2")) == 1


def test_max_call_duration_byes_both_ways() -> None:
    driver = CallDriver(destinations=dict(TWO), settings_overrides={"max_duration": 60.0})
    machine, _, _ = driver.connect()
    driver.advance(59)
    assert driver.cdrs == []
    driver.advance(2)
    assert len(driver.requests("BYE", "192.0.2.2")) == 1
    assert len(driver.requests("BYE", "192.0.2.1")) == 1
    (cdr,) = driver.cdrs
    assert cdr.hangup_cause == "maximum call duration"


def test_time_of_day_rules_read_the_machines_clock() -> None:
    # Bug: time-of-day conditions read the wall clock instead of the call's.
    day = datetime(2026, 3, 2, tzinfo=UTC)
    open_driver = CallDriver(destinations=dict(TWO), now=day.replace(hour=10).timestamp())
    machine = open_driver.start(invite("4000"))
    assert len(open_driver.requests("INVITE")) == 1
    assert machine.state is CallState.DIALING
    closed = CallDriver(destinations=dict(TWO), now=day.replace(hour=20).timestamp())
    machine = closed.start(invite("4000"))
    assert closed.requests("INVITE") == []
    assert [e.response.reason for e in closed.of(ev.Respond)][-1] == "Closed"
    assert closed.responses(machine.a_ref)[-1] == 480


def trunk_driver(**trunk: object) -> CallDriver:
    settings = TrunkSettings(name="provider", host="192.0.2.9", **trunk)  # type: ignore[arg-type]
    dest = contact_dest("+15551234", "192.0.2.9", trunk="provider")
    return CallDriver(destinations={"95551234": [dest]},
                      settings_overrides={"trunks": {"provider": settings}})


def test_a_trunk_401_is_answered_with_the_trunks_credentials() -> None:
    driver = trunk_driver(username="pbx", password="secret")
    machine = driver.start(invite("95551234"))
    (first,) = driver.requests("INVITE")
    driver.answer(machine, first, 401, to_tag="x", headers=[
        ("WWW-Authenticate", 'Digest realm="provider", nonce="abc", algorithm=MD5')])
    again = driver.requests("INVITE")[-1]
    assert again is not first
    assert 'username="pbx"' in (again.request.get("authorization") or "")
    assert again.request.cseq.seq == first.request.cseq.seq + 1


def test_a_503_fails_over_to_the_next_peer() -> None:
    from dataclasses import replace

    from softswitch.sip.peer import Peer
    driver = trunk_driver()
    dest = driver.destinations["95551234"][0]
    driver.destinations["95551234"] = [replace(dest, alternates=(Peer("udp", "192.0.2.10",
                                                                     5060),))]
    machine = driver.start(invite("95551234"))
    (first,) = driver.requests("INVITE")
    driver.answer(machine, first, 503, to_tag="x")
    (second,) = driver.requests("INVITE", "192.0.2.10")
    driver.answer(machine, second, 200, to_tag="y", body=SDP_B)
    assert driver.responses(machine.a_ref)[-1] == 200


def test_a_422_is_retried_once_with_the_callees_min_se() -> None:
    driver = CallDriver(destinations=dict(TWO))
    machine = driver.start(invite("1002"))
    (first,) = driver.requests("INVITE")
    driver.answer(machine, first, 422, to_tag="x", headers=[("Min-SE", "3600")])
    again = driver.requests("INVITE")[-1]
    assert again.request.get("session-expires") == "3600;refresher=uac"
    driver.answer(machine, again, 422, to_tag="x", headers=[("Min-SE", "7200")])
    assert driver.responses(machine.a_ref)[-1] == 422
    assert len(driver.requests("INVITE")) == 2


def test_media_side_failing_the_offer_fails_the_call_cleanly() -> None:
    driver = CallDriver(destinations=dict(TWO), media_mode="fail")
    machine = driver.start(invite("1002"))
    assert driver.requests("INVITE") == []
    assert driver.responses(machine.a_ref)[-1] == 503
    assert len(driver.cdrs) == 1 and machine.finished


def test_shutdown_while_ringing_cancels_and_answers_503() -> None:
    driver = CallDriver(destinations=dict(TWO))
    machine = driver.start(invite("1002"))
    (b1,) = driver.requests("INVITE")
    driver.answer(machine, b1, 180, to_tag="t1")
    driver.feed(machine, ev.Shutdown())
    assert driver.responses(machine.a_ref)[-1] == 503
    (cancel,) = driver.of(ev.SendCancel)
    assert "cause=487" in (cancel.cancel.get("reason") or "")
    assert len(driver.cdrs) == 1


def test_provisionals_after_our_cancel_do_not_send_another_cancel() -> None:
    # Bug: every 1xx that followed our CANCEL sent one more, without its Reason.
    driver = CallDriver(destinations=dict(TWO))
    machine = driver.start(invite("1002"))
    (b1,) = driver.requests("INVITE")
    driver.answer(machine, b1, 180, to_tag="t1")
    driver.feed(machine, ev.CancelReceived())
    driver.answer(machine, b1, 180, to_tag="t1")
    driver.answer(machine, b1, 183, to_tag="t1", body=SDP_B)
    (cancel,) = driver.of(ev.SendCancel)
    assert cancel.cancel.get("reason") == 'SIP;cause=487;text="Caller cancelled"'


def test_cancel_while_the_target_is_still_being_resolved_rings_nobody() -> None:
    driver = CallDriver(destinations=dict(TWO))
    driver.hold_resolve.add("1002")
    machine = driver.start(invite("1002"))
    driver.feed(machine, ev.CancelReceived())
    assert driver.responses(machine.a_ref)[-1] == 487
    driver.resolve_held()
    assert driver.requests("INVITE") == []
    assert len(driver.cdrs) == 1 and machine.finished
