"""The B2BUA: runs the dialplan for each new INVITE and relays between the legs.

RFC 3261 sections 13-15 on both sides: the caller's INVITE is authenticated
(digest, like REGISTER) or accepted from a trunk's addresses; the dialplan
decision's actions run in order; `dial` forks a B-leg INVITE to every
destination, relays provisional responses (with early media SDP), and the
first 2xx wins while the other forks are CANCELled with a Reason header
(RFC 3326). A failed dial runs its `on_busy`/`on_no_answer`/`on_failure`
branch, or the next action. After the answer: ACKs are relayed (so an offer
in a 2xx gets its answer from the caller's ACK), BYE from either side ends
both legs, re-INVITE/UPDATE/INFO are relayed with their bodies (491 on
glare), requests outside a known dialog get 481. Each call ends with a CDR.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from twisted.internet.defer import DeferredList

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
from softswitch.auth import Outcome
from softswitch.b2bua.call import ALeg, BLeg, Call, CallState, Disposition
from softswitch.b2bua.dialing import (
    ALLOW,
    Destination,
    LocalAddress,
    Resolution,
    TargetResolver,
    build_invite,
    contact_of,
)
from softswitch.b2bua.media import DirectMedia, MediaSeam
from softswitch.b2bua.records import dialog_from_state
from softswitch.b2bua.refresh import SessionRefresh
from softswitch.b2bua.relay import DialogRelay
from softswitch.b2bua.reliable import ReliableProvisionals
from softswitch.b2bua.replaces import DialogReplacement
from softswitch.b2bua.session_timer import (
    min_se_of,
    negotiate_as_uas,
)
from softswitch.b2bua.trunks import trunk_by_address, trunk_by_credentials
from softswitch.callstate import CallRecord
from softswitch.config import TrunkSettings
from softswitch.logs import get_logger
from softswitch.registrar import Registrar
from softswitch.sip.dialog import (
    CALL_COMPLETED_ELSEWHERE,
    Dialog,
    DialogRole,
    DialogState,
    DialogTable,
    RAck,
    Reason,
    ReliableVerdict,
    requires_100rel,
    supports_100rel,
)
from softswitch.sip.digest import authorization, first_challenge
from softswitch.sip.errors import MessageError
from softswitch.sip.headers import Via
from softswitch.sip.message import (
    Request,
    Response,
    make_response,
    new_branch,
    new_tag,
)
from softswitch.sip.peer import Peer
from softswitch.sip.transaction import ServerTransaction, TimerSettings, make_cancel
from softswitch.sip.uri import SipURI
from softswitch.transport.dns import DnsLocator

BUSY_CODES = frozenset({486, 600})
NO_ANSWER_CODES = frozenset({408, 480, 487})


@dataclass(slots=True, eq=False)
class DialAttempt:
    """One `dial` action in progress: its B-legs and its no-answer timer."""

    action: Dial
    legs: list[BLeg] = field(default_factory=list)
    timer: Any = None
    finished: bool = False
    timed_out: bool = False


@dataclass(slots=True, eq=False)
class Retransmission:
    """A 2xx we resend until its ACK (RFC 3261 13.3.1.4); `stop` on the ACK."""

    timer: Any = None
    stopped: bool = False

    def stop(self) -> None:
        self.stopped = True
        if self.timer is not None and self.timer.active():
            self.timer.cancel()


class B2BUA:
    def __init__(self, core: Any, registrar: Registrar, plan: Callable[[], Any],
                 local_address: LocalAddress, trunks: list[TrunkSettings], clock: Any,
                 *, timers: TimerSettings | None = None, media: MediaSeam | None = None,
                 on_call_end: Callable[[Call], None] | None = None,
                 on_call_confirmed: Callable[[Call], None] | None = None,
                 no_answer_timeout: float = 60.0, max_duration: float = 0.0,
                 session_expires: int = 1800, min_se: int = 90,
                 dns: DnsLocator | None = None) -> None:
        self.core = core
        self.registrar = registrar
        self.plan = plan
        self.local_address = local_address
        self.trunks = trunks
        self.clock = clock
        self.media = media or DirectMedia()
        self.timers = timers or TimerSettings()
        self.on_call_end = on_call_end
        self.on_call_confirmed = on_call_confirmed
        self.no_answer_timeout = no_answer_timeout
        self.max_duration = max_duration
        self.session_expires = session_expires
        self.min_se = min_se
        self.resolver = TargetResolver(registrar, trunks, clock, dns)
        self.dialogs = DialogTable()
        self.calls: dict[str, Call] = {}  # by uuid
        self._by_dialog: dict[tuple[str, str, str], Call] = {}
        self._by_invite_tx: dict[int, Call] = {}
        self._attempts: dict[int, DialAttempt] = {}  # id(BLeg) -> attempt
        self.relay = DialogRelay(self)
        self.sessions = SessionRefresh(self)
        self.replacing = DialogReplacement(self)
        self._awaiting_ack: dict[tuple[str, str, str], Retransmission] = {}
        self.log = get_logger("softswitch.b2bua")

    def install(self) -> None:
        """Take INVITE, BYE, UPDATE, INFO, CANCEL and ACK from the SIP core."""
        core = self.core
        for method in ("INVITE", "BYE", "UPDATE", "INFO", "REFER", "NOTIFY", "PRACK"):
            core.handlers[method] = self.on_request
        core.handlers["CANCEL"] = self.on_cancel
        options = core.handlers.get("OPTIONS")

        def on_options(tx: ServerTransaction, request: Request) -> None:
            # In a dialog OPTIONS is the other party's business: relay it.
            if request.to_tag is not None:
                self.relay.handle(tx, request)
            elif options is not None:
                options(tx, request)

        core.handlers["OPTIONS"] = on_options
        core.ack_handler = self.on_ack
        core.response_handler = self.on_stray_response

    # -- new calls ------------------------------------------------------------------

    def on_request(self, tx: ServerTransaction, request: Request) -> None:
        if request.to_tag is not None:
            self.relay.handle(tx, request)
        elif request.method == "INVITE":
            self._new_call(tx, request)
        else:
            tx.respond(make_response(request, 481, to_tag=new_tag()))

    def _new_call(self, tx: ServerTransaction, request: Request) -> None:
        now = self.clock.seconds()
        trunk = trunk_by_address(self.trunks, tx.source)
        from_uri = request.from_addr.uri
        dest = request.uri.user if isinstance(request.uri, SipURI) else None
        if dest is None:
            tx.respond(make_response(request, 404, "No number dialled", to_tag=new_tag()))
            return
        dest = unquote(dest)
        if trunk is not None:
            to_uri = request.to_addr.uri
            if dest == trunk.username and isinstance(to_uri, SipURI) and to_uri.user:
                # A provider we register to calls our registered Contact
                # (sip:trunkuser@us); the dialled number is in To.
                dest = unquote(to_uri.user)
            caller = from_uri.user if isinstance(from_uri, SipURI) and from_uri.user else ""
            caller_name = request.from_addr.display_name or ""
            context, groups, domain = trunk.context, frozenset[str](), None
        else:
            if not isinstance(from_uri, SipURI) or from_uri.user is None:
                tx.respond(make_response(request, 403, to_tag=new_tag()))
                return
            domain_obj = self.registrar.domain_for(from_uri.host) \
                or self.registrar.directory.default_domain
            if domain_obj is None:
                tx.respond(make_response(request, 403, to_tag=new_tag()))
                return
            account = domain_obj.accounts.get(unquote(from_uri.user))
            by_credentials = None if account is not None \
                else trunk_by_credentials(self.trunks, request, domain_obj)
            checked = account if by_credentials is None else by_credentials[1]
            result = self.registrar.auth.check(request, checked, domain_obj, now)
            if result.outcome is not Outcome.OK:
                assert result.response is not None
                failed = result.outcome is not Outcome.CHALLENGE  # a challenge is routine
                (self.log.warning if failed else self.log.debug)(
                    "auth_failed" if failed else "invite_auth", method="INVITE",
                    outcome=result.outcome.value, reason=result.reason,
                    user=from_uri.user, call_id=request.call_id, source=tx.source.host,
                    peer=str(tx.source))
                tx.respond(result.response)
                return
            if by_credentials is not None:
                # A trunk that authenticates instead of being known by address.
                trunk = by_credentials[0]
                caller = from_uri.user
                caller_name = request.from_addr.display_name or ""
                context, groups, domain = trunk.context, frozenset[str](), None
            else:
                assert account is not None
                caller = account.user
                caller_name = account.display_name or request.from_addr.display_name or ""
                context, groups, domain = (account.context, frozenset(account.groups),
                                           domain_obj.name)
        replaces = request.get("replaces")
        if replaces is not None:
            self.replacing.replace(tx, request, replaces, caller)
            return
        negotiation = negotiate_as_uas(request, self.session_expires, self.min_se)
        if isinstance(negotiation, int):
            too_small = make_response(request, 422, to_tag=new_tag())
            too_small.add("Min-SE", str(negotiation))
            tx.respond(too_small)
            return
        tx.respond(make_response(request, 100))
        a = ALeg(request, tx, tx.source, new_tag())
        call = Call(a, caller, caller_name or None, dest, context, trunk.name if trunk else None,
                    started=now)
        call.a_session = negotiation
        call.variables["domain"] = domain or (self.registrar.directory.default_domain.name
                                              if self.registrar.directory.default_domain else "")
        self.calls[call.uuid] = call
        self._by_invite_tx[id(tx)] = call
        tx.on_timeout = lambda: self._end(call, "system", "no ACK from the caller")
        plan = self.plan()
        if plan is None:
            self._fail(call, 503, "No dialplan")
            return
        headers = {name: value for name, value in request.headers}
        facts = CallFacts(context=context, dest=dest, caller=caller, caller_name=caller_name,
                          trunk=call.trunk, groups=groups, headers=headers)
        call.plan, call.facts = plan, facts
        decision = plan.route(facts)
        call.variables.update(decision.variables)
        self.log.info("call_routed", call_id=request.call_id, call=call.uuid, caller=caller,
                      dest=dest, context=context, trunk=call.trunk,
                      actions=len(decision.actions), matched=decision.matched)
        call.queue = collections.deque(decision.actions)
        self._run(call)

    # -- running the actions --------------------------------------------------------------

    def _run(self, call: Call) -> None:
        queue: collections.deque[Any] = call.queue
        while queue and call.state is CallState.ROUTING:
            action = queue.popleft()
            match action:
                case SetVariables(variables=variables):
                    call.variables.update(dict(variables))
                case Dial():
                    if self._dial(call, action):
                        return
                case Hangup(code=code, reason=reason):
                    self._fail(call, code, reason)
                    return
                case Goto():
                    decision = call.plan.resume(call.facts, action, call.variables)
                    call.variables.update(decision.variables)
                    queue.clear()
                    queue.extend(decision.actions)
                case Transfer(target=target):
                    self._redirect(call, target)
                    return
                case Voicemail():
                    self._fail(call, 480, "Voicemail not available")
                    return
                case Answer() | Echo() | Playback() | Record():
                    # These need audio from the server itself: the media relay.
                    self._fail(call, 488, "Media actions need the media relay")
                    return
                case _:
                    self._fail(call, 500, "Unknown action")
                    return
        if call.state is CallState.ROUTING:
            code, reason = call.last_failure
            self._fail(call, code, reason)

    def _redirect(self, call: Call, target: Any) -> None:
        match target:
            case UserTarget(user=user):
                uri = f"sip:{user}@{call.variables.get('domain', '')}"
            case TrunkTarget(number=number):
                uri = f"sip:{number}@{call.variables.get('domain', '')}"
            case UriTarget(uri=text):
                uri = text
            case _:
                uri = ""
        response = make_response(call.a.invite, 302, to_tag=call.a.local_tag)
        response.add("Contact", f"<{uri}>")
        self._final_to_a(call, response)
        self._end(call, "system", "redirected", Disposition.FAILED)

    def _caller_id(self, call: Call, action: Dial) -> tuple[str, str | None]:
        number = call.variables.get("caller_id_number") or call.caller
        name = call.variables.get("caller_id_name") or call.caller_name
        if action.caller_id is not None:
            number = action.caller_id.number or number
            name = action.caller_id.name or name
        return number, name

    def _dial(self, call: Call, action: Dial) -> bool:
        """Start ringing; False when nothing could be rung (the failure is recorded)."""
        domain = call.variables.get("domain", "")
        resolutions = [self.resolver.resolve(target, domain) for target in action.targets]
        pending = [r.pending for r in resolutions if r.pending is not None]
        if pending:
            # Host names to look up first (RFC 3263); the call waits in ROUTING.
            def resolved(results: list[Any]) -> None:
                if call.state is not CallState.ROUTING:
                    return  # cancelled meanwhile
                done = [r for r in resolutions if r.pending is None]
                done += [value for ok, value in results if ok]
                self._dial_resolved(call, action, done)
                if call.state is CallState.ROUTING:
                    self._run(call)

            DeferredList(pending, consumeErrors=True).addCallback(resolved)
            return True
        self._dial_resolved(call, action, resolutions)
        return call.state is not CallState.ROUTING

    def _dial_resolved(self, call: Call, action: Dial, resolutions: list[Resolution]) -> None:
        domain = call.variables.get("domain", "")
        destinations: list[Destination] = []
        codes: list[tuple[int, str]] = []
        for resolution in resolutions:
            destinations += resolution.destinations
            if resolution.failure is not None:
                codes.append((resolution.failure, resolution.reason))
        if not destinations:
            code, reason = _best_failure(codes) if codes else (404, "Not Found")
            self._dial_failed(call, action, code, reason, rang=False)
            return
        attempt = DialAttempt(action)
        caller, caller_name = self._caller_id(call, action)
        a_invite = call.a.invite
        content_type = a_invite.get("content-type")
        for dest in destinations:
            via_host, via_port = self.local_address(dest.peer)
            body = self.media.offer(call.uuid, "a", dest.label, a_invite.body, content_type)
            invite = build_invite(a_invite, dest, caller=caller, caller_name=caller_name,
                                  from_host=domain or via_host, via_host=via_host,
                                  via_port=via_port, body=body, content_type=content_type,
                                  extra_headers=[*self._timer_headers("uac"),
                                                 *action.headers])
            call.sdp_to["b"] = body
            leg = BLeg(invite, dest.peer, dest.label, trunk=dest.trunk,
                       alternates=list(dest.alternates))
            attempt.legs.append(leg)
            call.b_legs.append(leg)
            self._attempts[id(leg)] = attempt
            leg.tx = self._send_invite(call, leg)
            if dest.trunk is not None and call.trunk is None:
                call.trunk = dest.trunk
        timeout = action.timeout if action.timeout is not None else self.no_answer_timeout
        attempt.timer = self.clock.callLater(timeout, self._dial_timeout, call, attempt)
        call.transition(CallState.DIALING)
        self.log.info("dialing", call=call.uuid, call_id=a_invite.call_id,
                      targets=[leg.target for leg in attempt.legs])

    def _timer_headers(self, refresher: str) -> list[tuple[str, str]]:
        return [("Supported", "timer, 100rel"),
                ("Session-Expires", f"{self.session_expires};refresher={refresher}"),
                ("Min-SE", str(self.min_se))]

    def _send_invite(self, call: Call, leg: BLeg) -> Any:
        assert leg.invite is not None
        def timed_out() -> None:
            if not self._fail_over(call, leg):
                self._b_failed(call, leg, 408, "Request Timeout")

        def unreachable() -> None:
            if not self._fail_over(call, leg):
                self._b_failed(call, leg, 503, "Service Unavailable")

        return self.core.transactions.send_request(
            leg.invite, leg.peer, on_response=lambda r: self._b_response(call, leg, r),
            on_timeout=timed_out, on_transport_error=unreachable)

    def _fail_over(self, call: Call, leg: BLeg) -> bool:
        """Send the INVITE to the next RFC 3263 target (4.3); False if none is left."""
        if not leg.alternates or leg.cancelled or leg.final_status is not None \
                or leg.got_provisional or leg.invite is None:
            return False
        peer = leg.alternates.pop(0)
        old = leg.invite
        via_host, via_port = self.local_address(peer)
        invite = Request("INVITE", old.uri, [list(h) for h in old.headers], old.body)
        invite.set("Via", str(Via(peer.transport.upper(), via_host, via_port,
                                  {"branch": new_branch(), "rport": None})))
        leg.invite, leg.peer = invite, peer
        self.log.info("fail_over", call=call.uuid, target=leg.target, peer=str(peer))
        leg.tx = self._send_invite(call, leg)
        return True

    def _dial_timeout(self, call: Call, attempt: DialAttempt) -> None:
        if attempt.finished or call.state is not CallState.DIALING:
            return
        attempt.timed_out = True
        for leg in attempt.legs:
            self._cancel_leg(call, leg, Reason("SIP", 480, "No answer"))
        self._finish_attempt(call, attempt, 480, "No Answer")

    def _dial_failed(self, call: Call, action: Dial, code: int, reason: str, *,
                     rang: bool = True, timed_out: bool = False) -> None:
        """A dial ended without an answer: its branch, or the next action."""
        if code in BUSY_CODES:
            handler = action.on_busy
        elif code in NO_ANSWER_CODES:
            handler = action.on_no_answer
        else:
            handler = None
        if handler is None:
            handler = action.on_failure
        call.last_failure = (code, reason)
        if not rang:
            call.dial_result = (Disposition.FAILED, "system")  # nothing could be rung
        elif code in BUSY_CODES:
            call.dial_result = (Disposition.BUSY, "callee")
        elif code in NO_ANSWER_CODES:
            call.dial_result = (Disposition.NO_ANSWER, "system" if timed_out else "callee")
        else:
            call.dial_result = (Disposition.FAILED, "callee")
        if call.state is CallState.DIALING:
            call.transition(CallState.ROUTING)
        queue: collections.deque[Any] = call.queue
        if handler is not None:
            queue.clear()
            queue.extend(handler)
        self.log.info("dial_failed", call=call.uuid, code=code, reason=reason,
                      branch=handler is not None)

    def _finish_attempt(self, call: Call, attempt: DialAttempt, code: int, reason: str) -> None:
        if attempt.finished:
            return
        attempt.finished = True
        if attempt.timer is not None and attempt.timer.active():
            attempt.timer.cancel()
        self._dial_failed(call, attempt.action, code, reason, timed_out=attempt.timed_out)
        self._run(call)

    # -- B-leg responses ----------------------------------------------------------------

    def _b_response(self, call: Call, leg: BLeg, response: Response) -> None:
        status = response.status
        if status < 200:
            # RFC 3261 9.1: any provisional response, 100 included, allows CANCEL.
            leg.got_provisional = True
            if status > 100 and requires_100rel(response) and not self._prack_b(leg, response):
                return  # a retransmission or out of order: already handled
            if leg.cancel_pending:
                self._send_cancel(leg)
            elif status > 100 and call.state is CallState.DIALING and not leg.cancelled:
                self._provisional_to_a(call, leg, response)
            return
        if status < 300:
            self._b_answered(call, leg, response)
            return
        if status in (401, 407) and self._authenticate(call, leg, response):
            return
        if status == 503 and self._fail_over(call, leg):
            return
        if status == 422 and self._raise_session_expires(call, leg, response):
            return
        self._b_failed(call, leg, status, response.reason)

    def _raise_session_expires(self, call: Call, leg: BLeg, response: Response) -> bool:
        """422: send the INVITE again with the callee's Min-SE (RFC 4028 6)."""
        try:
            wanted = min_se_of(response)
        except MessageError:
            return False
        if wanted is None or leg.invite is None or leg.cancelled or leg.session_retries >= 1:
            return False
        leg.session_retries += 1
        leg.invite = self._resend(leg.invite)
        leg.invite.set("Session-Expires", f"{wanted};refresher=uac")
        leg.invite.set("Min-SE", str(wanted))
        leg.got_provisional = False
        leg.tx = self._send_invite(call, leg)
        return True

    def _resend(self, old: Request) -> Request:
        """A copy of an INVITE to send again: a new branch and the next CSeq."""
        invite = Request("INVITE", old.uri, [list(h) for h in old.headers], old.body)
        via = old.top_via
        invite.set("Via", str(Via(via.transport, via.host, via.port,
                                  {**via.params, "branch": new_branch()})))
        invite.set("CSeq", f"{old.cseq.seq + 1} INVITE")
        return invite

    def _authenticate(self, call: Call, leg: BLeg, response: Response) -> bool:
        """Send the INVITE again with the trunk's credentials (RFC 3261 22.2)."""
        trunk = self.resolver.trunks.get(leg.trunk) if leg.trunk else None
        if trunk is None or trunk.username is None or trunk.password is None \
                or leg.auth_tries >= 1 or leg.cancelled or leg.invite is None:
            return False
        found = first_challenge(response)
        if found is None:
            return False
        challenge, proxy = found
        invite = self._resend(leg.invite)
        invite.add("Proxy-Authorization" if proxy else "Authorization",
                   authorization(challenge, "INVITE", str(invite.uri), trunk.username,
                                 trunk.password, cnonce=new_tag()))
        leg.invite = invite
        leg.auth_tries += 1
        leg.got_provisional = False
        leg.tx = self._send_invite(call, leg)
        return True

    def _provisional_to_a(self, call: Call, leg: BLeg, response: Response) -> None:
        a = call.a
        relayed = make_response(a.invite, response.status, response.reason, to_tag=a.local_tag)
        if response.status == 183 and not response.body:
            return  # nothing to relay beyond the 180 the caller already has
        via_host, via_port = self.local_address(a.source)
        relayed.add("Contact", str(contact_of(via_host, via_port, a.source.transport)))
        if response.body:
            body = self.media.answer(call.uuid, leg.target, "a", response.body,
                                     response.get("content-type"))
            relayed.set_body(body, response.get("content-type"))
        if supports_100rel(a.invite):
            # RFC 3262 3: reliable, in the early dialog this response creates.
            dialog = self._a_dialog(call)
            relayed.add("Require", "100rel")
            relayed.add("RSeq", str(dialog.next_rseq()))
            if call.reliable is None:
                call.reliable = ReliableProvisionals(self.clock, self.timers.t1, self.timers.t2,
                                                     a.tx.respond)
            call.reliable.send(relayed)
            return
        a.tx.respond(relayed)

    def _a_dialog(self, call: Call) -> Dialog:
        """The caller's dialog, created early by a reliable 18x or by the 2xx."""
        a = call.a
        if a.dialog is None:
            via_host, via_port = self.local_address(a.source)
            a.dialog = Dialog.from_uas(a.invite, a.local_tag,
                                       contact_of(via_host, via_port, a.source.transport),
                                       peer=a.source)
            self.dialogs.add(a.dialog)
            self._by_dialog[a.dialog.id] = call
        return a.dialog

    def _b_answered(self, call: Call, leg: BLeg, response: Response) -> None:
        if leg is call.winner:
            # A retransmitted 2xx: our ACK got lost (or is still held).
            if leg.ack is not None:
                self.core.send(leg.ack, leg.peer)
            return
        assert leg.invite is not None
        early = leg.early.pop(response.to_tag or "", None)
        if early is not None:
            # The early dialog PRACKs went on: keep it, with its CSeq.
            early.receive_response(response)
            dialog = early
        else:
            dialog = Dialog.from_uac(leg.invite, response, peer=leg.peer)
        if call.winner is not None or call.state is not CallState.DIALING or leg.cancelled:
            # Another fork answered first, or the caller gave up: RFC 3261
            # 13.2.2.4 still wants an ACK, then this dialog ends with BYE.
            leg.final_status = response.status
            self._ack(leg, dialog, response)
            self._bye(dialog, Reason("SIP", 200, "Call completed elsewhere"))
            return
        leg.final_status = response.status
        leg.dialog = dialog
        leg.answer_2xx = response
        call.winner = leg
        call.callee = leg.target
        call.b_codes.append(response.status)
        self.dialogs.add(dialog)
        self._by_dialog[dialog.id] = call
        attempt = self._attempts.get(id(leg))
        if attempt is not None:
            attempt.finished = True
            if attempt.timer is not None and attempt.timer.active():
                attempt.timer.cancel()
        for other in call.b_legs:
            if other is not leg:
                self._cancel_leg(call, other, CALL_COMPLETED_ELSEWHERE)
        a = call.a
        if call.reliable is not None:
            call.reliable.stop()
        a_dialog = self._a_dialog(call)
        ok = make_response(a.invite, 200, to_tag=a.local_tag)
        ok.add("Contact", str(a_dialog.local_contact))
        ok.add("Allow", ALLOW)
        if response.body:
            body = self.media.answer(call.uuid, leg.target, "a", response.body,
                                     response.get("content-type"))
            ok.set_body(body, response.get("content-type"))
            call.sdp_to["a"] = body
        if call.a_session is not None:
            ok.add("Supported", "timer")
            ok.add("Session-Expires", str(call.a_session.expires))
            if call.a_session.require_timer:
                ok.add("Require", "timer")
        a_dialog.sent_response(ok)
        call.answered = self.clock.seconds()
        call.transition(CallState.ANSWERED)
        self._final_to_a(call, ok)
        a.retransmit = self._retransmit_2xx(a.tx, ok,
                                            lambda: self._hangup(call, "system", "no ACK"))
        if a.invite.body:
            # The offer was in the INVITE: B's 2xx held the answer, so B's
            # ACK carries nothing and need not wait for the caller's.
            self._ack(leg, dialog, response)
        self.log.info("call_answered", call=call.uuid, call_id=a.invite.call_id,
                      callee=leg.target)

    def _prack_b(self, leg: BLeg, response: Response) -> bool:
        """PRACK a reliable provisional from a B-leg (RFC 3262 4); False if not new."""
        tag = response.to_tag
        if tag is None or leg.invite is None:
            return True
        early = leg.early.get(tag)
        if early is None:
            early = leg.early[tag] = Dialog.from_uac(leg.invite, response, peer=leg.peer)
        if early.receive_reliable_provisional(response) is not ReliableVerdict.NEW:
            return False
        via_host, via_port = self.local_address(leg.peer)
        prack = early.create_request("PRACK", via_host=via_host, via_port=via_port,
                                     extra_headers=[("RAck", str(RAck.for_response(response)))])
        self.core.transactions.send_request(prack, leg.peer, on_response=lambda r: None)
        return True

    def _ack(self, leg: BLeg, dialog: Dialog, response: Response, body: bytes = b"",
             content_type: str | None = None) -> None:
        via_host, via_port = self.local_address(leg.peer)
        assert leg.invite is not None
        ack = dialog.create_ack(leg.invite, response, via_host=via_host, via_port=via_port,
                                body=body, content_type=content_type)
        leg.ack = ack
        self.core.send(ack, leg.peer)

    def _b_failed(self, call: Call, leg: BLeg, code: int, reason: str) -> None:
        if leg.final_status is not None:
            return
        leg.final_status = code
        call.b_codes.append(code)
        attempt = self._attempts.get(id(leg))
        if attempt is None or attempt.finished:
            return
        if any(b.final_status is None for b in attempt.legs):
            return
        codes = [(b.final_status or 500, "") for b in attempt.legs]
        best, _ = _best_failure(codes)
        text = reason if best == code else _REASONS.get(best, "")
        self._finish_attempt(call, attempt, best, text or reason)

    def _cancel_leg(self, call: Call, leg: BLeg, reason: Reason) -> None:
        if leg.final_status is not None or leg.cancelled:
            return
        leg.cancelled = True
        # The leg ends with the 487 its CANCEL asks for; recorded now, since
        # the CDR may be written before that 487 arrives.
        leg.final_status = 487
        call.b_codes.append(487)
        leg.cancel_reason = reason
        if leg.got_provisional:
            self._send_cancel(leg)
        else:
            # RFC 3261 9.1: no CANCEL before a provisional response.
            leg.cancel_pending = True

    def _send_cancel(self, leg: BLeg) -> None:
        leg.cancel_pending = False
        assert leg.invite is not None
        cancel = make_cancel(leg.invite)
        if leg.cancel_reason is not None:
            cancel.add("Reason", str(leg.cancel_reason))
        self.core.transactions.send_request(cancel, leg.peer, on_response=lambda r: None)
        if leg.tx is not None:
            leg.tx.cancel_sent()

    # -- answers to the caller ------------------------------------------------------------

    def _final_to_a(self, call: Call, response: Response) -> None:
        if call.reliable is not None:
            call.reliable.stop()
        call.a.final = response
        call.a.tx.respond(response)

    def _fail(self, call: Call, code: int, reason: str) -> None:
        response = make_response(call.a.invite, code, reason, to_tag=call.a.local_tag)
        self._final_to_a(call, response)
        disposition, side = call.dial_result or (Disposition.FAILED, "system")
        self._end(call, side, f"{code} {reason}", disposition)

    def _retransmit_2xx(self, tx: ServerTransaction, response: Response,
                        give_up: Callable[[], None]) -> Retransmission:
        """Resend a 2xx until its ACK arrives (RFC 3261 13.3.1.4)."""
        t1, t2 = self.timers.t1, self.timers.t2
        state = Retransmission()
        interval, elapsed = t1, 0.0

        def tick() -> None:
            nonlocal interval, elapsed
            if state.stopped:
                return
            elapsed += interval
            if elapsed >= 64 * t1:
                state.stopped = True
                give_up()
                return
            tx.respond(response)
            interval = min(2 * interval, t2)
            state.timer = self.clock.callLater(interval, tick)

        state.timer = self.clock.callLater(interval, tick)
        return state

    # -- CANCEL and ACK from the caller ----------------------------------------------------

    def on_cancel(self, invite_tx: ServerTransaction, cancel: Request) -> None:
        call = self._by_invite_tx.get(id(invite_tx))
        if call is None:
            if invite_tx.is_pending:
                invite_tx.respond(make_response(invite_tx.request, 487, to_tag=new_tag()))
            return
        if call.state not in (CallState.ROUTING, CallState.DIALING):
            return  # answered already: the caller will BYE
        for leg in call.b_legs:
            self._cancel_leg(call, leg, Reason("SIP", 487, "Caller cancelled"))
        for leg in call.b_legs:
            attempt = self._attempts.get(id(leg))
            if attempt is not None:
                attempt.finished = True
                if attempt.timer is not None and attempt.timer.active():
                    attempt.timer.cancel()
        response = make_response(call.a.invite, 487, to_tag=call.a.local_tag)
        self._final_to_a(call, response)
        self._end(call, "caller", "CANCEL", Disposition.CANCELLED)

    def on_ack(self, request: Request, source: Peer) -> None:
        dialog = self.dialogs.find(request)
        if dialog is None:
            return
        waiting = self._awaiting_ack.pop(dialog.id, None)
        if waiting is not None:
            waiting.stop()
            return
        call = self._by_dialog.get(dialog.id)
        if call is None:
            return
        relay = self.relay.relays.get(dialog.id)
        if relay is not None and relay.held_2xx is not None \
                and request.cseq.seq == relay.request.cseq.seq:
            if relay.retransmit is not None:
                relay.retransmit.stop()
            self.relay.relay_ack(call, relay, request)
            return
        if call.state is CallState.ANSWERED and dialog is call.a.dialog:
            if call.a.retransmit is not None:
                call.a.retransmit.stop()
            call.transition(CallState.CONFIRMED)
            leg = call.winner
            if leg is not None and leg.dialog is not None and leg.ack is None:
                assert leg.answer_2xx is not None
                body = self.media.answer(call.uuid, "a", leg.target, request.body,
                                         request.get("content-type")) if request.body else b""
                self._ack(leg, leg.dialog, leg.answer_2xx, body, request.get("content-type"))
            self.sessions.start(call)
            if self.max_duration > 0:
                call.timers.append(self.clock.callLater(
                    self.max_duration, self._hangup, call, "system", "maximum call duration"))
            if self.on_call_confirmed is not None:
                self.on_call_confirmed(call)

    def on_stray_response(self, response: Response, source: Peer) -> None:
        """A 2xx retransmission after its transaction ended: ACK it again."""
        if not 200 <= response.status < 300 or response.cseq.method != "INVITE":
            return
        dialog = self.dialogs.find(response)
        call = self._by_dialog.get(dialog.id) if dialog is not None else None
        if call is None or call.winner is None or call.winner.dialog is not dialog:
            return
        if call.winner.ack is not None:
            self.core.send(call.winner.ack, call.winner.peer)

    # -- in-dialog requests -----------------------------------------------------------------

    # -- calls that outlived a restart -------------------------------------------------

    def restore(self, record: CallRecord) -> Call | None:
        """Take back an established call saved before a restart.

        Its dialogs are rebuilt from the saved state, so a BYE from either
        side still ends both legs and writes the CDR, and in-dialog requests
        are still relayed. Our CSeq jumps ahead: requests sent after the last
        save used numbers the store does not know.
        """
        try:
            a_dialog = dialog_from_state(record.a_leg, DialogRole.UAS, self.local_address)
            b_dialog = dialog_from_state(record.b_leg, DialogRole.UAC, self.local_address)
        except (MessageError, ValueError) as exc:
            self.log.error("call_restore_failed", call=record.uuid, error=str(exc))
            return None
        assert a_dialog.peer is not None and b_dialog.peer is not None
        a = ALeg(None, None, a_dialog.peer, a_dialog.local_tag, a_dialog)
        leg = BLeg(None, b_dialog.peer, record.callee, dialog=b_dialog, final_status=200)
        call = Call(a, record.caller, record.caller_name or None, record.dialled, record.context,
                    record.trunk, uuid=record.uuid, state=CallState.CONFIRMED, b_legs=[leg],
                    winner=leg, callee=record.callee, started=record.start,
                    answered=record.answer, b_codes=list(record.b_leg_codes))
        self.calls[call.uuid] = call
        for dialog in (a_dialog, b_dialog):
            self.dialogs.add(dialog)
            self._by_dialog[dialog.id] = call
        self.log.info("call_restored", call=call.uuid, call_id=call.call_id)
        return call

    # -- the end of a call --------------------------------------------------------------------

    def _bye(self, dialog: Dialog, reason: Reason | None = None) -> None:
        if dialog.peer is None or dialog.state is DialogState.TERMINATED:
            return
        via_host, via_port = self.local_address(dialog.peer)
        extra = [("Reason", str(reason))] if reason is not None else []
        try:
            bye = dialog.create_request("BYE", via_host=via_host, via_port=via_port,
                                        extra_headers=extra)
        except Exception as exc:  # noqa: BLE001 - a dialog that cannot send BYE any more
            self.log.info("bye_not_sent", error=str(exc))
            return
        dialog.terminate()
        self.core.transactions.send_request(bye, dialog.peer, on_response=lambda r: None)

    def _hangup(self, call: Call, side: str, cause: str) -> None:
        """End an answered call: BYE whichever legs are still up."""
        for dialog in (call.a.dialog, call.winner.dialog if call.winner else None):
            if dialog is not None:
                self._bye(dialog)
        self._end(call, side, cause, Disposition.ANSWERED)

    def _end(self, call: Call, side: str, cause: str,
             disposition: Disposition | None = None) -> None:
        if call.state is CallState.ENDED:
            return
        call.transition(CallState.ENDED)
        call.ended = self.clock.seconds()
        call.hangup_side = call.hangup_side or side
        call.hangup_cause = call.hangup_cause or cause
        if call.disposition is None:
            call.disposition = disposition or (Disposition.ANSWERED if call.answered
                                               else Disposition.FAILED)
        for timer in call.timers:
            if timer.active():
                timer.cancel()
        for session_timer in call.session_timers.values():
            session_timer.stop()
        if call.a.retransmit is not None:
            call.a.retransmit.stop()
        for dialog in (call.a.dialog, call.winner.dialog if call.winner else None):
            if dialog is not None:
                self.dialogs.remove(dialog)
                self._by_dialog.pop(dialog.id, None)
                self.relay.relays.pop(dialog.id, None)
        for leg in call.b_legs:
            self._attempts.pop(id(leg), None)
        self._by_invite_tx.pop(id(call.a.server_tx), None)
        # Break the transaction <-> call cycles (callbacks capture the call),
        # so a finished call is freed by reference counting, not left for a
        # full garbage collection under load.
        call.a.server_tx = None
        for leg in call.b_legs:
            leg.tx = None
        call.queue = None
        self.calls.pop(call.uuid, None)
        self.media.release(call.uuid)
        self.log.info("call_ended", call=call.uuid, call_id=call.call_id,
                      side=call.hangup_side, cause=call.hangup_cause,
                      disposition=call.disposition.value)
        if self.on_call_end is not None:
            self.on_call_end(call)


_REASONS = {486: "Busy Here", 480: "Temporarily Unavailable", 404: "Not Found",
            408: "Request Timeout", 603: "Decline", 503: "Service Unavailable"}


def _best_failure(codes: list[tuple[int, str]]) -> tuple[int, str]:
    """The response to give the caller when every fork failed (after RFC 3261 16.7).

    A 6xx wins (a global refusal), then busy, then the lowest class; 487s
    from forks we cancelled ourselves say nothing about the callee.
    """
    for code, reason in codes:
        if code >= 600:
            return code, reason or _REASONS.get(code, "")
    for code, reason in codes:
        if code in BUSY_CODES:
            return code, reason or "Busy Here"
    useful = [(c, r) for c, r in codes if c != 487] or codes
    useful.sort(key=lambda cr: (cr[0] // 100, cr[0] in (408, 503), cr[0]))
    code, reason = useful[0]
    return code, reason or _REASONS.get(code, "")

