"""The call machine: one object per call, events in, effects out, no I/O.

RFC 3261 sections 13-15 on both sides of a B2BUA. The caller's INVITE
(already authenticated by the glue) is routed through the dialplan; a
`dial` resolves its targets (`Resolve`) and forks one INVITE per
destination, each offer passing through the media side first
(`MediaOffer`); provisional responses are relayed (early media through
`MediaAnswer`); the first 2xx wins and the other forks are CANCELled with a
Reason (RFC 3326). A failed dial runs its `on_busy`/`on_no_answer`/
`on_failure` branch or the next action. After the answer the parts of the
call take over: `indialog.py` relays in-dialog requests, `refresh.py` keeps
RFC 4028 session timers, `reliable.py` sends reliable provisionals (RFC
3262), `transfer.py` and `replaces.py` move the call to another party.

Those parts use only the public methods of `CallMachine` below (send,
respond, media, timers, legs); none touches the glue. The machine's state
is its legs (explicit `LegState`s), the call's `CallState`, and the
requests, timers and media questions it waits on; `snapshot()` describes
it as a value, and `CallMachine.restore` builds a machine back from one.
"""

from __future__ import annotations

import enum
import itertools
import uuid as uuidlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from dialplan import (
    Answer,
    CallFacts,
    Dial,
    Echo,
    Goto,
    Hangup,
    Playback,
    Record,
    SetVariables,
    Transfer,
    TrunkTarget,
    UriTarget,
    UserTarget,
    Voicemail,
)
from softswitch.b2bua import events as ev
from softswitch.b2bua.dialing import ALLOW, build_invite, contact_of
from softswitch.b2bua.legs import Leg, LegId, LegState
from softswitch.b2bua.session_timer import UasNegotiation
from softswitch.b2bua.snapshot import CallSnapshot, LegSnapshot
from softswitch.b2bua.targets import Destination
from softswitch.cdr import Disposition
from softswitch.config import TrunkSettings
from softswitch.fraud.policy import DialRequest, Party, Refusal
from softswitch.identity import Caller
from softswitch.sip.dialog import (
    CALL_COMPLETED_ELSEWHERE,
    Dialog,
    DialogState,
    RAck,
    Reason,
    ReliableVerdict,
    requires_100rel,
    supports_100rel,
)
from softswitch.sip.digest import authorization, first_challenge
from softswitch.sip.errors import MessageError
from softswitch.sip.headers import Via
from softswitch.sip.message import Request, Response, make_response, new_branch, new_tag
from softswitch.sip.peer import Peer
from softswitch.sip.retransmit import Backoff
from softswitch.sip.transaction import make_cancel

BUSY_CODES = frozenset({486, 600})
NO_ANSWER_CODES = frozenset({408, 480, 487})

# Our address and port as a given peer should see them, for Via and Contact.
LocalAddress = Callable[[Peer], tuple[str, int]]
Effects = list[ev.Effect]


class CallState(enum.Enum):
    ROUTING = "routing"  # running the dialplan, no B-leg ringing
    DIALING = "dialing"  # B-legs sent, none answered
    ANSWERED = "answered"  # 2xx sent to the caller, waiting for its ACK
    CONFIRMED = "confirmed"  # both legs up
    ENDED = "ended"


_TRANSITIONS: dict[CallState, frozenset[CallState]] = {
    # ROUTING -> ANSWERED: the PBX answers the caller itself (hosted.py).
    CallState.ROUTING: frozenset({CallState.DIALING, CallState.ANSWERED, CallState.ENDED}),
    CallState.DIALING: frozenset({CallState.ROUTING, CallState.ANSWERED, CallState.ENDED}),
    CallState.ANSWERED: frozenset({CallState.CONFIRMED, CallState.ENDED}),
    CallState.CONFIRMED: frozenset({CallState.ENDED}),
    CallState.ENDED: frozenset(),
}


@dataclass(frozen=True, slots=True)
class CallSettings:
    """What every call of one server shares: timers, limits, and two pure look-ups."""

    local_address: LocalAddress
    t1: float = 0.5
    t2: float = 4.0
    no_answer_timeout: float = 60.0
    max_duration: float = 0.0
    session_expires: int = 1800
    min_se: int = 90
    trunks: Mapping[str, TrunkSettings] = field(default_factory=dict)
    # The dialplan context of a user of ours (for a transfer made by the callee).
    account_context: Callable[[str, str | None], str | None] = lambda user, domain: None
    # SDP passes unchanged (direct media): no need to ask the media side and
    # wait for its answer, which costs three events per call.
    media_passthrough: bool = False
    # The call and leg a Replaces value names, among all calls (attended transfer).
    find_dialog: Callable[[str], tuple[Any, Leg] | None] = lambda replaces: None
    # Toll-fraud policy (softswitch/fraud/policy.py): asked before any dial's
    # targets are resolved, whatever the dialplan says; None allows all.
    dial_policy: Callable[[DialRequest], Refusal | None] | None = None


@dataclass(slots=True, eq=False)
class DialAttempt:
    """One `dial` in progress: its legs, and what to do with their outcome.

    `on_answer`/`on_failure` are the machine's for a dialplan dial and the
    transfer's for a transfer target, so both ring the same way (RFC 3263
    fail-over, 401/407, 422, CANCEL rules).
    """

    number: int
    action: Dial
    legs: list[Leg] = field(default_factory=list)
    finished: bool = False
    timed_out: bool = False
    waiting: dict[int, Any] = field(default_factory=dict)  # resolve refs -> target
    resolved: list[ev.TargetResolved] = field(default_factory=list)
    on_answer: Callable[[Leg, Response], None] | None = None
    on_failure: Callable[[int, str, DialAttempt, bool], None] | None = None
    on_ringing: Callable[[Leg, Response], None] | None = None
    offer: bytes = b""  # the SDP the legs are sent (through the media side)
    content_type: str | None = None
    with_timers: bool = True  # RFC 4028 headers on the INVITEs
    main: bool = True  # the call's own dial (not a transfer's): the CDR counts its codes


Handler = Callable[..., None]


class CallMachine:
    """One call. Feed it events with `handle`; carry out what it returns."""

    # Thousands live at once: slots keep each small (memory per call).
    __slots__ = ("settings", "uuid", "caller", "dialled", "a", "a_ref", "b", "legs", "state",
                 "plan", "facts", "rule", "variables", "queue", "trunk", "callee", "started",
                 "answered", "ended", "b_codes", "hangup_cause", "hangup_side", "disposition",
                 "sip_code", "last_failure", "dial_result", "a_session", "attempts", "now",
                 "media_failure", "_out", "_refs", "_leg_numbers", "_pending", "_timers",
                 "_dialogs", "_backoffs", "relay", "sessions", "reliable", "transfers",
                 "replacement", "hosted")

    def __init__(self, settings: CallSettings, *, uuid: str | None = None,
                 caller: Caller, dialled: str, a: Leg, a_ref: int | None, now: float,
                 plan: Any = None, facts: CallFacts | None = None,
                 b: Leg | None = None) -> None:
        self.settings = settings
        self.uuid = uuid or uuidlib.uuid4().hex
        self.caller = caller
        self.dialled = dialled
        self.a = a
        self.a_ref = a_ref  # the server transaction of the caller's INVITE
        self.b: Leg | None = b  # the leg bridged to the caller (who answered)
        self.legs: list[Leg] = [a] if b is None else [a, b]
        self.state = CallState.ROUTING
        self.plan = plan
        self.facts = facts
        self.rule: str | None = None
        self.variables: dict[str, str] = {}
        self.queue: list[Any] = []  # the dialplan actions still to run
        self.trunk = caller.trunk
        self.callee: str | None = None
        self.started = now
        self.answered: float | None = None
        self.ended: float | None = None
        self.b_codes: list[int] = []
        self.hangup_cause = ""
        self.hangup_side = ""
        self.disposition: Disposition | None = None
        self.sip_code: int | None = None
        self.last_failure: tuple[int, str] = (404, "Not Found")
        # How the last dial ended, for the CDR and for a branch that cannot
        # run: a voicemail that is not there does not change that the callee
        # was busy.
        self.dial_result: tuple[Disposition, str] | None = None
        self.a_session: UasNegotiation | None = None
        self.attempts: list[DialAttempt] = []
        self.now = now
        self.media_failure: tuple[int, str] = (488, "Not Acceptable Here")
        self._out: Effects = []
        self._refs = itertools.count(1)
        # New legs are numbered after those a restored call already has.
        numbers = [int(leg.name[1:]) for leg in self.legs if leg.name[1:].isdigit()]
        self._leg_numbers = itertools.count(max(numbers, default=0) + 1)
        self._pending: dict[int, tuple[Handler, tuple[Any, ...]]] = {}
        self._timers: dict[str, tuple[float, Handler, tuple[Any, ...]]] = {}
        self._dialogs: dict[tuple[str, str, str], Leg] = {}
        self._backoffs: dict[str, Backoff] = {}
        # The parts of the call (imported here: they import this module).
        from softswitch.b2bua.hosted import HostedMedia
        from softswitch.b2bua.indialog import DialogRelay
        from softswitch.b2bua.refresh import SessionRefresh
        from softswitch.b2bua.reliable import ReliableProvisionals
        from softswitch.b2bua.replaces import Replacement
        from softswitch.b2bua.transfer import Transfers
        self.relay = DialogRelay(self)
        self.sessions = SessionRefresh(self)
        self.reliable = ReliableProvisionals(self)
        self.transfers = Transfers(self)
        self.replacement = Replacement(self)
        self.hosted = HostedMedia(self)

    # == construction =====================================================================

    @classmethod
    def incoming(cls, settings: CallSettings, ref: int, invite: Request, source: Peer,
                 caller: Caller, dialled: str, plan: Any, negotiation: UasNegotiation | None,
                 now: float) -> tuple[CallMachine, Effects]:
        """A new call from `caller`'s INVITE (server transaction `ref`); routes it at once."""
        tag = new_tag()
        a = Leg("a", True, caller.user, source,
                LegId(invite.call_id, tag, invite.from_tag or ""), LegState.INCOMING,
                invite=invite)
        machine = cls(settings, caller=caller, dialled=dialled, a=a, a_ref=ref, now=now,
                      plan=plan)
        machine.a_session = negotiation
        machine.variables["domain"] = caller.domain or ""
        machine.respond(ref, make_response(invite, 100))
        if plan is None:
            machine.fail(503, "No dialplan")
            return machine, machine.take()
        machine.facts = CallFacts(
            context=caller.context, dest=dialled, caller=caller.user,
            caller_name=caller.display_name, trunk=caller.trunk, groups=caller.groups,
            headers={name: value for name, value in invite.headers},
            # Time-of-day rules read the call's clock, not the wall clock.
            time=datetime.fromtimestamp(now, UTC))
        decision = plan.route(machine.facts)
        machine.rule = next((f"{step.context}/{step.rule}" for step in decision.trace
                             if step.outcome == "match"), None)
        machine.variables.update(decision.variables)
        machine.log("call_routed", caller=caller.user, dest=dialled, context=caller.context,
                    trunk=caller.trunk, actions=len(decision.actions), matched=decision.matched)
        machine.queue.extend(decision.actions)
        machine.run()
        return machine, machine.take()

    @classmethod
    def restore(cls, settings: CallSettings, snapshot: CallSnapshot, plan: Any,
                now: float) -> tuple[CallMachine, Effects]:
        """An established call back from its snapshot (after a restart)."""
        from softswitch.b2bua.records import leg_from_snapshot
        a_name, b_name = snapshot.bridge
        from softswitch.b2bua.hosted import HOSTED_VARIABLE
        a_snap = snapshot.leg(a_name or "a")
        b_snap = snapshot.leg(b_name) if b_name else None
        hosted = dict(snapshot.variables).get(HOSTED_VARIABLE) == "yes"
        if a_snap is None or (b_snap is None and not hosted):
            raise ValueError(f"call {snapshot.uuid} has no answered callee")
        a = leg_from_snapshot(a_snap, settings.local_address)
        b = leg_from_snapshot(b_snap, settings.local_address) if b_snap is not None else None
        caller = Caller(snapshot.caller, snapshot.caller_name, snapshot.context, frozenset(),
                        dict(snapshot.variables).get("domain") or None, snapshot.trunk, None)
        machine = cls(settings, uuid=snapshot.uuid, caller=caller, dialled=snapshot.dialled,
                      a=a, a_ref=None, now=now, plan=plan, b=b)
        machine.state = CallState.CONFIRMED
        machine.rule = snapshot.rule
        machine.variables = dict(snapshot.variables)
        machine.trunk = snapshot.trunk
        machine.callee = snapshot.callee
        machine.started, machine.answered = snapshot.started, snapshot.answered
        machine.b_codes = list(snapshot.b_codes)
        for leg in machine.legs:
            assert leg.dialog is not None
            machine.open_dialog(leg, leg.dialog)
        if b is None:
            # The PBX answered the caller itself (playback, record, voicemail):
            # where the dialplan was is not kept, nor what the relay played
            # or ran. End it cleanly.
            machine.log("call_restored", hosted=True)
            machine.hangup("system", "restarted during hosted media")
            return machine, machine.take()
        machine.sessions.resume()
        if settings.max_duration > 0 and machine.answered is not None:
            machine.start_timer("max_duration",
                                max(0.0, machine.answered + settings.max_duration - now),
                                machine.hangup, "system", "maximum call duration")
        machine.log("call_restored")
        return machine, machine.take()

    # == the one entry point =================================================================

    def handle(self, event: ev.Event, now: float) -> Effects:
        """Take one event; return the effects to carry out, in order."""
        self.now = now
        match event:
            case ev.ResponseReceived(ref=ref) | ev.RequestTimedOut(ref=ref) \
                    | ev.TransportFailed(ref=ref) | ev.TargetResolved(ref=ref) \
                    | ev.MediaReady(ref=ref) | ev.MediaFailed(ref=ref):
                self._answered_ref(ref, event)
            case ev.TimerFired(name=name):
                entry = self._timers.pop(name, None)
                if entry is not None:
                    entry[1](*entry[2])
            case ev.RequestReceived():
                self.relay.request(event.ref, event.request, event.source)
            case ev.AckReceived(request=request):
                self._ack_received(request)
            case ev.CancelReceived():
                self._cancelled()
            case ev.MediaEvent():
                self.hosted.event(event)
            case ev.StrayResponse(response=response):
                self._stray(response)
            case ev.ReplacingInvite():
                self.replacement.invite(event.ref, event.request, event.source, event.caller)
            case ev.Shutdown(cause=cause):
                if self.state is CallState.CONFIRMED or self.state is CallState.ANSWERED:
                    self.hangup("system", cause)
                elif self.state is not CallState.ENDED:
                    self.fail(503, "Service Unavailable")
        return self.take()

    def _answered_ref(self, ref: int, event: ev.Event) -> None:
        entry = self._pending.get(ref)
        if entry is None:
            return
        handler, args = entry
        final = not isinstance(event, ev.ResponseReceived) or event.response.status >= 200
        # An INVITE's client transaction passes on 2xx retransmissions: keep
        # listening until the leg ends.
        if final and not (isinstance(event, ev.ResponseReceived)
                          and event.response.cseq.method == "INVITE"
                          and 200 <= event.response.status < 300):
            del self._pending[ref]
        handler(event, *args)

    def take(self) -> Effects:
        out, self._out = self._out, []
        return out

    # == the public API the parts use ===========================================================

    def emit(self, effect: ev.Effect) -> None:
        self._out.append(effect)

    def log(self, event: str, level: str = "info", **fields: object) -> None:
        self._out.append(ev.Log(event, (("call", self.uuid), ("call_id", self.call_id),
                                        *fields.items()), level))

    def next_ref(self) -> int:
        return next(self._refs)

    def send(self, request: Request, peer: Peer, handler: Handler | None = None,
             *args: Any) -> int:
        """Send `request`; `handler(event, *args)` gets its response(s), time-out or failure."""
        ref = self.next_ref()
        if handler is not None:
            self._pending[ref] = (handler, args)
        self._out.append(ev.SendRequest(ref, request, peer))
        return ref

    def forget(self, ref: int | None) -> None:
        """Stop listening to what comes back for `ref`."""
        if ref is not None:
            self._pending.pop(ref, None)

    def respond(self, ref: int | None, response: Response) -> None:
        if ref is not None:
            self._out.append(ev.Respond(ref, response))

    def send_ack(self, ack: Request, peer: Peer) -> None:
        self._out.append(ev.SendAck(ack, peer))

    def start_timer(self, name: str, delay: float, handler: Handler, *args: Any) -> None:
        self._timers[name] = (self.now + delay, handler, args)
        self._out.append(ev.StartTimer(name, delay))

    def stop_timer(self, name: str) -> None:
        if self._timers.pop(name, None) is not None:
            self._out.append(ev.StopTimer(name))

    def has_timer(self, name: str) -> bool:
        return name in self._timers

    def media(self, offer: bool, source: Leg, sink: Leg, body: bytes,
              content_type: str | None, then: Handler, *args: Any) -> None:
        """Pass SDP from `source` to `sink` through the media side.

        `then(body, *args)` runs once the SDP to send is ready (at once,
        with b"", when there is no body). A failure runs `then(None, *args)`
        with the status and reason to give in `media_failure`.
        """
        if not body or self.settings.media_passthrough:
            then(body, *args)
            return
        ref = self.next_ref()
        self._pending[ref] = (self._media_done, (then, args))
        kind = ev.MediaOffer if offer else ev.MediaAnswer
        self._out.append(kind(ref, source.id, sink.id, body, content_type))


    def ask_media(self, make: Callable[[int], ev.Effect], then: Handler, *args: Any) -> None:
        """Emit the media effect `make(ref)`; `then(event, *args)` gets its
        `MediaReady` or `MediaFailed` (hosted media: `HostMedia`, `MediaCommand`)."""
        ref = self.next_ref()
        self._pending[ref] = (then, args)
        self._out.append(make(ref))

    def _media_done(self, event: ev.Event, then: Handler, args: tuple[Any, ...]) -> None:
        if isinstance(event, ev.MediaReady):
            then(event.body, *args)
        elif isinstance(event, ev.MediaFailed):
            self.media_failure = (event.status, event.reason)
            then(None, *args)

    def remember(self, variables: Mapping[str, str]) -> None:
        """Facts the glue learnt about the call (its media relay), kept in its snapshot."""
        self.variables.update(variables)

    def release_media(self, leg: Leg | None = None) -> None:
        self._out.append(ev.ReleaseMedia(leg.id if leg is not None else None))

    def local(self, peer: Peer) -> tuple[str, int]:
        return self.settings.local_address(peer)

    def new_leg(self, caller_side: bool, target: str, peer: Peer, leg_id: LegId,
                state: LegState, **fields: Any) -> Leg:
        prefix = "a" if caller_side else "b"
        leg = Leg(f"{prefix}{next(self._leg_numbers)}", caller_side, target, peer, leg_id,
                  state, **fields)
        self.legs.append(leg)
        return leg

    def open_dialog(self, leg: Leg, dialog: Dialog) -> None:
        """`dialog` is `leg`'s; requests in it reach this call."""
        leg.dialog = dialog
        leg.id = LegId(leg.id.call_id, leg.id.local_tag, dialog.remote_tag, leg.id.branch)
        if dialog.id not in self._dialogs:
            self._dialogs[dialog.id] = leg
            self._out.append(ev.DialogOpened(dialog.id))

    def close_dialog(self, leg: Leg) -> None:
        dialog = leg.dialog
        if dialog is not None and self._dialogs.get(dialog.id) is leg:
            del self._dialogs[dialog.id]
            self._out.append(ev.DialogClosed(dialog.id))

    def leg_of(self, dialog_id: tuple[str, str, str]) -> Leg | None:
        return self._dialogs.get(dialog_id)

    def other(self, leg: Leg) -> Leg | None:
        """The party bridged to `leg` in this call (None for a leg outside the bridge)."""
        if leg is self.a:
            return self.b
        if leg is self.b:
            return self.a
        return None

    def side_of(self, leg: Leg) -> str:
        return "caller" if leg is self.a else "callee"

    def transition(self, new: CallState) -> None:
        if new is self.state:
            return
        if new not in _TRANSITIONS[self.state]:
            raise RuntimeError(f"call {self.uuid}: {self.state.value} cannot become {new.value}")
        self.state = new

    def clock_time(self) -> datetime:
        """The call's clock as a datetime, for time-of-day dialplan rules."""
        return datetime.fromtimestamp(self.now, UTC)

    def replaced_by(self, replaces: str) -> Leg | None:
        """This call's leg named by a Replaces value, if any."""
        from softswitch.b2bua.replaces import dialog_ids
        for dialog_id in dialog_ids(replaces):
            leg = self._dialogs.get(dialog_id)
            if leg is not None:
                return leg
        return None

    def rebridge(self, old: Leg, new: Leg) -> None:
        """`new` takes `old`'s place in the bridge (a transfer, a replacement)."""
        if old is self.a:
            self.a = new
        elif old is self.b:
            self.b = new
            self.callee = new.target
        if new not in self.legs:
            self.legs.append(new)

    def lend(self, leg: Leg) -> Leg | None:
        """The party bridged to `leg`, for another call's attended transfer (no change yet)."""
        other = self.other(leg)
        if not self.established or other is None or other.dialog is None:
            return None
        return other

    def hand_over(self, leg: Leg, replaced: Leg, now: float) -> Effects:
        """`leg` joins another call (attended transfer): this call ends, BYE to `replaced`."""
        self.now = now
        self.sessions.stop(leg)
        self.close_dialog(leg)
        if leg in self.legs:
            self.legs.remove(leg)
        self.bye(replaced.dialog, replaced.peer)
        self.end("caller" if replaced is self.a else "callee", "attended transfer")
        return self.take()

    def adopt(self, leg: Leg) -> Leg:
        """A leg from another call joins this one, under a name of this call."""
        prefix = "a" if leg.caller_side else "b"
        leg.name = f"{prefix}{next(self._leg_numbers)}"
        leg.attempt = 0
        if leg.dialog is not None:
            dialog = leg.dialog
            leg.dialog = None
            self.open_dialog(leg, dialog)
        return leg

    @property
    def routing(self) -> bool:
        return self.state is CallState.ROUTING

    def answered_by_us(self) -> None:
        """The PBX itself sent the caller its 200 (hosted media): the call is answered."""
        self.answered = self.now
        self.transition(CallState.ANSWERED)

    def confirmed(self) -> None:
        """The caller ACKed the 200 the PBX itself sent."""
        self.transition(CallState.CONFIRMED)

    def established_now(self) -> None:
        """Both ends up: session timers, the maximum duration, the snapshot for a restart."""
        self._established()

    @property
    def established(self) -> bool:
        return self.state is CallState.CONFIRMED

    @property
    def call_id(self) -> str:
        return self.a.id.call_id

    def changed(self) -> None:
        """Tell the store what a restart needs (only once the call is established)."""
        if self.state is CallState.CONFIRMED:
            self._out.append(ev.CallChanged(self.snapshot()))

    def retransmit(self, name: str, ref: int | None, response: Response,
                   give_up: Handler, *args: Any) -> None:
        """Resend a 2xx until its ACK (RFC 3261 13.3.1.4): timer `name`; `stop_timer` on the ACK."""
        backoff = self._backoffs[name] = Backoff(self.settings.t1, self.settings.t2)
        self.start_timer(name, backoff.first(), self._resend_2xx, name, ref, response,
                         give_up, args)

    def _resend_2xx(self, name: str, ref: int | None, response: Response, give_up: Handler,
                    args: tuple[Any, ...]) -> None:
        backoff = self._backoffs.get(name)
        delay = backoff.next() if backoff is not None else None
        if delay is None:
            self._backoffs.pop(name, None)
            give_up(*args)
            return
        self.respond(ref, response)
        self.start_timer(name, delay, self._resend_2xx, name, ref, response, give_up, args)

    def stop_retransmit(self, name: str) -> None:
        self._backoffs.pop(name, None)
        self.stop_timer(name)

    # == requests within a dialog ====================================================================

    def ack(self, leg: Leg, dialog: Dialog, invite: Request, response: Response,
            body: bytes = b"", content_type: str | None = None) -> Request:
        host, port = self.local(leg.peer)
        ack = dialog.create_ack(invite, response, via_host=host, via_port=port, body=body,
                                content_type=content_type)
        self.send_ack(ack, leg.peer)
        return ack

    def bye(self, dialog: Dialog | None, peer: Peer | None = None,
            reason: Reason | None = None) -> None:
        peer = peer or (dialog.peer if dialog is not None else None)
        if dialog is None or peer is None or dialog.state is DialogState.TERMINATED:
            return
        host, port = self.local(peer)
        extra = [("Reason", str(reason))] if reason is not None else []
        try:
            bye = dialog.create_request("BYE", via_host=host, via_port=port,
                                        extra_headers=extra)
        except Exception as exc:  # noqa: BLE001 - a dialog that cannot send BYE any more
            self.log("bye_not_sent", error=str(exc))
            return
        dialog.terminate()
        self.send(bye, peer)

    # == running the dialplan's actions ==============================================================

    def run(self) -> None:
        queue = self.queue
        hosted = self.hosted
        while queue and hosted.idle:
            # Answered by the PBX itself: the media actions run on the relay.
            if not hosted.perform(queue.pop(0)):
                return
        if hosted.idle:
            hosted.finished()
            return
        while queue and self.state is CallState.ROUTING:
            action = queue.pop(0)
            match action:
                case SetVariables(variables=variables):
                    self.variables.update(dict(variables))
                case Dial():
                    self.dial(action)
                    return
                case Hangup(code=code, reason=reason):
                    self.fail(code, reason)
                    return
                case Goto():
                    decision = self.plan.resume(self.facts, action, self.variables)
                    self.variables.update(decision.variables)
                    queue.clear()
                    queue.extend(decision.actions)
                case Transfer(target=target):
                    self._redirect(target)
                    return
                case Voicemail() | Answer() | Echo() | Playback() | Record():
                    self.hosted.answer(action)
                    return
                case _:
                    self.fail(500, "Unknown action")
                    return
        if self.state is CallState.ROUTING:
            code, reason = self.last_failure
            self.fail(code, reason)

    def unavailable(self, action: Any, failure: tuple[int, str] | None) -> None:
        """A media action cannot run (direct media, or the relay refused): refuse the call.

        `failure` is the media side's status and reason, None when there is no relay.
        """
        if self.dial_result is not None:
            # A fallback that cannot run (voicemail after busy) must not hide
            # why the dial failed: the caller gets the callee's answer.
            code, reason = self.last_failure
            self.log("fallback_unavailable", action=type(action).__name__, code=code)
            self.fail(code, reason)
        elif isinstance(action, Voicemail):
            self.fail(480, "Voicemail not available")
        elif failure is not None and failure[0] != 488:
            self.fail(*failure)  # the relay is down or full: 503
        else:
            # These need audio from the server itself: the media relay.
            self.fail(488, "Media actions need the media relay")

    def _redirect(self, target: Any) -> None:
        domain = self.variables.get("domain", "")
        match target:
            case UserTarget(user=user):
                uri = f"sip:{user}@{domain}"
            case TrunkTarget(number=number):
                uri = f"sip:{number}@{domain}"
            case UriTarget(uri=text):
                uri = text
            case _:
                uri = ""
        response = self._to_caller(302)
        response.add("Contact", f"<{uri}>")
        self.final_to_caller(response)
        self.end("system", "redirected", Disposition.FAILED)

    def caller_id_number(self) -> str:
        return self.variables.get("caller_id_number") or self.caller.user

    def caller_id_name(self) -> str | None:
        return self.variables.get("caller_id_name") or self.caller.display_name or None

    def caller_id(self, action: Dial) -> tuple[str, str | None]:
        number = self.variables.get("caller_id_number") or self.caller.user
        name = self.variables.get("caller_id_name") or self.caller.display_name or None
        if action.caller_id is not None:
            number = action.caller_id.number or number
            name = action.caller_id.name or name
        return number, name

    # == dialing =======================================================================================

    def dial(self, action: Dial, *, offer: bytes | None = None,
             content_type: str | None = None, on_answer: Handler | None = None,
             on_failure: Handler | None = None, on_ringing: Handler | None = None,
             caller: tuple[str, str | None] | None = None,
             with_timers: bool = True, party: Party | None = None) -> DialAttempt:
        """Ring the targets of `action`; the machine's own outcome handlers unless given.

        `party` is who dials (the caller unless given: a transfer names its
        referrer); the dial policy may refuse the dial before anything rings.
        """
        invite = self.a.invite
        attempt = DialAttempt(len(self.attempts) + 1, action,
                              on_answer=on_answer or self._answered,
                              on_failure=on_failure or self._dial_failed_here,
                              on_ringing=on_ringing or self._ringing,
                              with_timers=with_timers, main=on_answer is None)
        if offer is None and invite is not None:
            offer, content_type = invite.body, invite.get("content-type")
        attempt.offer, attempt.content_type = offer or b"", content_type
        self.attempts.append(attempt)
        refusal = self._refused(action, party, attempt.main)
        if refusal is not None:
            attempt.finished = True
            self.log("dial_refused", level="warning", party=(party or self.party).key,
                     targets=[str(t) for t in action.targets], code=refusal.status,
                     reason=refusal.reason, limit=refusal.limit)
            if attempt.main:
                # Final: no dialplan fallback may try another way round.
                self.fail(refusal.status, refusal.reason)
            else:
                assert attempt.on_failure is not None
                attempt.on_failure(refusal.status, refusal.reason, attempt, False)
            return attempt
        domain = self.variables.get("domain", "")
        for target in action.targets:
            ref = self.next_ref()
            attempt.waiting[ref] = target
            self._pending[ref] = (self._target_resolved, (attempt, caller))
            self._out.append(ev.Resolve(ref, target, domain))
        return attempt

    @property
    def party(self) -> Party:
        """The caller as the dial policy knows it: an account, a trunk's callers."""
        caller = self.caller
        return Party(account=caller.account, domain=caller.domain if caller.account else None,
                     trunk=caller.trunk)

    def _refused(self, action: Dial, party: Party | None, main: bool) -> Refusal | None:
        policy = self.settings.dial_policy
        if policy is None:
            return None
        return policy(DialRequest(self.uuid, party or self.party, tuple(action.targets),
                                  main, self.now))

    def _target_resolved(self, event: ev.Event, attempt: DialAttempt,
                         caller: tuple[str, str | None] | None) -> None:
        assert isinstance(event, ev.TargetResolved)
        attempt.waiting.pop(event.ref, None)
        attempt.resolved.append(event)
        if attempt.waiting or attempt.finished:
            return
        destinations = [d for r in attempt.resolved for d in r.destinations]
        codes = [(r.failure, r.reason) for r in attempt.resolved if r.failure is not None]
        if not destinations:
            code, reason = best_failure(codes) if codes else (404, "Not Found")
            attempt.finished = True
            assert attempt.on_failure is not None
            attempt.on_failure(code, reason, attempt, False)
            return
        attempt.resolved = []  # read: the destinations live on in the legs
        number, name = caller or self.caller_id(attempt.action)
        for dest in destinations:
            self._ring(attempt, dest, number, name)
        timeout = attempt.action.timeout if attempt.action.timeout is not None \
            else self.settings.no_answer_timeout
        self.start_timer(f"no_answer:{attempt.number}", timeout, self._dial_timeout, attempt)
        if attempt.main:
            self.transition(CallState.DIALING)
        self.log("dialing", targets=[leg.target for leg in attempt.legs])

    def _ring(self, attempt: DialAttempt, dest: Destination, number: str,
              name: str | None) -> None:
        call_id = f"{new_tag()}{new_tag()}@{self.local(dest.peer)[0]}"
        leg = self.new_leg(False, dest.label, dest.peer,
                           LegId(call_id, new_tag(), "", new_branch()), LegState.CALLING,
                           destination=dest, alternates=list(dest.alternates),
                           attempt=attempt.number)
        attempt.legs.append(leg)
        if dest.trunk is not None and self.trunk is None:
            self.trunk = dest.trunk
        self.media(True, self.a, leg, attempt.offer, attempt.content_type, self._send_invite,
                   attempt, leg, number, name)

    def _send_invite(self, body: bytes | None, attempt: DialAttempt, leg: Leg, number: str,
                     name: str | None) -> None:
        if leg.state is not LegState.CALLING:
            return  # cancelled while the media side worked
        if body is None:
            status, reason = self.media_failure
            self.leg_failed(leg, status, reason)
            return
        dest = leg.destination
        assert dest is not None
        host, port = self.local(dest.peer)
        domain = self.variables.get("domain", "")
        headers = [*self._timer_headers("uac"), *attempt.action.headers] \
            if attempt.with_timers else list(attempt.action.headers)
        max_forwards = 70
        if self.a.invite is not None:
            text = self.a.invite.get("max-forwards")
            max_forwards = int(text) if text and text.isdigit() else 70
        leg.invite = build_invite(
            dest, max_forwards=max_forwards - 1, caller=number, caller_name=name,
            from_host=domain or host, via_host=host, via_port=port, body=body,
            content_type=attempt.content_type if body else None, extra_headers=headers,
            call_id=leg.id.call_id, from_tag=leg.id.local_tag, branch=leg.id.branch)
        leg.sdp_sent = body
        self._send_leg_invite(leg)

    def _timer_headers(self, refresher: str) -> list[tuple[str, str]]:
        s = self.settings
        return [("Supported", "timer, 100rel"),
                ("Session-Expires", f"{s.session_expires};refresher={refresher}"),
                ("Min-SE", str(s.min_se))]

    def _send_leg_invite(self, leg: Leg) -> None:
        assert leg.invite is not None
        self.forget(leg.invite_ref)
        leg.invite_ref = self.send(leg.invite, leg.peer, self._leg_event, leg)

    def _leg_event(self, event: ev.Event, leg: Leg) -> None:
        if leg.answer_2xx is not None and not (isinstance(event, ev.ResponseReceived)
                                               and event.response.status < 300):
            return  # answered: the INVITE's transaction is over, a late failure says nothing
        if isinstance(event, ev.ResponseReceived):
            self._leg_response(leg, event.response)
        elif isinstance(event, ev.RequestTimedOut):
            if not self._fail_over(leg):
                self.leg_failed(leg, 408, "Request Timeout")
        elif isinstance(event, ev.TransportFailed):
            if not self._fail_over(leg):
                self.leg_failed(leg, 503, "Service Unavailable")

    def _fail_over(self, leg: Leg) -> bool:
        """Send the INVITE to the next RFC 3263 target (4.3); False if none is left."""
        if not leg.alternates or leg.state is not LegState.CALLING or leg.got_provisional \
                or leg.invite is None:
            return False
        peer = leg.alternates.pop(0)
        old = leg.invite
        host, port = self.local(peer)
        invite = Request("INVITE", old.uri, [list(h) for h in old.headers], old.body)
        invite.set("Via", str(Via(peer.transport.upper(), host, port,
                                  {"branch": new_branch(), "rport": None})))
        leg.invite, leg.peer = invite, peer
        self.log("fail_over", target=leg.target, peer=str(peer))
        self._send_leg_invite(leg)
        return True

    def _leg_response(self, leg: Leg, response: Response) -> None:
        status = response.status
        attempt = self.attempt_of(leg)
        if status < 200:
            # RFC 3261 9.1: any provisional response, 100 included, allows CANCEL.
            leg.got_provisional = True
            if status > 100 and requires_100rel(response) and not self._prack(leg, response):
                return  # a retransmission or out of order: already handled
            if leg.state is LegState.CANCELLING:
                self._send_cancel(leg)
            elif status > 100 and leg.state in (LegState.CALLING, LegState.EARLY):
                leg.move(LegState.EARLY)
                if attempt is not None and not attempt.finished and attempt.on_ringing:
                    attempt.on_ringing(leg, response)
            return
        if status < 300:
            self._leg_answered(leg, response, attempt)
            return
        if leg.state is LegState.CANCELLING or leg.state is LegState.ENDED:
            self.forget(leg.invite_ref)
            leg.move(LegState.ENDED)
            return
        if status in (401, 407) and self._authenticate(leg, response):
            return
        if status == 503 and self._fail_over(leg):
            return
        if status == 422 and self._raise_session_expires(leg, response):
            return
        self.leg_failed(leg, status, response.reason)

    def _prack(self, leg: Leg, response: Response) -> bool:
        """PRACK a reliable provisional (RFC 3262 4); False if not new."""
        tag = response.to_tag
        if tag is None or leg.invite is None:
            return True
        early = leg.early.get(tag)
        if early is None:
            early = leg.early[tag] = Dialog.from_uac(leg.invite, response, peer=leg.peer)
        if early.receive_reliable_provisional(response) is not ReliableVerdict.NEW:
            return False
        host, port = self.local(leg.peer)
        prack = early.create_request("PRACK", via_host=host, via_port=port,
                                     extra_headers=[("RAck", str(RAck.for_response(response)))])
        self.send(prack, leg.peer)
        return True

    def _raise_session_expires(self, leg: Leg, response: Response) -> bool:
        """422: send the INVITE again with the callee's Min-SE (RFC 4028 6)."""
        from softswitch.b2bua.session_timer import min_se_of
        try:
            wanted = min_se_of(response)
        except MessageError:
            return False
        if wanted is None or leg.invite is None or leg.session_retries >= 1:
            return False
        leg.session_retries += 1
        leg.invite = resend(leg.invite)
        leg.invite.set("Session-Expires", f"{wanted};refresher=uac")
        leg.invite.set("Min-SE", str(wanted))
        leg.got_provisional = False
        self._send_leg_invite(leg)
        return True

    def _authenticate(self, leg: Leg, response: Response) -> bool:
        """Send the INVITE again with the trunk's credentials (RFC 3261 22.2)."""
        dest = leg.destination
        trunk = self.settings.trunks.get(dest.trunk) if dest is not None and dest.trunk else None
        if trunk is None or trunk.username is None or trunk.password is None \
                or leg.auth_tries >= 1 or leg.invite is None:
            return False
        found = first_challenge(response)
        if found is None:
            return False
        challenge, proxy = found
        invite = resend(leg.invite)
        invite.add("Proxy-Authorization" if proxy else "Authorization",
                   authorization(challenge, "INVITE", str(invite.uri), trunk.username,
                                 trunk.password, cnonce=new_tag()))
        leg.invite = invite
        leg.auth_tries += 1
        leg.got_provisional = False
        self._send_leg_invite(leg)
        return True

    def _leg_answered(self, leg: Leg, response: Response, attempt: DialAttempt | None) -> None:
        if leg.answer_2xx is not None and response.to_tag == leg.answer_2xx.to_tag:
            # A retransmitted 2xx: our ACK got lost (or is still held).
            if leg.ack is not None:
                self.send_ack(leg.ack, leg.peer)
            return
        assert leg.invite is not None
        early = leg.early.pop(response.to_tag or "", None)
        if early is not None:
            # The early dialog PRACKs went on: keep it, with its CSeq.
            early.receive_response(response)
            dialog = early
        else:
            dialog = Dialog.from_uac(leg.invite, response, peer=leg.peer)
        if attempt is None or attempt.finished or not leg.live or leg.dialog is not None:
            # Another fork answered first, or the caller gave up: RFC 3261
            # 13.2.2.4 still wants an ACK, then this dialog ends with BYE.
            if leg.final_status is None:
                leg.final_status = response.status
            self.ack(leg, dialog, leg.invite, response)
            self.bye(dialog, leg.peer, CALL_COMPLETED_ELSEWHERE)
            if leg.dialog is not None:
                return  # a 2xx from another early dialog of an answered leg: the leg goes on
            self.forget(leg.invite_ref)
            if leg.state is not LegState.ENDED:
                leg.move(LegState.ENDED)
            return
        leg.final_status = response.status
        leg.answer_2xx = response
        leg.allows = frozenset(m.strip().upper() for m in response.values("allow"))
        leg.move(LegState.ANSWERED)
        self.open_dialog(leg, dialog)
        attempt.finished = True
        self.stop_timer(f"no_answer:{attempt.number}")
        for other in attempt.legs:
            if other is not leg:
                self.cancel_leg(other, CALL_COMPLETED_ELSEWHERE)
        assert attempt.on_answer is not None
        attempt.on_answer(leg, response)

    def attempt_of(self, leg: Leg) -> DialAttempt | None:
        if 0 < leg.attempt <= len(self.attempts):
            return self.attempts[leg.attempt - 1]
        return None

    def cancel_leg(self, leg: Leg, reason: Reason) -> None:
        """Stop ringing `leg` (RFC 3261 9.1): CANCEL once a provisional came back."""
        if leg.state not in (LegState.CALLING, LegState.EARLY):
            return
        # The leg ends with the 487 its CANCEL asks for; recorded now, since
        # the CDR may be written before that 487 arrives.
        leg.final_status = 487
        attempt = self.attempt_of(leg)
        if attempt is not None and attempt.main:
            self.b_codes.append(487)
        leg.cancel_reason = reason
        self.release_media(leg)
        if leg.invite is None:
            leg.move(LegState.ENDED)  # its offer was still with the media side
            return
        leg.move(LegState.CANCELLING)
        if leg.got_provisional:
            self._send_cancel(leg)

    def _send_cancel(self, leg: Leg) -> None:
        if leg.invite is None or leg.invite_ref is None or leg.cancel_sent:
            return
        cancel = make_cancel(leg.invite)
        if leg.cancel_reason is not None:
            cancel.add("Reason", str(leg.cancel_reason))
        self.emit(ev.SendCancel(leg.invite_ref, cancel, leg.peer))
        # The 487 (or a 2xx that crossed) still comes to _leg_event; later
        # provisionals must not send another CANCEL (without its Reason).
        leg.cancel_sent = True

    def leg_failed(self, leg: Leg, code: int, reason: str) -> None:
        if leg.state is LegState.ENDED:
            return
        self.forget(leg.invite_ref)
        leg.move(LegState.ENDED)
        self.release_media(leg)
        attempt = self.attempt_of(leg)
        if leg.final_status is None:
            leg.final_status = code
            if attempt is not None and attempt.main:
                self.b_codes.append(code)
        if attempt is None or attempt.finished:
            return
        if any(b.state is not LegState.ENDED for b in attempt.legs):
            return
        codes = [(b.final_status or 500, "") for b in attempt.legs]
        best, _ = best_failure(codes)
        text = reason if best == code else REASONS.get(best, "")
        self._finish(attempt, best, text or reason)

    def _dial_timeout(self, attempt: DialAttempt) -> None:
        if attempt.finished:
            return
        attempt.timed_out = True
        for leg in attempt.legs:
            self.cancel_leg(leg, Reason("SIP", 480, "No answer"))
        self._finish(attempt, 480, "No Answer")

    def _finish(self, attempt: DialAttempt, code: int, reason: str) -> None:
        if attempt.finished:
            return
        attempt.finished = True
        self.stop_timer(f"no_answer:{attempt.number}")
        assert attempt.on_failure is not None
        attempt.on_failure(code, reason, attempt, True)

    # == the outcome of a dialplan dial ==================================================================

    def _ringing(self, leg: Leg, response: Response) -> None:
        if self.state is not CallState.DIALING:
            return
        if response.status == 183 and not response.body:
            return  # nothing to relay beyond the 180 the caller already has
        self.media(False, leg, self.a, response.body, response.get("content-type"),
                   self._ringing_to_caller, leg, response)

    def _ringing_to_caller(self, body: bytes | None, leg: Leg, response: Response) -> None:
        if self.state is not CallState.DIALING or not leg.live or body is None:
            return
        a = self.a
        relayed = self._to_caller(response.status, response.reason)
        host, port = self.local(a.peer)
        relayed.add("Contact", str(contact_of(host, port, a.peer.transport)))
        if body:
            relayed.set_body(body, response.get("content-type"))
            a.sdp_sent = body
        if a.state is LegState.INCOMING:
            a.move(LegState.EARLY)
        assert a.invite is not None
        if supports_100rel(a.invite):
            # RFC 3262 3: reliable, in the early dialog this response creates.
            dialog = self.caller_dialog()
            relayed.add("Require", "100rel")
            relayed.add("RSeq", str(dialog.next_rseq()))
            self.reliable.send(relayed)
            return
        self.respond(self.a_ref, relayed)

    def to_caller(self, status: int, reason: str | None = None) -> Response:
        """A response to the caller's INVITE, with our tag."""
        return self._to_caller(status, reason)

    def _to_caller(self, status: int, reason: str | None = None) -> Response:
        assert self.a.invite is not None
        return make_response(self.a.invite, status, reason, to_tag=self.a.id.local_tag)

    def caller_dialog(self) -> Dialog:
        """The caller's dialog, created early by a reliable 18x or by the 2xx."""
        a = self.a
        if a.dialog is None:
            assert a.invite is not None
            host, port = self.local(a.peer)
            self.open_dialog(a, Dialog.from_uas(a.invite, a.id.local_tag,
                                                contact_of(host, port, a.peer.transport),
                                                peer=a.peer))
        assert a.dialog is not None
        return a.dialog

    def _answered(self, leg: Leg, response: Response) -> None:
        """The first 2xx: bridge this leg to the caller."""
        if self.state is not CallState.DIALING:
            # The caller went away meanwhile.
            self._drop_answered(leg, response)
            return
        self.b = leg
        self.callee = leg.target
        self.b_codes.append(response.status)
        self.reliable.stop()
        self.media(False, leg, self.a, response.body, response.get("content-type"),
                   self._answer_caller, leg, response)

    def _drop_answered(self, leg: Leg, response: Response) -> None:
        assert leg.invite is not None and leg.dialog is not None
        leg.ack = self.ack(leg, leg.dialog, leg.invite, response)
        self.bye(leg.dialog, leg.peer)
        self.close_dialog(leg)
        leg.move(LegState.ENDED)

    def _answer_caller(self, body: bytes | None, leg: Leg, response: Response) -> None:
        a = self.a
        if self.state is not CallState.DIALING or leg is not self.b:
            return
        if body is None:
            # The media side refused the callee's answer: the call cannot go on.
            status, reason = self.media_failure
            self._drop_answered(leg, response)
            self.b = None
            self.fail(status, reason)
            return
        dialog = self.caller_dialog()
        ok = self._to_caller(200)
        ok.add("Contact", str(dialog.local_contact))
        ok.add("Allow", ALLOW)
        if body:
            ok.set_body(body, response.get("content-type"))
            a.sdp_sent = body
        if self.a_session is not None:
            ok.add("Supported", "timer")
            ok.add("Session-Expires", str(self.a_session.expires))
            if self.a_session.require_timer:
                ok.add("Require", "timer")
        dialog.sent_response(ok)
        self.answered = self.now
        self.transition(CallState.ANSWERED)
        a.move(LegState.ANSWERED)
        self.final_to_caller(ok)
        self.retransmit("2xx:a", self.a_ref, ok, self.hangup, "system", "no ACK")
        assert a.invite is not None and leg.invite is not None and leg.dialog is not None
        if a.invite.body:
            # The offer was in the INVITE: the callee's 2xx held the answer,
            # so its ACK carries nothing and need not wait for the caller's.
            leg.ack = self.ack(leg, leg.dialog, leg.invite, response)
            leg.move(LegState.CONFIRMED)
        self.log("call_answered", callee=leg.target)

    def _dial_failed_here(self, code: int, reason: str, attempt: DialAttempt,
                          rang: bool) -> None:
        """A dialplan dial ended without an answer: its branch, or the next action."""
        action = attempt.action
        if code in BUSY_CODES:
            handler = action.on_busy
        elif code in NO_ANSWER_CODES:
            handler = action.on_no_answer
        else:
            handler = None
        if handler is None:
            handler = action.on_failure
        self.last_failure = (code, reason)
        if not rang:
            self.dial_result = (Disposition.FAILED, "system")  # nothing could be rung
        elif code in BUSY_CODES:
            self.dial_result = (Disposition.BUSY, "callee")
        elif code in NO_ANSWER_CODES:
            self.dial_result = (Disposition.NO_ANSWER,
                                "system" if attempt.timed_out else "callee")
        else:
            self.dial_result = (Disposition.FAILED, "callee")
        if self.state is CallState.DIALING:
            self.transition(CallState.ROUTING)
        if handler is not None:
            self.queue.clear()
            self.queue.extend(handler)
        self.log("dial_failed", code=code, reason=reason, branch=handler is not None)
        if self.state is CallState.ROUTING:
            self.run()

    # == the caller's ACK, CANCEL, and 2xx retransmissions ===========================================

    def _ack_received(self, request: Request) -> None:
        dialog_id = (request.call_id, request.to_tag or "", request.from_tag or "")
        leg = self._dialogs.get(dialog_id)
        if leg is None:
            return
        if self.replacement.ack(leg) or self.relay.ack(leg, request):
            return
        if leg is self.a and self.hosted.ack(request):
            return
        if self.state is CallState.ANSWERED and leg is self.a:
            self.stop_retransmit("2xx:a")
            self.transition(CallState.CONFIRMED)
            leg.move(LegState.CONFIRMED)
            b = self.b
            if b is not None and b.dialog is not None and b.ack is None:
                assert b.answer_2xx is not None
                self.media(False, self.a, b, request.body, request.get("content-type"),
                           self._late_ack, b, request.get("content-type"))
            self._established()

    def _late_ack(self, body: bytes | None, b: Leg, content_type: str | None) -> None:
        """The caller's ACK held the answer to the callee's offer (late offer)."""
        if b.ack is not None or b.dialog is None or b.invite is None or b.answer_2xx is None:
            return
        if body is None:
            self.hangup("system", "media refused the answer")
            return
        b.ack = self.ack(b, b.dialog, b.invite, b.answer_2xx, body,
                         content_type if body else None)
        b.sdp_sent = body or b.sdp_sent
        if b.state is LegState.ANSWERED:
            b.move(LegState.CONFIRMED)

    def _established(self) -> None:
        # Routing is over: the facts (the caller's headers among them) and the
        # header.* variables are not needed again; thousands of calls are up.
        self.facts = None
        self.variables = {k: v for k, v in self.variables.items() if not k.startswith("header.")}
        self.sessions.start()
        if self.settings.max_duration > 0:
            self.start_timer("max_duration", self.settings.max_duration, self.hangup,
                             "system", "maximum call duration")
        self.changed()

    def _cancelled(self) -> None:
        if self.state not in (CallState.ROUTING, CallState.DIALING):
            return  # answered already: the caller will BYE
        for attempt in self.attempts:
            if not attempt.main:
                continue
            attempt.finished = True
            self.stop_timer(f"no_answer:{attempt.number}")
            for leg in attempt.legs:
                self.cancel_leg(leg, Reason("SIP", 487, "Caller cancelled"))
        if self.b is not None and self.b.dialog is not None and self.b.answer_2xx is not None:
            self._drop_answered(self.b, self.b.answer_2xx)  # its answer was with the media side
        self.final_to_caller(self._to_caller(487))
        self.end("caller", "CANCEL", Disposition.CANCELLED)

    def _stray(self, response: Response) -> None:
        """A 2xx retransmission after its transaction ended: ACK it again."""
        if not 200 <= response.status < 300 or response.cseq.method != "INVITE":
            return
        dialog_id = (response.call_id, response.from_tag or "", response.to_tag or "")
        leg = self._dialogs.get(dialog_id)
        if leg is not None and leg.ack is not None:
            self.send_ack(leg.ack, leg.peer)

    # == answers to the caller, and the end =============================================================

    def final_to_caller(self, response: Response) -> None:
        self.reliable.stop()
        self.sip_code = response.status
        self.respond(self.a_ref, response)

    def fail(self, code: int, reason: str) -> None:
        """Refuse the call with `code`; the CDR keeps how the last dial ended."""
        self.final_to_caller(self._to_caller(code, reason))
        disposition, side = self.dial_result or (Disposition.FAILED, "system")
        self.end(side, f"{code} {reason}", disposition)

    def hangup(self, side: str, cause: str) -> None:
        """End an answered call: BYE whichever legs are still up."""
        for leg in (self.a, self.b):
            if leg is not None:
                self.bye(leg.dialog, leg.peer)
        self.end(side, cause, Disposition.ANSWERED)

    def end(self, side: str, cause: str, disposition: Disposition | None = None) -> None:
        if self.state is CallState.ENDED:
            return
        self.transition(CallState.ENDED)
        self.ended = self.now
        self.hangup_side = self.hangup_side or side
        self.hangup_cause = self.hangup_cause or cause
        if self.disposition is None:
            self.disposition = disposition or (Disposition.ANSWERED if self.answered
                                               else Disposition.FAILED)
        for name in list(self._timers):
            self.stop_timer(name)
        self._backoffs.clear()
        self.reliable.stop()
        waiting = self.transfers.listening()  # before stop() forgets the transfer
        self.transfers.stop()
        for attempt in self.attempts:
            if not attempt.finished:
                attempt.finished = True
                for leg in attempt.legs:
                    self.cancel_leg(leg, Reason("SIP", 487, "Call ended"))
        for leg in self.legs:
            self.close_dialog(leg)
            if leg.state is not LegState.ENDED and leg.state is not LegState.CANCELLING:
                leg.move(LegState.ENDED)
        # Keep listening for the 487s of CANCELled forks (a 2xx that crossed
        # the CANCEL is ACKed and BYEd); forget everything else.
        keep = {leg.invite_ref for leg in self.legs
                if leg.state is LegState.CANCELLING and leg.invite_ref is not None} | waiting
        self._pending = {ref: entry for ref, entry in self._pending.items() if ref in keep}
        self.queue.clear()
        self.hosted.ended()
        self.release_media()
        self.log("call_ended", side=self.hangup_side, cause=self.hangup_cause,
                 disposition=self.disposition.value)
        # Its dialogs are over: the final snapshot (the CDR's) leaves them out.
        self._out.append(ev.CallEnded(self.snapshot(dialogs=False)))

    @property
    def finished(self) -> bool:
        """Ended, and nothing more to wait for: the registry may forget the call."""
        return self.state is CallState.ENDED and not self._pending

    # == the call as a value ===============================================================================

    def snapshot(self, *, dialogs: bool = True) -> CallSnapshot:
        """The call as a value; `dialogs=False` leaves out dialog state and SDP."""
        from softswitch.b2bua.records import leg_snapshot
        legs: list[LegSnapshot] = [leg_snapshot(leg, dialogs) for leg in self.legs]
        return CallSnapshot(
            uuid=self.uuid, call_id=self.call_id, state=self.state.value,
            caller=self.caller.user, caller_name=self.caller.display_name,
            dialled=self.dialled, context=self.caller.context, trunk=self.trunk,
            callee=self.callee, rule=self.rule, started=self.started, answered=self.answered,
            ended=self.ended, legs=tuple(legs),
            bridge=(self.a.name, self.b.name if self.b is not None else ""),
            timers=tuple((name, entry[0]) for name, entry in sorted(self._timers.items())),
            b_codes=tuple(self.b_codes), hangup_cause=self.hangup_cause,
            hangup_side=self.hangup_side,
            disposition=self.disposition.value if self.disposition is not None else None,
            sip_code=self.sip_code,
            # The caller's headers (header.*) are the INVITE's, not the call's state.
            variables=tuple(sorted((k, v) for k, v in self.variables.items()
                                   if not k.startswith("header."))))


REASONS = {486: "Busy Here", 480: "Temporarily Unavailable", 404: "Not Found",
           408: "Request Timeout", 603: "Decline", 503: "Service Unavailable"}


def best_failure(codes: Sequence[tuple[int, str]]) -> tuple[int, str]:
    """The response to give the caller when every fork failed (after RFC 3261 16.7).

    A 6xx wins (a global refusal), then busy, then the lowest class; 487s
    from forks we cancelled ourselves say nothing about the callee.
    """
    for code, reason in codes:
        if code >= 600:
            return code, reason or REASONS.get(code, "")
    for code, reason in codes:
        if code in BUSY_CODES:
            return code, reason or "Busy Here"
    useful = [(c, r) for c, r in codes if c != 487] or list(codes)
    useful.sort(key=lambda cr: (cr[0] // 100, cr[0] in (408, 503), cr[0]))
    code, reason = useful[0]
    return code, reason or REASONS.get(code, "")


def resend(old: Request) -> Request:
    """A copy of an INVITE to send again: a new branch and the next CSeq."""
    invite = Request("INVITE", old.uri, [list(h) for h in old.headers], old.body)
    via = old.top_via
    invite.set("Via", str(Via(via.transport, via.host, via.port,
                              {**via.params, "branch": new_branch()})))
    invite.set("CSeq", f"{old.cseq.seq + 1} INVITE")
    return invite
