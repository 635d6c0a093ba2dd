"""INVITE with Replaces (RFC 3891): a new party takes one side of a call.

A part of the call machine, used for call pickup, or by phones that
complete an attended transfer themselves. The glue hands the INVITE to the
call that owns the dialog it names. The party that stays gets the
newcomer's offer in a re-INVITE; its answer goes back in our 200, the
replaced party gets a BYE, and the newcomer takes its place in the call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from softswitch.b2bua import events as ev
from softswitch.b2bua.dialing import ALLOW, contact_of
from softswitch.b2bua.legs import Leg, LegId, LegState
from softswitch.sip.dialog import Dialog, Reason
from softswitch.sip.message import Request, Response, make_response, new_tag
from softswitch.sip.peer import Peer

if TYPE_CHECKING:
    from softswitch.b2bua.machine import CallMachine


class Replacement:
    __slots__ = ("call", "awaiting_ack")

    def __init__(self, call: CallMachine) -> None:
        self.call = call
        self.awaiting_ack: list[str] = []  # names of newcomers whose 200 is not ACKed

    def invite(self, ref: int, request: Request, source: Peer, caller: str) -> None:
        call = self.call
        replaced = call.replaced_by(request.get("replaces") or "")
        stays = call.other(replaced) if replaced is not None else None
        if replaced is None or stays is None or stays.dialog is None or not call.established:
            call.respond(ref, make_response(request, 481, "Replaced dialog not found",
                                            to_tag=new_tag()))
            return
        if not request.body:
            call.respond(ref, make_response(request, 488,
                                            "An offer is needed to replace a dialog",
                                            to_tag=new_tag()))
            return
        call.respond(ref, make_response(request, 100))
        new = call.new_leg(True, f"user/{caller}", source,
                           LegId(request.call_id, new_tag(), request.from_tag or ""),
                           LegState.INCOMING, invite=request, invite_ref=ref)
        call.media(True, new, stays, request.body, request.get("content-type"),
                   self._reinvite, new, replaced, stays)

    def _reinvite(self, body: bytes | None, new: Leg, replaced: Leg, stays: Leg) -> None:
        call = self.call
        assert new.invite is not None
        if body is None or stays.dialog is None or not call.established:
            status, reason = call.media_failure if body is None else (481, "Call Ended")
            self._refuse(new, status, reason)
            return
        host, port = call.local(stays.peer)
        content_type = new.invite.get("content-type")
        reinvite = stays.dialog.create_request("INVITE", via_host=host, via_port=port,
                                               body=body, content_type=content_type)
        stays.sdp_sent = body
        call.send(reinvite, stays.peer, self._answered, new, replaced, stays, reinvite)

    def _refuse(self, new: Leg, status: int, reason: str) -> None:
        assert new.invite is not None
        self.call.respond(new.invite_ref, make_response(new.invite, status, reason,
                                                        to_tag=new.id.local_tag))
        self.call.release_media(new)
        new.move(LegState.ENDED)

    def _answered(self, event: ev.Event, new: Leg, replaced: Leg, stays: Leg,
                  reinvite: Request) -> None:
        call = self.call
        if not isinstance(event, ev.ResponseReceived):
            self._refuse(new, 408, "Request Timeout")
            return
        response = event.response
        if response.status < 200 or new.state is not LegState.INCOMING:
            return
        if response.status >= 300:
            self._refuse(new, response.status, response.reason)
            return
        if stays.dialog is None:
            return
        stays.dialog.receive_response(response)
        call.ack(stays, stays.dialog, reinvite, response)
        call.media(False, stays, new, response.body, response.get("content-type"),
                   self._replace, new, replaced, response)

    def _replace(self, body: bytes | None, new: Leg, replaced: Leg, answer: Response) -> None:
        call = self.call
        request = new.invite
        assert request is not None
        if body is None:
            self._refuse(new, *call.media_failure)
            return
        host, port = call.local(new.peer)
        dialog = Dialog.from_uas(request, new.id.local_tag,
                                 contact_of(host, port, new.peer.transport), peer=new.peer)
        ok = make_response(request, 200, to_tag=new.id.local_tag)
        ok.add("Contact", str(dialog.local_contact))
        ok.add("Allow", ALLOW)
        ok.set_body(body, answer.get("content-type"))
        dialog.sent_response(ok)
        new.sdp_sent = body
        call.bye(replaced.dialog, replaced.peer, Reason("SIP", 200, "Call replaced"))
        call.sessions.stop(replaced)
        call.close_dialog(replaced)
        replaced.move(LegState.ENDED)
        call.open_dialog(new, dialog)
        new.move(LegState.ANSWERED)
        call.rebridge(replaced, new)
        call.respond(new.invite_ref, ok)
        self.awaiting_ack.append(new.name)
        call.retransmit(f"2xx:{new.name}", new.invite_ref, ok, call.hangup, "system",
                        "no ACK after Replaces")
        call.log("dialog_replaced", by=new.target)
        call.changed()

    def ack(self, leg: Leg) -> bool:
        """The newcomer's ACK; False if `leg` is not a newcomer waiting for one."""
        if leg.name not in self.awaiting_ack:
            return False
        self.awaiting_ack.remove(leg.name)
        self.call.stop_retransmit(f"2xx:{leg.name}")
        leg.move(LegState.CONFIRMED)
        return True


def dialog_ids(replaces: str) -> tuple[tuple[str, str, str], ...]:
    """The dialog IDs a Replaces value may name (RFC 3891 3), ours first.

    The sender names the dialog it has with us: its to-tag is our tag and
    its from-tag the sender's. The reverse is tried too, for senders that
    write it from the other side.
    """
    call_id, _, rest = replaces.partition(";")
    params: dict[str, str] = {}
    for item in rest.split(";"):
        name, _, value = item.partition("=")
        params[name.strip().lower()] = value.strip()
    to_tag, from_tag = params.get("to-tag", ""), params.get("from-tag", "")
    call_id = call_id.strip()
    return ((call_id, to_tag, from_tag), (call_id, from_tag, to_tag))
