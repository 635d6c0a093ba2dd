"""Per-stream health: the one place where the relay feeds packets to `rtpmedia.relay.quality`.

What one party sends the relay is measured here: loss from sequence numbers
and interarrival jitter (RFC 3550 A.3, A.8), the round trip from the RTCP
SR/RR passing through (RFC 3550 6.4.1), and an ITU-T G.107 E-model MOS for
the negotiated codec. `as_ng` and `ssrc_entry` give them in the shapes of
rtpengine's `query` answer (bencode has integers only: rtpengine sends MOS
as ten times the score, jitter in ms, loss in percent, round trip in
microseconds), so whatever reads rtpengine reads us.
"""

from __future__ import annotations

from typing import Any

from rtpmedia.relay import quality as _quality


class StreamHealth:
    """What one party's RTP and RTCP say about its stream."""

    __slots__ = ("clock_rate", "_stats", "_reports", "ssrc", "round_trip")

    def __init__(self, clock_rate: int) -> None:
        self.clock_rate = clock_rate
        self._stats = _quality.ReceptionStats(clock_rate)
        self._reports: list[_quality.RtcpReport] = []
        self.ssrc: int | None = None  # of the last RTP packet
        # Shared with the peer's health (see `pair`): an RTT needs the SR of
        # one side and the report of the other that echoes it.
        self.round_trip = _quality.RoundTrip()

    def pair(self, peer: StreamHealth | None) -> None:
        """Share one round-trip record with the health of the party at the other end."""
        if peer is not None and peer.round_trip is not self.round_trip:
            peer.round_trip = self.round_trip

    def rtp(self, data: memoryview, arrival: float) -> None:
        """One RTP packet (already checked to be version 2 with a 12-byte header)."""
        seq = (data[2] << 8) | data[3]
        timestamp = (data[4] << 24) | (data[5] << 16) | (data[6] << 8) | data[7]
        ssrc = (data[8] << 24) | (data[9] << 16) | (data[10] << 8) | data[11]
        if ssrc != self.ssrc:
            if self.ssrc is not None:
                # A new source (a transfer, a phone restarting its stream):
                # its sequence numbers start afresh (RFC 3550 8.2).
                self._stats = _quality.ReceptionStats(self.clock_rate)
            self.ssrc = ssrc
        self._stats.update(seq, timestamp, arrival)

    def rtcp(self, data: bytes, arrival: float = 0.0, side: str = "") -> None:
        """One RTCP compound packet from `side`, before it is forwarded."""
        try:
            reports = _quality.parse_rtcp(data)
        except ValueError:
            return
        for report in reports:
            self.round_trip.feed(side, report, arrival)
        if reports:
            self._reports = list(reports)[-4:]

    @property
    def rtt_ms(self) -> float | None:
        """End to end through the relay when both legs are known, else the one that is (ms)."""
        return self.round_trip.known_ms

    def mos(self, codec: str) -> float | None:
        """G.107 estimate for what arrived so far; None before any RTP."""
        if self._stats.packets == 0:
            return None
        return _quality.mos(codec or "PCMU", self._stats.fraction_lost, self._stats.jitter_ms,
                            self.rtt_ms)

    def as_ng(self, codec: str) -> dict[str, Any]:
        """Figures on the stream itself: exact counts (`lost`, `expected`), `jitter` in ms, `MOS` x 10."""
        stats = self._stats
        out: dict[str, Any] = {"lost": max(0, stats.lost), "expected": stats.expected,
                               "jitter": round(stats.jitter_ms)}
        if self.ssrc is not None:
            out["SSRC"] = self.ssrc
        score = self.mos(codec)
        if score is not None:
            out["MOS"] = round(score * 10)
        return out

    def ssrc_entry(self, codec: str) -> dict[str, Any] | None:
        """rtpengine's per-SSRC entry (`SSRC.<ssrc>`) for the top of a query answer."""
        score = self.mos(codec)
        if self.ssrc is None or score is None:
            return None
        figures: dict[str, Any] = {
            "MOS": round(score * 10),
            "jitter": round(self._stats.jitter_ms),
            "packet loss": round(self._stats.fraction_lost * 100),
            "samples": 1,
            "reported at": int(self._stats.last_arrival or 0),
        }
        rtt = self.rtt_ms
        if rtt is not None:
            figures["round-trip time"] = round(rtt * 1000)
        return {"average MOS": figures, "lowest MOS": dict(figures),
                "highest MOS": dict(figures), "codec": codec}
