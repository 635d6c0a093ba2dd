"""The SIP messages of each call, for the ladder of `softswitch calls show`.

`MessageLog` is a `MessageObserver` of the SIP core. It keeps, per Call-ID,
a bounded ring of the messages sent and received. It starts a ring only
for an INVITE outside a dialog (a call's first message, from the caller or
ours to a callee): REGISTER and OPTIONS traffic, which is most messages on
a busy server, costs one dictionary look-up and is never stored. The number
of rings is bounded too: the oldest is dropped first.

When a call ends, `call_ended` keeps its last snapshot with the names of its
rings, so that a failed call can still be examined a minute later; only the
last `keep_finished` calls are kept, and their rings go with them.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass
from typing import Any

from softswitch.b2bua.snapshot import CallSnapshot
from softswitch.sip.message import Request, Response
from softswitch.sip.peer import Peer


@dataclass(frozen=True, slots=True)
class Captured:
    """One message as it crossed the wire, seen from our side."""

    seq: int  # the order in which the core saw them, across every ring
    time: float  # Unix seconds
    received: bool  # True: from `peer` to us; False: from us to `peer`
    peer: Peer
    message: Request | Response

    @property
    def summary(self) -> str:
        """The start line, or `INVITE` / `180 Ringing` for the ladder's arrows."""
        message = self.message
        if isinstance(message, Request):
            return message.method
        return f"{message.status} {message.reason}".strip()

    def as_dict(self) -> dict[str, Any]:
        message = self.message
        return {
            "time": self.time,
            "direction": "in" if self.received else "out",
            "transport": self.peer.transport,
            "peer": f"{self.peer.host}:{self.peer.port}",
            "call_id": message.get("call-id") or "",
            "summary": self.summary,
            "cseq": message.get("cseq") or "",
            "text": message.to_bytes().decode("utf-8", "replace"),
        }


class MessageLog:
    """Rings of messages by Call-ID; the snapshots of the last finished calls."""

    def __init__(self, ring_size: int = 64, max_rings: int = 10000,
                 keep_finished: int = 100) -> None:
        self.ring_size = ring_size
        self.max_rings = max_rings
        self._rings: dict[str, deque[Captured]] = {}
        self._finished: deque[CallSnapshot] = deque()
        self._keep_finished = keep_finished
        self._seq = itertools.count()

    # -- MessageObserver -------------------------------------------------------------

    def message_received(self, message: Request | Response, peer: Peer, now: float) -> None:
        self._record(message, peer, now, True)

    def message_sent(self, message: Request | Response, peer: Peer, now: float) -> None:
        self._record(message, peer, now, False)

    def _record(self, message: Request | Response, peer: Peer, now: float,
                received: bool) -> None:
        call_id = message.get("call-id")
        if call_id is None:
            return
        ring = self._rings.get(call_id)
        if ring is None:
            if not (isinstance(message, Request) and message.method == "INVITE"
                    and message.to_tag is None):
                return
            if len(self._rings) >= self.max_rings:
                del self._rings[next(iter(self._rings))]
            ring = self._rings[call_id] = deque(maxlen=self.ring_size)
        ring.append(Captured(next(self._seq), now, received, peer, message))

    # -- calls -----------------------------------------------------------------------

    def call_ended(self, snapshot: CallSnapshot) -> None:
        """Keep the ended call for inspection; forget the oldest beyond the bound."""
        self._finished.append(snapshot)
        while len(self._finished) > self._keep_finished:
            old = self._finished.popleft()
            for call_id in call_ids(old):
                self._rings.pop(call_id, None)

    def finished(self) -> list[CallSnapshot]:
        """The kept finished calls, the most recent last."""
        return list(self._finished)

    def messages_of(self, snapshot: CallSnapshot) -> list[Captured]:
        """Every kept message of the call's legs, in the order they crossed the wire."""
        out: list[Captured] = []
        for call_id in call_ids(snapshot):
            out.extend(self._rings.get(call_id, ()))
        out.sort(key=lambda c: c.seq)
        return out

    def first_header(self, call_id: str, names: tuple[str, ...]) -> str | None:
        """The first of `names` in a message received on `call_id` (a party's User-Agent)."""
        for captured in self._rings.get(call_id, ()):
            if captured.received:
                for name in names:
                    value = captured.message.get(name)
                    if value:
                        return value
        return None

    def __len__(self) -> int:
        return len(self._rings)


def call_ids(snapshot: CallSnapshot) -> list[str]:
    """The Call-IDs of a call: the caller's, then each other leg's, once each."""
    seen = [snapshot.call_id]
    for leg in snapshot.legs:
        if leg.id.call_id not in seen:
            seen.append(leg.id.call_id)
    return seen
