"""The call machine once answered: in-dialog relaying, glare, BYE, session timers, restore."""

from __future__ import annotations

from softswitch.b2bua import events as ev
from softswitch.b2bua.machine import CallMachine, CallState
from tests.support.calls import SDP, SDP_B, CallDriver, contact_dest

DESTS = {"1002": [contact_dest("1002")], "1003": [contact_dest("1003", "192.0.2.3")]}
SDP_C = SDP.replace(b"4000", b"4002")


def driver(**overrides: object) -> CallDriver:
    return CallDriver(destinations=dict(DESTS), settings_overrides=dict(overrides))


def test_reinvite_from_the_caller_is_relayed_with_its_sdp_and_the_answer_comes_back() -> None:
    d = driver()
    machine, caller, callee = d.connect()
    reinvite = caller.request("INVITE", body=SDP_C)
    ref = caller.send(d, machine, reinvite)
    (sent,) = d.requests("INVITE", "192.0.2.2")[1:]
    assert sent.request.body == SDP_C
    d.answer(machine, sent, 200, body=SDP_B)
    (ok,) = [e.response for e in d.of(ev.Respond) if e.ref == ref]
    assert ok.status == 200 and ok.body == SDP_B
    # The callee's 2xx is ACKed at once: the offer was in the re-INVITE.
    assert len(d.of(ev.SendAck, lambda e: e.peer.host == "192.0.2.2")) == 2
    d.feed(machine, ev.AckReceived(caller.ack(reinvite, ok)))
    d.advance(40)
    assert [e.response.status for e in d.of(ev.Respond) if e.ref == ref] == [200]
    assert d.cdrs == []


def test_reinvite_from_the_callee_is_relayed_to_the_caller() -> None:
    d = driver()
    machine, caller, callee = d.connect()
    ref = callee.send(d, machine, callee.request("INVITE", body=SDP_C))
    (sent,) = d.requests("INVITE", "192.0.2.1")
    assert sent.request.body == SDP_C
    d.answer(machine, sent, 200, body=SDP)
    assert [e.response.status for e in d.of(ev.Respond) if e.ref == ref] == [200]


def test_a_reinvite_while_one_is_in_progress_gets_491() -> None:
    d = driver()
    machine, caller, callee = d.connect()
    caller.send(d, machine, caller.request("INVITE", body=SDP_C))
    ref = callee.send(d, machine, callee.request("INVITE", body=SDP_C))
    assert d.responses(ref) == [491]
    ref = callee.send(d, machine, callee.request("UPDATE", body=SDP_C))
    assert d.responses(ref) == [491]


def test_update_and_info_are_relayed() -> None:
    d = driver()
    machine, caller, callee = d.connect()
    ref = caller.send(d, machine, caller.request("UPDATE", body=SDP_C))
    (update,) = d.requests("UPDATE", "192.0.2.2")
    d.answer(machine, update, 200, body=SDP_B)
    assert d.responses(ref) == [200]
    info = callee.request("INFO", headers=[("Info-Package", "dtmf")])
    ref = callee.send(d, machine, info)
    (relayed,) = d.requests("INFO", "192.0.2.1")
    assert relayed.request.get("info-package") == "dtmf"
    d.answer(machine, relayed, 200)
    assert d.responses(ref) == [200]


def test_bye_from_the_caller_ends_the_call_with_bye_to_the_callee_and_one_cdr() -> None:
    d = driver()
    machine, caller, _ = d.connect()
    ref = caller.send(d, machine, caller.request("BYE"))
    assert d.responses(ref) == [200]
    assert len(d.requests("BYE", "192.0.2.2")) == 1
    (cdr,) = d.cdrs
    assert cdr.hangup_side == "caller" and cdr.disposition == "ANSWERED"
    assert cdr.callee == "user/1002"
    assert (machine.uuid, None) in d.released
    assert d.dialogs == {}
    closed = d.of(ev.DialogClosed)
    assert len(closed) == len(d.of(ev.DialogOpened)) == 2


def test_bye_from_the_callee_ends_the_call_with_bye_to_the_caller() -> None:
    d = driver()
    machine, _, callee = d.connect()
    ref = callee.send(d, machine, callee.request("BYE"))
    assert d.responses(ref) == [200]
    assert len(d.requests("BYE", "192.0.2.1")) == 1
    (cdr,) = d.cdrs
    assert cdr.hangup_side == "callee"
    # A second BYE (a retransmission in a new transaction) finds no dialog.
    ref = callee.send(d, machine, callee.request("BYE"))
    assert d.responses(ref) == [481]
    assert len(d.cdrs) == 1


def test_a_request_in_an_unknown_dialog_gets_481() -> None:
    d = driver()
    machine, caller, _ = d.connect()
    request = caller.request("INFO")
    request.set("To", request.get("to").replace(machine.a.id.local_tag, "nosuchtag"))
    ref = caller.send(d, machine, request)
    assert d.responses(ref) == [481]


def test_a_reinvite_that_moves_a_party_saves_the_new_remote_target() -> None:
    # Bug: after a re-INVITE with a new Contact the stored call kept the old target.
    d = driver()
    machine, caller, _ = d.connect()
    saved = len(d.saved)
    reinvite = caller.request("INVITE", body=SDP_C)
    reinvite.set("Contact", "<sip:1001@192.0.2.50:5070>")
    caller.send(d, machine, reinvite)
    (sent,) = d.requests("INVITE", "192.0.2.2")[1:]
    d.answer(machine, sent, 200, body=SDP_B)
    assert len(d.saved) > saved
    snapshot = d.saved[-1]
    a = snapshot.leg("a")
    assert a.dialog.remote_target == "sip:1001@192.0.2.50:5070"


# -- session timers, on the driver's clock ---------------------------------------------


def refreshing_call(callee_allows: str = "INVITE, ACK, BYE, CANCEL, UPDATE",
                    interval: int = 120) -> tuple[CallDriver, CallMachine]:
    d = driver(session_expires=interval, min_se=90)
    machine, _, _ = d.connect(answer_headers=[
        ("Session-Expires", f"{interval};refresher=uac"), ("Allow", callee_allows)])
    return d, machine


def test_refresher_sends_update_at_half_the_interval_when_the_peer_allows_it() -> None:
    d, machine = refreshing_call()
    d.advance(59)
    assert d.requests("UPDATE", "192.0.2.2") == []
    d.advance(2)
    (update,) = d.requests("UPDATE", "192.0.2.2")
    assert update.request.get("session-expires") == "120;refresher=uac"
    d.answer(machine, update, 200)
    d.advance(60)
    assert len(d.requests("UPDATE", "192.0.2.2")) == 2
    assert d.cdrs == []


def test_refresher_sends_reinvite_with_the_last_sdp_without_update() -> None:
    d, machine = refreshing_call("INVITE, ACK, BYE, CANCEL")
    d.advance(61)
    (refresh,) = d.requests("INVITE", "192.0.2.2")[1:]
    assert refresh.request.body == SDP
    d.answer(machine, refresh, 200, body=SDP_B)
    assert len(d.of(ev.SendAck, lambda e: e.peer.host == "192.0.2.2")) == 2


def test_a_refresh_answered_481_ends_the_call() -> None:
    d, machine = refreshing_call()
    d.advance(61)
    (update,) = d.requests("UPDATE")
    d.answer(machine, update, 481)
    (cdr,) = d.cdrs
    assert cdr.hangup_cause == "session refresh got 481"
    assert len(d.requests("BYE", "192.0.2.1")) == 1


def test_a_refresh_answered_408_or_timed_out_ends_the_call() -> None:
    d, machine = refreshing_call()
    d.advance(61)
    d.answer(machine, d.requests("UPDATE")[0], 408)
    assert d.cdrs[-1].hangup_cause == "session refresh got 408"
    d, machine = refreshing_call()
    d.advance(61)
    d.feed(machine, ev.RequestTimedOut(d.requests("UPDATE")[0].ref))
    (cdr,) = d.cdrs
    assert cdr.hangup_cause == "peer does not answer"
    assert len(d.requests("BYE")) == 2


def test_non_refresher_ends_the_call_when_no_refresh_comes() -> None:
    # The caller supports timers: it refreshes; we expect it before 120 - 32 s.
    d = driver(session_expires=120, min_se=90)
    machine, caller, _ = d.connect(headers=["Supported: timer", "Session-Expires: 120"])
    d.advance(87)
    assert d.cdrs == []
    d.advance(2)
    (cdr,) = d.cdrs
    assert cdr.hangup_cause == "session timer expired (caller)"


def test_a_refresh_from_the_non_refresher_side_rearms_the_timer() -> None:
    d = driver(session_expires=120, min_se=90)
    machine, caller, _ = d.connect(headers=["Supported: timer", "Session-Expires: 120"])
    d.advance(50)
    caller.send(d, machine, caller.request("UPDATE", headers=[
        ("Session-Expires", "120;refresher=uac"), ("Supported", "timer")]))
    (update,) = d.requests("UPDATE", "192.0.2.2")
    d.answer(machine, update, 200)
    d.advance(80)
    assert d.cdrs == []


# -- restore from a snapshot ---------------------------------------------------------


def restored(d: CallDriver, machine: CallMachine, through_dict: bool) -> CallMachine:
    return d.restore(machine, through_dict)


def test_a_restored_call_relays_a_bye() -> None:
    for through_dict in (False, True):
        d = driver()
        machine, caller, _ = d.connect()
        again = restored(d, machine, through_dict)
        assert again.state is CallState.CONFIRMED
        assert len(d.dialogs) == 2
        ref = caller.send(d, again, caller.request("BYE"))
        assert d.responses(ref) == [200]
        (bye,) = d.requests("BYE", "192.0.2.2")
        # A restored dialog's CSeq jumps past what the store may have missed.
        assert bye.request.cseq.seq > 1000
        (cdr,) = d.cdrs
        assert cdr.callee == "user/1002" and cdr.answered is not None


def test_media_failing_a_reinvite_answers_it_with_the_failure_and_keeps_the_call() -> None:
    d = driver()
    machine, caller, _ = d.connect()
    d.media_mode = "fail"
    ref = caller.send(d, machine, caller.request("INVITE", body=SDP_C))
    assert d.responses(ref) == [503]
    assert machine.state is CallState.CONFIRMED


def test_a_reinvite_crossing_our_refresh_reinvite_gets_491() -> None:
    # RFC 3261 14.2: an INVITE received while ours is in progress on the dialog.
    d = driver(session_expires=120, min_se=90)
    machine, caller, callee = d.connect(answer_headers=[
        ("Session-Expires", "120;refresher=uac"), ("Allow", "INVITE, ACK, BYE")])
    d.advance(61)
    (refresh,) = d.requests("INVITE", "192.0.2.2")[1:]
    ref = callee.send(d, machine, callee.request("INVITE", body=SDP_C))
    assert d.responses(ref) == [491]
    assert d.requests("INVITE", "192.0.2.1") == []
    d.answer(machine, refresh, 200, body=SDP_B)
    ref = callee.send(d, machine, callee.request("INVITE", body=SDP_C))
    assert d.requests("INVITE", "192.0.2.1") != []


def test_a_restored_call_keeps_its_maximum_duration_deadline() -> None:
    d = driver(max_duration=600.0)
    machine, _, _ = d.connect()
    d.advance(400)
    d.timers.clear()  # the old process is gone
    again = restored(d, machine, True)
    assert ("max_duration", d.now + 200) in again.snapshot().timers
    d.advance(199)
    assert d.cdrs == []
    d.advance(2)
    (cdr,) = d.cdrs
    assert cdr.hangup_cause == "maximum call duration"
    assert len(d.requests("BYE")) == 2
