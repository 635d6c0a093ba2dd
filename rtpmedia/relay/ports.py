"""The relay's UDP port range: pairs of ports, RTP on the even one and RTCP on the next.

RFC 3550 11 asks for RTP on an even port and RTCP on the next (odd) one;
RFC 3605 lets RTCP live elsewhere, but a relay that keeps to the pair needs
no a=rtcp for peers that ignore it. Allocation is round robin over the
range, so a pair just released is the last to be handed out again (a late
packet of an ended call does not land in a new one).
"""

from __future__ import annotations

from collections import deque

EPHEMERAL_FILE = "/proc/sys/net/ipv4/ip_local_port_range"


def ephemeral_overlap(low: int, high: int, ephemeral: tuple[int, int]) -> tuple[int, int] | None:
    """The part of `[low, high]` inside the system's ephemeral range, if any."""
    start, end = max(low, ephemeral[0]), min(high, ephemeral[1])
    return (start, end) if start <= end else None


def read_ephemeral(path: str = EPHEMERAL_FILE) -> tuple[int, int] | None:
    """Linux's ephemeral port range, or None where it cannot be read."""
    try:
        with open(path, encoding="ascii") as f:
            low, high = f.read().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return None


class PortsExhausted(Exception):
    """No free pair is left in the range."""


class PortPool:
    """Free and taken even ports of `[low, high]`; each stands for the pair (p, p + 1)."""

    def __init__(self, low: int, high: int) -> None:
        if not 1024 <= low <= high <= 65535:
            raise ValueError(f"bad port range {low}-{high}")
        first = low + (low % 2)
        self.low, self.high = low, high
        self._free: deque[int] = deque(range(first, high, 2))  # p + 1 <= high
        self._taken: set[int] = set()
        if not self._free:
            raise ValueError(f"port range {low}-{high} holds no even/odd pair")

    @property
    def capacity(self) -> int:
        return len(self._free) + len(self._taken)

    @property
    def available(self) -> int:
        return len(self._free)

    def allocate(self) -> int:
        """The RTP port of a free pair (RTCP is the next port)."""
        if not self._free:
            raise PortsExhausted("Ran out of ports")
        port = self._free.popleft()
        self._taken.add(port)
        return port

    def reserve(self, port: int) -> bool:
        """Take the pair at `port` (a restored allocation); False if it is not ours to give."""
        if port in self._taken or port not in self._free:
            return False
        self._free.remove(port)
        self._taken.add(port)
        return True

    def release(self, port: int) -> None:
        if port in self._taken:
            self._taken.remove(port)
            self._free.append(port)

    def skip(self, port: int) -> None:
        """Set aside a pair the system would not let us bind: it is taken by someone else."""
        self._taken.discard(port)
        try:
            self._free.remove(port)
        except ValueError:
            pass
