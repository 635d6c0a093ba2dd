"""Blind transfer: a REFER from one party moves the other to a new target (RFC 3515).

The referrer X sends REFER with Refer-To Z in its dialog with us; Y is the
party on the other leg. We accept (202), report progress to X in NOTIFYs
with message/sipfrag bodies (RFC 3515 2.4.5), route Z through the dialplan
as if dialled by X, and INVITE it without SDP. Z's 2xx carries an offer,
which goes to Y in a re-INVITE; Y's answer goes to Z in the ACK. Then Z
takes X's place in the call, and X's dialog is left to end with its own
BYE. If Z cannot be reached X is told the final code and keeps the call.
Attended transfer (Replaces, RFC 3891) is refused for now.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import unquote

from dialplan import CallFacts, Dial
from softswitch.b2bua.call import BLeg, Call, CallState
from softswitch.b2bua.dialing import Destination, build_invite
from softswitch.b2bua.session_timer import SessionTimer, negotiate_as_uac
from softswitch.sip.dialog import Dialog
from softswitch.sip.headers import NameAddr
from softswitch.sip.message import REASON_PHRASES, Request, Response, make_response
from softswitch.sip.transaction import ServerTransaction, make_cancel
from softswitch.sip.uri import SipURI

if TYPE_CHECKING:
    from softswitch.b2bua.b2bua import B2BUA

SIPFRAG = "message/sipfrag;version=2.0"


class TransferState(enum.Enum):
    CALLING = "calling"  # INVITEs out to the target
    BRIDGING = "bridging"  # the target answered; re-INVITE to the transferee
    DONE = "done"
    FAILED = "failed"


class BlindTransfer:
    def __init__(self, b2bua: B2BUA, call: Call, referrer: Dialog, transferee: Dialog,
                 target: str) -> None:
        self.b2bua = b2bua
        self.call = call
        self.referrer = referrer
        self.transferee = transferee
        self.target = target
        self.state = TransferState.CALLING
        self.legs: list[BLeg] = []
        self.winner: BLeg | None = None
        self.winner_2xx: Response | None = None

    # -- start ------------------------------------------------------------------

    @classmethod
    def handle_refer(cls, b2bua: B2BUA, call: Call, tx: ServerTransaction, request: Request,
                     referrer: Dialog, transferee: Dialog) -> BlindTransfer | None:
        value = request.get("refer-to")
        if value is None:
            tx.respond(make_response(request, 400, "Missing Refer-To"))
            return None
        target = NameAddr.parse(value).uri
        if not isinstance(target, SipURI) or target.user is None:
            tx.respond(make_response(request, 416, "Refer-To must be a SIP URI with a user"))
            return None
        if call.state is not CallState.CONFIRMED or call.transfer is not None:
            tx.respond(make_response(request, 491, "Request Pending"))
            return None
        replaces = next((v for k, v in target.headers.items() if k.lower() == "replaces"), None)
        transfer: BlindTransfer
        if replaces is not None:
            replaced = find_replaced(b2bua, unquote(replaces))
            if replaced is None:
                tx.respond(make_response(request, 481, "Replaced dialog not found"))
                return None
            transfer = AttendedTransfer(b2bua, call, referrer, transferee, target.user, replaced)
        else:
            transfer = cls(b2bua, call, referrer, transferee, unquote(target.user))
        tx.respond(make_response(request, 202))
        call.transfer = transfer
        transfer.start()
        return transfer

    def start(self) -> None:
        self._notify(100, "Trying", final=False)
        call, b2bua = self.call, self.b2bua
        context = call.context if self.referrer is call.a.dialog else self._callee_context()
        facts = CallFacts(context=context, dest=self.target, caller=call.caller,
                          caller_name=call.caller_name or "")
        decision = call.plan.route(facts)
        dial = next((a for a in decision.actions if isinstance(a, Dial)), None)
        if dial is None:
            self._fail(404, "Not Found")
            return
        domain = call.variables.get("domain", "")
        destinations: list[Destination] = []
        for target in dial.targets:
            destinations += b2bua.resolver.resolve(target, domain).destinations
        if not destinations:
            self._fail(480, "Temporarily Unavailable")
            return
        template = call.a.initial
        caller, name = self._transferee_identity()
        for dest in destinations:
            via_host, via_port = b2bua.local_address(dest.peer)
            invite = build_invite(template, dest, caller=caller, caller_name=name,
                                  from_host=domain or via_host, via_host=via_host,
                                  via_port=via_port, body=b"", content_type=None) \
                if template is not None else None
            if invite is None:
                self._fail(500, "Call restored after restart cannot be transferred")
                return
            leg = BLeg(invite, dest.peer, dest.label, trunk=dest.trunk)
            self.legs.append(leg)
            leg.tx = b2bua.core.transactions.send_request(
                invite, dest.peer, on_response=lambda r, b=leg: self._response(b, r),
                on_timeout=lambda b=leg: self._leg_failed(b, 408),
                on_transport_error=lambda b=leg: self._leg_failed(b, 503))
        b2bua.log.info("transfer_started", call=call.uuid, target=self.target,
                       legs=[leg.target for leg in self.legs])

    def _callee_context(self) -> str:
        callee = self.call.callee or ""
        if callee.startswith("user/"):
            account = self.b2bua.registrar.directory.find(callee[5:],
                                                          self.call.variables.get("domain"))
            if account is not None:
                return account.context
        return self.call.context

    def _transferee_identity(self) -> tuple[str, str | None]:
        call = self.call
        if self.transferee is call.a.dialog:
            return call.caller, call.caller_name
        callee = call.callee or ""
        return callee.rsplit("/", 1)[-1] or "anonymous", None

    # -- the target's answers ----------------------------------------------------

    def _response(self, leg: BLeg, response: Response) -> None:
        status = response.status
        if status < 200:
            leg.got_provisional = True
            if leg.cancel_pending:
                self._cancel(leg)
            elif status == 180 and self.state is TransferState.CALLING:
                self._notify(180, "Ringing", final=False)
            return
        if status >= 300:
            self._leg_failed(leg, status)
            return
        dialog = Dialog.from_uac(leg.invite, response, peer=leg.peer)  # type: ignore[arg-type]
        if self.winner is not None or self.state is not TransferState.CALLING:
            if self.winner is leg:
                return  # a 2xx retransmission: we ACK once the transferee answered
            self.b2bua._ack(leg, dialog, response)
            self.b2bua._bye(dialog)
            return
        leg.final_status = status
        leg.dialog = dialog
        self.winner, self.winner_2xx = leg, response
        for other in self.legs:
            if other is not leg and other.final_status is None:
                self._cancel(other)
        self.state = TransferState.BRIDGING
        self._reinvite_transferee(response)

    def _cancel(self, leg: BLeg) -> None:
        if not leg.got_provisional:
            leg.cancel_pending = True
            return
        leg.cancel_pending = False
        leg.final_status = leg.final_status or 487
        assert leg.invite is not None
        self.b2bua.core.transactions.send_request(make_cancel(leg.invite), leg.peer,
                                                  on_response=lambda r: None)

    def _leg_failed(self, leg: BLeg, status: int) -> None:
        leg.final_status = leg.final_status or status
        if self.state is TransferState.CALLING and all(b.final_status for b in self.legs):
            codes = [b.final_status or 500 for b in self.legs]
            code = next((c for c in codes if c in (486, 600)), min(codes))
            self._fail(code, REASON_PHRASES.get(code, "Failed"))

    # -- bridging ------------------------------------------------------------------

    def _reinvite_transferee(self, answer_2xx: Response) -> None:
        b2bua, call, y = self.b2bua, self.call, self.transferee
        assert y.peer is not None
        side = "a" if y is call.a.dialog else "b"
        offer = b2bua.media.offer(call.uuid, "z", side, answer_2xx.body,
                                  answer_2xx.get("content-type"))
        via_host, via_port = b2bua.local_address(y.peer)
        reinvite = y.create_request("INVITE", via_host=via_host, via_port=via_port, body=offer,
                                    content_type=answer_2xx.get("content-type") if offer else None)
        call.sdp_to[side] = offer
        peer = y.peer

        def answered(response: Response) -> None:
            if response.status < 200:
                return
            if response.status >= 300:
                # The transferee refused the new media: drop the target, keep the call.
                if self.winner is not None and self.winner.dialog is not None:
                    b2bua._ack(self.winner, self.winner.dialog, answer_2xx)
                    b2bua._bye(self.winner.dialog)
                self._fail(503, "Service Unavailable")
                return
            y.receive_response(response)
            ack_host, ack_port = b2bua.local_address(peer)
            b2bua.core.send(y.create_ack(reinvite, response, via_host=ack_host,
                                         via_port=ack_port), peer)
            self._complete(response)

        b2bua.core.transactions.send_request(reinvite, peer, on_response=answered,
                                             on_timeout=lambda: self._fail(408, "Request Timeout"))

    def _complete(self, transferee_2xx: Response) -> None:
        b2bua, call = self.b2bua, self.call
        leg, answer = self.winner, self.winner_2xx
        assert leg is not None and leg.dialog is not None and answer is not None
        body = b2bua.media.answer(call.uuid, "y", "z", transferee_2xx.body,
                                  transferee_2xx.get("content-type"))
        b2bua._ack(leg, leg.dialog, answer, body,
                   transferee_2xx.get("content-type") if body else None)
        # Z takes X's place; X's dialog stays known only to answer its BYE.
        x, z = self.referrer, leg.dialog
        b2bua.relay.detach(x, call)
        b2bua.dialogs.add(z)
        b2bua._by_dialog[z.id] = call
        x_side = "a" if x is call.a.dialog else "b"
        if x_side == "a":
            call.a.dialog = z
        else:
            leg.answer_2xx = answer
            call.winner = leg
            call.b_legs.append(leg)
            call.callee = leg.target
        call.sdp_to[x_side] = body
        old = call.session_timers.pop(x_side, None)
        if old is not None:
            old.stop()
        agreed = negotiate_as_uac(answer)
        if agreed is not None:
            call.session_timers[x_side] = SessionTimer(
                b2bua.clock, agreed[0], agreed[1], lambda: b2bua.sessions.refresh(call, x_side),
                lambda: b2bua._hangup(call, "system", "session timer expired"))
        self.state = TransferState.DONE
        call.transfer = None
        # Once the referrer has heard of the success its part is over: end its
        # dialog, as a PBX hangs up the transferring channel (RFC 5589 6).
        self._notify(200, "OK", final=True, then=lambda: b2bua.relay.end_detached(x))
        b2bua.log.info("transfer_done", call=call.uuid, target=leg.target)
        if b2bua.on_call_confirmed is not None:
            b2bua.on_call_confirmed(call)  # save the new dialog for restarts

    def _fail(self, code: int, reason: str) -> None:
        self.state = TransferState.FAILED
        self.call.transfer = None
        self._notify(code, reason, final=True)
        self.b2bua.log.info("transfer_failed", call=self.call.uuid, code=code)

    # -- reporting to the referrer ----------------------------------------------------

    def _notify(self, code: int, reason: str, *, final: bool,
                then: Callable[[], None] | None = None) -> None:
        x = self.referrer
        if x.peer is None or x.state.value == "Terminated":
            return
        via_host, via_port = self.b2bua.local_address(x.peer)
        state = "terminated;reason=noresource" if final else "active;expires=60"
        notify = x.create_request(
            "NOTIFY", via_host=via_host, via_port=via_port,
            body=f"SIP/2.0 {code} {reason}\r\n".encode(), content_type=SIPFRAG,
            extra_headers=[("Event", "refer"), ("Subscription-State", state)])
        def answered(response: Response) -> None:
            if response.status >= 200 and then is not None:
                then()

        self.b2bua.core.transactions.send_request(
            notify, x.peer, on_response=answered,
            on_timeout=then or _nothing, on_transport_error=then or _nothing)


def _nothing() -> None:
    return None


def find_replaced(b2bua: B2BUA, replaces: str) -> Dialog | None:
    """Our dialog named by a Replaces value (RFC 3891 3).

    The referrer names the dialog it has with us: its to-tag is our tag and
    its from-tag the referrer's. The reverse is tried too, for referrers that
    write it from the other side.
    """
    call_id, _, rest = replaces.partition(";")
    params = {}
    for item in rest.split(";"):
        name, _, value = item.partition("=")
        params[name.strip().lower()] = value.strip()
    to_tag, from_tag = params.get("to-tag", ""), params.get("from-tag", "")
    return b2bua.dialogs.get((call_id.strip(), to_tag, from_tag)) \
        or b2bua.dialogs.get((call_id.strip(), from_tag, to_tag))


class AttendedTransfer(BlindTransfer):
    """REFER with Replaces (RFC 3891, RFC 5589 7): join two calls of the referrer.

    The referrer X talks to the transferee Y in this call and to Z in another
    call, through the dialog the Replaces names. We ask Z for a fresh offer
    (a re-INVITE without SDP), hand it to Y, and give Y's answer back to Z;
    then Z takes X's place here and the other call ends.
    """

    def __init__(self, b2bua: B2BUA, call: Call, referrer: Dialog, transferee: Dialog,
                 target: str, replaced: Dialog) -> None:
        super().__init__(b2bua, call, referrer, transferee, target)
        self.replaced = replaced

    def start(self) -> None:
        b2bua = self.b2bua
        self._notify(100, "Trying", final=False)
        other_call = b2bua._by_dialog.get(self.replaced.id)
        z = other_call.other_dialog(self.replaced) if other_call is not None else None
        if other_call is None or z is None or other_call is self.call \
                or other_call.state is not CallState.CONFIRMED or z.peer is None:
            self._fail(481, "Call/Transaction Does Not Exist")
            return
        self.other_call = other_call
        via_host, via_port = b2bua.local_address(z.peer)
        solicit = z.create_request("INVITE", via_host=via_host, via_port=via_port)
        peer = z.peer

        def offered(response: Response) -> None:
            if response.status < 200:
                return
            if response.status >= 300 or not response.body:
                self._fail(response.status if response.status >= 300 else 488,
                           response.reason)
                return
            z.receive_response(response)
            self._z_solicit, self._z_2xx, self._z = solicit, response, z
            self.state = TransferState.BRIDGING
            self._reinvite_transferee(response)

        b2bua.core.transactions.send_request(solicit, peer, on_response=offered,
                                             on_timeout=lambda: self._fail(408, "Request Timeout"))

    def _complete(self, transferee_2xx: Response) -> None:
        b2bua, call, other = self.b2bua, self.call, self.other_call
        z, solicit, z_2xx = self._z, self._z_solicit, self._z_2xx
        assert z.peer is not None
        body = b2bua.media.answer(call.uuid, "y", "z", transferee_2xx.body,
                                  transferee_2xx.get("content-type"))
        via_host, via_port = b2bua.local_address(z.peer)
        b2bua.core.send(z.create_ack(solicit, z_2xx, via_host=via_host, via_port=via_port,
                                     body=body, content_type=transferee_2xx.get("content-type")),
                        z.peer)
        # Z leaves the other call, which ends with a BYE to the referrer there.
        z_side_there = "a" if z is other.a.dialog else "b"
        if z_side_there == "a":
            other.a.dialog = None
        else:
            assert other.winner is not None
            other.winner.dialog = None
        old_timer = other.session_timers.pop(z_side_there, None)
        b2bua._bye(self.replaced)
        b2bua._end(other, "caller" if self.replaced is other.a.dialog else "callee",
                   "attended transfer")
        # Z takes X's place here (its dialog stays in the table: only the
        # call it belongs to changes).
        x = self.referrer
        b2bua.relay.detach(x, call)
        b2bua._by_dialog[z.id] = call
        x_side = "a" if x is call.a.dialog else "b"
        if x_side == "a":
            call.a.dialog = z
        else:
            leg = BLeg(None, z.peer, other.callee or self.target, dialog=z, final_status=200)
            call.b_legs.append(leg)
            call.winner = leg
            call.callee = leg.target
        call.sdp_to[x_side] = body
        previous = call.session_timers.pop(x_side, None)
        if previous is not None:
            previous.stop()
        if old_timer is not None:
            old_timer.stop()
            call.session_timers[x_side] = SessionTimer(
                b2bua.clock, old_timer.interval, old_timer.refresher,
                lambda: b2bua.sessions.refresh(call, x_side),
                lambda: b2bua._hangup(call, "system", "session timer expired"))
        self.state = TransferState.DONE
        call.transfer = None
        self._notify(200, "OK", final=True, then=lambda: b2bua.relay.end_detached(x))
        b2bua.log.info("attended_transfer_done", call=call.uuid, joined=other.uuid)
        if b2bua.on_call_confirmed is not None:
            b2bua.on_call_confirmed(call)
