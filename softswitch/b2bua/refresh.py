"""Session timers (RFC 4028) of established calls: arming, refreshing, expiring.

`session_timer.py` negotiates and says how long; this part of the call
machine keeps one timer per bridged leg (`session:<leg>`). As refresher we
send UPDATE when the peer allows it, else a re-INVITE with the last SDP we
sent that side; a refresh answered 408 or 481, or not at all, ends the call
(the dead-peer check); 491 retries after 2 s. As non-refresher we end the
call when the peer's refresh does not come in time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from softswitch.b2bua import events as ev
from softswitch.b2bua.legs import Leg
from softswitch.b2bua.session_timer import (
    REFRESH,
    SessionTimer,
    negotiate_as_uac,
)
from softswitch.sip.dialog import DialogRole
from softswitch.sip.message import Request, Response

if TYPE_CHECKING:
    from softswitch.b2bua.machine import CallMachine


class SessionRefresh:
    __slots__ = ("call", "inviting")

    def __init__(self, call: CallMachine) -> None:
        self.call = call
        # Legs with our refresh re-INVITE in progress: an INVITE or offer
        # crossing it gets 491 (RFC 3261 14.1, 14.2).
        self.inviting: list[str] = []  # a list: tiny, and far smaller than a set

    def start(self) -> None:
        """The call is established: negotiate and arm each leg's timer."""
        call = self.call
        a, b = call.a, call.b
        if call.a_session is not None and a.dialog is not None:
            a.session = SessionTimer(call.a_session.expires.interval, call.a_session.refresher)
            self.arm(a)
        if b is not None and b.dialog is not None and b.answer_2xx is not None:
            self.adopt(b, b.answer_2xx)

    def adopt(self, leg: Leg, answer: Response) -> None:
        """`leg` answered with `answer` (a 2xx we sent the INVITE of): its timer, if any."""
        agreed = negotiate_as_uac(answer)
        self.stop(leg)
        leg.session = SessionTimer(agreed[0], agreed[1]) if agreed is not None else None
        self.arm(leg)

    def resume(self) -> None:
        """A restored call: arm the timers the snapshot kept."""
        for leg in (self.call.a, self.call.b):
            if leg is not None:
                self.arm(leg)

    def arm(self, leg: Leg) -> None:
        """(Re)start `leg`'s timer: the session was set up or refreshed, by either side."""
        if leg.session is not None and leg.session.interval > 0:
            self.call.start_timer(f"session:{leg.name}", leg.session.delay, self._fired, leg)

    def stop(self, leg: Leg) -> None:
        self.call.stop_timer(f"session:{leg.name}")
        self.call.stop_timer(f"refresh_retry:{leg.name}")

    def _fired(self, leg: Leg) -> None:
        if leg.session is None:
            return
        if leg.session.on_fire == REFRESH:
            self.refresh(leg)
        else:
            side = "caller" if leg is self.call.a else "callee"
            self.call.hangup("system", f"session timer expired ({side})")

    def refresh(self, leg: Leg) -> None:
        """Refresh one leg's session: UPDATE if the peer allows it, else re-INVITE."""
        call = self.call
        dialog, timer = leg.dialog, leg.session
        if timer is None or dialog is None or not call.established \
                or (call.other(leg) is None and not call.hosted.active):
            return  # (a caller the relay answers has no other leg, and is refreshed too)
        if leg.name in self.inviting:
            return  # our last refresh is still out
        if call.relay.relaying(leg):
            self.arm(leg)  # an offer is crossing: the relayed one refreshes the session
            return
        role = "uas" if dialog.role is DialogRole.UAS else "uac"
        headers = [("Session-Expires", f"{timer.interval};refresher={role}"),
                   ("Supported", "timer")]
        host, port = call.local(leg.peer)
        if "UPDATE" in leg.allows:
            request = dialog.create_request("UPDATE", via_host=host, via_port=port,
                                            extra_headers=headers)
        elif leg.sdp_sent:
            request = dialog.create_request("INVITE", via_host=host, via_port=port,
                                            body=leg.sdp_sent, content_type="application/sdp",
                                            extra_headers=headers)
        else:
            self.stop(leg)  # nothing to refresh with: the peer keeps the session
            return
        if request.method == "INVITE":
            self.inviting.append(leg.name)
        call.send(request, leg.peer, self._answered, leg, request)

    def _answered(self, event: ev.Event, leg: Leg, request: Request) -> None:
        call = self.call
        if not isinstance(event, ev.ResponseReceived) or event.response.status >= 200:
            if leg.name in self.inviting:
                self.inviting.remove(leg.name)
        if isinstance(event, ev.RequestTimedOut):
            call.hangup("system", "peer does not answer")
            return
        if isinstance(event, ev.TransportFailed):
            call.hangup("system", "peer unreachable")
            return
        assert isinstance(event, ev.ResponseReceived)
        response = event.response
        if response.status < 200 or leg.dialog is None:
            return
        if request.method == "INVITE" and 200 <= response.status < 300:
            leg.dialog.receive_response(response)
            call.ack(leg, leg.dialog, request, response)
        if response.status < 300:
            self.arm(leg)
        elif response.status in (408, 481):
            call.hangup("system", f"session refresh got {response.status}")
        elif response.status == 491:
            call.start_timer(f"refresh_retry:{leg.name}", 2.0, self.refresh, leg)
        else:
            self.stop(leg)  # the peer refuses refreshes: it keeps the session itself
