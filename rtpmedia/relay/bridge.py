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
SSRC and a timestamp in its timeline. When the receiver has no
telephone-event (a plain transcoded direction), a DTMF event is played to
it as its two tones (ITU-T Q.23) in its codec, in the packets' own
sequence and timestamp space. A payload type without a route (an event the
receiver did not accept on a repaired direction, a codec it cannot get) is
dropped.
"""

from __future__ import annotations

import itertools
import math
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import structlog

from rtpmedia.codecs import UnknownCodecError, get
from rtpmedia.codecs.base import Codec
from rtpmedia.codecs.g711 import G711
from rtpmedia.codecs.transcode import TELEPHONE_EVENT, TranscodeError, transcoder
from rtpmedia.receiver import FRAME, Receiver, Samples, play
from rtpmedia.relay.calls import MediaEnd
from rtpmedia.relay.engine import TICK, Emit
from rtpmedia.relay.shedding import RepairBudget
from rtpmedia.relay.transcoding import Format, Routes, StreamPlan
from rtpmedia.rtp import RtpError, RtpSource, payload_bounds
from rtpmedia.telephone_event import TelephoneEvent, TelephoneEventError

log = structlog.get_logger("relay")
_HEADER = struct.Struct("!BBHII")
#: At most this many frames per direction in one tick: a relay stalled longer
#: than 100 ms drops the rest (the jitter buffer then shortens its delay).
_CATCH_UP = 5
#: ITU-T Q.23 keypad: event code (RFC 4733 3.2) -> (row, column) frequencies in Hz.
_KEYPAD = "123A456B789C*0#D"
_EVENT_KEYS = "0123456789*#ABCD"
_ROWS = (697.0, 770.0, 852.0, 941.0)
_COLUMNS = (1209.0, 1336.0, 1477.0, 1633.0)
#: Peak of a 0 dBm0 sine in 16-bit linear PCM (G.711: 3.14 dBm0 is full scale).
_DBM0_PEAK = 32767 / 10 ** (3.14 / 20)
#: At most this much tone for one event packet (a lost update is not replayed in full).
_MAX_TONE = 1600
#: Directions in the order they were made: the oldest calls get repair back first.
_SERIALS = itertools.count()


@dataclass(slots=True)
class BridgeCounts:
    """What one direction of a bridge did."""

    forwarded: int = 0  # packets sent on (converted or renumbered) as they came
    converted: int = 0  # of those, payloads converted to another encoding
    dropped: int = 0  # no route for their payload type, or malformed
    frames: int = 0  # repaired: 20 ms frames sent on ticks
    concealed: int = 0  # repaired: frames the concealer made up
    shed: int = 0  # times its repair was stopped for want of CPU
    restored: int = 0  # times it was repaired again once the relay had room


class _Direction:
    """What one party sends, on its way to the other."""

    __slots__ = ("sink", "routes", "tables", "receiver", "codec", "payload_type",
                 "source", "talking", "counts", "event_offset",
                 "event_ts", "due", "tones", "tone_ts", "tone_done", "passthrough",
                 "codecs", "serial", "shed_at")

    def __init__(self, sink: MediaEnd, routes: Routes, target: Format, repair: bool) -> None:
        self.sink = sink
        # payload type -> (outgoing payload type, translate table or None, is an event)
        self.routes: dict[int, tuple[int, bytes | None, bool]] = {}
        codecs: dict[int, Codec] = {}
        # event payload type -> (outgoing audio payload type, its codec): events as tones
        self.tones: dict[int, tuple[int, Codec]] = {}
        for r in routes:
            table: bytes | None = None
            if r.source_encoding == TELEPHONE_EVENT and r.converts:
                if not repair:
                    try:
                        self.tones[r.source] = (r.target, get(r.target_encoding))
                    except UnknownCodecError:
                        pass
                continue
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
        self.codecs = codecs  # what a fresh receiver decodes when repair comes back
        self.receiver = Receiver(codecs) if repair else None
        self.codec = get(target.encoding) if repair else None
        # Repaired: payload type -> the 256-byte table that gives, code word
        # by code word, what decoding it and encoding in the target codec
        # would (G.711 both sides). A frame the receiver played as it came is
        # sent through it instead of encoding its samples: the same bytes.
        self.passthrough: dict[int, bytes] = {}
        if isinstance(self.codec, G711):
            for pt, codec in codecs.items():
                if isinstance(codec, G711):
                    self.passthrough[pt] = self.codec.encode_table[
                        codec.decode_table.view(np.uint16)].tobytes()
        self.payload_type = target.payload_type
        self.source = RtpSource()  # a repaired direction's own stream
        self.talking = False
        self.counts = BridgeCounts()
        self.event_offset = 0
        self.event_ts = -1
        self.due = 0.0  # when the next frame is due on the relay's clock (0: not playing)
        self.tone_ts = -1  # the event being played as tones (its RTP timestamp)
        self.tone_done = 0  # samples of it already sent
        self.serial = next(_SERIALS)
        self.shed_at: float | None = None  # when repair was shed for want of CPU (else None)

    def unrepair(self, reason: str, *, quiet: bool = False) -> None:
        """Repair stops for good: packets go on as they come (converted, renumbered), as on a
        direction that was never repaired. The other party sees the sender's stream (an SSRC
        change) instead of the relay's."""
        (log.debug if quiet else log.warning)(
            "media repair stopped; packets forwarded as they come", reason=reason,
            call_id=self.sink.call_id, to=self.sink.tag)
        self.receiver = None
        self.shed_at = None

    def shed(self, now: float) -> None:
        """Repair stops for want of CPU, as `unrepair` does, until `repair_again`."""
        self.unrepair("the relay is overloaded", quiet=True)
        self.shed_at = now
        self.counts.shed += 1

    def repair_again(self, now: float) -> bool:
        """Repair starts again on a direction shed for want of CPU; False (nothing done) on one
        whose repair stopped for another reason (its packets are not a multiple of 10 ms,
        its pipeline raised: those would only fail again).

        A fresh receiver (the old jitter buffer's packets and delay are long gone) and the
        relay's own stream where it left off: the next sequence number, the timestamp moved on
        by the time it was not used (RFC 3550 5.1: it follows the sampling clock), a marker on
        the first frame. The other party sees the SSRC change back to the relay's."""
        if self.shed_at is None or self.receiver is not None:
            return False
        self.source.skip(max(0, round((now - self.shed_at) / TICK)) * FRAME)
        self.receiver = Receiver(self.codecs)
        self.shed_at = None
        self.talking = False  # the marker on the first frame
        self.due = 0.0
        self.event_ts = -1  # an event in progress is placed afresh in the relay's timeline
        self.counts.restored += 1
        return True


class Repairs:
    """The repaired directions of every bridge, played together once per tick (an engine stage).

    Each bridge's `tick` queues its directions that are due a frame; `run`
    (after every processor's tick) asks all their receivers at once
    (`receiver.play`: one decode per codec, one batch of concealments) and
    encodes what needs encoding in one table lookup per codec. A tick that
    came late is caught up in rounds of one frame per direction, at most
    `_CATCH_UP`. The relay's CPU is reported to a `RepairBudget` every tick,
    which sheds the newest repaired directions when the relay cannot keep up,
    and repairs those shed again, the oldest calls first, once it has room.
    """

    def __init__(self, emit: Emit, budget: RepairBudget | None = None,
                 clock: Callable[[], float] = time.thread_time) -> None:
        """`clock`: CPU time of the reactor's thread (the relay's own use, whatever
        else the machine runs)."""
        self._emit = emit
        self._due: list[_Direction] = []
        self.budget = budget or RepairBudget()
        self._clock = clock
        self.shed = 0  # directions whose repair was stopped for want of CPU
        self.restored = 0  # of those, repaired again once the relay had room
        self._shed: list[_Direction] = []  # shed and not repaired again since

    def queue(self, direction: _Direction) -> None:
        self._due.append(direction)

    def forget(self, direction: _Direction) -> None:
        """`direction`'s bridge is gone: it is not to be repaired again."""
        if direction in self._shed:
            self._shed.remove(direction)

    def run(self, now: float) -> None:
        played, self._due = self._due, []
        played = [d for d in played if d.receiver is not None]  # repair may have stopped since
        due = played
        for _ in range(_CATCH_UP):
            if not due:
                break
            try:
                due = self._round(due, now)
            except Exception:  # noqa: BLE001 - one broken stream must not silence the others
                due = self._isolate(due, now)
        # Not those whose pipeline failed just now: they stop for good, not for want of CPU.
        repaired = [d for d in played if d.receiver is not None]
        step = self.budget.tick(now, self._clock(), len(repaired), len(self._shed))
        if step.shed:
            for d in repaired[-step.shed:]:  # the newest calls lose repair; every call keeps audio
                d.shed(now)
                self._shed.append(d)
            self.shed += step.shed
            log.warning("relay overloaded: media repair stopped on the newest streams",
                        stopped=step.shed, still_repaired=len(repaired) - step.shed,
                        stopped_in_all=self.shed, restarted_in_all=self.restored)
        if step.restore:
            # The oldest calls first: the newest lost repair first and get it back last.
            self._shed.sort(key=lambda d: d.serial)
            back, self._shed = self._shed[:step.restore], self._shed[step.restore:]
            restarted = sum(d.repair_again(now) for d in back)
            self.restored += restarted
            log.info("relay has room again: media repair restarted on the oldest shed streams",
                     restarted=restarted, still_shed=len(self._shed),
                     stopped_in_all=self.shed, restarted_in_all=self.restored)

    def _isolate(self, due: list[_Direction], now: float) -> list[_Direction]:
        """A round failed: play each direction on its own; one that fails alone stops."""
        behind: list[_Direction] = []
        for d in due:
            try:
                behind += self._round([d], now)
            except Exception:  # noqa: BLE001
                log.exception("repaired direction failed", to=d.sink.tag, call_id=d.sink.call_id)
                d.unrepair("its pipeline failed")
        return behind

    def _round(self, due: list[_Direction], now: float) -> list[_Direction]:
        """One frame for each of `due`; those still behind after it."""
        receivers: list[Receiver] = []
        for d in due:
            assert d.receiver is not None  # only repaired directions are queued
            receivers.append(d.receiver)
        before = [r.counts.concealed_frames for r in receivers]
        # Each frame at its own due time (the first of a talkspurt: now), not
        # the tick's: a tick that runs late must not look like network delay.
        frames = play(receivers, [d.due or now for d in due])
        behind: list[_Direction] = []
        sends: list[tuple[_Direction, bytes | None]] = []
        # codec -> [(index in sends, samples)]: encoded together below.
        encode: dict[int, tuple[Codec, list[tuple[int, Samples]]]] = {}
        for d, receiver, frame, concealed in zip(due, receivers, frames, before, strict=True):
            if frame is None:
                d.talking = False
                d.due = 0.0
                continue
            d.due = (d.due or now) + TICK
            d.counts.frames += 1
            d.counts.concealed += receiver.counts.concealed_frames - concealed
            payload: bytes | None = None
            last = receiver.last_payload
            if last is not None:
                table = d.passthrough.get(last[0])
                if table is not None:
                    payload = last[1].translate(table)
            if payload is None:
                assert d.codec is not None  # a repaired direction has its target codec
                group = encode.get(id(d.codec))
                if group is None:
                    group = encode[id(d.codec)] = (d.codec, [])
                group[1].append((len(sends), frame))
            sends.append((d, payload))
            if now >= d.due - TICK / 2:
                behind.append(d)
        payloads = [p for _, p in sends]
        for codec, members in encode.values():
            coded = codec.encode_array(np.stack([f for _, f in members]))
            for (index, _), row in zip(members, coded, strict=True):
                payloads[index] = row.tobytes()
        emit = self._emit
        for (d, _), payload in zip(sends, payloads, strict=True):
            assert payload is not None
            marker = not d.talking
            d.talking = True
            emit(d.sink, d.source.packet(d.payload_type, payload, marker=marker,
                                         samples=FRAME))
        return behind


class Bridge:
    """A `Processor` on both ends of one media line: plain conversion and/or repair per direction."""

    def __init__(self, offerer: MediaEnd, answerer: MediaEnd, plan: StreamPlan,
                 repair: tuple[bool, bool], emit: Emit, repairs: Repairs | None = None) -> None:
        """`repairs`: the relay's shared stage for repaired directions; without it
        (a bridge on its own, in tests) the bridge plays its own at its tick."""
        self.offerer, self.answerer = offerer, answerer
        self.plan = plan
        self._emit = emit
        self._repairs = repairs
        # By the end a party sends to: what it sends goes to the other party.
        self._from_offerer = _Direction(answerer, plan.offerer_to_answerer, plan.plan.answerer,
                                        repair[0])
        self._from_answerer = _Direction(offerer, plan.answerer_to_offerer, plan.plan.offerer,
                                         repair[1])

    @property
    def repairs(self) -> bool:
        return self._from_offerer.receiver is not None or self._from_answerer.receiver is not None

    def receivers(self) -> tuple[Receiver | None, Receiver | None]:
        """(offerer -> answerer, answerer -> offerer): the repaired directions' receive pipelines."""
        return self._from_offerer.receiver, self._from_answerer.receiver

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
            tone = d.tones.get(second & 0x7F)
            if tone is not None:
                self._tone(d, packet, *tone)
            else:
                d.counts.dropped += 1
            return
        target, table, event = route
        receiver = d.receiver
        if receiver is not None:
            if event:
                self._event(d, packet, target)
                return
            other = receiver.counts.other_duration
            receiver.put_packet(packet, now)
            if receiver.counts.other_duration == other:
                return
            # Packets of 10, 30, 40 or 60 ms are cut into 20 ms frames by the
            # receiver (reframe.py) and the party hears 20 ms packets; one
            # the jitter buffer cannot take (not a whole number of 10 ms
            # blocks, e.g. 25 ms) ends repair: this direction is converted
            # packet by packet from now on rather than left silent.
            d.unrepair("packets are not a multiple of 10 ms")
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
        repairs = self._repairs or Repairs(emit)
        for d in (self._from_offerer, self._from_answerer):
            if d.receiver is None:
                continue
            # A tick that comes late (a busy reactor; Twisted's LoopingCall skips
            # the intervals it missed) sends every frame due since the last one,
            # so the party still gets 50 frames a second. After a longer stall the
            # frames beyond _CATCH_UP are skipped, not burst out over the next
            # ticks: the jitter buffer drops them and the stream's timestamps
            # jump over them (a gap the other party's buffer conceals), so the
            # delay stays where it was instead of being accelerated away.
            if d.due and d.due < now - _CATCH_UP * TICK:
                missed = int((now - (_CATCH_UP - 1) * TICK - d.due) / TICK)
                d.due += missed * TICK
                d.receiver.skip(missed)
                d.source.skip(missed * FRAME)
            if d.due and now < d.due - TICK / 2:
                continue
            repairs.queue(d)
        if self._repairs is None:
            repairs.run(now)

    def close(self) -> None:
        if self._repairs is not None:
            self._repairs.forget(self._from_offerer)
            self._repairs.forget(self._from_answerer)

    # -- helpers ---------------------------------------------------------------------

    def _tone(self, d: _Direction, packet: memoryview, target: int, codec: Codec) -> None:
        """An RFC 4733 event for a receiver without them: the DTMF tones of its new duration."""
        try:
            start, stop = payload_bounds(packet)
            event = TelephoneEvent.parse(packet[start:stop])
        except (RtpError, TelephoneEventError):
            d.counts.dropped += 1
            return
        if event.event >= len(_EVENT_KEYS):
            d.counts.dropped += 1  # not a DTMF digit (flash, line tones): no tone for it
            return
        timestamp = int.from_bytes(packet[4:8], "big")
        if timestamp != d.tone_ts:  # a new event (all packets of one share its timestamp)
            d.tone_ts, d.tone_done = timestamp, 0
        count = min(event.duration - d.tone_done, _MAX_TONE)
        if count <= 0:
            return  # a retransmitted end packet, or an update already played
        pcm = dtmf(_EVENT_KEYS[event.event], d.tone_done, count, event.volume)
        marker = 0x80 if d.tone_done == 0 else 0
        header = _HEADER.pack(0x80, marker | target, int.from_bytes(packet[2:4], "big"),
                              (timestamp + d.tone_done) & 0xFFFFFFFF,
                              int.from_bytes(packet[8:12], "big"))
        d.tone_done = event.duration
        self._emit(d.sink, header + codec.encode(pcm))
        d.counts.forwarded += 1
        d.counts.converted += 1

    def _event(self, d: _Direction, packet: memoryview, target: int) -> None:
        """An RFC 4733 event on a repaired direction: into the relay's SSRC and timeline."""
        source_ts = int.from_bytes(packet[4:8], "big")
        if source_ts != d.event_ts:
            # A new event: place it where the audio being played now is. All
            # packets of one event share its timestamp (RFC 4733 2.3.1).
            d.event_ts = source_ts
            d.event_offset = (d.source.timestamp - source_ts) & 0xFFFFFFFF
        try:
            start, stop = payload_bounds(packet)
        except RtpError:
            d.counts.dropped += 1
            return
        self._emit(d.sink, d.source.packet(target, bytes(packet[start:stop]),
                                           marker=bool(packet[1] & 0x80),
                                           timestamp=(source_ts + d.event_offset) & 0xFFFFFFFF))
        d.counts.forwarded += 1


def dtmf(digit: str, offset: int, count: int, volume: int = 10) -> npt.NDArray[np.int16]:
    """`count` samples at 8 kHz of `digit`'s two tones from sample `offset` of the tone.

    Each tone at -`volume` dBm0 (RFC 4733's volume field), phase-continuous
    across calls, so a digit played in pieces has no clicks.
    """
    key = _KEYPAD.index(digit)
    row, column = _ROWS[key // 4], _COLUMNS[key % 4]
    n = np.arange(offset, offset + count, dtype=np.float64)
    peak = _DBM0_PEAK * 10 ** (-volume / 20)
    wave = peak * (np.sin(2 * math.pi * row / 8000 * n) + np.sin(2 * math.pi * column / 8000 * n))
    return np.clip(wave, -32768, 32767).astype(np.int16)
