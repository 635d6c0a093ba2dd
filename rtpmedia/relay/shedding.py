"""When the relay runs out of CPU, media repair is shed first (pure).

Repairing a stream (jitter buffer, concealment, re-encoding on the relay's
tick) costs several times what forwarding it does. Past what one core can
carry the relay falls behind: ticks run late, socket queues overflow, and
every stream degrades at once, to a fraction of its frames. So each tick the
repair stage reports the CPU time the relay's thread has used, and when the
relay used more than `limit` of a core over the last `window` seconds, a
`fraction` of the repaired directions (the newest) go back to plain
forwarding: those calls lose repair, every call keeps its audio. Then the
share is measured afresh before anything more is shed.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field


@dataclass(slots=True)
class RepairBudget:
    """How much repair to shed, given the CPU the relay has been using."""

    limit: float = 0.9  # share of one core the relay may use before repair is shed
    #: Seconds the share is measured over: long enough that a burst of
    #: signalling is not taken for overload; in time, not ticks, because an
    #: overloaded relay's ticks come late.
    window: float = 0.5
    fraction: float = 0.1  # of the repaired directions shed at once
    samples: deque[tuple[float, float]] = field(default_factory=deque)  # (tick time, CPU time)

    def tick(self, now: float, cpu: float, directions: int) -> int:
        """A tick at `now` (seconds) with the relay's thread at `cpu` seconds of CPU and
        `directions` repaired: how many of them to shed now (usually none)."""
        samples = self.samples
        samples.append((now, cpu))
        while len(samples) > 2 and now - samples[1][0] >= self.window:
            samples.popleft()  # the oldest that still spans the window stays first
        then, cpu_then = samples[0]
        if now - then < self.window or not directions:
            return 0
        if (cpu - cpu_then) / (now - then) <= self.limit:
            return 0
        samples.clear()
        samples.append((now, cpu))
        return min(directions, max(1, math.ceil(directions * self.fraction)))
