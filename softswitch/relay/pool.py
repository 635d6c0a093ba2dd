"""Which relay takes a new call: weights, and health from pings. Pure.

New calls spread over the relays that are up in proportion to their
weights, by smooth weighted round robin (nginx's): deterministic, so a test
can count, and no relay gets a burst of consecutive calls. A relay is up
until it misses `misses_allowed` pings in a row, and up again as soon as
it answers anything. Calls already on a relay that went down stay with it
(their media is there); only new calls avoid it. Time comes in as `now`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class RelayState:
    address: str  # udp:HOST:PORT, as configured
    weight: int
    up: bool = True
    misses: int = 0  # pings unanswered in a row
    last_answer: float | None = None
    current: int = 0  # smooth weighted round robin's running weight


class RelayPool:
    def __init__(self, relays: list[tuple[str, int]], *, misses_allowed: int = 2) -> None:
        if not relays:
            raise ValueError("a relay pool needs at least one relay")
        self.relays = [RelayState(address, weight) for address, weight in relays]
        self.misses_allowed = misses_allowed

    def choose(self) -> str | None:
        """The relay for a new call, or None when every relay is down."""
        up = [r for r in self.relays if r.up and r.weight > 0]
        if not up:
            return None
        total = sum(r.weight for r in up)
        for r in up:
            r.current += r.weight
        best = max(up, key=lambda r: r.current)
        best.current -= total
        return best.address

    def answered(self, address: str, now: float) -> bool:
        """The relay answered (a ping or any request); True if it was down until now."""
        relay = self._find(address)
        if relay is None:
            return False
        came_back = not relay.up
        relay.up, relay.misses, relay.last_answer = True, 0, now
        return came_back

    def missed(self, address: str) -> bool:
        """A ping went unanswered; True if the relay is down from now on."""
        relay = self._find(address)
        if relay is None or not relay.up:
            return False
        relay.misses += 1
        if relay.misses >= self.misses_allowed:
            relay.up = False
            relay.current = 0
            return True
        return False

    def is_up(self, address: str) -> bool:
        relay = self._find(address)
        return relay is not None and relay.up

    def _find(self, address: str) -> RelayState | None:
        for relay in self.relays:
            if relay.address == address:
                return relay
        return None
