"""One received audio stream played out 20 ms at a time: the relay's receive pipeline.

Packets go in as they arrive (`put`, or `put_packet` with the raw RTP
datagram); at each 20 ms tick `frame(now)` gives the next 160 samples of
8 kHz audio: held in the adaptive jitter buffer (`jitterbuffer.py`),
decoded by the payload type's codec, concealed where a packet is missing
(`plc.Concealer`, interpolating towards the next frame when the buffer
already holds it), stretched or compressed where the buffer moves its delay
(`timestretch.py`). Before the first packet, and in silence after the
stream stops, it gives `None` so that the caller decides what silence is.

Everything that touches media in the relay (transcoding, media repair,
echo, recording, voicemail) and `softswitch media conceal` use this one
class, so the CLI lets an operator hear exactly what the relay does.

RFC 4733 telephone-events are not audio: the caller routes them elsewhere
before `put` (see `telephone_event.py`); a payload type without a codec
here is counted and dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from rtpmedia import timestretch
from rtpmedia.codecs.base import Codec
from rtpmedia.codecs.g711 import G711
from rtpmedia.jitterbuffer import JitterBuffer, JitterBufferStats, PlayoutKind, PutResult
from rtpmedia.plc import Concealer, PacketConcealer
from rtpmedia.rtp import RtpError, payload_bounds, peek_header

RATE = 8000
FRAME = 160
#: Least playout delay: frames are held long enough that a lost frame's
#: successor is usually there for the concealer to interpolate towards (with
#: no floor the target falls to zero on on-time packets and it never is;
#: bench/plc.py measured the margin over spandsp shrinking from 0.24 to 0.08
#: PESQ at bursty 25% loss without the next frame).
MIN_DELAY = 0.040

Samples = npt.NDArray[np.int16]
SILENCE: Samples = np.zeros(FRAME, np.int16)


@dataclass(slots=True)
class ReceiverCounts:
    """What `Receiver` did, beside the jitter buffer's own figures."""

    packets: int = 0  # accepted into the jitter buffer
    unknown_payload: int = 0  # a payload type with no codec here: dropped
    malformed: int = 0
    concealed_frames: int = 0
    consumed: int = 0  # frames of the stream played or given up as lost
    stretched_samples: int = 0  # lengthened minus shortened


class Receiver:
    """Jitter buffer + decode + concealment + time stretching for one stream (sans-IO)."""

    def __init__(self, codecs: Mapping[int, Codec], *, min_delay: float = MIN_DELAY,
                 concealer: PacketConcealer | None = None) -> None:
        """`codecs`: the payload types this stream may carry (from its SDP), 8 kHz ones."""
        self.codecs = dict(codecs)
        self._decoders = {pt: _decoder(codec) for pt, codec in self.codecs.items()}
        self.jitter = JitterBuffer[tuple[int, bytes]](min_delay=min_delay,
                                                      initial_delay=max(min_delay, 0.04))
        self.plc = concealer if concealer is not None else Concealer()
        self.counts = ReceiverCounts()
        self._queue: list[Samples] = []
        self._queued = 0
        self.started = False

    # -- input -----------------------------------------------------------------------

    def put(self, payload_type: int, seq: int, timestamp: int, ssrc: int, marker: bool,
            payload: bytes, arrival: float) -> PutResult | None:
        """One packet's fields; None if its payload type has no codec here."""
        if payload_type not in self.codecs:
            self.counts.unknown_payload += 1
            return None
        result = self.jitter.put(seq, timestamp, ssrc, marker, (payload_type, payload), arrival)
        if result is PutResult.BUFFERED:
            self.counts.packets += 1
        return result

    def put_packet(self, data: bytes | bytearray | memoryview, arrival: float) -> PutResult | None:
        """A whole RTP datagram (copied: the caller's buffer may be reused)."""
        try:
            payload_type, marker, seq, ts, ssrc = peek_header(data)
            start, end = payload_bounds(data)
        except RtpError:
            self.counts.malformed += 1
            return None
        return self.put(payload_type, seq, ts, ssrc, marker, bytes(data[start:end]), arrival)

    # -- output ----------------------------------------------------------------------

    def frame(self, now: float) -> Samples | None:
        """The next 20 ms of audio, or None while nothing is playing."""
        if not self._queued:
            # The common case: nothing carried over and the next chunk is
            # one whole frame (no stretch), played as it is.
            chunk = self._next(now)
            if chunk is None:
                return None
            if len(chunk) == FRAME:
                return chunk
            self._queue.append(chunk)
            self._queued = len(chunk)
        while self._queued < FRAME:
            chunk = self._next(now)
            if chunk is None:
                break
            self._queue.append(chunk)
            self._queued += len(chunk)
        if self._queued < FRAME:
            if not self._queue:
                return None
            self._queue.append(np.zeros(FRAME - self._queued, np.int16))
            self._queued = FRAME
        audio = self._queue[0] if len(self._queue) == 1 else np.concatenate(self._queue)
        out, rest = audio[:FRAME], audio[FRAME:]
        self._queue = [rest] if len(rest) else []
        self._queued = len(rest)
        return out

    def _decode(self, item: tuple[int, bytes]) -> Samples:
        payload_type, payload = item
        return self._decoders[payload_type](payload)

    def _next(self, now: float) -> Samples | None:
        p = self.jitter.get(now, self._queued)
        if p.kind is _NORMAL and len(p.frames) == 1:
            # The common case first: one frame, played as it came.
            self.started = True
            self.counts.consumed += 1
            return self.plc.good(self._decode(p.frames[0].payload))
        if p.kind is PlayoutKind.EMPTY:
            # Before the first packet, between talkspurts or after the stream
            # stopped: the caller's silence (the concealer does not hear it).
            return None
        self.started = True
        if p.kind is PlayoutKind.CONCEAL:
            self.counts.concealed_frames += 1
            self.counts.consumed += 0 if p.waiting else 1
            following = None if p.next is None else self._decode(p.next.payload)
            return self.plc.conceal(following)
        self.counts.consumed += len(p.frames)
        chunk = np.concatenate([self.plc.good(self._decode(f.payload)) for f in p.frames]) \
            if len(p.frames) > 1 else self.plc.good(self._decode(p.frames[0].payload))
        if p.kind is PlayoutKind.ACCELERATE:
            st = timestretch.accelerate(chunk, p.stretch_samples)
            self.jitter.record_stretch(-st.samples)
            self.counts.stretched_samples -= st.samples
            return st.audio
        if p.kind is PlayoutKind.EXPAND:
            st = timestretch.preemptive_expand(chunk)
            self.jitter.record_stretch(st.samples)
            self.counts.stretched_samples += st.samples
            return st.audio
        return chunk

    def stats(self) -> JitterBufferStats:
        return self.jitter.stats()


_NORMAL = PlayoutKind.NORMAL


def _decoder(codec: Codec) -> Callable[[bytes], Samples]:
    """`codec.decode` as int16, with G.711 straight from its table.

    A G.711 frame is 160 table look-ups; `take` on the table does them
    without `decode`'s generic checks and fancy indexing (1.8 against 3.7 µs
    a frame): the same samples.
    """
    if isinstance(codec, G711):
        table = codec.decode_table

        def g711(payload: bytes) -> Samples:
            return table.take(np.frombuffer(payload, np.uint8))

        return g711

    def generic(payload: bytes) -> Samples:
        return codec.decode(payload).astype(np.int16, copy=False)

    return generic
