"""One retransmission schedule: T1 doubling up to T2, giving up after 64*T1.

RFC 3261 17.2.1 (Timer G), 13.3.1.4 (a 2xx resent until its ACK) and RFC
3262 3 (a reliable provisional resent until its PRACK) all use it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Backoff:
    t1: float
    t2: float | None = None  # None: no cap
    interval: float = 0.0  # the delay last returned
    elapsed: float = 0.0  # the delays returned so far, added up

    def first(self) -> float:
        self.interval, self.elapsed = self.t1, self.t1
        return self.t1

    def next(self) -> float | None:
        """The delay before the next resend, or None: 64*T1 has passed, give up."""
        if self.elapsed >= 64 * self.t1:
            return None
        doubled = 2 * self.interval
        self.interval = doubled if self.t2 is None else min(doubled, self.t2)
        self.elapsed += self.interval
        return self.interval
