"""The seam between the relay's userspace forwarder and a kernel fast path.

Once both sides of an RTP stream are latched, the forwarder hands the pair
of 5-tuples to a `FastPath`; from then on the kernel forwards both
directions (strict-source by construction: only the latched 5-tuples
match) and the relay's Python sees none of those packets. RTCP stays in
userspace, where its reports feed the stream's health figures. A change of
source, a re-INVITE or a stream that needs media processing calls
`remove`, and the stream is back in userspace.

`NoFastPath` is what runs where the kernel path is unavailable (no
CAP_NET_ADMIN, a container): the relay says why once, at start.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

Address = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Flow:
    """A latched stream: what arrives from `a_remote` at `a_local` leaves `b_local` for `b_remote`, and back."""

    key: str
    a_local: Address
    a_remote: Address
    b_local: Address
    b_remote: Address


@dataclass(frozen=True, slots=True)
class FlowCounters:
    """Packets and bytes the kernel forwarded, per direction, since `install`."""

    a_to_b_packets: int = 0
    a_to_b_bytes: int = 0
    b_to_a_packets: int = 0
    b_to_a_bytes: int = 0


class FastPath(Protocol):
    name: str

    def install(self, flow: Flow) -> None:
        """Forward `flow` in the kernel from now on (replacing any flow with the same key)."""
        ...

    def remove(self, key: str) -> FlowCounters:
        """Stop forwarding `key` in the kernel; what it counted up to now."""
        ...

    def counters(self, key: str) -> FlowCounters:
        """What the kernel forwarded for `key` so far (zeros if it is not installed)."""
        ...

    def resync(self, key: str) -> None:
        """Forget the connection-tracking state of `key`'s 5-tuples: a packet of the
        flow read before the install was just sent from userspace, and the state
        that send made would shadow the kernel's forwarding."""
        ...

    def close(self) -> None:
        """Remove every flow and whatever the fast path installed at start."""
        ...


class NoFastPath:
    """Everything stays in userspace."""

    name = "userspace"

    def install(self, flow: Flow) -> None:
        return None

    def remove(self, key: str) -> FlowCounters:
        return FlowCounters()

    def counters(self, key: str) -> FlowCounters:
        return FlowCounters()

    def resync(self, key: str) -> None:
        return None

    def close(self) -> None:
        return None
