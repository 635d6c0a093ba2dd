"""The retransmission schedule SIP uses over unreliable transports.

RFC 3261 17.1.1.2 (Timer A), 17.1.2.2 (Timer E), 17.2.1 (Timer G), 13.3.1.4
(a UAS resends its 2xx until the ACK) and RFC 3262 3 (a reliable provisional
until its PRACK) all say the same thing: first wait T1, then double the
wait, capped at T2 (Timer A has no cap), and stop once 64*T1 has passed.
`Backoff` is that rule once, as plain data: it returns delays and never
touches a clock, so callers arm their own timers.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Backoff:
    """T1 doubling to T2, giving up once 64*T1 has elapsed.

    Call `first()` when the message is sent the first time and arm a timer
    for the delay it returns. When that timer fires, call `next()`: None
    means 64*T1 has elapsed since the first send, so give up without
    resending; otherwise resend and arm a timer for the delay returned.
    """

    t1: float
    t2: float | None = None  # None: no cap (INVITE client Timer A doubles without one)
    interval: float = 0.0  # the delay last returned
    elapsed: float = 0.0  # total of the delays returned so far

    def first(self) -> float:
        """Start over: the delay before the first resend, T1."""
        self.interval = self.t1
        self.elapsed = self.t1
        return self.t1

    def next(self) -> float | None:
        """The delay before the resend after this one, or None to give up.

        Called when the previous delay has run out, i.e. `elapsed` seconds
        after the first send: at 64*T1 or later the peer is taken for gone
        (the same bound as Timers B, F and H), so nothing more is sent.
        """
        if self.elapsed >= 64 * self.t1:
            return None
        interval = 2 * self.interval
        if self.t2 is not None and interval > self.t2:
            interval = self.t2
        self.interval = interval
        self.elapsed += interval
        return interval
