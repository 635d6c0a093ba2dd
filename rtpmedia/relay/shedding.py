"""When the relay runs out of CPU, media repair is shed first, and comes back when there is room (pure).

Repairing a stream (jitter buffer, concealment, re-encoding on the relay's
tick) costs several times what forwarding it does. Past what one core can
carry the relay falls behind: ticks run late, socket queues overflow, and
every stream degrades at once, to a fraction of its frames. So each tick the
repair stage reports the CPU time the relay's thread has used, and:

- when the relay used more than `limit` of a core over the last `window`
  seconds, just enough of the repaired directions (the newest) to get back
  under it go back to plain forwarding (as for a whole core when its ticks
  came late too): those calls lose repair, every call keeps its audio;
- when it has stayed under `low` for `hold` seconds, its ticks on time, as
  many of the shed directions as fit under `low` (at least one) are
  repaired again.

How many is reckoned from the cost of one repaired direction, estimated as
the share over the window divided by the directions repaired: all the
relay's work charged to repair, an overestimate, so that shedding errs
towards too few (the next window sheds more) and restoring towards too few
(the next window restores more). After either, the share is measured over a
whole window afresh before the next decision.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Step:
    """What the budget decided at one tick: how many directions to stop repairing and how many
    of those shed earlier to repair again (at most one of the two is not 0)."""

    shed: int = 0
    restore: int = 0


HOLD = Step()  # nothing to change


@dataclass(slots=True)
class RepairBudget:
    """How much repair to shed or restore, given the CPU the relay has been using."""

    limit: float = 0.9  # share of one core the relay may use before repair is shed
    #: Share under which shed repair may come back: far enough below `limit`
    #: that the error of the cost estimate, and the backlog a relay that fell
    #: behind works off, do not take it back over and shed again (ping-pong).
    low: float = 0.7
    #: Seconds the share must stay under `low` before anything is restored:
    #: longer than a lull between bursts of calls (answered in a second or
    #: two), short against a call's length.
    hold: float = 2.0
    #: Seconds the share is measured over: long enough that a burst of
    #: signalling is not taken for overload; in time, not ticks, because an
    #: overloaded relay's ticks come late.
    window: float = 0.5
    #: Of the directions that want repair (repaired and shed), at most this
    #: fraction (at least one) is restored at once: the cost was measured on
    #: those repaired now, and those coming back may cost more (another codec,
    #: more loss). Of all, not of those still shed: a tenth of what is left
    #: would shrink step by step and leave the last ones waiting for tens of
    #: seconds.
    restore_step: float = 0.1
    #: The relay's tick. A window whose ticks came on average more than a
    #: quarter late (ticks a relay behind skips) is not room, whatever the
    #: share: a thread that other programs keep off the CPU uses little of it
    #: and is still behind.
    period: float = 0.020
    cost: float = 0.0  # share of a core one repaired direction takes, as last measured (0: unknown)
    calm_since: float | None = None  # since when every window has been under `low`
    samples: deque[tuple[float, float]] = field(default_factory=deque)  # (tick time, CPU time)

    def tick(self, now: float, cpu: float, repaired: int, shed: int) -> Step:
        """A tick at `now` (seconds) with the relay's thread at `cpu` seconds of CPU,
        `repaired` directions repaired and `shed` shed earlier (and not restored since):
        what to change now (usually nothing)."""
        samples = self.samples
        samples.append((now, cpu))
        while len(samples) > 2 and now - samples[1][0] >= self.window:
            samples.popleft()  # the oldest that still spans the window stays first
        then, cpu_then = samples[0]
        if now - then < self.window:
            return HOLD
        # One thread cannot use more than a core. More is measured when a tick
        # ran long: its CPU is read at its end, its time is when it started.
        share = min(1.0, (cpu - cpu_then) / (now - then))
        if repaired:
            self.cost = share / repaired
        behind = now - then > 1.25 * self.period * (len(samples) - 1)
        if share > self.limit:
            self.calm_since = None
            if not repaired:
                return HOLD
            self._afresh(now, cpu)
            # Behind as well: it wants more than the core it got, how much more
            # the share cannot say; shed as for a whole core.
            over = (1.0 if behind else share) - self.limit
            return Step(shed=min(repaired, max(1, math.ceil(over / self.cost))))
        if share >= self.low or behind:
            self.calm_since = None
            return HOLD
        if self.calm_since is None:
            self.calm_since = now
        if not shed or not self.cost or now - self.calm_since < self.hold:
            return HOLD
        # At least one: with few directions repaired (none, once all were shed
        # for a load of plain forwarding) the estimate is far above what one
        # costs and would keep the rest shed for good; one at a time, measured
        # afresh in between, cannot take a relay from under `low` past `limit`
        # unless one direction costs more than the gap between them.
        fits = max(1, math.floor((self.low - share) / self.cost))
        count = min(shed, fits, max(1, math.ceil((repaired + shed) * self.restore_step)))
        self._afresh(now, cpu)
        return Step(restore=count)

    def _afresh(self, now: float, cpu: float) -> None:
        """After a change the next decision waits for a whole window measured with it."""
        self.samples.clear()
        self.samples.append((now, cpu))
