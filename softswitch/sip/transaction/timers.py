"""Timer values and the clock the transaction layer runs on.

RFC 3261 17.1.1.1 and table 4 (T1, T2, T4 and the timers derived from them),
RFC 6026 section 8.11 (Timers L and M). The clock is injected: in production
it is the Twisted reactor, in tests `twisted.internet.task.Clock`; this module
only names the two methods we use, as a `typing.Protocol`, so that nothing in
`softswitch.sip` imports Twisted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


class DelayedCall(Protocol):
    """What `Clock.callLater` returns (Twisted's IDelayedCall, the part we use)."""

    def cancel(self) -> None: ...

    def active(self) -> bool: ...


class Clock(Protocol):
    """Twisted's IReactorTime, the part we use: the time now and timers."""

    def seconds(self) -> float: ...

    # Positional-only so that Twisted's implementations (which name the
    # parameter `callable` and accept keywords) match structurally.
    def callLater(
        self, delay: float, fn: Callable[..., object], /, *args: object
    ) -> DelayedCall: ...


@dataclass(slots=True, frozen=True)
class TimerSettings:
    """T1, T2, T4 and the timers of RFC 3261 table 4 derived from them (seconds).

    The defaults are the RFC's. A deployment on a fast LAN may lower T1 (17.1.1.1
    allows it), and every derived timer follows. `trying_delay` is how long an
    INVITE server transaction waits for the TU before it sends 100 Trying itself
    (RFC 3261 17.2.1 says 200 ms); None never sends one.
    """

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    trying_delay: float | None = 0.2

    def __post_init__(self) -> None:
        if self.t1 <= 0 or self.t2 < self.t1 or self.t4 < 0:
            raise ValueError("timers need 0 < T1 <= T2 and T4 >= 0")
        if self.trying_delay is not None and self.trying_delay < 0:
            raise ValueError("trying_delay must not be negative")

    @property
    def b(self) -> float:
        """Timer B: an INVITE client transaction gives up waiting for a response."""
        return 64 * self.t1

    @property
    def f(self) -> float:
        """Timer F: a non-INVITE client transaction gives up."""
        return 64 * self.t1

    @property
    def h(self) -> float:
        """Timer H: an INVITE server transaction gives up waiting for the ACK."""
        return 64 * self.t1

    def d(self, reliable: bool) -> float:
        """Timer D: absorb retransmitted non-2xx finals (at least 32 s over UDP).

        It must outlast the server's Timer H (64*T1), hence the max() when T1
        is raised above its default.
        """
        return 0.0 if reliable else max(32.0, 64 * self.t1)

    def i(self, reliable: bool) -> float:
        """Timer I: absorb ACK retransmissions in Confirmed."""
        return 0.0 if reliable else self.t4

    def j(self, reliable: bool) -> float:
        """Timer J: absorb non-INVITE request retransmissions in Completed."""
        return 0.0 if reliable else 64 * self.t1

    def k(self, reliable: bool) -> float:
        """Timer K: absorb response retransmissions in Completed."""
        return 0.0 if reliable else self.t4

    @property
    def l(self) -> float:  # noqa: E743 - the RFC's name for it
        """Timer L (RFC 6026): the INVITE server transaction's Accepted state."""
        return 64 * self.t1

    @property
    def m(self) -> float:
        """Timer M (RFC 6026): the INVITE client transaction's Accepted state."""
        return 64 * self.t1


DEFAULT_TIMERS = TimerSettings()
