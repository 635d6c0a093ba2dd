"""The dialplan's media actions: the relay answers the caller, plays, echoes, records, voicemail.

No reactor, no sockets: `CallDriver` plays the glue and the relay (`hosting`).
"""

from __future__ import annotations

from softswitch.b2bua import events as ev
from softswitch.b2bua.machine import CallMachine, CallState
from softswitch.sip.message import Response
from tests.support.calls import SDP, SDP_RELAY, CallDriver, Party, contact_dest, invite, plan

PLAN = """
settings:
  timezone: UTC
contexts:
  internal:
    rules:
      - name: echo-test
        match: "9196"
        actions:
          - answer
          - playback: echo-test-intro
          - echo
      - name: record-greeting
        match: "*97"
        actions:
          - record: {file: "greetings/${caller}", max_seconds: 120, beep: false}
          - playback: greeting-saved
      - name: mailbox
        match: "*98"
        actions:
          - voicemail: {menu: true}
      - name: closed
        match: "4000"
        actions:
          - answer
          - playback: office-closed
          - hangup
      - name: one
        match: _100X
        actions:
          - dial:
              to: "user/${dest}"
              on_busy: [voicemail: "${dest}"]
"""

DESTS = {"1002": [contact_dest("1002")]}


def hosted(dest: str, body: bytes = SDP, **kw: object) -> tuple[CallDriver, CallMachine]:
    driver = CallDriver(plan=plan(PLAN), destinations=dict(DESTS), hosting="relay", **kw)  # type: ignore[arg-type]
    return driver, driver.start(invite(dest, body))


def ack(driver: CallDriver, machine: CallMachine, body: bytes = b"") -> Party:
    caller = Party.caller(driver, machine)
    assert machine.a.invite is not None
    driver.feed(machine, ev.AckReceived(caller.ack(machine.a.invite, driver.caller_ok(machine),
                                                   body)))
    return caller


def commands(driver: CallDriver) -> list[tuple[str, dict[str, str | int]]]:
    return [(e.command, dict(e.args)) for e in driver.of(ev.MediaCommand)]


def event(driver: CallDriver, machine: CallMachine, name: str, **fields: object) -> None:
    driver.feed(machine, ev.MediaEvent(str(machine.a.id), name, **fields))  # type: ignore[arg-type]


def test_the_echo_test_answers_with_the_relays_sdp_plays_then_echoes() -> None:
    driver, machine = hosted("9196")
    (host,) = driver.of(ev.HostMedia)
    assert host.leg == machine.a.id and host.body == SDP and not host.answer
    ok = driver.caller_ok(machine)
    assert ok.status == 200 and ok.body == SDP_RELAY and ok.get("contact")
    assert machine.state is CallState.ANSWERED and machine.answered == driver.now
    assert commands(driver) == []  # nothing plays before the caller's ACK
    ack(driver, machine)
    assert machine.state is CallState.CONFIRMED
    assert commands(driver) == [("play media", {"file": "echo-test-intro"})]
    assert driver.saved, "an answered call is saved for a restart"
    event(driver, machine, "dtmf", digit="5")  # logged, nothing moves
    assert len(commands(driver)) == 1
    event(driver, machine, "played")
    assert commands(driver)[-1] == ("echo", {})
    event(driver, machine, "played")  # a stray repeat changes nothing
    assert len(commands(driver)) == 2 and machine.state is CallState.CONFIRMED


def test_the_callers_bye_ends_the_echo_the_cdr_says_answered_and_the_relay_lets_go() -> None:
    driver, machine = hosted("9196")
    caller = ack(driver, machine)
    event(driver, machine, "played")
    driver.now += 42
    ref = caller.send(driver, machine, caller.request("BYE"))
    assert driver.responses(ref) == [200]
    (cdr,) = driver.cdrs
    assert cdr.disposition == "ANSWERED" and cdr.hangup_side == "caller"
    assert cdr.ended - cdr.answered == 42 and cdr.callee is None
    assert (machine.uuid, None) in driver.released
    assert driver.requests("BYE") == []
    assert machine.finished


def test_hangup_after_the_answer_sends_bye() -> None:
    driver, machine = hosted("4000")
    ack(driver, machine)
    event(driver, machine, "played")
    (bye,) = driver.requests("BYE")
    assert bye.peer.host == "192.0.2.1"
    (cdr,) = driver.cdrs
    assert cdr.disposition == "ANSWERED" and cdr.hangup_side == "system"


def test_record_answers_first_and_the_next_action_runs_on_recorded() -> None:
    driver, machine = hosted("*97")
    ack(driver, machine)
    assert commands(driver) == [("start recording", {"file": "greetings/1001",
                                                     "max-seconds": 120, "beep": "no"})]
    event(driver, machine, "recorded", file="greetings/1001.wav", duration=3.5,
          reason="digit")
    assert commands(driver)[-1] == ("play media", {"file": "greeting-saved"})
    event(driver, machine, "played")
    assert len(driver.requests("BYE")) == 1  # the plan is over: hang up


def test_a_busy_callee_sends_the_caller_to_voicemail_and_its_end_hangs_up() -> None:
    driver, machine = hosted("1002")
    (b1,) = driver.requests("INVITE")
    driver.answer(machine, b1, 486, to_tag="t1")
    assert 486 not in driver.responses(machine.a_ref)
    assert driver.caller_ok(machine).body == SDP_RELAY
    ack(driver, machine)
    assert commands(driver) == [("voicemail", {
        "mailbox": "1002@pbx.example.com", "mode": "leave", "caller": "1001",
        "sip-call-id": machine.call_id})]
    event(driver, machine, "ended")
    assert len(driver.requests("BYE")) == 1
    (cdr,) = driver.cdrs
    assert cdr.disposition == "ANSWERED" and cdr.b_codes == (486,)


def test_the_owner_reaches_the_menu_of_his_own_box() -> None:
    driver, machine = hosted("*98")
    ack(driver, machine)
    ((command, args),) = commands(driver)
    assert command == "voicemail" and args["mode"] == "menu"
    assert args["mailbox"] == "1001@pbx.example.com"


def test_late_offer_the_relays_offer_goes_in_the_200_and_the_ack_answer_to_the_relay() -> None:
    driver, machine = hosted("9196", body=b"")
    (offer,) = driver.of(ev.HostMedia)
    assert offer.body == b""
    assert driver.caller_ok(machine).body == SDP_RELAY
    ack(driver, machine, body=SDP)
    answer = driver.of(ev.HostMedia)[-1]
    assert answer.answer and answer.body == SDP
    assert commands(driver) == [("play media", {"file": "echo-test-intro"})]


def test_with_direct_media_the_actions_are_refused_as_before() -> None:
    driver = CallDriver(plan=plan(PLAN), hosting="direct")
    machine = driver.start(invite("9196"))
    assert driver.responses(machine.a_ref)[-1] == 488
    assert driver.of(ev.MediaCommand) == []
    # No relay configured at all: refused without asking.
    driver = CallDriver(plan=plan(PLAN), settings_overrides={"media_passthrough": True})
    machine = driver.start(invite("*98"))
    assert driver.responses(machine.a_ref)[-1] == 480
    assert driver.of(ev.HostMedia) == []


def test_a_relay_that_cannot_host_gives_its_status() -> None:
    driver = CallDriver(plan=plan(PLAN), hosting="fail", media_failure=(503, "No Relay"))
    machine = driver.start(invite("9196"))
    assert driver.responses(machine.a_ref)[-1] == 503
    (cdr,) = driver.cdrs
    assert cdr.disposition == "FAILED" and cdr.answered is None


def test_a_missing_prompt_does_not_cost_the_rest_of_the_plan() -> None:
    driver, machine = hosted("9196")
    driver.hosting = "fail"
    ack(driver, machine)
    # Playback refused: the plan runs on to echo, which is refused too: hang up.
    assert [c for c, _ in commands(driver)] == ["play media", "echo"]
    assert len(driver.requests("BYE")) == 1


def test_a_reinvite_from_the_hosted_caller_is_answered_by_the_relay() -> None:
    driver, machine = hosted("9196")
    caller = ack(driver, machine)
    held = SDP.replace(b"m=audio", b"a=sendonly\r\nm=audio")
    ref = caller.send(driver, machine, caller.request("INVITE", held))
    assert driver.of(ev.HostMedia)[-1].body == held
    ok = next(e.response for e in driver.of(ev.Respond) if e.ref == ref)
    assert isinstance(ok, Response) and ok.status == 200 and ok.body == SDP_RELAY
    ref = caller.send(driver, machine, caller.request("OPTIONS"))
    assert driver.responses(ref) == [200]


def test_cancel_while_the_relay_answers_gives_487_and_releases_the_relay() -> None:
    driver = CallDriver(plan=plan(PLAN), hosting="relay")
    driver.hosting = "held"  # neither answers: the relay is slow
    machine = driver.start(invite("9196"))
    driver.feed(machine, ev.CancelReceived())
    assert driver.responses(machine.a_ref)[-1] == 487
    assert (machine.uuid, None) in driver.released
    (cdr,) = driver.cdrs
    assert cdr.disposition == "CANCELLED"


def test_a_restart_during_hosted_media_ends_the_call_with_bye() -> None:
    driver, machine = hosted("9196")
    ack(driver, machine)
    again = driver.restore(machine)
    (bye,) = driver.requests("BYE")
    assert bye.peer.host == "192.0.2.1"
    (cdr,) = driver.cdrs
    assert cdr.disposition == "ANSWERED" and cdr.answered == machine.answered
    assert (again.uuid, None) in driver.released


def test_we_refresh_the_hosted_callers_session_when_we_are_the_refresher() -> None:
    driver = CallDriver(plan=plan(PLAN), hosting="relay")
    machine = driver.start(invite("9196", headers=["Supported: timer",
                                                   "Session-Expires: 120;refresher=uas"]))
    ack(driver, machine)
    driver.advance(61)  # RFC 4028 10: the refresher sends at half the interval
    (refresh,) = driver.requests("INVITE", "192.0.2.1") or driver.requests("UPDATE", "192.0.2.1")
    assert refresh.request.method == "UPDATE" or refresh.request.body == SDP_RELAY
