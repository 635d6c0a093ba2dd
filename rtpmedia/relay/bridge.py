"""The relay's processor between two parties whose audio it converts (transcoding) or repairs.

It carries out a `transcoding.StreamPlan` on one media line, each direction
on its own:

- *plain* (no repair): every packet leaves as it came, at once, with its
  payload type renumbered and, when the encodings differ, its payload
  converted code word by code word (G.711 PCMU <-> PCMA is one 256-entry
  table, `codecs.transcode.Transcoder`, applied with `bytes.translate`).
  Sequence number, timestamp, SSRC and marker are kept, so the receiver's
  jitter buffer and RTCP still see the sender's stream, and no delay is
  added (a jitter buffer here would only add its delay).
- *repaired* (`media-repair` on the sending party): packets go through a
  `Receiver` (adaptive jitter buffer, decode, concealment, stretching) and
  every 20 ms tick the next frame is encoded in the receiver's codec and
  sent with the relay's own SSRC, sequence numbers and timestamps, so a
  lossy leg reaches the other party as an unbroken stream.

RFC 4733 telephone-events pass with their payload type mapped (they are
not audio: never buffered); on a repaired direction they get the relay's
SSRC and a timestamp in its timeline. A payload type without a route (an
event the receiver did not accept, a codec it cannot get) is dropped.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass

from rtpmedia.codecs import UnknownCodecError, get
from rtpmedia.codecs.base import Codec
from rtpmedia.codecs.transcode import TELEPHONE_EVENT, TranscodeError, transcoder
from rtpmedia.receiver import FRAME, Receiver
from rtpmedia.relay.calls import MediaEnd
from rtpmedia.relay.engine import TICK, Emit
from rtpmedia.relay.transcoding import Format, Routes, StreamPlan
from rtpmedia.rtp import RtpError, payload_bounds

_HEADER = struct.Struct("!BBHII")
#: At most this many frames per direction in one tick: a relay stalled longer
#: than 100 ms drops the rest (the jitter buffer then shortens its delay).
_CATCH_UP = 5


@dataclass(slots=True)
class BridgeCounts:
    """What one direction of a bridge did."""

    forwarded: int = 0  # packets sent on (converted or renumbered) as they came
    converted: int = 0  # of those, payloads converted to another encoding
    dropped: int = 0  # no route for their payload type, or malformed
    frames: int = 0  # repaired: 20 ms frames sent on ticks
    concealed: int = 0  # repaired: frames the concealer made up


class _Direction:
    """What one party sends, on its way to the other."""

    __slots__ = ("sink", "routes", "tables", "receiver", "codec", "payload_type",
                 "ssrc", "seq", "timestamp", "talking", "counts", "event_offset",
                 "event_ts", "due")

    def __init__(self, sink: MediaEnd, routes: Routes, target: Format, repair: bool) -> None:
        self.sink = sink
        # payload type -> (outgoing payload type, translate table or None, is an event)
        self.routes: dict[int, tuple[int, bytes | None, bool]] = {}
        codecs: dict[int, Codec] = {}
        for r in routes:
            table: bytes | None = None
            if r.converts:
                try:
                    t = transcoder(r.source_encoding, r.target_encoding)
                except (UnknownCodecError, TranscodeError):
                    continue
                table = t.translation()
                if table is None:
                    continue  # no code-word table: only G.711 pairs are converted here
            self.routes[r.source] = (r.target, table, r.source_encoding == TELEPHONE_EVENT)
            if repair and r.source_encoding != TELEPHONE_EVENT:
                try:
                    codecs[r.source] = get(r.source_encoding)
                except UnknownCodecError:
                    pass
        self.receiver = Receiver(codecs) if repair else None
        self.codec = get(target.encoding) if repair else None
        self.payload_type = target.payload_type
        self.ssrc = random.getrandbits(32)
        self.seq = random.getrandbits(16)
        self.timestamp = random.getrandbits(32)
        self.talking = False
        self.counts = BridgeCounts()
        self.event_offset = 0
        self.event_ts = -1
        self.due = 0.0  # when the next frame is due on the relay's clock (0: not playing)


class Bridge:
    """A `Processor` on both ends of one media line: plain conversion and/or repair per direction."""

    def __init__(self, offerer: MediaEnd, answerer: MediaEnd, plan: StreamPlan,
                 repair: tuple[bool, bool], emit: Emit) -> None:
        self.offerer, self.answerer = offerer, answerer
        self.plan = plan
        self._emit = emit
        # By the end a party sends to: what it sends goes to the other party.
        self._from_offerer = _Direction(answerer, plan.offerer_to_answerer, plan.plan.answerer,
                                        repair[0])
        self._from_answerer = _Direction(offerer, plan.answerer_to_offerer, plan.plan.offerer,
                                         repair[1])

    @property
    def repairs(self) -> bool:
        return self._from_offerer.receiver is not None or self._from_answerer.receiver is not None

    def counts(self) -> tuple[BridgeCounts, BridgeCounts]:
        """(offerer -> answerer, answerer -> offerer)."""
        return self._from_offerer.counts, self._from_answerer.counts

    # -- Processor -------------------------------------------------------------------

    def rtp(self, end: MediaEnd, packet: memoryview, now: float) -> None:
        d = self._from_offerer if end is self.offerer else self._from_answerer
        if len(packet) < 12 or packet[0] >> 6 != 2:
            d.counts.dropped += 1
            return
        second = packet[1]
        route = d.routes.get(second & 0x7F)
        if route is None:
            d.counts.dropped += 1
            return
        target, table, event = route
        if d.receiver is not None:
            if event:
                self._event(d, packet, target)
            else:
                d.receiver.put_packet(packet, now)
            return
        first = packet[0]
        if first & 0x3F == 0:  # no padding, extension or CSRC: the payload starts at 12
            data = bytes(packet)
            head = bytes((first, (second & 0x80) | target)) + data[2:12]
            if table is None:
                self._emit(d.sink, head + data[12:])
            else:
                self._emit(d.sink, head + data[12:].translate(table))
                d.counts.converted += 1
            d.counts.forwarded += 1
            return
        try:
            start, stop = payload_bounds(packet)
        except RtpError:
            d.counts.dropped += 1
            return
        header = bytearray(packet[:start])
        header[0] &= 0xDF  # padding is not carried over
        header[1] = (second & 0x80) | target
        payload = bytes(packet[start:stop])
        if table is not None:
            payload = payload.translate(table)
            d.counts.converted += 1
        self._emit(d.sink, bytes(header) + payload)
        d.counts.forwarded += 1

    def tick(self, now: float, emit: Emit) -> None:
        for d in (self._from_offerer, self._from_answerer):
            if d.receiver is None:
                continue
            # A tick that comes late (a busy reactor; Twisted's LoopingCall skips
            # the intervals it missed) sends every frame due since the last one,
            # so the party still gets 50 frames a second.
            for _ in range(_CATCH_UP):
                if d.due and now < d.due - TICK / 2:
                    break
                if not self._play(d, now, emit):
                    break

    def _play(self, d: _Direction, now: float, emit: Emit) -> bool:
        """The next frame of a repaired direction; False when it is silent."""
        receiver = d.receiver
        assert receiver is not None and d.codec is not None
        concealed = receiver.counts.concealed_frames
        frame = receiver.frame(now)
        if frame is None:
            d.talking = False
            d.due = 0.0
            return False
        marker = 0x80 if not d.talking else 0
        d.talking = True
        d.due = (d.due or now) + TICK
        datagram = _HEADER.pack(0x80, marker | d.payload_type, d.seq, d.timestamp,
                                d.ssrc) + d.codec.encode(frame)
        d.seq = (d.seq + 1) & 0xFFFF
        d.timestamp = (d.timestamp + FRAME) & 0xFFFFFFFF
        d.counts.frames += 1
        d.counts.concealed += receiver.counts.concealed_frames - concealed
        emit(d.sink, datagram)
        return True

    def close(self) -> None:
        pass

    # -- helpers ---------------------------------------------------------------------

    def _event(self, d: _Direction, packet: memoryview, target: int) -> None:
        """An RFC 4733 event on a repaired direction: into the relay's SSRC and timeline."""
        source_ts = int.from_bytes(packet[4:8], "big")
        if source_ts != d.event_ts:
            # A new event: place it where the audio being played now is. All
            # packets of one event share its timestamp (RFC 4733 2.3.1).
            d.event_ts = source_ts
            d.event_offset = (d.timestamp - source_ts) & 0xFFFFFFFF
        try:
            start, stop = payload_bounds(packet)
        except RtpError:
            d.counts.dropped += 1
            return
        header = _HEADER.pack(0x80, (packet[1] & 0x80) | target, d.seq,
                              (source_ts + d.event_offset) & 0xFFFFFFFF, d.ssrc)
        d.seq = (d.seq + 1) & 0xFFFF
        self._emit(d.sink, header + bytes(packet[start:stop]))
        d.counts.forwarded += 1
