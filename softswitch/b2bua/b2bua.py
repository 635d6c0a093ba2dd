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
from softswitch.b2bua.media import DirectMedia, MediaError, MediaSeam
from softswitch.b2bua.registry import CallRegistry
from softswitch.b2bua.replaces import dialog_ids
from softswitch.b2bua.session_timer import negotiate_as_uas
from softswitch.b2bua.snapshot import CallSnapshot
from softswitch.config import TrunkSettings
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
                 dns: DnsLocator | None = None, identity: CallerIdentity | None = None) -> None:
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
        timers = timers or TimerSettings()
        self.on_call_end = on_call_end
        self.on_call_changed = on_call_changed
        self.session_expires = session_expires
        self.min_se = min_se
        self.resolver = TargetResolver(registrar, trunks, clock, dns)
        self.settings = CallSettings(
            local_address=local_address, t1=timers.t1, t2=timers.t2,
            no_answer_timeout=no_answer_timeout, max_duration=max_duration,
            session_expires=session_expires, min_se=min_se,
            trunks={t.name: t for t in trunks}, account_context=self._account_context,
            find_dialog=self._find_dialog)
        self.calls: CallRegistry[CallContext] = CallRegistry()
        self._server_refs = 0
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
        self._run(ctx, effects)
        return machine

    def stop(self) -> None:
        """Stop every timer (the server stops); calls stay in the store for the restart."""
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
        machine = ctx.machine
        match effect:
            case ev.Respond(ref=ref, response=response):
                tx = ctx.servers.get(ref)
                if tx is not None:
                    tx.respond(response)
                    if response.status >= 200 and ref != machine.a_ref \
                            and response.cseq.method != "INVITE":
                        del ctx.servers[ref]
                    if ref == machine.a_ref and response.status >= 200:
                        self.calls.forget_invite(machine.uuid)
            case ev.SendRequest(ref=ref, request=request, peer=peer):
                tx = self.core.transactions.send_request(
                    request, peer,
                    on_response=lambda r, c=ctx, n=ref: self._feed(c, ev.ResponseReceived(n, r)),
                    on_timeout=lambda c=ctx, n=ref: self._feed(c, ev.RequestTimedOut(n)),
                    on_transport_error=lambda c=ctx, n=ref: self._feed(c, ev.TransportFailed(n)))
                if request.method == "INVITE":
                    ctx.invites[ref] = tx
            case ev.SendCancel(invite_ref=ref, cancel=cancel, peer=peer):
                self.core.transactions.send_request(cancel, peer, on_response=_ignore)
                invite = ctx.invites.get(ref)
                if invite is not None:
                    invite.cancel_sent()
            case ev.SendAck(request=request, peer=peer):
                self.core.send(request, peer)
            case ev.StartTimer(name=name, delay=delay):
                old = ctx.timers.get(name)
                if old is not None and old.active():
                    old.cancel()
                ctx.timers[name] = self.clock.callLater(delay, self._feed, ctx,
                                                        ev.TimerFired(name))
            case ev.StopTimer(name=name):
                timer = ctx.timers.pop(name, None)
                if timer is not None and timer.active():
                    timer.cancel()
            case ev.Resolve(ref=ref, target=target, domain=domain):
                self._resolve(ctx, ref, self.resolver.resolve(target, domain))
            case ev.MediaOffer() | ev.MediaAnswer():
                self._media(ctx, effect)
            case ev.ReleaseMedia(leg=leg):
                self.media.release(machine.uuid, leg)
            case ev.DialogOpened(dialog_id=dialog_id):
                self.calls.open_dialog(machine.uuid, dialog_id)
            case ev.DialogClosed(dialog_id=dialog_id):
                self.calls.close_dialog(machine.uuid, dialog_id)
            case ev.CallChanged(snapshot=snapshot):
                if self.on_call_changed is not None:
                    self.on_call_changed(snapshot)
            case ev.CallEnded(snapshot=snapshot):
                if self.on_call_end is not None:
                    self.on_call_end(snapshot)
            case ev.OtherCall(uuid=uuid, effects=effects):
                other = self.calls.get(uuid)
                if other is not None:
                    self._run(other, list(effects))
            case ev.Log(event=event, fields=fields, level=level):
                getattr(self.log, level)(event, **dict(fields))

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
        ask = self.media.offer if isinstance(effect, ev.MediaOffer) else self.media.answer
        ref = effect.ref
        try:
            result = ask(ctx.machine.uuid, effect.source, effect.sink, effect.body,
                         effect.content_type)
        except MediaError as exc:
            self._feed(ctx, ev.MediaFailed(ref, exc.status, exc.reason))
            return
        if isinstance(result, Deferred):
            def failed(failure: Failure) -> None:
                error = failure.value
                if isinstance(error, MediaError):
                    self._feed(ctx, ev.MediaFailed(ref, error.status, error.reason))
                else:
                    self.log.error("media_failed", call=ctx.machine.uuid, error=str(error))
                    self._feed(ctx, ev.MediaFailed(ref, 503, "Media Unavailable"))

            result.addCallbacks(lambda body: self._feed(ctx, ev.MediaReady(ref, body)), failed)
            return
        self._feed(ctx, ev.MediaReady(ref, result))


def _ignore(response: Response) -> None:
    return None
