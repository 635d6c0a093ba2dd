"""Session timers (RFC 4028) of established calls: starting them and refreshing.

`session_timer.py` negotiates and keeps time; this is the glue to the
calls. As refresher we send UPDATE when the peer allows it, else a
re-INVITE with the last SDP we sent that side; a refresh answered 408 or
481, or not at all, ends the call (the dead-peer check); 491 retries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from softswitch.b2bua.call import Call, CallState
from softswitch.b2bua.session_timer import SessionTimer, negotiate_as_uac
from softswitch.sip.dialog import Dialog
from softswitch.sip.message import Message, Response

if TYPE_CHECKING:
    from softswitch.b2bua.b2bua import B2BUA


class SessionRefresh:
    def __init__(self, b2bua: B2BUA) -> None:
        self.b2bua = b2bua

    def start(self, call: Call) -> None:
        a, leg = call.a, call.winner
        if call.a_session is not None and a.dialog is not None:
            call.session_timers["a"] = SessionTimer(
                self.b2bua.clock, call.a_session.expires.interval, call.a_session.refresher,
                lambda: self.refresh(call, "a"),
                lambda: self.b2bua._hangup(call, "system", "session timer expired (caller)"))
        if leg is not None and leg.dialog is not None and leg.answer_2xx is not None:
            agreed = negotiate_as_uac(leg.answer_2xx)
            if agreed is not None:
                call.session_timers["b"] = SessionTimer(
                    self.b2bua.clock, agreed[0], agreed[1], lambda: self.refresh(call, "b"),
                    lambda: self.b2bua._hangup(call, "system", "session timer expired (callee)"))

    def side_dialog(self, call: Call, side: str) -> tuple[Dialog | None, Message | None]:
        """A side's dialog, and the message that says what its peer allows."""
        if side == "a":
            return call.a.dialog, call.a.initial
        leg = call.winner
        return (leg.dialog, leg.answer_2xx) if leg is not None else (None, None)

    def refresh(self, call: Call, side: str) -> None:
        """Refresh one leg's session: UPDATE if the peer allows it, else re-INVITE."""
        timer = call.session_timers.get(side)
        dialog, allows = self.side_dialog(call, side)
        if timer is None or dialog is None or dialog.peer is None \
                or call.state is not CallState.CONFIRMED:
            return
        if dialog.id in self.b2bua.relay.relays or (call.other_dialog(dialog) is not None
                                         and call.other_dialog(dialog).id in self.b2bua.relay.relays):  # type: ignore[union-attr]
            timer.start()  # an offer is crossing: the relayed one refreshes the session
            return
        allowed = {m.strip().upper() for m in allows.values("allow")} if allows else set()
        role = "uas" if side == "a" else "uac"
        headers = [("Session-Expires", f"{timer.interval};refresher={role}"),
                   ("Supported", "timer")]
        via_host, via_port = self.b2bua.local_address(dialog.peer)
        if "UPDATE" in allowed:
            request = dialog.create_request("UPDATE", via_host=via_host, via_port=via_port,
                                            extra_headers=headers)
        elif side in call.sdp_to:
            request = dialog.create_request("INVITE", via_host=via_host, via_port=via_port,
                                            body=call.sdp_to[side],
                                            content_type="application/sdp",
                                            extra_headers=headers)
        else:
            timer.stop()  # nothing to refresh with: the peer keeps the session
            return
        peer = dialog.peer

        def answered(response: Response) -> None:
            if response.status < 200:
                return
            if request.method == "INVITE" and 200 <= response.status < 300:
                dialog.receive_response(response)
                ack_host, ack_port = self.b2bua.local_address(peer)
                self.b2bua.core.send(dialog.create_ack(request, response, via_host=ack_host,
                                                 via_port=ack_port), peer)
            if response.status < 300:
                timer.start()
            elif response.status in (408, 481):
                self.b2bua._hangup(call, "system", f"session refresh got {response.status}")
            elif response.status == 491:
                call.timers.append(self.b2bua.clock.callLater(2.0, self.refresh, call, side))
            else:
                timer.stop()  # the peer refuses refreshes: it keeps the session itself

        self.b2bua.core.transactions.send_request(
            request, peer, on_response=answered,
            on_timeout=lambda: self.b2bua._hangup(call, "system", "peer does not answer"),
            on_transport_error=lambda: self.b2bua._hangup(call, "system", "peer unreachable"))
