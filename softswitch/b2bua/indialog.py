"""In-dialog requests of established calls: answered, or relayed to the other leg.

A part of the call machine. BYE ends the call; PRACK answers our reliable
provisionals; REFER starts a transfer; re-INVITE, UPDATE, INFO and OPTIONS
go to the other party with their bodies (offers and answers through the
media side), and their answers come back (RFC 3261 12.2, 14; RFC 3311; RFC
6086). An offer that crosses one in progress gets 491. The ACK of a
relayed re-INVITE's 2xx is relayed too, with the answer when the offer was
in the 2xx. A re-INVITE or UPDATE that succeeded may have moved a party
(a new Contact): the call's snapshot is saved again. Legs transferred
away stay known only to answer their BYE.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from softswitch.b2bua import events as ev
from softswitch.b2bua.legs import Leg
from softswitch.b2bua.session_timer import Refresher, supports_timer
from softswitch.sip.dialog import DialogRole, DialogState, RAck
from softswitch.sip.message import Request, Response, make_response
from softswitch.sip.peer import Peer

if TYPE_CHECKING:
    from softswitch.b2bua.machine import CallMachine

# Bodies of these INFO and UPDATE requests travel with their type.
_RELAYED_HEADERS = ("content-disposition", "info-package", "event")
_OFFERS = ("INVITE", "UPDATE")


@dataclass(slots=True, eq=False)
class Relay:
    """A request relayed from one leg (`origin`) to the other (`target`)."""

    ref: int  # the origin's server transaction
    request: Request
    origin: Leg
    target: Leg
    sent: Request | None = None  # the request as relayed to the target
    held_2xx: Response | None = None  # the target's 2xx to a re-INVITE, until our ACK
    ack_sent: Request | None = None  # our ACK to it, resent on its retransmissions
    acked: bool = False


class DialogRelay:
    __slots__ = ("call", "relays")

    def __init__(self, call: CallMachine) -> None:
        self.call = call
        self.relays: dict[str, Relay] = {}  # offers in progress, by origin leg name

    def relaying(self, leg: Leg) -> bool:
        """An offer is being relayed from `leg`'s side of the call or the other's."""
        other = self.call.other(leg)
        return leg.name in self.relays or (other is not None and other.name in self.relays)

    def busy(self, leg: Leg) -> bool:
        """An offer or re-INVITE is in progress on `leg`'s side of the call or the other's:
        a relayed one, or our own session refresh (RFC 3261 14.1)."""
        other = self.call.other(leg)
        inviting = self.call.sessions.inviting
        return self.relaying(leg) or leg.name in inviting \
            or (other is not None and other.name in inviting)

    def request(self, ref: int, request: Request, source: Peer) -> None:
        call = self.call
        leg = call.leg_of((request.call_id, request.to_tag or "", request.from_tag or ""))
        if leg is None or leg.dialog is None:
            call.respond(ref, make_response(request, 481))
            return
        dialog = leg.dialog
        other = call.other(leg)
        if leg is not call.a and leg is not call.b:
            # A leg transferred away: it may only end its dialog.
            if request.method == "BYE":
                call.respond(ref, make_response(request, 200))
                dialog.terminate()
                call.close_dialog(leg)
                call.stop_timer(f"detached:{leg.name}")
            else:
                call.respond(ref, make_response(request, 481))
            return
        verdict = dialog.receive_request(request)
        if not verdict.accepted:
            call.respond(ref, make_response(request, verdict.status or 500, verdict.reason))
            return
        method = request.method
        if method == "BYE":
            call.respond(ref, make_response(request, 200))
            dialog.terminate()
            call.hangup(call.side_of(leg), "BYE")
            return
        if method == "PRACK":
            value = request.get("rack")
            rack = RAck.parse(value) if value is not None else None
            if rack is not None and call.reliable.prack(rack):
                call.respond(ref, make_response(request, 200))
            else:
                call.respond(ref, make_response(request, 481,
                                                "No matching reliable provisional"))
            return
        if call.hosted.active and leg is call.a and call.established:
            # The PBX answered the caller itself: no other party to relay to.
            if method in _OFFERS:
                call.hosted.reoffer(ref, request)
            else:
                call.respond(ref, make_response(request, 200 if method in ("INFO", "OPTIONS")
                                                else 403))
            return
        if not call.established or other is None or other.dialog is None:
            call.respond(ref, make_response(request, 481))
            return
        if method == "REFER":
            call.transfers.refer(ref, request, leg, other)
            return
        if method in _OFFERS and self.busy(leg):
            # RFC 3261 14.2 / RFC 3311 5.2: an offer crosses one in progress.
            call.respond(ref, make_response(request, 491))
            return
        relay = Relay(ref, request, leg, other)
        if method in _OFFERS:
            self.relays[leg.name] = relay
            call.sessions.arm(leg)  # the party refreshed its session
            call.media(True, leg, other, request.body, request.get("content-type"),
                       self._send, relay)
        else:
            self._send(request.body, relay)

    def _send(self, body: bytes | None, relay: Relay) -> None:
        call = self.call
        request, target = relay.request, relay.target
        if body is None:
            status, reason = call.media_failure
            self.relays.pop(relay.origin.name, None)
            call.respond(relay.ref, make_response(request, status, reason))
            return
        if target.dialog is None or not call.established:
            self.relays.pop(relay.origin.name, None)
            call.respond(relay.ref, make_response(request, 481))
            return
        host, port = call.local(target.peer)
        content_type = request.get("content-type")
        extra = [(name, value) for name, value in request.headers
                 if name.lower() in _RELAYED_HEADERS]
        timer = target.session
        if timer is not None and request.method in _OFFERS:
            # Keep the target leg's own session timer (RFC 4028 7.4, 9).
            us = "uas" if target.dialog.role is DialogRole.UAS else "uac"
            them = "uac" if us == "uas" else "uas"
            who = us if timer.refresher is Refresher.US else them
            extra += [("Session-Expires", f"{timer.interval};refresher={who}"),
                      ("Supported", "timer")]
        if body and request.method in _OFFERS:
            target.sdp_sent = body
        relay.sent = target.dialog.create_request(
            request.method, via_host=host, via_port=port, body=body,
            content_type=content_type if body else None, extra_headers=extra)
        call.send(relay.sent, target.peer, self._response, relay)

    def _response(self, event: ev.Event, relay: Relay) -> None:
        call = self.call
        request = relay.request
        if isinstance(event, ev.RequestTimedOut | ev.TransportFailed):
            self.relays.pop(relay.origin.name, None)
            call.respond(relay.ref, make_response(request, 408))
            return
        assert isinstance(event, ev.ResponseReceived)
        response = event.response
        status = response.status
        if status == 100:
            return
        if relay.held_2xx is not None:
            # The 2xx again: our ACK was lost.
            if relay.ack_sent is not None:
                call.send_ack(relay.ack_sent, relay.target.peer)
            return
        if status >= 200 and relay.target.dialog is not None:
            relay.target.dialog.receive_response(response)
        call.media(False, relay.target, relay.origin, response.body,
                   response.get("content-type"), self._respond, relay, response)

    def _respond(self, body: bytes | None, relay: Relay, response: Response) -> None:
        call = self.call
        request, status = relay.request, response.status
        offer = request.method in _OFFERS
        if body is None:
            # The media side refused the answer: the origin keeps its old session.
            status, reason = call.media_failure
            self.relays.pop(relay.origin.name, None)
            call.respond(relay.ref, make_response(request, status, reason))
            target = relay.target
            if request.method == "INVITE" and 200 <= response.status < 300 \
                    and relay.sent is not None and target.dialog is not None:
                # RFC 3261 13.2.2.4: the target's 2xx is ACKed all the same
                # (and again on its retransmissions).
                host, port = call.local(target.peer)
                relay.held_2xx = response
                relay.ack_sent = target.dialog.create_ack(relay.sent, response,
                                                          via_host=host, via_port=port)
                call.send_ack(relay.ack_sent, target.peer)
            return
        if 200 <= status < 300 and offer:
            call.sessions.arm(relay.target)
        relayed = make_response(request, status, response.reason)
        if offer and 200 <= status < 300 and relay.origin.dialog is not None:
            relayed.add("Contact", str(relay.origin.dialog.local_contact))
            session_expires = request.get("session-expires")
            if session_expires is not None:
                # RFC 4028 9: the UAS copies the interval it accepts.
                relayed.add("Session-Expires", session_expires)
                if supports_timer(request):
                    relayed.add("Require", "timer")
        if body:
            relayed.set_body(body, response.get("content-type"))
            if offer:
                relay.origin.sdp_sent = body
        if status >= 200 and relay.origin.dialog is not None:
            relay.origin.dialog.sent_response(relayed)
        call.respond(relay.ref, relayed)
        if request.method == "INVITE" and 200 <= status < 300:
            relay.held_2xx = response
            call.retransmit(f"2xx:{relay.origin.name}", relay.ref, relayed, call.hangup,
                            "system", "no ACK to re-INVITE")
            if request.body:
                self.relay_ack(relay, None)
        elif status >= 200:
            self.relays.pop(relay.origin.name, None)
        if offer and 200 <= status < 300:
            call.changed()  # a party may have moved: a restart needs its new target
        lost = relay.target.dialog
        if status in (408, 481) and lost is not None and lost.state is DialogState.TERMINATED:
            # RFC 3261 12.2.1.2: the target lost the dialog; the bridge cannot go on.
            self.relays.pop(relay.origin.name, None)
            call.hangup("system", f"{request.method} got {status}")

    def ack(self, leg: Leg, ack: Request) -> bool:
        """The ACK of a relayed re-INVITE's 2xx; False if it is not one."""
        relay = self.relays.get(leg.name)
        if relay is None or relay.held_2xx is None \
                or ack.cseq.seq != relay.request.cseq.seq:
            return False
        self.call.stop_retransmit(f"2xx:{leg.name}")
        self.relay_ack(relay, ack)
        return True

    def relay_ack(self, relay: Relay, ack: Request | None) -> None:
        """ACK the far side's 2xx (with the answer, if the offer was in the 2xx)."""
        if ack is not None:
            self.relays.pop(relay.origin.name, None)
        if relay.acked:
            return
        relay.acked = True
        # Otherwise (offer in the re-INVITE, ACKed at once) the relay stays
        # until the originator's ACK stops our 2xx retransmissions.
        body = ack.body if ack is not None else b""
        content_type = ack.get("content-type") if ack is not None and ack.body else None
        self.call.media(False, relay.origin, relay.target, body, content_type,
                        self._ack_target, relay, content_type)

    def _ack_target(self, body: bytes | None, relay: Relay, content_type: str | None) -> None:
        target = relay.target
        if body is None:
            self.call.hangup("system", "media refused the answer in an ACK")
            return
        if target.dialog is None or relay.sent is None or relay.held_2xx is None:
            return
        host, port = self.call.local(target.peer)
        relay.ack_sent = target.dialog.create_ack(
            relay.sent, relay.held_2xx, via_host=host, via_port=port, body=body,
            content_type=content_type if body else None)
        if body:
            target.sdp_sent = body
        self.call.send_ack(relay.ack_sent, target.peer)
