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

# Below this many RTP packets seen in userspace, the receiver's RTCP says more.
MEASURED = 50


class StreamHealth:
    """What one party's RTP and RTCP say about its stream."""

    __slots__ = ("clock_rate", "_stats", "_reports", "ssrc", "round_trip", "peer")

    def __init__(self, clock_rate: int) -> None:
        self.clock_rate = clock_rate
        self._stats = _quality.ReceptionStats(clock_rate)
        self._reports: list[_quality.RtcpReport] = []
        self.ssrc: int | None = None  # of the last RTP packet
        # Shared with the peer's health (see `pair`): an RTT needs the SR of
        # one side and the report of the other that echoes it.
        self.round_trip = _quality.RoundTrip()
        # The health of the party at the other end: its RTCP reports say how
        # this stream arrived there (all we learn once the kernel forwards it).
        self.peer: StreamHealth | None = None

    def pair(self, peer: StreamHealth | None) -> None:
        """Share one round-trip record with the health of the party at the other end."""
        if peer is not None and peer.round_trip is not self.round_trip:
            peer.round_trip = self.round_trip
        if peer is not None:
            self.peer, peer.peer = peer, self

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

    def reported(self) -> _quality.ReportBlock | None:
        """The latest report block the other party sent about this stream (RFC 3550 6.4)."""
        peer = self.peer
        if peer is None or self.ssrc is None:
            return None
        return peer.block_about(self.ssrc)

    def block_about(self, ssrc: int) -> _quality.ReportBlock | None:
        """The latest block this party's RTCP gave about source `ssrc`."""
        for report in reversed(self._reports):
            for block in report.blocks:
                if block.ssrc == ssrc:
                    return block
        return None

    def _figures(self, packets: int) -> tuple[int, int, float, float]:
        """(lost, expected, loss fraction, jitter ms) from what the relay saw, or,
        when it saw too little (the stream went to the kernel at once), from the
        receiver's RTCP: cumulative loss against the packets forwarded."""
        stats = self._stats
        block = self.reported() if stats.packets < MEASURED else None
        if block is None:
            return max(0, stats.lost), stats.expected, stats.fraction_lost, stats.jitter_ms
        lost = max(0, block.cumulative_lost)
        expected = max(packets, stats.packets) + lost
        return (lost, expected, lost / expected if expected else block.fraction_lost / 256,
                block.jitter * 1000.0 / self.clock_rate)

    def mos(self, codec: str, packets: int = 0) -> float | None:
        """G.107 estimate for what arrived so far; None before any RTP."""
        figures = self._figures(packets)
        if figures is None or (self._stats.packets == 0 and figures[1] == 0):
            return None
        return _quality.mos(codec or "PCMU", figures[2], figures[3], self.rtt_ms)

    def as_ng(self, codec: str, packets: int = 0) -> dict[str, Any]:
        """Figures on the stream itself: counts (`lost`, `expected`), `jitter` in ms, `MOS` x 10.

        `packets`: all the relay forwarded for the stream, the kernel's included.
        """
        out: dict[str, Any] = {}
        figures = self._figures(packets)
        out.update(lost=figures[0], expected=figures[1], jitter=round(figures[3]))
        if self.ssrc is not None:
            out["SSRC"] = self.ssrc
        rtt = self.rtt_ms
        if rtt is not None:
            out["rtt_ms"] = round(rtt)  # bencode has no floats
        score = self.mos(codec, packets)
        if score is not None:
            out["MOS"] = round(score * 10)
        return out

    def ssrc_entry(self, codec: str, packets: int = 0) -> dict[str, Any] | None:
        """rtpengine's per-SSRC entry (`SSRC.<ssrc>`) for the top of a query answer."""
        figures = self._figures(packets)
        score = self.mos(codec, packets)
        if self.ssrc is None or score is None:
            return None
        entry: dict[str, Any] = {
            "MOS": round(score * 10),
            "jitter": round(figures[3]),
            "packet loss": round(figures[2] * 100),
            "samples": 1,
            "reported at": int(self._stats.last_arrival or 0),
        }
        rtt = self.rtt_ms
        if rtt is not None:
            entry["round-trip time"] = round(rtt * 1000)
        return {"average MOS": entry, "lowest MOS": dict(entry),
                "highest MOS": dict(entry), "codec": codec}
