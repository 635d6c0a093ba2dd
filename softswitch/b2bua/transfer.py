"""Transfers: a REFER from one party moves the other to a new party (RFC 3515, 3891, 5589).

A part of the call machine. The referrer X sends REFER in its dialog with
us; Y is the party on the other leg. We accept (202) and report progress
to X in NOTIFYs with message/sipfrag bodies (RFC 3515 2.4.5).

- Blind: Refer-To names a target Z. Z is routed through the dialplan as if
  X dialled it and rung exactly as a dial rings (`CallMachine.dial`: DNS,
  fail-over, 401/407, 422, CANCEL with Reason), without SDP. Z's 2xx holds
  an offer, which goes to Y in a re-INVITE; Y's answer goes to Z in the ACK.
- Attended: Refer-To carries Replaces naming X's dialog in another call,
  whose far party is Z. Z is asked for a fresh offer (a re-INVITE without
  SDP), which goes to Y the same way; the other call then ends.

Either way Z takes X's place in this call, X's dialog is left to end with
its own BYE (or ours, once X has heard of the success), and the call's
snapshot is saved again. If Z cannot be reached X is told the final code
and keeps the call.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from dialplan import CallFacts, Dial
from softswitch.b2bua import events as ev
from softswitch.b2bua.legs import Leg, LegState
from softswitch.fraud.policy import UNKNOWN, Party
from softswitch.sip.dialog import Dialog, DialogState
from softswitch.sip.errors import MessageError
from softswitch.sip.headers import NameAddr
from softswitch.sip.message import REASON_PHRASES, Request, Response, make_response
from softswitch.sip.uri import SipURI

if TYPE_CHECKING:
    from softswitch.b2bua.machine import CallMachine, DialAttempt

SIPFRAG = "message/sipfrag;version=2.0"
DetachedGrace = 32.0  # how long a transferred-away party may keep its dialog


class TransferState(enum.Enum):
    CALLING = "calling"  # INVITEs out to the target (blind), or its offer asked (attended)
    BRIDGING = "bridging"  # the target's offer is with the transferee (re-INVITE)
    DONE = "done"
    FAILED = "failed"


@dataclass(slots=True, eq=False)
class TransferInProgress:
    referrer: Leg
    transferee: Leg
    target: str
    state: TransferState = TransferState.CALLING
    attempt: DialAttempt | None = None
    z: Leg | None = None  # the new party
    z_offer: Response | None = None  # the 2xx that holds Z's offer
    z_invite: Request | None = None  # the INVITE that 2xx answers
    other_call: Any = None  # attended: the call Z comes from (a CallMachine)
    replaced: Leg | None = None  # attended: X's leg in that call
    solicit_ref: int | None = None  # attended: our offerless re-INVITE to Z
    extra: dict[str, Any] = field(default_factory=dict)


class Transfers:
    __slots__ = ("call", "current")

    def __init__(self, call: CallMachine) -> None:
        self.call = call
        self.current: TransferInProgress | None = None

    # -- REFER ----------------------------------------------------------------------

    def refer(self, ref: int, request: Request, referrer: Leg, transferee: Leg) -> None:
        call = self.call
        value = request.get("refer-to")
        if value is None:
            call.respond(ref, make_response(request, 400, "Missing Refer-To"))
            return
        try:
            target = NameAddr.parse(value).uri
        except MessageError:
            call.respond(ref, make_response(request, 400, "Bad Refer-To"))
            return
        if not isinstance(target, SipURI) or target.user is None:
            call.respond(ref, make_response(request, 416,
                                            "Refer-To must be a SIP URI with a user"))
            return
        if self.current is not None:
            call.respond(ref, make_response(request, 491, "Request Pending"))
            return
        replaces = next((v for k, v in target.headers.items() if k.lower() == "replaces"), None)
        transfer = TransferInProgress(referrer, transferee, unquote(target.user))
        if replaces is not None:
            found = call.settings.find_dialog(unquote(replaces))
            if found is None:
                call.respond(ref, make_response(request, 481, "Replaced dialog not found"))
                return
            transfer.other_call, transfer.replaced = found
        call.respond(ref, make_response(request, 202))
        self.current = transfer
        self._notify(transfer, 100, "Trying", final=False)
        if transfer.other_call is not None:
            self._solicit(transfer)
        else:
            self._dial(transfer)

    # -- blind: ring the target ----------------------------------------------------------

    def _dial(self, transfer: TransferInProgress) -> None:
        call = self.call
        if transfer.referrer is call.a:
            context = call.caller.context
            party = call.party
        else:
            callee = call.callee or ""
            found = call.settings.account_context(callee[5:], call.variables.get("domain")) \
                if callee.startswith("user/") else None
            context = found or call.caller.context
            # The dial policy judges the transfer by who asks for it: a user
            # of ours by its classes, the far end of a trunk leg as unknown.
            party = Party(account=callee[5:], domain=call.variables.get("domain")) \
                if found is not None else UNKNOWN
        facts = CallFacts(context=context, dest=transfer.target, caller=call.caller.user,
                          caller_name=call.caller.display_name, time=call.clock_time())
        dial = None
        if call.plan is not None:
            decision = call.plan.route(facts)
            dial = next((a for a in decision.actions if isinstance(a, Dial)), None)
        if dial is None:
            self._fail(transfer, 404, "Not Found")
            return
        transfer.attempt = call.dial(
            dial, offer=b"", content_type=None, caller=self._transferee_identity(transfer),
            on_answer=lambda leg, response: self._answered(transfer, leg, response),
            on_failure=lambda code, reason, attempt, rang: self._fail(transfer, code, reason),
            on_ringing=lambda leg, response: self._ringing(transfer, response), party=party)
        call.log("transfer_started", target=transfer.target)

    def _transferee_identity(self, transfer: TransferInProgress) -> tuple[str, str | None]:
        call = self.call
        if transfer.transferee is call.a:
            return call.caller.user, call.caller.display_name or None
        callee = call.callee or ""
        return callee.rsplit("/", 1)[-1] or "anonymous", None

    def _ringing(self, transfer: TransferInProgress, response: Response) -> None:
        if response.status == 180 and transfer.state is TransferState.CALLING:
            self._notify(transfer, 180, "Ringing", final=False)

    def _answered(self, transfer: TransferInProgress, leg: Leg, response: Response) -> None:
        if transfer.state is not TransferState.CALLING:
            self._drop(leg, response)
            return
        transfer.z, transfer.z_offer, transfer.z_invite = leg, response, leg.invite
        self._bridge(transfer)

    def _drop(self, leg: Leg, response: Response) -> None:
        call = self.call
        if leg.dialog is not None and leg.invite is not None:
            leg.ack = call.ack(leg, leg.dialog, leg.invite, response)
            call.bye(leg.dialog, leg.peer)
            call.close_dialog(leg)
        if leg.state is not LegState.ENDED:
            leg.move(LegState.ENDED)

    # -- attended: ask Z for an offer ------------------------------------------------------------

    def _solicit(self, transfer: TransferInProgress) -> None:
        call = self.call
        other_call, replaced = transfer.other_call, transfer.replaced
        z = other_call.lend(replaced) if other_call is not call else None
        if z is None or z.dialog is None:
            self._fail(transfer, 481, "Call/Transaction Does Not Exist")
            return
        transfer.z = z
        host, port = call.local(z.peer)
        solicit = z.dialog.create_request("INVITE", via_host=host, via_port=port)
        transfer.solicit_ref = call.send(solicit, z.peer, self._offered, transfer, solicit)

    def _offered(self, event: ev.Event, transfer: TransferInProgress, solicit: Request) -> None:
        if not isinstance(event, ev.ResponseReceived):
            self._fail(transfer, 408, "Request Timeout")
            return
        response = event.response
        z = transfer.z
        if response.status < 200 or z is None or z.dialog is None:
            return
        if transfer.z_offer is not None:
            return  # a retransmitted 2xx: answered once the transferee answers
        if transfer.state is TransferState.FAILED:
            # Our call ended meanwhile: Z stays in its own call, its offer
            # answered with the session it had.
            self.call.forget(transfer.solicit_ref)
            if 200 <= response.status < 300:
                z.dialog.receive_response(response)
                z.ack = self.call.ack(z, z.dialog, solicit, response, z.sdp_sent,
                                      response.get("content-type") if z.sdp_sent else None)
            return
        if response.status >= 300 or not response.body:
            self._fail(transfer, response.status if response.status >= 300 else 488,
                       response.reason)
            return
        z.dialog.receive_response(response)
        transfer.z_offer, transfer.z_invite = response, solicit
        self._bridge(transfer)

    # -- both: Z's offer to the transferee, its answer to Z --------------------------------------

    def _bridge(self, transfer: TransferInProgress) -> None:
        call, z, offer = self.call, transfer.z, transfer.z_offer
        assert z is not None and offer is not None
        transfer.state = TransferState.BRIDGING
        call.media(True, z, transfer.transferee, offer.body, offer.get("content-type"),
                   self._reinvite_transferee, transfer)

    def _reinvite_transferee(self, body: bytes | None, transfer: TransferInProgress) -> None:
        call, y = self.call, transfer.transferee
        if body is None or y.dialog is None or not call.established:
            status, reason = call.media_failure if body is None else (481, "Call Ended")
            self._abandon(transfer)
            self._fail(transfer, status, reason)
            return
        assert transfer.z_offer is not None
        content_type = transfer.z_offer.get("content-type")
        host, port = call.local(y.peer)
        reinvite = y.dialog.create_request("INVITE", via_host=host, via_port=port, body=body,
                                           content_type=content_type if body else None)
        y.sdp_sent = body
        call.send(reinvite, y.peer, self._transferee_answered, transfer, reinvite)

    def _transferee_answered(self, event: ev.Event, transfer: TransferInProgress,
                             reinvite: Request) -> None:
        call, y, z = self.call, transfer.transferee, transfer.z
        if not isinstance(event, ev.ResponseReceived) or z is None:
            self._abandon(transfer)
            self._fail(transfer, 408, "Request Timeout")
            return
        response = event.response
        if response.status < 200 or transfer.state is not TransferState.BRIDGING:
            return  # a provisional, or the 2xx again once the transfer is over
        if response.status >= 300:
            # The transferee refused the new media: drop the target, keep the call.
            self._abandon(transfer)
            self._fail(transfer, 503, "Service Unavailable")
            return
        if y.dialog is None:
            return
        y.dialog.receive_response(response)
        call.ack(y, y.dialog, reinvite, response)
        call.media(False, y, z, response.body, response.get("content-type"),
                   self._complete, transfer, response.get("content-type"))

    def _abandon(self, transfer: TransferInProgress) -> None:
        """The transfer failed after Z answered: a blind target is hung up."""
        z, offer = transfer.z, transfer.z_offer
        if transfer.other_call is None and z is not None and offer is not None:
            self._drop(z, offer)

    def _complete(self, body: bytes | None, transfer: TransferInProgress,
                  content_type: str | None) -> None:
        call = self.call
        z, offer, invite = transfer.z, transfer.z_offer, transfer.z_invite
        assert z is not None and offer is not None and invite is not None
        if body is None or z.dialog is None:
            self._abandon(transfer)
            self._fail(transfer, *call.media_failure)
            return
        z.ack = call.ack(z, z.dialog, invite, offer, body, content_type if body else None)
        z.sdp_sent = body
        if transfer.other_call is not None:
            # Z leaves the other call, which ends with a BYE to the referrer there.
            assert transfer.replaced is not None
            call.emit(ev.OtherCall(transfer.other_call.uuid,
                                   tuple(transfer.other_call.hand_over(z, transfer.replaced,
                                                                       call.now))))
            z = call.adopt(z)
        else:
            call.sessions.adopt(z, offer)
        x = transfer.referrer
        call.sessions.stop(x)
        if z.state is not LegState.CONFIRMED:
            z.move(LegState.CONFIRMED)
        call.rebridge(x, z)
        if transfer.other_call is not None and z.session is not None:
            call.sessions.arm(z)
        transfer.state = TransferState.DONE
        self.current = None
        # Once the referrer has heard of the success its part is over: end its
        # dialog, as a PBX hangs up the transferring channel (RFC 5589 6).
        call.start_timer(f"detached:{x.name}", DetachedGrace, self.end_detached, x)
        self._notify(transfer, 200, "OK", final=True, then=lambda: self.end_detached(x))
        call.log("transfer_done", target=z.target,
                 attended=transfer.other_call is not None)
        call.changed()

    def stop(self) -> None:
        """The call ends: a target whose 2xx waits for our ACK is not left hanging.

        A blind target is ACKed and hung up; an attended one keeps its own
        call, its offer answered with the session it had (RFC 3261 13.2.2.4
        wants the ACK either way, or the target ends its dialog).
        """
        transfer, self.current = self.current, None
        if transfer is None:
            return
        state, transfer.state = transfer.state, TransferState.FAILED
        if state is not TransferState.BRIDGING:
            return
        if transfer.other_call is None:
            self._abandon(transfer)
            return
        z, offer, invite = transfer.z, transfer.z_offer, transfer.z_invite
        if z is not None and z.dialog is not None and offer is not None and invite is not None:
            z.ack = self.call.ack(z, z.dialog, invite, offer, z.sdp_sent,
                                  offer.get("content-type") if z.sdp_sent else None)

    def listening(self) -> set[int]:
        """Refs the call must still hear once ended: an attended target's answer."""
        transfer = self.current
        if transfer is not None and transfer.state is TransferState.CALLING \
                and transfer.solicit_ref is not None and transfer.z_offer is None:
            return {transfer.solicit_ref}
        return set()

    def end_detached(self, leg: Leg) -> None:
        call = self.call
        call.stop_timer(f"detached:{leg.name}")
        if leg.dialog is not None and leg.dialog.state is not DialogState.TERMINATED:
            call.bye(leg.dialog, leg.peer)
        call.close_dialog(leg)
        if leg.state is not LegState.ENDED:
            leg.move(LegState.ENDED)

    def _fail(self, transfer: TransferInProgress, code: int, reason: str) -> None:
        transfer.state = TransferState.FAILED
        if self.current is transfer:
            self.current = None
        self._notify(transfer, code, reason or REASON_PHRASES.get(code, "Failed"), final=True)
        self.call.log("transfer_failed", code=code)

    # -- reporting to the referrer ---------------------------------------------------------

    def _notify(self, transfer: TransferInProgress, code: int, reason: str, *, final: bool,
                then: Callable[[], None] | None = None) -> None:
        x = transfer.referrer
        dialog: Dialog | None = x.dialog
        if dialog is None or dialog.state is DialogState.TERMINATED:
            return
        call = self.call
        host, port = call.local(x.peer)
        state = "terminated;reason=noresource" if final else "active;expires=60"
        notify = dialog.create_request(
            "NOTIFY", via_host=host, via_port=port,
            body=f"SIP/2.0 {code} {reason}\r\n".encode(), content_type=SIPFRAG,
            extra_headers=[("Event", "refer"), ("Subscription-State", state)])
        call.send(notify, x.peer, _after_final, then)


def _after_final(event: ev.Event, then: Callable[[], None] | None) -> None:
    if then is None:
        return
    if isinstance(event, ev.ResponseReceived) and event.response.status < 200:
        return
    then()
