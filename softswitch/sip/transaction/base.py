"""What client and server transactions share: timers, sending, the context.

A transaction holds at most two timers at a time, which is all RFC 3261 17
ever needs: a retransmission timer (A, E or G) and the timer of the current
state (B, D, F, H, I, J, K, L, M, or the 200 ms wait before 100 Trying).
Every move between states goes through the subclass's `_transition`, checked
against the tables of `state.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from softswitch.sip.message import Message, Request
from softswitch.sip.peer import Peer
from softswitch.sip.retransmit import Backoff
from softswitch.sip.transaction.state import (
    TransactionState,
    TransactionStateError,
    Transitions,
)
from softswitch.sip.transaction.timers import Clock, DelayedCall, TimerSettings


class TransportError(Exception):
    """`send` could not hand a message to the network (RFC 3261 17.1.4, 18.4).

    Raised by the transport's `send`, e.g. when a TCP connection is refused;
    a client transaction reports it to its user, which RFC 3261 8.1.3.1 treats
    like a 503, and a server transaction ends.
    """


Send = Callable[[Message, Peer], None]


@dataclass(slots=True)
class TransactionContext:
    """What every transaction of one layer shares, kept once rather than per transaction."""

    clock: Clock
    send: Send
    timers: TimerSettings
    release: Callable[[Transaction], None]  # the layer forgets a Terminated transaction
    counts: TransactionCounts = field(default_factory=lambda: TransactionCounts())


@dataclass(slots=True)
class TransactionCounts:
    """Totals for metrics, plain ints bumped on the hot path and read at scrape time."""

    server: int = 0  # server transactions created
    client: int = 0  # client transactions created
    retransmitted: int = 0  # requests and responses we sent again (Timers A, E, G)
    absorbed: int = 0  # request retransmissions received and absorbed


class Transaction:
    """The part of a client or server transaction that is not a state machine."""

    __slots__ = ("request", "peer", "state", "_ctx", "_table", "_retransmit", "_timer",
                 "_backoff")

    def __init__(self, ctx: TransactionContext, request: Request, peer: Peer,
                 initial: TransactionState, table: Transitions) -> None:
        self.request = request
        self.peer = peer  # where this transaction's messages go
        self.state = initial
        self._ctx = ctx
        self._table = table
        self._retransmit: DelayedCall | None = None
        self._timer: DelayedCall | None = None
        # The schedule of Timer A, E or G, made when one is armed: transactions
        # over TCP or TLS and most server transactions never need one.
        self._backoff: Backoff | None = None

    @property
    def method(self) -> str:
        return self.request.method

    @property
    def is_invite(self) -> bool:
        return self.request.method == "INVITE"

    @property
    def terminated(self) -> bool:
        return self.state is TransactionState.TERMINATED

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.request.method} {self.state.value}>"

    # -- used by the subclasses' transitions ---------------------------------

    def _check(self, new: TransactionState) -> None:
        if new not in self._table[self.state]:
            raise TransactionStateError(
                f"{type(self).__name__} {self.request.method}: "
                f"{self.state.value} -> {new.value} is not a transition"
            )

    def _start_retransmit(self, fn: Callable[[], None], *, capped: bool = True) -> None:
        """Arm the first retransmission, T1 from now (Timer A, E or G)."""
        timers = self._ctx.timers
        self._backoff = Backoff(timers.t1, timers.t2 if capped else None)
        self._arm_retransmit(self._backoff.first(), fn)

    def _next_retransmit_delay(self) -> float | None:
        """The delay before the retransmission after this one; None past 64*T1."""
        return self._backoff.next() if self._backoff is not None else None

    def _arm_retransmit(self, delay: float, fn: Callable[[], None]) -> None:
        self._retransmit = self._ctx.clock.callLater(delay, fn)

    def _arm_timer(self, delay: float, fn: Callable[[], None]) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = self._ctx.clock.callLater(delay, fn)

    def _cancel_retransmit(self) -> None:
        # Twisted raises AlreadyCalled/AlreadyCancelled on a second cancel,
        # so check first: a timer may be cancelled from inside its own callback.
        if self._retransmit is not None:
            if self._retransmit.active():
                self._retransmit.cancel()
            self._retransmit = None

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None

    def _cancel_timers(self) -> None:
        self._cancel_retransmit()
        self._cancel_timer()

    def _transmit(self, message: Message) -> bool:
        """Hand `message` to the transport; False when it raised TransportError."""
        try:
            self._ctx.send(message, self.peer)
        except TransportError:
            return False
        return True
