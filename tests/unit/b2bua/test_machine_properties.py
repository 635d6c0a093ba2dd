"""Whatever the legs answer, in whatever order, a call ends once and leaves nothing behind.

A hypothesis stateful test of the call machine (issue 13): a call starts
(with or without SDP, to one or two destinations, some failing to
resolve, DNS and media answering at once or late), then any interleaving
of responses to anything the machine sent (provisional, reliable, 2xx and
their retransmissions, failures), time-outs and transport failures, the
caller's CANCEL and ACKs, BYE and re-INVITEs from either side, media
answers and failures, and time passing. After every step and once the
call is driven to its end: exactly one `CallEnded` (one CDR), media
released (the call, and every fork that failed or was cancelled), every
dialog opened also closed so a `CallRegistry` fed the same effects is
empty, no timer left running, and no exception from the machine.

CALL_EXAMPLES=2000 in the environment searches harder (a minute or so);
`--hypothesis-show-statistics` shows how far the calls got.
"""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from softswitch.b2bua import events as ev
from softswitch.b2bua.machine import CallMachine, CallState
from softswitch.b2bua.registry import CallRegistry
from softswitch.sip.message import Request, Response
from tests.support.calls import (
    CALLER,
    SDP,
    SDP_B,
    CallDriver,
    Party,
    contact_dest,
    invite,
    response_to,
)

settings.register_profile(
    "call-machine", max_examples=int(os.environ.get("CALL_EXAMPLES", "200")), stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

PROVISIONAL = [100, 180, 183]
FAILURES = [401, 404, 408, 422, 481, 486, 487, 491, 500, 503, 600, 603]
DELAYS = [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 33.0, 50.0, 130.0, 700.0]
# Mostly what happens in a call that goes on, sometimes a failure.
RARELY = st.sampled_from([False, False, False, True])
SELDOM = st.sampled_from([False] * 7 + [True])


def _leg_key(leg_id: Any) -> tuple[str, str]:
    return (leg_id.call_id, leg_id.local_tag)


class CallProperties(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.driver: CallDriver | None = None
        self.machine: CallMachine | None = None
        self.registry: CallRegistry[CallMachine] = CallRegistry()
        self.seen = 0  # effects already given to the registry
        self.caller: Party | None = None
        self.callees: dict[tuple[int, str], Party] = {}
        self.answered: list[tuple[ev.SendRequest, Response]] = []  # 2xx given to INVITEs
        self.reinvites: list[tuple[Party, Request, int]] = []  # re-INVITEs the parties sent
        self.rseq = 1

    # -- the call starts -------------------------------------------------------------------

    @initialize(two=st.booleans(), with_sdp=st.booleans(), rel=st.booleans(),
                timer=st.booleans(),
                resolvable=st.sampled_from(["both", "both", "both", "first", "second", "none"]),
                late_media=st.booleans(), slow_dns=st.booleans(),
                max_duration=st.sampled_from([0.0, 600.0]))
    def start(self, two: bool, with_sdp: bool, rel: bool, timer: bool, resolvable: str,
              late_media: bool, slow_dns: bool, max_duration: float) -> None:
        destinations: dict[str, list[Any]] = {}
        failures: dict[str, tuple[int, str]] = {}
        if resolvable in ("both", "first"):
            destinations["1002"] = [contact_dest("1002")]
        if resolvable in ("both", "second"):
            destinations["1003"] = [contact_dest("1003", "192.0.2.3")]
        else:
            failures["1003"] = (404, "Not Found")
        driver = CallDriver(
            destinations=destinations, failures=failures,
            media_mode="late" if late_media else "now",
            hold_resolve={"1002"} if slow_dns else set(),
            settings_overrides={"t1": 0.5, "t2": 4.0, "session_expires": 90, "min_se": 90,
                                "max_duration": max_duration})
        self.driver = driver
        headers = [h for h, on in (("Supported: 100rel", rel),
                                   ("Supported: timer", timer),
                                   ("Session-Expires: 90", timer)) if on]
        request = invite("2000" if two else "1002", SDP if with_sdp else b"", headers=headers)
        self.machine = machine = driver.start(request)
        self.registry.add(machine.uuid, machine, invite_key=machine.a_ref)
        self._sync()

    # -- what the far ends do ---------------------------------------------------------------

    def _sent(self, index: int) -> ev.SendRequest | None:
        sent = self.driver.of(ev.SendRequest) if self.driver is not None else []
        # Counted from the newest: small indexes (what hypothesis favours) are recent.
        return sent[-1 - index % len(sent)] if sent else None

    def _feed(self, event: ev.Event) -> None:
        assert self.driver is not None and self.machine is not None
        self.driver.feed(self.machine, event)
        self._sync()

    @rule(index=st.integers(0, 50), status=st.sampled_from(PROVISIONAL), tag=st.integers(0, 1),
          body=st.booleans(), reliable=st.booleans())
    def provisional(self, index: int, status: int, tag: int, body: bool,
                    reliable: bool) -> None:
        self._respond(index, status, tag, body, reliable, False)

    @rule(index=st.integers(0, 50), status=st.sampled_from([200, 202]), tag=st.integers(0, 1),
          body=st.booleans(), session=st.booleans())
    def success(self, index: int, status: int, tag: int, body: bool, session: bool) -> None:
        self._respond(index, status, tag, body, False, session)

    @rule(index=st.integers(0, 50), status=st.sampled_from(FAILURES), really=RARELY)
    def failure(self, index: int, status: int, really: bool) -> None:
        if really:
            self._respond(index, status, 0, False, False, False)

    def _respond(self, index: int, status: int, tag: int, body: bool, reliable: bool,
                 session: bool) -> None:
        """A response to anything the machine sent: a fork's INVITE, a BYE, a relayed request."""
        sent = self._sent(index)
        if sent is None:
            return
        method = sent.request.method
        headers: list[tuple[str, str]] = []
        if method == "INVITE" and 100 < status < 200 and reliable:
            headers += [("Require", "100rel"), ("RSeq", str(self.rseq))]
            self.rseq += 1
        if method == "INVITE" and 200 <= status < 300 and session:
            headers += [("Session-Expires", "90;refresher=uas"), ("Require", "timer")]
        if status == 422:
            headers.append(("Min-SE", "120"))
        if status == 401:
            headers.append(("WWW-Authenticate", 'Digest realm="x", nonce="n"'))
        with_body = body and method in ("INVITE", "UPDATE") and 100 < status < 300
        to_tag = f"t{sent.ref}x{tag}"
        response = response_to(sent.request, status, to_tag=to_tag,
                               body=(SDP_B if sent.peer != CALLER else SDP) if with_body
                               else b"", headers=headers)
        if method == "INVITE" and 200 <= status < 300 and sent.request.to_tag is None:
            self.answered.append((sent, response))
        self._feed(ev.ResponseReceived(sent.ref, response))

    @rule(index=st.integers(0, 50), transport=st.booleans(), really=RARELY)
    def time_out(self, index: int, transport: bool, really: bool) -> None:
        sent = self._sent(index)
        if sent is not None and really:
            self._feed(ev.TransportFailed(sent.ref) if transport
                       else ev.RequestTimedOut(sent.ref))

    @precondition(lambda self: bool(self.answered))
    @rule(index=st.integers(0, 20))
    def stray_2xx(self, index: int) -> None:
        if self.answered:
            self._feed(ev.StrayResponse(self.answered[index % len(self.answered)][1]))

    @rule(really=SELDOM)
    def cancel(self, really: bool = True) -> None:
        if really:
            self._feed(ev.CancelReceived())

    def _answered_caller(self) -> bool:
        if self.driver is None or self.machine is None:
            return False
        a_ref = self.machine.a_ref
        return any(e.ref == a_ref and 200 <= e.response.status < 300
                   for e in self.driver.of(ev.Respond))

    @rule(really=SELDOM)
    def shutdown(self, really: bool) -> None:
        if really:
            self._feed(ev.Shutdown())

    def _caller(self) -> Party | None:
        assert self.driver is not None and self.machine is not None
        if self.caller is None:
            ok = [e for e in self.driver.of(ev.Respond) if e.ref == self.machine.a_ref
                  and 200 <= e.response.status < 300]
            if not ok:
                return None
            self.caller = Party.caller(self.driver, self.machine)
        return self.caller

    @precondition(lambda self: self._answered_caller())
    @rule()
    def caller_ack(self) -> None:
        caller = self._caller()
        if caller is None:
            return
        assert self.driver is not None and self.machine is not None
        assert self.machine.a.invite is not None
        ok = self.driver.caller_ok(self.machine)
        body = SDP if not self.machine.a.invite.body and ok.body else b""
        self._feed(ev.AckReceived(caller.ack(self.machine.a.invite, ok, body)))

    def _party(self, side: int) -> Party | None:
        if side == 0:
            return self._caller()
        if not self.answered:
            return None
        sent, response = self.answered[(side - 1) % len(self.answered)]
        key = (sent.ref, response.to_tag or "")
        if key not in self.callees:
            self.callees[key] = Party.callee(sent, response)
        return self.callees[key]

    @precondition(lambda self: self._answered_caller() or bool(self.answered))
    @rule(side=st.integers(0, 2), really=RARELY)
    def bye(self, side: int, really: bool) -> None:
        party = self._party(side)
        if really and party is not None and self.driver is not None and self.machine is not None:
            party.send(self.driver, self.machine, party.request("BYE"))
            self._sync()

    @precondition(lambda self: self._answered_caller() or bool(self.answered))
    @rule(side=st.integers(0, 2), method=st.sampled_from(["INVITE", "UPDATE", "INFO"]),
          body=st.booleans())
    def in_dialog(self, side: int, method: str, body: bool) -> None:
        party = self._party(side)
        if party is None or self.driver is None or self.machine is None:
            return
        request = party.request(method, body=SDP if body and method != "INFO" else b"")
        ref = party.send(self.driver, self.machine, request)
        if method == "INVITE":
            self.reinvites.append((party, request, ref))
        self._sync()

    @precondition(lambda self: bool(self.reinvites))
    @rule(index=st.integers(0, 20))
    def ack_reinvite(self, index: int) -> None:
        if not self.reinvites or self.driver is None:
            return
        party, request, ref = self.reinvites[index % len(self.reinvites)]
        oks = [e.response for e in self.driver.of(ev.Respond)
               if e.ref == ref and 200 <= e.response.status < 300]
        if oks:
            self._feed(ev.AckReceived(party.ack(request, oks[-1],
                                                SDP if not request.body else b"")))

    # -- DNS, media, time --------------------------------------------------------------------

    @precondition(lambda self: bool(self.driver and self.driver.held_resolves))
    @rule()
    def dns_answers(self) -> None:
        assert self.driver is not None
        self.driver.resolve_held()
        self._sync()

    @precondition(lambda self: bool(self.driver and self.driver.held_media))
    @rule(index=st.integers(0, 10), fail=RARELY, status=st.sampled_from([488, 503]))
    def media_answers(self, index: int, fail: bool, status: int) -> None:
        driver = self.driver
        assert driver is not None and self.machine is not None
        if not driver.held_media:
            return
        _, effect = driver.held_media.pop(index % len(driver.held_media))
        self._feed(ev.MediaFailed(effect.ref, status, "Media refused") if fail
                   else ev.MediaReady(effect.ref, effect.body))

    @rule(seconds=st.sampled_from(DELAYS))
    def time_passes(self, seconds: float) -> None:
        assert self.driver is not None
        self.driver.advance(seconds)
        self._sync()

    # -- the glue's registry ------------------------------------------------------------------

    def _sync(self) -> None:
        """Feed the registry the effects since the last step, as the glue does."""
        driver, machine = self.driver, self.machine
        assert driver is not None and machine is not None
        for effect in driver.effects[self.seen:]:
            match effect:
                case ev.DialogOpened(dialog_id=dialog_id):
                    self.registry.open_dialog(machine.uuid, dialog_id)
                case ev.DialogClosed(dialog_id=dialog_id):
                    self.registry.close_dialog(machine.uuid, dialog_id)
                case ev.Respond(ref=ref, response=response):
                    if ref == machine.a_ref and response.status >= 200:
                        self.registry.forget_invite(machine.uuid)
        self.seen = len(driver.effects)
        if machine.finished:
            self.registry.remove(machine.uuid)

    # -- what must always hold -----------------------------------------------------------------

    @invariant()
    def ends_at_most_once(self) -> None:
        if self.driver is None or self.machine is None:
            return
        ended = self.driver.of(ev.CallEnded)
        assert len(ended) <= 1
        assert len(self.driver.cdrs) == len(ended)
        assert (len(ended) == 1) == (self.machine.state is CallState.ENDED)
        if ended:
            self._ended_cleanly()

    def _ended_cleanly(self) -> None:
        driver, machine = self.driver, self.machine
        assert driver is not None and machine is not None
        effects = driver.effects
        end = next(i for i, e in enumerate(effects) if isinstance(e, ev.CallEnded))
        # The whole call's media is released at (or before) its end.
        assert any(isinstance(e, ev.ReleaseMedia) and e.leg is None for e in effects[:end])
        # Every fork that failed or was cancelled freed what it held.
        released = {_leg_key(leg) for _, leg in driver.released if leg is not None}
        for leg in machine.legs:
            if not leg.caller_side and leg.final_status is not None \
                    and not 200 <= leg.final_status < 300:
                assert _leg_key(leg.id) in released, f"fork {leg.name} not released"
        # No timer runs after the end, and none starts.
        assert not [e for e in effects[end:] if isinstance(e, ev.StartTimer)]
        assert not [key for key in driver.timers if key[0] == machine.uuid]
        assert machine.snapshot().timers == ()
        # Every dialog the call opened is closed again.
        opened = [e.dialog_id for e in effects if isinstance(e, ev.DialogOpened)]
        closed = [e.dialog_id for e in effects if isinstance(e, ev.DialogClosed)]
        assert sorted(opened) == sorted(closed)

    # -- the end -------------------------------------------------------------------------------

    def teardown(self) -> None:
        driver, machine = self.driver, self.machine
        if driver is None or machine is None:
            return
        event(f"answered={machine.answered is not None} state={machine.state.value}")
        event(f"relayed={len(self.reinvites)} steps={len(driver.effects) // 10}")
        event(f"cause={machine.hangup_cause}")
        for _ in range(10):
            if machine.state is CallState.ENDED:
                break
            if machine.state in (CallState.ROUTING, CallState.DIALING):
                self.dns_answers()
                self.cancel()
            elif (caller := self._caller()) is not None:
                caller.send(driver, machine, caller.request("BYE"))
                self._sync()
            if machine.state is not CallState.ENDED:
                driver.advance(700.0)
                self._sync()
        assert machine.state is CallState.ENDED, machine.state
        # What the call still waits for (487s of cancelled forks, media) comes or times out.
        while driver.held_media:
            _, effect = driver.held_media.pop()
            self._feed(ev.MediaReady(effect.ref, effect.body))
        for sent in driver.of(ev.SendRequest):
            if not machine.finished:
                self._feed(ev.RequestTimedOut(sent.ref))
        assert machine.finished
        self.ends_at_most_once()
        assert len(driver.of(ev.CallEnded)) == 1
        assert len(driver.cdrs) == 1
        assert self.registry.is_empty()


CallProperties.TestCase.settings = settings.get_profile("call-machine")
test_call_machine_properties = CallProperties.TestCase


# -- what the properties found, as plain examples -------------------------------------------


def _answered_call(late_media: bool = False) -> tuple[CallDriver, CallMachine, ev.SendRequest]:
    driver = CallDriver(destinations={"1002": [contact_dest("1002")]},
                        media_mode="late" if late_media else "now")
    machine = driver.start(invite("1002"))
    driver.release_media_answers()
    (sent,) = driver.requests("INVITE")
    driver.answer(machine, sent, 200, to_tag="b", body=SDP_B)
    return driver, machine, sent


def test_a_relayed_reinvite_answered_408_ends_the_call() -> None:
    # Bug: the callee's dialog was terminated (RFC 3261 12.2.1.2) but the call
    # stayed up forever, and the next re-INVITE raised DialogStateError.
    driver, machine, _ = _answered_call()
    caller = Party.caller(driver, machine)
    assert machine.a.invite is not None
    driver.feed(machine, ev.AckReceived(caller.ack(machine.a.invite,
                                                   driver.caller_ok(machine))))
    ref = caller.send(driver, machine, caller.request("INVITE", body=SDP))
    relayed = driver.requests("INVITE")[-1]
    driver.answer(machine, relayed, 408)
    assert driver.responses(ref) == [408]
    assert machine.state is CallState.ENDED and len(driver.cdrs) == 1
    assert driver.requests("BYE", CALLER.host)
    assert driver.responses(caller.send(driver, machine, caller.request("INVITE"))) == [481]


def test_a_second_2xx_from_another_dialog_does_not_end_the_answered_leg() -> None:
    # Bug: the extra dialog was ACKed and BYEd, but the answered leg ended
    # with it, and the media answer then raised LegStateError.
    driver, machine, sent = _answered_call(late_media=True)
    driver.answer(machine, sent, 200, to_tag="other", body=SDP_B)
    assert len(driver.requests("BYE")) == 1
    driver.release_media_answers()
    assert driver.responses(machine.a_ref)[-1] == 200
    assert machine.state is CallState.ANSWERED


def test_a_time_out_after_the_2xx_does_not_fail_the_answered_leg() -> None:
    # Bug: the late time-out failed the answered leg; LegStateError followed.
    driver, machine, sent = _answered_call(late_media=True)
    driver.feed(machine, ev.RequestTimedOut(sent.ref))
    driver.release_media_answers()
    assert driver.responses(machine.a_ref)[-1] == 200
    assert machine.state is CallState.ANSWERED


def test_a_failure_response_after_the_2xx_does_not_fail_the_answered_leg() -> None:
    # Bug: a 4xx on the INVITE after its 2xx failed the answered leg.
    driver, machine, sent = _answered_call(late_media=True)
    driver.answer(machine, sent, 401)
    driver.release_media_answers()
    assert driver.responses(machine.a_ref)[-1] == 200
    assert machine.state is CallState.ANSWERED
