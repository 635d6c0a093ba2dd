"""The B2BUA glue: from the SIP core to call machines and back.

Thin on purpose. It takes new INVITEs (identifies the caller, answers 422
for a too short Session-Expires, hands an INVITE with Replaces to the call
it names), finds the call of every in-dialog request, ACK, CANCEL and 2xx
retransmission through the `CallRegistry`, feeds each call's machine its
events one at a time, and carries out the effects: responses through the
server transactions, requests through client transactions, timers on the
reactor, targets through the `TargetResolver` (bindings, trunks, RFC 3263),
SDP through the media seam, and the call's snapshots to the stores.
Every decision is the machine's (`machine.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from softswitch.b2bua import events as ev
from softswitch.b2bua.dialing import LocalAddress, Resolution, TargetResolver
from softswitch.b2bua.legs import Leg
from softswitch.b2bua.machine import CallMachine, CallSettings
from softswitch.b2bua.media import DirectMedia, MediaChooser, MediaError, MediaHost, MediaSeam
from softswitch.b2bua.registry import CallRegistry
from softswitch.b2bua.replaces import dialog_ids
from softswitch.b2bua.session_timer import negotiate_as_uas
from softswitch.b2bua.snapshot import CallSnapshot
from softswitch.config import TrunkSettings
from softswitch.fraud.policy import CallPolicy
from softswitch.identity import CallerIdentity
from softswitch.logs import get_logger
from softswitch.registrar import Registrar
from softswitch.sip.message import Request, Response, make_response, new_tag
from softswitch.sip.peer import Peer
from softswitch.sip.transaction import ClientTransaction, ServerTransaction, TimerSettings
from softswitch.transport.dns import DnsLocator


@dataclass(slots=True, eq=False)
class CallContext:
    """What the glue keeps for one call: its machine and the I/O handles of its effects."""

    machine: CallMachine
    servers: dict[int, ServerTransaction] = field(default_factory=dict)
    invites: dict[int, ClientTransaction] = field(default_factory=dict)  # for CANCEL
    timers: dict[str, Any] = field(default_factory=dict)
    queue: list[ev.Event] = field(default_factory=list)  # short: a list beats a deque's 600 bytes
    busy: bool = False
    gone: bool = False


class B2BUA:
    def __init__(self, core: Any, registrar: Registrar, plan: Callable[[], Any],
                 local_address: LocalAddress, trunks: list[TrunkSettings], clock: Any,
                 *, timers: TimerSettings | None = None, media: MediaSeam | None = None,
                 on_call_end: Callable[[CallSnapshot], None] | None = None,
                 on_call_changed: Callable[[CallSnapshot], None] | None = None,
                 no_answer_timeout: float = 60.0, max_duration: float = 0.0,
                 session_expires: int = 1800, min_se: int = 90,
                 dns: DnsLocator | None = None, identity: CallerIdentity | None = None,
                 media_choice: MediaChooser | None = None,
                 policy: CallPolicy | None = None) -> None:
        self.core = core
        self.registrar = registrar
        self.plan = plan
        self.trunks = trunks
        # Who calls (accounts, trunks by ACL or credentials); the service
        # passes one sharing the registrar's directory and authenticator.
        self.identity = identity or CallerIdentity(
            lambda: registrar.directory, registrar.auth, trunks, local_names=registrar.local_names)
        self.clock = clock
        self.media = media or DirectMedia()
        # Relayed or direct media per call (softswitch.relay.choice); None: `media` for all.
        self.media_choice = media_choice
        timers = timers or TimerSettings()
        self.on_call_end = on_call_end
        self.on_call_changed = on_call_changed
        self.session_expires = session_expires
        self.min_se = min_se
        self.resolver = TargetResolver(registrar, trunks, clock, dns)
        # Destination classes and call limits; told when each call ends.
        self.policy = policy
        self.settings = CallSettings(
            local_address=local_address, t1=timers.t1, t2=timers.t2,
            no_answer_timeout=no_answer_timeout, max_duration=max_duration,
            session_expires=session_expires, min_se=min_se,
            trunks={t.name: t for t in trunks}, account_context=self._account_context,
            find_dialog=self._find_dialog,
            media_passthrough=isinstance(self.media, DirectMedia) and media_choice is None,
            dial_policy=policy.check if policy is not None else None)
        self.calls: CallRegistry[CallContext] = CallRegistry()
        self._doers: dict[type, Callable[[CallContext, Any], None]] = {
            ev.Respond: self._respond, ev.SendRequest: self._send_request,
            ev.SendCancel: self._send_cancel, ev.SendAck: self._send_ack,
            ev.StartTimer: self._start_timer, ev.StopTimer: self._stop_timer,
            ev.Resolve: self._resolve_target, ev.MediaOffer: self._media,
            ev.MediaAnswer: self._media, ev.HostMedia: self._host_media,
            ev.MediaCommand: self._media_command, ev.ReleaseMedia: self._release_media,
            ev.DialogOpened: self._dialog_opened, ev.DialogClosed: self._dialog_closed,
            ev.CallChanged: self._call_changed, ev.CallEnded: self._call_ended,
            ev.OtherCall: self._other_call, ev.Log: self._log}
        self._server_refs = 0
        self.calls_started = 0  # calls given a machine since start (metrics)
        self.log = get_logger("softswitch.b2bua")

    def install(self) -> None:
        """Take new INVITEs, in-dialog requests, CANCEL, ACK and stray 2xx from the SIP core.

        A request of these methods outside a dialog, other than INVITE, gets
        the core's 481. In a dialog OPTIONS is the other party's business and
        is relayed; outside one the core answers it.
        """
        core = self.core
        core.route("INVITE", self._new_call, in_dialog=False)
        for method in ("INVITE", "BYE", "UPDATE", "INFO", "REFER", "NOTIFY", "PRACK", "OPTIONS"):
            core.route(method, self.in_dialog, in_dialog=True)
        core.route("CANCEL", self.on_cancel)
        core.add_ack_handler(self.on_ack)
        core.add_stray_response_handler(self.on_stray_response)

    # -- look-ups the machines use ---------------------------------------------------------

    def _account_context(self, user: str, domain: str | None) -> str | None:
        account = self.registrar.directory.find(user, domain)
        return account.context if account is not None else None

    def _find_dialog(self, replaces: str) -> tuple[CallMachine, Leg] | None:
        for dialog_id in dialog_ids(replaces):
            ctx = self.calls.by_dialog(dialog_id)
            if ctx is not None:
                leg = ctx.machine.leg_of(dialog_id)
                if leg is not None:
                    return ctx.machine, leg
        return None

    # -- requests from the core -------------------------------------------------------------

    def in_dialog(self, tx: ServerTransaction, request: Request) -> None:
        ctx = self.calls.by_dialog((request.call_id, request.to_tag or "",
                                    request.from_tag or ""))
        if ctx is None:
            tx.respond(make_response(request, 481))
            return
        self._feed(ctx, ev.RequestReceived(self._server(ctx, tx), request, tx.source))

    def _server(self, ctx: CallContext, tx: ServerTransaction) -> int:
        self._server_refs += 1
        ctx.servers[self._server_refs] = tx
        return self._server_refs

    def _new_call(self, tx: ServerTransaction, request: Request) -> None:
        now = self.clock.seconds()
        caller = self.identity.identify(request, tx.source, now)
        if isinstance(caller, Response):
            tx.respond(caller)
            return
        dest = self.identity.dialled(request, tx.source, caller)
        replaces = request.get("replaces")
        if replaces is not None:
            found = self._find_dialog(replaces)
            ctx = self.calls.by_dialog(
                found[1].dialog.id) if found is not None and found[1].dialog else None
            if ctx is None:
                tx.respond(make_response(request, 481, "Replaced dialog not found",
                                         to_tag=new_tag()))
                return
            self._feed(ctx, ev.ReplacingInvite(self._server(ctx, tx), request, tx.source,
                                               caller.user))
            return
        negotiation = negotiate_as_uas(request, self.session_expires, self.min_se)
        if isinstance(negotiation, int):
            too_small = make_response(request, 422, to_tag=new_tag())
            too_small.add("Min-SE", str(negotiation))
            tx.respond(too_small)
            return
        self._server_refs += 1
        ref = self._server_refs
        if caller.domain is None:
            # Trunk calls: our own URIs (From of the B-legs) in the default domain.
            caller = replace(caller, domain=self.identity.default_domain())
        machine, effects = CallMachine.incoming(self.settings, ref, request, tx.source, caller,
                                                dest, self.plan(), negotiation, now)
        self.calls_started += 1
        ctx = CallContext(machine)
        ctx.servers[ref] = tx
        self.calls.add(machine.uuid, ctx, invite_key=id(tx))
        self._run(ctx, effects)

    def on_cancel(self, invite_tx: ServerTransaction, cancel: Request) -> None:
        ctx = self.calls.by_invite(id(invite_tx))
        if ctx is None:
            if invite_tx.is_pending:
                invite_tx.respond(make_response(invite_tx.request, 487, to_tag=new_tag()))
            return
        self._feed(ctx, ev.CancelReceived())

    def on_ack(self, request: Request, source: Peer) -> bool:
        ctx = self.calls.by_dialog((request.call_id, request.to_tag or "",
                                    request.from_tag or ""))
        if ctx is None:
            return False
        self._feed(ctx, ev.AckReceived(request))
        return True

    def on_stray_response(self, response: Response, source: Peer) -> bool:
        ctx = self.calls.by_dialog((response.call_id, response.from_tag or "",
                                    response.to_tag or ""))
        if ctx is None:
            return False
        self._feed(ctx, ev.StrayResponse(response))
        return True

    # -- calls that outlived a restart --------------------------------------------------------

    def restore(self, snapshot: CallSnapshot) -> CallMachine | None:
        """Take back an established call saved before a restart."""
        try:
            machine, effects = CallMachine.restore(self.settings, snapshot, self.plan(),
                                                   self.clock.seconds())
        except (ValueError, KeyError) as exc:
            self.log.error("call_restore_failed", call=snapshot.uuid, error=str(exc))
            return None
        ctx = CallContext(machine)
        self.calls.add(machine.uuid, ctx)
        if self.media_choice is not None:
            # Back on its saved relay now, not at its next SDP: its figures are
            # polled, and its end deletes it there (else the relay keeps it).
            self._seam(ctx)
        self._run(ctx, effects)
        return machine

    def hang_up(self, uuid: str, cause: str) -> bool:
        """End call `uuid` now (an operator, a media timeout): BYE on both legs
        of an established call, 503 to a call still ringing. False if unknown."""
        ctx = self.calls.get(uuid)
        if ctx is None or ctx.machine.finished:
            return False
        self._feed(ctx, ev.Shutdown(cause))
        return True

    def media_event(self, uuid: str, event: ev.MediaEvent) -> bool:
        """What a relay reports about a party it hosts; False if the call is gone."""
        ctx = self.calls.get(uuid)
        if ctx is None or ctx.machine.finished:
            return False
        self._feed(ctx, event)
        return True

    def live_calls(self) -> list[CallSnapshot]:
        """A snapshot of every call in progress (for listings; not the store's)."""
        return [ctx.machine.snapshot() for ctx in self.calls if not ctx.machine.finished]

    def stop(self) -> None:
        """The server stops: calls not yet up end (503, forks CANCELled, a CDR);
        established ones stay in the store for the restart. Then every timer stops."""
        for ctx in self.calls:
            if not ctx.machine.established:
                self._feed(ctx, ev.Shutdown())
        for ctx in self.calls:
            for timer in ctx.timers.values():
                if timer.active():
                    timer.cancel()
            ctx.timers.clear()

    # -- feeding a machine, carrying out its effects -------------------------------------------

    def _feed(self, ctx: CallContext, event: ev.Event) -> None:
        """One event at a time per call: events caused by effects wait their turn."""
        if ctx.gone:
            return
        ctx.queue.append(event)
        if ctx.busy:
            return
        ctx.busy = True
        try:
            while ctx.queue and not ctx.gone:
                effects = ctx.machine.handle(ctx.queue.pop(0), self.clock.seconds())
                self._carry_out(ctx, effects)
        finally:
            ctx.busy = False
        self._forget_if_done(ctx)

    def _run(self, ctx: CallContext, effects: list[ev.Effect]) -> None:
        ctx.busy = True
        try:
            self._carry_out(ctx, effects)
        finally:
            ctx.busy = False
        if ctx.queue:
            self._feed(ctx, ctx.queue.pop(0))
        else:
            self._forget_if_done(ctx)

    def _forget_if_done(self, ctx: CallContext) -> None:
        if ctx.gone or not ctx.machine.finished or ctx.busy:
            return
        ctx.gone = True
        for timer in ctx.timers.values():
            if timer.active():
                timer.cancel()
        # Drop the transaction <-> call cycles (callbacks capture the
        # context), so a finished call is freed by reference counting.
        ctx.timers.clear()
        ctx.servers.clear()
        ctx.invites.clear()
        ctx.queue.clear()
        self.calls.remove(ctx.machine.uuid)

    def _carry_out(self, ctx: CallContext, effects: list[ev.Effect]) -> None:
        for effect in effects:
            self._do(ctx, effect)

    def _do(self, ctx: CallContext, effect: ev.Effect) -> None:
        # One dictionary look-up per effect: a match statement would try the
        # classes in turn, and a call makes a few dozen effects.
        self._doers[type(effect)](ctx, effect)

    def _respond(self, ctx: CallContext, effect: ev.Respond) -> None:
        machine, ref, response = ctx.machine, effect.ref, effect.response
        tx = ctx.servers.get(ref)
        if tx is None:
            return
        tx.respond(response)
        if response.status >= 200:
            if ref == machine.a_ref:
                self.calls.forget_invite(machine.uuid)
            elif response.cseq.method != "INVITE":
                del ctx.servers[ref]

    def _send_request(self, ctx: CallContext, effect: ev.SendRequest) -> None:
        ref, request = effect.ref, effect.request
        tx = self.core.transactions.send_request(
            request, effect.peer,
            on_response=lambda r: self._feed(ctx, ev.ResponseReceived(ref, r)),
            on_timeout=lambda: self._feed(ctx, ev.RequestTimedOut(ref)),
            on_transport_error=lambda: self._feed(ctx, ev.TransportFailed(ref)))
        if request.method == "INVITE":
            ctx.invites[ref] = tx

    def _send_cancel(self, ctx: CallContext, effect: ev.SendCancel) -> None:
        self.core.transactions.send_request(effect.cancel, effect.peer, on_response=_ignore)
        invite = ctx.invites.get(effect.invite_ref)
        if invite is not None:
            invite.cancel_sent()

    def _send_ack(self, ctx: CallContext, effect: ev.SendAck) -> None:
        self.core.send(effect.request, effect.peer)

    def _start_timer(self, ctx: CallContext, effect: ev.StartTimer) -> None:
        old = ctx.timers.get(effect.name)
        if old is not None and old.active():
            old.cancel()
        ctx.timers[effect.name] = self.clock.callLater(effect.delay, self._feed, ctx,
                                                       ev.TimerFired(effect.name))

    def _stop_timer(self, ctx: CallContext, effect: ev.StopTimer) -> None:
        timer = ctx.timers.pop(effect.name, None)
        if timer is not None and timer.active():
            timer.cancel()

    def _resolve_target(self, ctx: CallContext, effect: ev.Resolve) -> None:
        self._resolve(ctx, effect.ref, self.resolver.resolve(effect.target, effect.domain))

    def _seam(self, ctx: CallContext) -> MediaSeam:
        if self.media_choice is None:
            return self.media
        seam, remember = self.media_choice.seam_for(ctx.machine)
        ctx.machine.remember(remember)
        return seam

    def _release_media(self, ctx: CallContext, effect: ev.ReleaseMedia) -> None:
        self._seam(ctx).release(ctx.machine.uuid, effect.leg)

    def _dialog_opened(self, ctx: CallContext, effect: ev.DialogOpened) -> None:
        self.calls.open_dialog(ctx.machine.uuid, effect.dialog_id)

    def _dialog_closed(self, ctx: CallContext, effect: ev.DialogClosed) -> None:
        self.calls.close_dialog(ctx.machine.uuid, effect.dialog_id)

    def _call_changed(self, ctx: CallContext, effect: ev.CallChanged) -> None:
        if self.on_call_changed is not None:
            self.on_call_changed(effect.snapshot)

    def _call_ended(self, ctx: CallContext, effect: ev.CallEnded) -> None:
        if self.policy is not None:
            self.policy.call_ended(effect.snapshot.uuid)
        if self.on_call_end is not None:
            self.on_call_end(effect.snapshot)

    def _other_call(self, ctx: CallContext, effect: ev.OtherCall) -> None:
        other = self.calls.get(effect.uuid)
        if other is not None:
            self._run(other, list(effect.effects))

    def _log(self, ctx: CallContext, effect: ev.Log) -> None:
        getattr(self.log, effect.level)(effect.event, **dict(effect.fields))

    def _resolve(self, ctx: CallContext, ref: int, resolution: Resolution) -> None:
        if resolution.pending is not None:
            def found(later: Resolution) -> None:
                self._resolve(ctx, ref, later)

            def failed(_: Failure) -> None:
                self._feed(ctx, ev.TargetResolved(ref, (), 503, "Lookup failed"))

            resolution.pending.addCallbacks(found, failed)
            return
        self._feed(ctx, ev.TargetResolved(ref, tuple(resolution.destinations),
                                          resolution.failure, resolution.reason))

    def _media(self, ctx: CallContext, effect: ev.MediaOffer | ev.MediaAnswer) -> None:
        seam = self._seam(ctx)
        ask = seam.offer if isinstance(effect, ev.MediaOffer) else seam.answer
        ref = effect.ref
        try:
            result = ask(ctx.machine.uuid, effect.source, effect.sink, effect.body,
                         effect.content_type)
        except MediaError as exc:
            self._feed(ctx, ev.MediaFailed(ref, exc.status, exc.reason))
            return
        self._media_result(ctx, ref, result)


    def _host_media(self, ctx: CallContext, effect: ev.HostMedia) -> None:
        seam = self._seam(ctx)
        if not isinstance(seam, MediaHost):
            # The call's media is direct (`media: direct`): no audio of our own.
            self.log.warning("media_action_refused", call=ctx.machine.uuid,
                             why="this call's media is direct, not through the relay")
            self._feed(ctx, ev.MediaFailed(effect.ref, 488, "Media actions need the media relay"))
            return
        try:
            result = seam.host(ctx.machine.uuid, effect.leg, effect.body, effect.content_type,
                               effect.answer)
        except MediaError as exc:
            self._feed(ctx, ev.MediaFailed(effect.ref, exc.status, exc.reason))
            return
        self._media_result(ctx, effect.ref, result)

    def _media_command(self, ctx: CallContext, effect: ev.MediaCommand) -> None:
        seam = self._seam(ctx)
        if not isinstance(seam, MediaHost):
            self._feed(ctx, ev.MediaFailed(effect.ref, 488, "Media actions need the media relay"))
            return
        done = seam.command(ctx.machine.uuid, effect.leg, effect.command, dict(effect.args))
        self._media_result(ctx, effect.ref, done.addCallback(lambda _: b""))

    def _media_result(self, ctx: CallContext, ref: int, result: bytes | Deferred[bytes]) -> None:
        """`MediaReady` or `MediaFailed` for effect `ref`, now or when `result` fires."""
        if not isinstance(result, Deferred):
            self._feed(ctx, ev.MediaReady(ref, result))
            return

        def failed(failure: Failure) -> None:
            error = failure.value
            if isinstance(error, MediaError):
                self._feed(ctx, ev.MediaFailed(ref, error.status, error.reason))
            else:
                self.log.error("media_failed", call=ctx.machine.uuid, error=str(error))
                self._feed(ctx, ev.MediaFailed(ref, 503, "Media Unavailable"))

        result.addCallbacks(lambda body: self._feed(ctx, ev.MediaReady(ref, body)), failed)


def _ignore(response: Response) -> None:
    return None
