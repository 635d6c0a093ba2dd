"""Per-stream health: the one place where the relay feeds packets to `rtpmedia.relay.quality`.

quality.py (loss from sequence numbers, RFC 3550 A.8 jitter, RTCP SR/RR,
the G.107 E-model) comes from its own branch; until it is there the
figures are only what the relay counts itself. Every hook the forwarder
calls is here, so wiring it in is a few lines.
"""

from __future__ import annotations

from typing import Any

from rtpmedia.relay import quality as _quality


class StreamHealth:
    """What one party's RTP and RTCP say about its stream."""

    __slots__ = ("clock_rate", "_stats", "_reports")

    def __init__(self, clock_rate: int) -> None:
        self.clock_rate = clock_rate
        self._stats: Any = _quality.ReceptionStats(clock_rate) if _quality is not None else None
        self._reports: list[Any] = []

    def rtp(self, data: memoryview, arrival: float) -> None:
        """One RTP packet (already checked to be version 2 with a 12-byte header)."""
        if self._stats is not None:
            seq = (data[2] << 8) | data[3]
            timestamp = (data[4] << 24) | (data[5] << 16) | (data[6] << 8) | data[7]
            self._stats.update(seq, timestamp, arrival)

    def rtcp(self, data: bytes) -> None:
        """One RTCP compound packet, before it is forwarded."""
        if _quality is None:
            return
        try:
            reports = _quality.parse_rtcp(data)
        except ValueError:
            return
        if reports:
            self._reports = list(reports)[-4:]

    def as_ng(self) -> dict[str, int]:
        """Integer figures for ng answers (bencode has no floats): loss, jitter in ms, MOS x 10."""
        if self._stats is None:
            return {}
        out: dict[str, int] = {}
        figures = self._stats.as_dict()
        for key, value in figures.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if key == "mos":
                out["MOS"] = round(value * 10)
            elif "jitter" in key and isinstance(value, float):
                out[key] = round(value * 1000) if value < 10 else round(value)
            else:
                out[key] = round(value)
        return out
