"""Stream health: what the relay can tell about each RTP stream it forwards.

- `ReceptionStats`: per-packet sequence tracking (RFC 3550 A.1: wrap,
  probation, restart after a large jump), expected and lost packets (A.3)
  and interarrival jitter (A.8), fed from the userspace forwarder.
- `parse_rtcp`: the SR and RR report blocks of a compound RTCP packet
  (RFC 3550 6.4), forwarded unchanged by the relay and read on the way.
- `RoundTrip`: round-trip time between the relay and each side from the
  LSR/DLSR of their reports (RFC 3550 6.4.1), on the relay's own clock.
- `mos`: the ITU-T G.107 E-model reduced to what a relay knows (codec,
  loss, jitter, RTT), with Ie and Bpl from ITU-T G.113 Appendix I.

Pure Python, no numpy: the relay's hot path imports it.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any

# RFC 3550 A.1
RTP_SEQ_MOD = 1 << 16
MAX_DROPOUT = 3000
MAX_MISORDER = 100
MIN_SEQUENTIAL = 2

_TS_MOD = 1 << 32
_TS_HALF = 1 << 31


class ReceptionStats:
    """One SSRC's reception figures, updated per packet (RFC 3550 A.1, A.3, A.8).

    One deviation from A.1, so that counts match what was sent: the packets
    that passed probation are counted (A.1 starts counting after them).
    """

    __slots__ = ("clock_rate", "_base_seq", "_max_seq", "_bad_seq", "_cycles", "_received",
                 "_probation", "_started", "_transit", "_jitter", "_last_arrival", "_last_ts")

    def __init__(self, clock_rate: int) -> None:
        if clock_rate <= 0:
            raise ValueError(f"clock rate must be positive, not {clock_rate}")
        self.clock_rate = clock_rate
        self._base_seq = 0
        self._max_seq = 0
        self._bad_seq = RTP_SEQ_MOD + 1
        self._cycles = 0
        self._received = 0
        self._probation = MIN_SEQUENTIAL
        self._started = False
        self._transit: float | None = None
        self._jitter = 0.0
        self._last_arrival: float | None = None
        self._last_ts = 0

    def _init_seq(self, seq: int) -> None:
        self._base_seq = seq
        self._max_seq = seq
        self._bad_seq = RTP_SEQ_MOD + 1
        self._cycles = 0
        self._received = 0
        # A new sequence (a restarted source) has a new timestamp base too.
        self._transit = None

    def update(self, seq: int, timestamp: int, arrival: float) -> None:
        """One RTP packet with `seq` and `timestamp` arrived at `arrival` (seconds, any epoch)."""
        # Called per packet in userspace: the in-sequence case comes first
        # and touches as few attributes as it can.
        seq &= 0xFFFF
        self._last_arrival = arrival
        if self._probation:
            if not self._probation_step(seq):
                return
        else:
            max_seq = self._max_seq
            udelta = (seq - max_seq) & 0xFFFF
            if udelta < MAX_DROPOUT:
                if seq < max_seq:
                    self._cycles += RTP_SEQ_MOD
                self._max_seq = seq
            elif udelta <= RTP_SEQ_MOD - MAX_MISORDER:
                if seq != self._bad_seq:
                    # A very large jump: wait for the next packet to tell a
                    # restarted source from a stray packet.
                    self._bad_seq = (seq + 1) & 0xFFFF
                    return
                self._init_seq(seq)
            # else: a duplicate or a reordered packet, counted as received.
        self._received += 1
        # A.8 interarrival jitter, in timestamp units; the timestamp
        # difference is taken modulo 2^32 so a wrap is not a jump.
        transit = arrival * self.clock_rate
        last = self._transit
        if last is not None:
            d = transit - last - (((timestamp - self._last_ts + _TS_HALF) & 0xFFFFFFFF) - _TS_HALF)
            if d < 0:
                d = -d
            self._jitter += (d - self._jitter) * 0.0625
        self._transit = transit
        self._last_ts = timestamp

    def _probation_step(self, seq: int) -> bool:
        """A.1's probation: True once MIN_SEQUENTIAL packets came in sequence (this one counts)."""
        if not self._started:
            self._started = True
            self._init_seq(seq)
            self._max_seq = (seq - 1) & 0xFFFF
        if seq != (self._max_seq + 1) & 0xFFFF:
            self._probation = MIN_SEQUENTIAL - 1
            self._max_seq = seq
            return False
        self._probation -= 1
        self._max_seq = seq
        if self._probation:
            return False
        self._init_seq((seq - (MIN_SEQUENTIAL - 1)) & 0xFFFF)
        if self._base_seq > seq:
            # The probation packets straddled a wrap (65535, 0): the first cycle is done.
            self._cycles = RTP_SEQ_MOD
        self._max_seq = seq
        self._received = MIN_SEQUENTIAL - 1
        return True

    @property
    def packets(self) -> int:
        return self._received

    @property
    def extended_max_seq(self) -> int:
        return self._cycles + self._max_seq

    @property
    def expected(self) -> int:
        if self._received == 0:
            return 0
        return self._cycles + self._max_seq - self._base_seq + 1

    @property
    def lost(self) -> int:
        """Expected minus received: negative when duplicates arrived (A.3)."""
        return self.expected - self._received

    @property
    def fraction_lost(self) -> float:
        """Lost over expected since the stream started, 0.0 to 1.0 (duplicates never make it negative)."""
        expected = self.expected
        return max(0, self.lost) / expected if expected > 0 else 0.0

    @property
    def jitter_ms(self) -> float:
        return self._jitter * 1000.0 / self.clock_rate

    @property
    def jitter(self) -> int:
        """Jitter in timestamp units, as an RR's report block carries it."""
        return int(self._jitter)

    @property
    def last_arrival(self) -> float | None:
        return self._last_arrival

    def as_dict(self) -> dict[str, Any]:
        return {
            "packets": self.packets,
            "expected": self.expected,
            "lost": self.lost,
            "fraction_lost": round(self.fraction_lost, 6),
            "jitter_ms": round(self.jitter_ms, 3),
            "last_arrival": self._last_arrival,
        }


# -- RTCP (RFC 3550 6.4) ---------------------------------------------------------

RTCP_SR = 200
RTCP_RR = 201
_HEADER = struct.Struct("!BBH")
_SR_INFO = struct.Struct("!IIIIII")  # SSRC, NTP msw, NTP lsw, RTP timestamp, packets, octets
_BLOCK = struct.Struct("!IIIIII")  # SSRC, fraction|cumulative, highest seq, jitter, LSR, DLSR


@dataclass(frozen=True, slots=True)
class ReportBlock:
    """What a receiver says about one source (RFC 3550 6.4.1)."""

    ssrc: int
    fraction_lost: int  # 0..255: lost/expected since the last report, times 256
    cumulative_lost: int  # signed 24 bits
    highest_seq: int  # extended highest sequence number received
    jitter: int  # timestamp units
    lsr: int  # middle 32 bits of the NTP timestamp of the last SR, 0 if none
    dlsr: int  # delay since that SR, in 1/65536 s

    def pack(self) -> bytes:
        lost = self.cumulative_lost & 0xFFFFFF
        return _BLOCK.pack(self.ssrc, (self.fraction_lost & 0xFF) << 24 | lost,
                           self.highest_seq, self.jitter, self.lsr, self.dlsr)


@dataclass(frozen=True, slots=True)
class RtcpReport:
    """One SR or RR of a compound packet; `ntp` and the sender info are None for an RR."""

    ssrc: int
    blocks: tuple[ReportBlock, ...]
    ntp: int | None = None  # 64-bit NTP timestamp of an SR
    rtp_timestamp: int | None = None
    packet_count: int | None = None
    octet_count: int | None = None

    @property
    def is_sender_report(self) -> bool:
        return self.ntp is not None

    @property
    def ntp_middle(self) -> int | None:
        """The middle 32 bits of the SR's NTP timestamp: what an RR's LSR echoes."""
        return None if self.ntp is None else (self.ntp >> 16) & 0xFFFFFFFF

    def serialize(self) -> bytes:
        if len(self.blocks) > 31:
            raise ValueError("at most 31 report blocks fit in one SR or RR")
        body = b"".join(b.pack() for b in self.blocks)
        if self.ntp is None:
            pt, head = RTCP_RR, struct.pack("!I", self.ssrc)
        else:
            pt = RTCP_SR
            head = _SR_INFO.pack(self.ssrc, self.ntp >> 32, self.ntp & 0xFFFFFFFF, self.rtp_timestamp or 0,
                                 self.packet_count or 0, self.octet_count or 0)
        words = (4 + len(head) + len(body)) // 4 - 1
        return _HEADER.pack(0x80 | len(self.blocks), pt, words) + head + body


def parse_rtcp(data: bytes) -> list[RtcpReport]:
    """The SRs and RRs of a compound RTCP packet; [] if it is not valid RTCP.

    Validity as in RFC 3550 A.2, relaxed for reduced-size RTCP (RFC 5506):
    every packet has version 2, the lengths add up to the datagram, padding
    only on the last one; other packet types (SDES, BYE, APP, feedback, XR)
    are skipped. Never raises.
    """
    reports: list[RtcpReport] = []
    view = memoryview(data)
    offset, end = 0, len(data)
    if end < 4:
        return []
    while offset < end:
        if end - offset < 4:
            return []
        first, pt, words = _HEADER.unpack_from(view, offset)
        length = (words + 1) * 4
        if first >> 6 != 2 or offset + length > end:
            return []
        if first & 0x20 and offset + length != end:
            return []  # padding is allowed on the last packet only
        count = first & 0x1F
        payload_end = offset + length
        if first & 0x20:
            pad = view[payload_end - 1]
            payload_end -= pad
            if pad == 0 or payload_end < offset + 4:
                return []
        if pt in (RTCP_SR, RTCP_RR):
            report = _parse_report(view, offset + 4, payload_end, pt, count)
            if report is None:
                return []
            reports.append(report)
        offset += length
    return reports


def _parse_report(view: memoryview, start: int, end: int, pt: int, count: int) -> RtcpReport | None:
    info = _SR_INFO.size if pt == RTCP_SR else 4
    if start + info + count * _BLOCK.size > end:
        return None
    if pt == RTCP_SR:
        ssrc, msw, lsw, rtp_ts, packets, octets = _SR_INFO.unpack_from(view, start)
    else:
        (ssrc,) = struct.unpack_from("!I", view, start)
    blocks = []
    at = start + info
    for _ in range(count):
        b_ssrc, lost_word, highest, jitter, lsr, dlsr = _BLOCK.unpack_from(view, at)
        cumulative = lost_word & 0xFFFFFF
        if cumulative & 0x800000:
            cumulative -= 1 << 24
        blocks.append(ReportBlock(b_ssrc, lost_word >> 24, cumulative, highest, jitter, lsr, dlsr))
        at += _BLOCK.size
    if pt == RTCP_SR:
        return RtcpReport(ssrc, tuple(blocks), msw << 32 | lsw, rtp_ts, packets, octets)
    return RtcpReport(ssrc, tuple(blocks))


# -- round-trip time (RFC 3550 6.4.1) ------------------------------------------------

_SR_MEMORY = 8


class RoundTrip:
    """RTT between the relay and each side, and end to end, from the reports passing through.

    An SR from side A arrives at the relay at t0 and goes on to B; B's next
    report about A's SSRC echoes the SR (LSR) and how long B held it (DLSR).
    When it reaches the relay at t1, t1 - t0 - DLSR is the round trip
    relay-B-relay, on the relay's clock alone (no NTP sync needed). Both
    halves together are the phones' round trip through the relay.
    """

    __slots__ = ("_srs", "_rtt")

    def __init__(self) -> None:
        self._srs: dict[tuple[int, int], float] = {}
        self._rtt: dict[str, float] = {}

    def feed(self, side: str, report: RtcpReport, arrival: float) -> float | None:
        """`side` sent `report`, arriving at `arrival` (s); the new relay-`side` RTT in ms, if it gave one."""
        middle = report.ntp_middle
        if middle is not None:
            self._srs[(report.ssrc, middle)] = arrival
            while len(self._srs) > _SR_MEMORY * 2:
                del self._srs[next(iter(self._srs))]
        rtt = None
        for block in report.blocks:
            if block.lsr == 0:
                continue  # no SR received yet from that source
            sent = self._srs.get((block.ssrc, block.lsr))
            if sent is None:
                continue
            value = (arrival - sent - block.dlsr / 65536.0) * 1000.0
            if value >= 0:
                rtt = self._rtt[side] = value
        return rtt

    def leg_ms(self, side: str) -> float | None:
        """The last round trip between the relay and `side`, in ms."""
        return self._rtt.get(side)

    @property
    def known_ms(self) -> float | None:
        """The end-to-end round trip if both legs are known, else the one leg that is (a lower bound)."""
        return self.rtt_ms if len(self._rtt) != 1 else next(iter(self._rtt.values()))

    @property
    def rtt_ms(self) -> float | None:
        """End-to-end round trip through the relay: both legs, once both are known."""
        if len(self._rtt) < 2:
            return None
        return sum(self._rtt.values())


# -- E-model (ITU-T G.107) -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CodecImpairment:
    ie: float  # equipment impairment factor
    bpl: float  # packet-loss robustness factor


# ITU-T G.113 Appendix I. G.711's Bpl assumes the receiver conceals loss
# (G.711 Appendix I PLC, as our phones and most do); 4.3 without.
G711 = CodecImpairment(0.0, 25.1)
G711_NO_PLC = CodecImpairment(0.0, 4.3)
CODECS: dict[str, CodecImpairment] = {
    "PCMU": G711,
    "PCMA": G711,
    "G711": G711,
    "G729": CodecImpairment(11.0, 19.0),
    "G729A": CodecImpairment(11.0, 19.0),
    "G723": CodecImpairment(15.0, 16.1),
}
# Others (G.722, Opus, telephone-event...): scored as G.711 with
# concealment; narrowband E-model scores cap at 4.41 anyway.
DEFAULT_CODEC = G711

R0 = 93.2  # default basic signal-to-noise ratio with Is = 0 (G.107 defaults)


def r_factor(codec: str, loss: float, jitter_ms: float, rtt_ms: float | None,
             burst_ratio: float = 1.0) -> float:
    """G.107's transmission rating R from what a relay measures (see `mos`)."""
    for name, value in (("loss", loss), ("jitter_ms", jitter_ms), ("burst_ratio", burst_ratio)):
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite, not {value}")
    if not 0.0 <= loss <= 1.0:
        raise ValueError(f"loss is a fraction from 0 to 1, not {loss}")
    if jitter_ms < 0 or burst_ratio <= 0:
        raise ValueError("jitter must be >= 0 and burst ratio > 0")
    if rtt_ms is not None and (not math.isfinite(rtt_ms) or rtt_ms < 0):
        raise ValueError(f"rtt must be finite and >= 0, not {rtt_ms}")
    impairment = CODECS.get(codec.upper(), DEFAULT_CODEC)
    # One-way delay: half the round trip plus the jitter a buffer must absorb.
    d = (rtt_ms or 0.0) / 2.0 + jitter_ms
    idelay = 0.024 * d + (0.11 * (d - 177.3) if d > 177.3 else 0.0)
    ppl = loss * 100.0
    ie_eff = impairment.ie + (95.0 - impairment.ie) * ppl / (ppl / burst_ratio + impairment.bpl)
    return R0 - idelay - ie_eff


def mos(codec: str, loss: float, jitter_ms: float, rtt_ms: float | None,
        burst_ratio: float = 1.0) -> float:
    """Estimated listening MOS (1.0 to 4.5) of a stream: ITU-T G.107 E-model with defaults.

    `loss` is a fraction (0.0 to 1.0), `rtt_ms` None when no RTCP gave it,
    `burst_ratio` 1.0 for random loss (G.107's BurstR). ValueError for
    impossible figures.
    """
    r = r_factor(codec, loss, jitter_ms, rtt_ms, burst_ratio)
    if r <= 0:
        return 1.0
    if r >= 100:
        return 4.5
    return max(1.0, min(4.5, 1.0 + 0.035 * r + 7e-6 * r * (r - 60.0) * (100.0 - r)))
