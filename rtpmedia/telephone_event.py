"""RFC 4733 telephone-events: the payload, the packets of one digit, and a receiver.

`TelephoneEvent` is the 4-byte payload (RFC 4733 2.3). `digit_packets` yields
what a sender transmits for one key press (2.5.1): a first packet with the
marker bit, updates at a fixed interval with growing duration, and the final
packet with the E bit sent three times, all with the timestamp of the start.
`TelephoneEventReceiver` turns the packets that arrive (duplicated, lost,
reordered, end packets retransmitted) into each digit reported exactly once.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

from rtpmedia.rtp import Buffer, RtpPacket

DTMF_DIGITS = "0123456789*#ABCD"      # events 0-15 (RFC 4733 3.2, table 7)
MAX_DURATION = 0xFFFF

_PAYLOAD = struct.Struct("!BBH")


class TelephoneEventError(ValueError):
    """A payload that is not one RFC 4733 event, or a digit that has no event code."""


def event_code(digit: str) -> int:
    """The event code of a DTMF digit: `"5"` -> 5, `"*"` -> 10, `"#"` -> 11, `"A"` -> 12."""
    index = DTMF_DIGITS.find(digit.upper()) if len(digit) == 1 else -1
    if index < 0:
        raise TelephoneEventError(f"{digit!r} is not a DTMF digit")
    return index


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """One event report: code, end bit, volume (0-63, in -dBm0), duration in timestamp units."""

    event: int
    end: bool = False
    volume: int = 10
    duration: int = 0

    @classmethod
    def parse(cls, data: Buffer) -> TelephoneEvent:
        if len(data) != _PAYLOAD.size:
            raise TelephoneEventError(f"telephone-event payload of {len(data)} bytes, not 4")
        event, flags, duration = _PAYLOAD.unpack(data)
        # The R bit is reserved: senders clear it, receivers ignore it (2.3).
        return cls(event, bool(flags & 0x80), flags & 0x3F, duration)

    def serialize(self) -> bytes:
        if not (0 <= self.event <= 255 and 0 <= self.volume <= 63
                and 0 <= self.duration <= MAX_DURATION):
            raise TelephoneEventError(f"field out of range in {self}")
        return _PAYLOAD.pack(self.event, (0x80 if self.end else 0) | self.volume, self.duration)

    @property
    def digit(self) -> str | None:
        """The DTMF digit of this event, None for other events (tones, flash)."""
        return DTMF_DIGITS[self.event] if self.event < len(DTMF_DIGITS) else None


def digit_packets(digit: str, *, ssrc: int, sequence_number: int, timestamp: int,
                  payload_type: int = 101, duration_ms: int = 100, volume: int = 10,
                  interval_ms: int = 50, clock_rate: int = 8000,
                  ) -> Iterator[tuple[int, RtpPacket]]:
    """`(send offset in ms, packet)` for one digit, the first at offset 0.

    One packet every `interval_ms`, each reporting the duration reached by the
    end of its interval; the last reports `duration_ms` with the E bit and is
    sent three times, `interval_ms` apart (RFC 4733 2.5.1.4). Sequence numbers
    count up from `sequence_number`; the caller continues from there.
    """
    code = event_code(digit)
    total = duration_ms * clock_rate // 1000
    step = interval_ms * clock_rate // 1000
    if not 0 < total <= MAX_DURATION or step <= 0:
        raise TelephoneEventError(
            f"a {duration_ms} ms event at {interval_ms} ms intervals does not fit one segment")
    offset = 0
    duration = 0
    first = True
    while duration < total:
        duration = min(duration + step, total)
        ended = duration == total
        payload = TelephoneEvent(code, ended, volume, duration).serialize()
        for _ in range(3 if ended else 1):
            yield offset, RtpPacket(payload_type=payload_type, sequence_number=sequence_number,
                                    timestamp=timestamp, ssrc=ssrc, payload=payload,
                                    marker=first)
            first = False
            sequence_number = (sequence_number + 1) & 0xFFFF
            offset += interval_ms


@dataclass(frozen=True, slots=True)
class Digit:
    """A DTMF digit received: from which stream, and the RTP timestamp of its start."""

    digit: str
    ssrc: int
    timestamp: int


@dataclass(slots=True)
class _Seen:
    event: int
    duration: int


class TelephoneEventReceiver:
    """Reports each digit of a telephone-event stream once, on the first packet that arrives.

    RFC 4733 2.5.1: every packet of one event carries the timestamp of its
    start, so (SSRC, timestamp) names an event; the marker bit, duration and
    E bit are not relied on since any of those packets may be lost. A long
    event continued in a new segment (2.5.1.3: timestamp advanced by the
    previous duration, no marker) is not a new digit. The last `memory`
    events are remembered, which bounds memory and covers any reordering
    a jitter buffer lets through.
    """

    __slots__ = ("memory", "_seen", "malformed", "duplicates", "ignored")

    def __init__(self, memory: int = 64) -> None:
        self.memory = memory
        self._seen: OrderedDict[tuple[int, int], _Seen] = OrderedDict()
        self.malformed = 0      # payloads that are not one event
        self.duplicates = 0     # further packets of an event already reported
        self.ignored = 0        # events that are not DTMF digits

    def receive(self, packet: RtpPacket) -> Digit | None:
        return self.receive_payload(packet.ssrc, packet.timestamp, packet.payload, packet.marker)

    def receive_payload(self, ssrc: int, timestamp: int, payload: Buffer,
                        marker: bool = False) -> Digit | None:
        """The digit this packet starts, or None (repeat, end, loss recovery, not DTMF)."""
        try:
            event = TelephoneEvent.parse(payload)
        except TelephoneEventError:
            self.malformed += 1
            return None
        key = (ssrc, timestamp)
        seen = self._seen.get(key)
        if seen is not None:
            self.duplicates += 1
            seen.duration = max(seen.duration, event.duration)
            return None
        continued = not marker and self._continues_segment(ssrc, timestamp, event.event)
        self._seen[key] = _Seen(event.event, event.duration)
        if len(self._seen) > self.memory:
            self._seen.popitem(last=False)
        if continued:
            self.duplicates += 1
            return None
        digit = event.digit
        if digit is None:
            self.ignored += 1
            return None
        return Digit(digit, ssrc, timestamp)

    def _continues_segment(self, ssrc: int, timestamp: int, event: int) -> bool:
        for (seen_ssrc, seen_ts), seen in reversed(self._seen.items()):
            if seen_ssrc == ssrc:
                return (seen.event == event and seen.duration > MAX_DURATION // 2
                        and (seen_ts + seen.duration) & 0xFFFFFFFF == timestamp)
        return False
