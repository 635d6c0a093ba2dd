"""Reliable provisional responses towards the caller (RFC 3262 3, as UAS).

When the caller supports 100rel, the 18x relayed to it carry `Require:
100rel` and an RSeq, and are resent (T1 doubling up to T2) until the PRACK
naming them arrives. Only one is in flight at a time (RFC 3262 3): later
ones wait their turn. After 64*T1 without PRACK we stop resending and let
the call go on; the final response ends it all anyway. A part of the call
machine: it returns its sends and timers through the machine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from softswitch.sip.dialog import RAck
from softswitch.sip.message import Response
from softswitch.sip.retransmit import Backoff

if TYPE_CHECKING:
    from softswitch.b2bua.machine import CallMachine

TIMER = "reliable"


class ReliableProvisionals:
    __slots__ = ("call", "queue", "pending", "rack", "backoff", "sent")

    def __init__(self, call: CallMachine) -> None:
        self.call = call
        self.queue: list[Response] = []
        self.pending: Response | None = None
        self.rack: RAck | None = None
        self.backoff = Backoff(call.settings.t1, call.settings.t2)
        # Every RAck we made: a PRACK that crossed our 2xx, or a repeated one,
        # still gets its 200 (a 481 would make the caller end the dialog).
        self.sent: list[RAck] = []

    def send(self, response: Response) -> None:
        if self.pending is not None:
            self.queue.append(response)
        else:
            self._start(response)

    def _start(self, response: Response) -> None:
        self.pending = response
        self.rack = RAck.for_response(response)
        self.sent.append(self.rack)
        self.call.respond(self.call.a_ref, response)
        self.call.start_timer(TIMER, self.backoff.first(), self._resend)

    def _resend(self) -> None:
        if self.pending is None:
            return
        delay = self.backoff.next()
        if delay is None:
            self._next()  # no PRACK: give up on this one
            return
        self.call.respond(self.call.a_ref, self.pending)
        self.call.start_timer(TIMER, delay, self._resend)

    def prack(self, rack: RAck) -> bool:
        """A PRACK arrived; True if it names a reliable provisional we sent."""
        if self.pending is not None and rack == self.rack:
            self._next()
            return True
        return rack in self.sent

    def _next(self) -> None:
        self.call.stop_timer(TIMER)
        self.pending, self.rack = None, None
        if self.queue:
            self._start(self.queue.pop(0))

    def stop(self) -> None:
        """The final response went out: resend nothing more."""
        self.queue.clear()
        if self.pending is not None:
            self.call.stop_timer(TIMER)
        self.pending, self.rack = None, None
