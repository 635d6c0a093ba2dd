"""Reliable provisional responses towards the caller (RFC 3262 3, as UAS).

When the caller supports 100rel, the 18x we relay to it carry `Require:
100rel` and an RSeq, and are resent (T1 doubling up to T2) until the PRACK
naming them arrives. Only one is in flight at a time (RFC 3262 3): later
ones wait their turn. After 64*T1 without PRACK we stop resending and let
the call go on; the final response ends it all anyway.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Any

from softswitch.sip.dialog import RAck
from softswitch.sip.message import Response
from softswitch.sip.retransmit import Backoff


class ReliableProvisionals:
    def __init__(self, clock: Any, t1: float, t2: float,
                 send: Callable[[Response], object]) -> None:
        self.clock = clock
        self._send = send
        self._queue: collections.deque[Response] = collections.deque()
        self.pending: Response | None = None
        self._rack: RAck | None = None
        self._timer: Any = None
        self._backoff = Backoff(t1, t2)
        # Every RAck we made: a PRACK that crossed our 2xx, or a repeated one,
        # still gets its 200 (a 481 would make the caller end the dialog).
        self._sent: set[RAck] = set()

    def send(self, response: Response) -> None:
        if self.pending is not None:
            self._queue.append(response)
        else:
            self._start(response)

    def _start(self, response: Response) -> None:
        self.pending = response
        self._rack = RAck.for_response(response)
        self._sent.add(self._rack)
        self._send(response)
        self._timer = self.clock.callLater(self._backoff.first(), self._resend)

    def _resend(self) -> None:
        self._timer = None
        if self.pending is None:
            return
        delay = self._backoff.next()
        if delay is None:
            self._next()  # no PRACK within 64*T1: give up on this one
            return
        self._send(self.pending)
        self._timer = self.clock.callLater(delay, self._resend)

    def prack(self, rack: RAck) -> bool:
        """A PRACK arrived; True if it names a reliable provisional we sent."""
        if self.pending is not None and rack == self._rack:
            self._next()
            return True
        return rack in self._sent

    def _next(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self.pending, self._rack = None, None
        if self._queue:
            self._start(self._queue.popleft())

    def stop(self) -> None:
        """The final response went out: resend nothing more."""
        self._queue.clear()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self.pending, self._rack = None, None
