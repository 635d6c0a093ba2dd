"""In-dialog requests of established calls: answered, or relayed to the other leg.

BYE ends the call; PRACK answers our reliable provisionals; REFER starts a
transfer; re-INVITE, UPDATE, INFO and OPTIONS go to the other party with
their bodies through the media seam, and their answers come back (RFC 3261
12.2, 14; RFC 3311; RFC 6086). An offer that crosses one in progress gets
491. The ACK of a relayed re-INVITE's 2xx is relayed too, with the answer
when the offer was in the 2xx. Dialogs transferred away stay known only to
answer their BYE.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from softswitch.b2bua.call import Call, CallState
from softswitch.b2bua.session_timer import Refresher, supports_timer
from softswitch.b2bua.transfer import BlindTransfer
from softswitch.sip.dialog import Dialog, RAck
from softswitch.sip.message import Request, Response, make_response
from softswitch.sip.transaction import ServerTransaction

if TYPE_CHECKING:
    from softswitch.b2bua.b2bua import B2BUA, Retransmission

DialogId = tuple[str, str, str]

# Bodies of these INFO and UPDATE requests travel with their type.
_RELAYED_HEADERS = ("content-type", "content-disposition", "info-package", "event")


@dataclass(slots=True, eq=False)
class Relay:
    """A re-INVITE/UPDATE/INFO relayed from one leg to the other."""

    tx: ServerTransaction
    request: Request
    origin: Dialog
    target: Dialog
    held_2xx: Response | None = None  # a 2xx to a re-INVITE waiting for the ACK
    sent: Request | None = None  # the request as relayed to the target
    retransmit: Retransmission | None = None  # of our 2xx, until the ACK
    acked: bool = False


class DialogRelay:
    def __init__(self, b2bua: B2BUA) -> None:
        self.b2bua = b2bua
        self.relays: dict[DialogId, Relay] = {}  # by origin dialog id
        self.detached: dict[DialogId, Dialog] = {}  # transferred-away dialogs

    def detach(self, dialog: Dialog, call: Call) -> None:
        """Take a dialog out of its call (transferred away): it may still BYE."""
        self.b2bua._by_dialog.pop(dialog.id, None)
        self.detached[dialog.id] = dialog
        # The transferor should hang up itself (RFC 5589 6); if it does not,
        # we end its dialog after a while.
        call.timers.append(self.b2bua.clock.callLater(32.0, self.end_detached, dialog))

    def end_detached(self, dialog: Dialog) -> None:
        if self.detached.pop(dialog.id, None) is not None:
            self.b2bua._bye(dialog)
            self.b2bua.dialogs.remove(dialog)

    def handle(self, tx: ServerTransaction, request: Request) -> None:
        dialog = self.b2bua.dialogs.find(request)
        if dialog is not None and dialog.id in self.detached:
            if request.method == "BYE":
                tx.respond(make_response(request, 200))
                dialog.terminate()
                self.detached.pop(dialog.id, None)
                self.b2bua.dialogs.remove(dialog)
            else:
                tx.respond(make_response(request, 481))
            return
        call = self.b2bua._by_dialog.get(dialog.id) if dialog is not None else None
        if dialog is None or call is None:
            tx.respond(make_response(request, 481))
            return
        verdict = dialog.receive_request(request)
        if not verdict.accepted:
            tx.respond(make_response(request, verdict.status or 500, verdict.reason))
            return
        if request.method == "BYE":
            tx.respond(make_response(request, 200))
            dialog.terminate()
            self.b2bua._hangup(call, call.side_of(dialog), "BYE")
            return
        if request.method == "PRACK":
            self.prack(call, tx, request)
            return
        other = call.other_dialog(dialog)
        if other is None or call.state is CallState.ENDED:
            tx.respond(make_response(request, 481))
            return
        if request.method == "REFER":
            BlindTransfer.handle_refer(self.b2bua, call, tx, request, dialog, other)
            return
        if request.method in ("INVITE", "UPDATE") and (
                dialog.id in self.relays or other.id in self.relays):
            # RFC 3261 14.2 / RFC 3311 5.2: an offer crosses one in progress.
            response = make_response(request, 491)
            tx.respond(response)
            return
        if request.method in ("INVITE", "UPDATE"):
            timer = call.session_timers.get("a" if dialog is call.a.dialog else "b")
            if timer is not None:
                timer.start()
        self.relay_request(call, tx, request, dialog, other)

    def prack(self, call: Call, tx: ServerTransaction, request: Request) -> None:
        """The caller acknowledges a reliable provisional (RFC 3262 3)."""
        value = request.get("rack")
        rack = RAck.parse(value) if value is not None else None
        if rack is not None and call.reliable is not None and call.reliable.prack(rack):
            tx.respond(make_response(request, 200))
        else:
            tx.respond(make_response(request, 481, "No matching reliable provisional"))

    def relay_request(self, call: Call, tx: ServerTransaction, request: Request,
                       origin: Dialog, target: Dialog) -> None:
        assert target.peer is not None
        via_host, via_port = self.b2bua.local_address(target.peer)
        content_type = request.get("content-type")
        body = request.body
        if body and request.method in ("INVITE", "UPDATE"):
            body = self.b2bua.media.offer(call.uuid, call.side_of(origin), call.side_of(target), body,
                                    content_type)
        extra = [(name, value) for name, value in request.headers
                 if name.lower() in _RELAYED_HEADERS and name.lower() != "content-type"]
        timer = call.session_timers.get("a" if target is call.a.dialog else "b")
        if timer is not None and request.method in ("INVITE", "UPDATE"):
            # Keep the target leg's own session timer (RFC 4028 7.4, 9).
            us = "uas" if target is call.a.dialog else "uac"
            them = "uac" if us == "uas" else "uas"
            who = us if timer.refresher is Refresher.US else them
            extra += [("Session-Expires", f"{timer.interval};refresher={who}"),
                      ("Supported", "timer")]
        if body:
            call.sdp_to["a" if target is call.a.dialog else "b"] = body
        relayed = target.create_request(request.method, via_host=via_host, via_port=via_port,
                                        body=body, content_type=content_type if body else None,
                                        extra_headers=extra)
        relay = Relay(tx, request, origin, target)
        if request.method in ("INVITE", "UPDATE"):
            self.relays[origin.id] = relay
        relay.sent = relayed
        self.b2bua.core.transactions.send_request(
            relayed, target.peer,
            on_response=lambda r: self.relay_response(call, relay, r))

    def relay_response(self, call: Call, relay: Relay, response: Response) -> None:
        status = response.status
        if status == 100:
            return
        request = relay.request
        if status >= 200:
            relay.target.receive_response(response)
        if 200 <= status < 300 and request.method in ("INVITE", "UPDATE"):
            timer = call.session_timers.get("a" if relay.target is call.a.dialog else "b")
            if timer is not None:
                timer.start()
        relayed = make_response(request, status, response.reason)
        content_type = response.get("content-type")
        if request.method in ("INVITE", "UPDATE") and 200 <= status < 300:
            relayed.add("Contact", str(relay.origin.local_contact))
            session_expires = request.get("session-expires")
            if session_expires is not None:
                # RFC 4028 9: the UAS copies the interval it accepts.
                relayed.add("Session-Expires", session_expires)
                if supports_timer(request):
                    relayed.add("Require", "timer")
        if response.body:
            body = self.b2bua.media.answer(call.uuid, call.side_of(relay.target),
                                     call.side_of(relay.origin), response.body, content_type)
            relayed.set_body(body, content_type)
            call.sdp_to["a" if relay.origin is call.a.dialog else "b"] = body
        if status >= 200:
            relay.origin.sent_response(relayed)
        relay.tx.respond(relayed)
        if request.method == "INVITE" and 200 <= status < 300:
            relay.held_2xx = response
            relay.retransmit = self.b2bua._retransmit_2xx(
                relay.tx, relayed, lambda: self.b2bua._hangup(call, "system", "no ACK to re-INVITE"))
            if request.body:
                self.relay_ack(call, relay, None)
            return
        if status >= 200:
            self.relays.pop(relay.origin.id, None)

    def relay_ack(self, call: Call, relay: Relay, ack: Request | None) -> None:
        """ACK the far side's 2xx to a relayed re-INVITE (with the answer, if late offer)."""
        assert relay.held_2xx is not None and relay.target.peer is not None
        assert relay.sent is not None
        if relay.acked:
            if ack is not None:
                self.relays.pop(relay.origin.id, None)
            return
        relay.acked = True
        via_host, via_port = self.b2bua.local_address(relay.target.peer)
        body, content_type = b"", None
        if ack is not None and ack.body:
            content_type = ack.get("content-type")
            body = self.b2bua.media.answer(call.uuid, call.side_of(relay.origin),
                                     call.side_of(relay.target), ack.body, content_type)
        out = relay.target.create_ack(relay.sent, relay.held_2xx,
                                      via_host=via_host, via_port=via_port, body=body,
                                      content_type=content_type)
        self.b2bua.core.send(out, relay.target.peer)
        if ack is not None:
            self.relays.pop(relay.origin.id, None)
        # Otherwise (offer in the re-INVITE, ACKed at once) the relay stays
        # until the originator's ACK stops our 2xx retransmissions.
