"""One received audio stream played out 20 ms at a time: the relay's receive pipeline.

Packets go in as they arrive (`put`, or `put_packet` with the raw RTP
datagram), those of 10, 30, 40 or 60 ms cut into 20 ms frames first
(`reframe.py`); at each 20 ms tick `frame(now)` gives the next 160 samples of
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

import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from rtpmedia import timestretch
from rtpmedia.codecs.base import Codec
from rtpmedia.codecs.g711 import G711
from rtpmedia.jitterbuffer import JitterBuffer, JitterBufferStats, Playout, PlayoutKind, PutResult
from rtpmedia.plc import Concealer, PacketConcealer, conceal_many, good_many
from rtpmedia.reframe import Reframer
from rtpmedia.rtp import RtpError, payload_bounds, peek_header

RATE = 8000
FRAME = 160
_HEADER = struct.Struct("!BBHII")
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

    packets: int = 0  # accepted into the jitter buffer (its 20 ms frames, when reframed)
    unknown_payload: int = 0  # a payload type with no codec here: dropped
    other_duration: int = 0  # not a whole number of 10 ms blocks (or > 120 ms): dropped
    reframed: int = 0  # packets through reframe.py (ptime 10, 30, 40, 60..., and all after)
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
        self._frame_bytes = {pt: c.bytes_per_frame for pt, c in self.codecs.items()}
        self._decoders = {pt: _decoder(codec) for pt, codec in self.codecs.items()}
        self.jitter = JitterBuffer[tuple[int, bytes]](min_delay=min_delay,
                                                      initial_delay=max(min_delay, 0.04))
        self.plc = concealer if concealer is not None else Concealer()
        self.counts = ReceiverCounts()
        self._queue: list[Samples] = []
        self._queued = 0
        self.started = False
        #: Set by `play`: (payload type, payload) when the frame it gave is
        #: exactly that packet's payload decoded (played as it came, nothing
        #: concealed before it), so that a relay may re-encode by table or
        #: send it as it is instead of encoding the samples; else None.
        self.last_payload: tuple[int, bytes] | None = None
        # G.711 payload types: their decode table, for `play`'s one lookup over all streams.
        self._tables = {pt: c.decode_table for pt, c in self.codecs.items() if isinstance(c, G711)}
        # Our concealer returns a good frame unchanged unless it follows a
        # concealed one (then it may merge): pass-through is safe only then.
        self._passes = type(self.plc) is Concealer
        self._after_loss = False
        #: Made at the first packet that is not one 20 ms frame; from then on
        #: every packet of the stream goes through it, so that its frames'
        #: sequence numbers stay one numbering.
        self.reframer: Reframer | None = None

    # -- input -----------------------------------------------------------------------

    def put(self, payload_type: int, seq: int, timestamp: int, ssrc: int, marker: bool,
            payload: bytes, arrival: float) -> PutResult | None:
        """One packet's fields; None if its payload type has no codec here or its
        payload cannot be cut into 20 ms frames.

        A packet of another duration (a=ptime 10, 30, 40, 60) goes through
        `reframe.Reframer`; the answer is then the jitter buffer's for the
        last frame it completed, BUFFERED when it completed none (a half frame
        held, or a straggler the reframer dropped: `reframer.counts` says).
        """
        size = self._frame_bytes.get(payload_type)
        if size is None:
            self.counts.unknown_payload += 1
            return None
        if len(payload) != size or self.reframer is not None:
            return self._put_reframed(payload_type, seq, timestamp, ssrc, marker, payload,
                                      arrival, size)
        result = self.jitter.put(seq, timestamp, ssrc, marker, (payload_type, payload), arrival)
        if result is PutResult.BUFFERED:
            self.counts.packets += 1
        return result

    def _put_reframed(self, payload_type: int, seq: int, timestamp: int, ssrc: int,
                      marker: bool, payload: bytes, arrival: float,
                      size: int) -> PutResult | None:
        """`put` for a stream whose packets are not (all) one 20 ms frame."""
        reframer = self.reframer
        if reframer is None:
            # The jitter buffer and the concealer work in 20 ms frames: a
            # payload that cannot be cut into them is dropped.
            if not Reframer.accepts(len(payload), size):
                self.counts.other_duration += 1
                return None
            reframer = self.reframer = Reframer()
        pieces = reframer.put(seq, timestamp, ssrc, marker, payload, arrival, size)
        if pieces is None:
            self.counts.other_duration += 1
            return None
        self.counts.reframed += 1
        result = PutResult.BUFFERED
        for f_seq, f_ts, f_ssrc, f_marker, f_payload, f_arrival in pieces:
            result = self.jitter.put(f_seq, f_ts, f_ssrc, f_marker, (payload_type, f_payload),
                                     f_arrival)
            if result is PutResult.BUFFERED:
                self.counts.packets += 1
        return result

    def put_packet(self, data: bytes | bytearray | memoryview, arrival: float) -> PutResult | None:
        """A whole RTP datagram (copied: the caller's buffer may be reused)."""
        if len(data) >= 12 and data[0] == 0x80:
            # Version 2 without padding, extension or CSRCs (nearly every
            # packet): the header is read once, the payload starts at 12.
            first, second, seq, ts, ssrc = _HEADER.unpack_from(data)
            return self.put(second & 0x7F, seq, ts, ssrc, second > 0x7F, bytes(data[12:]),
                            arrival)
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
        return self._with(now, self._next(now) if self._queued < FRAME else None)

    def _with(self, now: float, chunk: Samples | None) -> Samples | None:
        """`frame`'s answer, given the chunk for the jitter buffer's answer to the queue as it is."""
        if not self._queued:
            # The common case: nothing carried over and the next chunk is
            # one whole frame (no stretch), played as it is.
            if chunk is None:
                return None
            if len(chunk) == FRAME:
                return chunk
        while chunk is not None:
            self._queue.append(chunk)
            self._queued += len(chunk)
            if self._queued >= FRAME:
                break
            chunk = self._next(now)
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
        return self._chunk(self.jitter.get(now, self._queued))

    def _chunk(self, p: Playout[tuple[int, bytes]]) -> Samples | None:
        """The audio of one jitter buffer answer (a frame, or longer or shorter when stretched)."""
        if p.kind is _NORMAL and len(p.frames) == 1:
            # The common case first: one frame, played as it came.
            self.started = True
            self.counts.consumed += 1
            self._after_loss = False
            return self.plc.good(self._decode(p.frames[0].payload))
        if p.kind is PlayoutKind.EMPTY:
            # Before the first packet, between talkspurts or after the stream
            # stopped: the caller's silence (the concealer does not hear it).
            return None
        self.started = True
        if p.kind is PlayoutKind.CONCEAL:
            return self._concealed(p, self.plc.conceal(self.following(p)))
        self._after_loss = False
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

    def following(self, p: Playout[tuple[int, bytes]]) -> Samples | None:
        """A CONCEAL answer's next frame, decoded (what the concealer interpolates towards)."""
        return None if p.next is None else self._decode(p.next.payload)

    def _concealed(self, p: Playout[tuple[int, bytes]], audio: Samples) -> Samples:
        """Count a concealment the concealer has made (`audio`, passed through)."""
        self.counts.concealed_frames += 1
        self.counts.consumed += 0 if p.waiting else 1
        self._after_loss = True
        return audio

    def skip(self, frames: int) -> None:
        """`frames` of playout the caller could not send in time: dropped, not played late."""
        self.jitter.skip(frames)

    def stats(self) -> JitterBufferStats:
        return self.jitter.stats()

    @staticmethod
    def play(receivers: Sequence[Receiver], now: float | Sequence[float]) -> list[Samples | None]:
        """`[r.frame(now) for r in receivers]`, with the numpy work of all of them done together.

        `now` is one time for all, or each receiver's own (the relay passes each
        stream's nominal frame time, so that a tick that runs late does not look
        like a longer delay to the jitter buffers).

        The relay's media-repair tick: each stream's jitter buffer decides (that
        is per stream, in Python), then the frames played as they came are
        decoded in one table lookup per codec over all streams, and the
        concealments are made in one `plc.conceal_many` batch; what a stretch
        left queued is spliced in front as `frame` does. A stream whose frame
        needs more (a stretch) goes the way `frame` does. Each receiver's
        `last_payload` says whether its frame is exactly a packet's payload
        decoded. The frames may be the concealers' own history: read them, do
        not write to them.
        """
        out: list[Samples | None] = [None] * len(receivers)
        # decode table id -> (table, [(index, receiver, payload)])
        plain: dict[int, tuple[npt.NDArray[np.int16],
                               list[tuple[int, Receiver, int, bytes, bool]]]] = {}
        concealing: list[tuple[int, Receiver, Playout[tuple[int, bytes]]]] = []
        times = [now] * len(receivers) if isinstance(now, float | int) else now
        for i, r in enumerate(receivers):
            r.last_payload = None
            t = times[i]
            queued = r._queued
            if queued >= FRAME:
                out[i] = r.frame(t)  # a whole frame queued: the jitter buffer is not asked
                continue
            p = r.jitter.get(t, queued)
            kind = p.kind
            if kind is _NORMAL and len(p.frames) == 1:
                payload_type, payload = p.frames[0].payload
                table = r._tables.get(payload_type)
                if table is not None:
                    r.started = True
                    r.counts.consumed += 1
                    group = plain.get(id(table))
                    if group is None:
                        group = plain[id(table)] = (table, [])
                    group[1].append((i, r, payload_type, payload, not queued))
                    continue
            elif kind is _CONCEAL:
                r.started = True
                concealing.append((i, r, p))
                continue
            out[i] = r._with(t, r._chunk(p))
        returning: list[tuple[int, Receiver, Samples]] = []  # first frames after a loss
        for table, members in plain.values():
            decoded = table.take(np.frombuffer(b"".join(m[3] for m in members), np.uint8))
            for (i, r, payload_type, payload, alone), row in zip(members, decoded.reshape(-1, FRAME),
                                                                 strict=True):
                if r._after_loss:
                    returning.append((i, r, row))  # merged below, all together
                    continue
                # The row is ours and nobody writes to it: the concealer keeps it uncopied.
                out[i] = r._with(times[i], r.plc.good(row, owned=True))
                if alone and r._passes:
                    r.last_payload = (payload_type, payload)
        if returning:
            merged = good_many([(r.plc, row) for _, r, row in returning], owned=True)
            for (i, r, _), frame in zip(returning, merged, strict=True):
                r._after_loss = False
                out[i] = r._with(times[i], frame)
        if concealing:
            audio = conceal_many([(r.plc, r.following(p)) for _, r, p in concealing])
            for (i, r, p), frame in zip(concealing, audio, strict=True):
                r._concealed(p, frame)
                out[i] = r._with(times[i], frame)
        return out


#: `Receiver.play`: the relay's tick over many streams.
play = Receiver.play


_NORMAL = PlayoutKind.NORMAL
_CONCEAL = PlayoutKind.CONCEAL


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
