"""INVITE with Replaces (RFC 3891): a new party takes one side of a call.

Used for call pickup, or by phones that complete an attended transfer
themselves. The party that stays gets the newcomer's offer in a re-INVITE;
its answer goes back in our 200, and the replaced party gets a BYE.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import unquote

from softswitch.b2bua.call import BLeg, Call, CallState
from softswitch.b2bua.dialing import ALLOW, contact_of
from softswitch.b2bua.transfer import find_replaced
from softswitch.sip.dialog import Dialog, Reason
from softswitch.sip.message import Request, Response, make_response, new_tag
from softswitch.sip.transaction import ServerTransaction

if TYPE_CHECKING:
    from softswitch.b2bua.b2bua import B2BUA


class DialogReplacement:
    def __init__(self, b2bua: B2BUA) -> None:
        self.b2bua = b2bua

    def replace(self, tx: ServerTransaction, request: Request, replaces: str,
                 caller: str) -> None:
        """A new party takes the place of one side of an established call.

        Its INVITE names that side's dialog with us (call pickup, or the end
        of an attended transfer done by the phones). Its offer goes to the
        party that stays, in a re-INVITE, and the answer comes back in our
        200; the replaced party gets a BYE.
        """
        replaced = find_replaced(self.b2bua, unquote(replaces))
        call = self.b2bua._by_dialog.get(replaced.id) if replaced is not None else None
        stays = call.other_dialog(replaced) if call is not None and replaced is not None else None
        if replaced is None or call is None or stays is None \
                or call.state is not CallState.CONFIRMED or stays.peer is None:
            tx.respond(make_response(request, 481, "Replaced dialog not found",
                                     to_tag=new_tag()))
            return
        if not request.body:
            tx.respond(make_response(request, 488, "An offer is needed to replace a dialog",
                                     to_tag=new_tag()))
            return
        tx.respond(make_response(request, 100))
        via_host, via_port = self.b2bua.local_address(stays.peer)
        side = "a" if stays is call.a.dialog else "b"
        content_type = request.get("content-type")
        offer = self.b2bua.media.offer(call.uuid, "new", side, request.body, content_type)
        reinvite = stays.create_request("INVITE", via_host=via_host, via_port=via_port,
                                        body=offer, content_type=content_type)
        call.sdp_to[side] = offer
        peer = stays.peer

        def answered(response: Response) -> None:
            if response.status < 200:
                return
            if response.status >= 300:
                tx.respond(make_response(request, response.status, response.reason,
                                         to_tag=new_tag()))
                return
            stays.receive_response(response)
            ack_host, ack_port = self.b2bua.local_address(peer)
            self.b2bua.core.send(stays.create_ack(reinvite, response, via_host=ack_host,
                                            via_port=ack_port), peer)
            self.replaced(call, replaced, stays, tx, request, response, caller)

        self.b2bua.core.transactions.send_request(
            reinvite, peer, on_response=answered,
            on_timeout=lambda: tx.respond(make_response(request, 408, to_tag=new_tag())))

    def replaced(self, call: Call, replaced: Dialog, stays: Dialog, tx: ServerTransaction,
                  request: Request, answer: Response, caller: str) -> None:
        local_host, local_port = self.b2bua.local_address(tx.source)
        new = Dialog.from_uas(request, new_tag(), contact_of(local_host, local_port,
                                                             tx.source.transport),
                              peer=tx.source)
        ok = make_response(request, 200, to_tag=new.local_tag)
        ok.add("Contact", str(new.local_contact))
        ok.add("Allow", ALLOW)
        side = "a" if replaced is call.a.dialog else "b"
        body = self.b2bua.media.answer(call.uuid, "b" if side == "a" else "a", "new", answer.body,
                                 answer.get("content-type"))
        ok.set_body(body, answer.get("content-type"))
        new.sent_response(ok)
        self.b2bua._bye(replaced, Reason("SIP", 200, "Call replaced"))
        self.b2bua.dialogs.remove(replaced)
        self.b2bua._by_dialog.pop(replaced.id, None)
        self.b2bua.dialogs.add(new)
        self.b2bua._by_dialog[new.id] = call
        if side == "a":
            call.a.dialog = new
        else:
            leg = BLeg(None, tx.source, f"user/{caller}", dialog=new, final_status=200)
            call.b_legs.append(leg)
            call.winner = leg
            call.callee = leg.target
        call.sdp_to[side] = body
        timer = call.session_timers.pop(side, None)
        if timer is not None:
            timer.stop()
        tx.respond(ok)
        self.b2bua._awaiting_ack[new.id] = self.b2bua._retransmit_2xx(
            tx, ok, lambda: self.b2bua._hangup(call, "system", "no ACK after Replaces"))
        self.b2bua.log.info("dialog_replaced", call=call.uuid, by=caller)
        if self.b2bua.on_call_confirmed is not None:
            self.b2bua.on_call_confirmed(call)
