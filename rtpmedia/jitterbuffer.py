"""Adaptive jitter buffer for one received RTP audio stream (sans-IO).

Packets go in with `put(...)` and the time they arrived; at the 20 ms
playout tick `get(now, queued_samples)` says what to play for the next frame
of media: a real frame (`NORMAL`), a missing frame to conceal (`CONCEAL`,
with the frame that follows it when already held, so that the PLC can
interpolate), frames to shorten or lengthen by one pitch period
(`ACCELERATE`, `EXPAND`; done by `rtpmedia.timestretch`, the buffer only
decides), or nothing yet (`EMPTY`: silence or comfort noise). No sockets, no
timers, no clock: every time is an argument (seconds, any monotonic origin).

The caller keeps a small queue of decoded samples, because a stretch makes a
frame longer or shorter than 20 ms; each tick it calls `get` while fewer than
160 samples are queued, then sends 160:

    while len(queue) < 160:
        out = jb.get(now, len(queue))
        queue += decode / conceal / stretch (out)   # record_stretch(n)
    send(queue[:160]); del queue[:160]

The target delay follows the measured delay distribution as WebRTC NetEq's
DelayManager does: each packet's offset (arrival minus RTP timestamp)
relative to the smallest offset of a recent window (which also follows clock
skew) goes into a histogram that forgets old packets; the target is a high
quantile of it, bounded by min/max delay. The quantile (98% at the start) is
steered by the late losses actually seen, towards `late_loss_target`: each
late frame raises it at once (a delay spike raises the target fast), frames
in time lower it slowly. Stalls of the path (a few packets far above that
quantile, then the queued ones back to back) are kept out of the histogram
and remembered apart (`DelayPeaks`, after NetEq's peak detector): the target
stays at least at the delay that would have lost `late_loss_target` of the
frames over the recent stalls. The buffer moves its delay to the target by time
stretching, by waiting while below target (concealing without giving up the
missing frame), and at talkspurt starts (marker bit, or a timestamp gap after
contiguous sequence numbers) by re-timing playout in the silence, where it
costs nothing. At or above target a missing frame is concealed and given up,
as a fixed buffer would: if it comes later it is dropped as late.

Payloads are opaque (`P`): the relay should store encoded payload bytes and
decode after `get`, so that a tick collects the frames of every stream and
decodes them in one vectorised table lookup (one (n, 160) array per codec)
before stretching or concealing the few streams that need it. Decoded int16
frames work as well (the benchmark uses them).

Assumes fixed-duration frames (`frame_samples`, 160 = 20 ms at 8 kHz); the
sequence number (16 bit) and timestamp (32 bit) wrap; RFC 3550 A.1's rule
for a sender that restarts its sequence numbers.
"""

from __future__ import annotations

import bisect
import enum
import itertools
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np

P = TypeVar("P")


class PlayoutKind(enum.Enum):
    #: Playout has not started (or restarts after an SSRC change): silence.
    EMPTY = "empty"
    #: Play `frames[0]`.
    NORMAL = "normal"
    #: One frame of media is missing: conceal 20 ms. `next` is the frame
    #: that follows the concealed one in the audio, if the buffer holds it.
    CONCEAL = "conceal"
    #: Play `frames` (1 or 2 consecutive) shortened by one pitch period.
    ACCELERATE = "accelerate"
    #: Play `frames` (1 or 2 consecutive) lengthened by one pitch period.
    EXPAND = "expand"


class PutResult(enum.Enum):
    BUFFERED = "buffered"
    DUPLICATE = "duplicate"
    LATE = "late"
    #: A straggler of a previous SSRC, after the stream changed source.
    STALE_SSRC = "stale-ssrc"
    #: A sequence number far from the stream's, dropped unless the next
    #: packet follows it (then the stream restarts from it).
    SEQ_JUMP = "seq-jump"


# Frame and Playout are made once per packet and per frame: not frozen,
# because a frozen dataclass's __init__ sets each field through
# object.__setattr__ (3.4 against 0.7 µs a Frame). Treat them as immutable.
@dataclass(slots=True)
class Frame(Generic[P]):
    """A buffered packet: extended sequence number, RTP timestamp as sent."""

    seq: int
    timestamp: int
    ssrc: int
    marker: bool
    payload: P
    arrival: float


@dataclass(slots=True)
class Playout(Generic[P]):
    """What to play for one frame of media (the answer of `get`)."""

    kind: PlayoutKind
    frames: tuple[Frame[P], ...] = ()
    #: CONCEAL only: the frame right after the concealed one, if held.
    next: Frame[P] | None = None
    #: ACCELERATE: the most samples to remove without going under the target
    #: delay (pass it to `timestretch.accelerate` as `max_samples`); EXPAND:
    #: the samples missing to reach it (one pitch period is inserted anyway).
    stretch_samples: int = 0
    #: CONCEAL only: False when the missing frame is given up (playout moves
    #: on), True when the buffer waits for it (the delay is below target and
    #: grows by this frame): the concealment is then inserted audio, and the
    #: frame may still follow.
    waiting: bool = False

    @property
    def frame(self) -> Frame[P] | None:
        return self.frames[0] if self.frames else None


#: Never changed, so one instance serves every "nothing to play" answer.
_EMPTY: Playout[Any] = Playout(PlayoutKind.EMPTY)
_NORMAL_KIND = PlayoutKind.NORMAL


@dataclass(frozen=True, slots=True)
class JitterBufferStats:
    """Counters named after W3C webrtc-stats (RTCInboundRtpStreamStats).

    Delays are sums over emitted samples, in seconds: the mean delay is
    `jitter_buffer_delay / jitter_buffer_emitted_count`.
    """

    packets_received: int
    packets_discarded: int
    packets_duplicated: int
    jitter_buffer_delay: float
    jitter_buffer_target_delay: float
    jitter_buffer_emitted_count: int
    concealed_samples: int
    concealment_events: int
    inserted_samples_for_deceleration: int
    removed_samples_for_acceleration: int
    current_delay_ms: float
    target_delay_ms: float

    def to_webrtc(self) -> dict[str, float | int]:
        """The counters under their webrtc-stats names (camelCase)."""
        return {
            "packetsReceived": self.packets_received,
            "packetsDiscarded": self.packets_discarded,
            "packetsDuplicated": self.packets_duplicated,
            "jitterBufferDelay": self.jitter_buffer_delay,
            "jitterBufferTargetDelay": self.jitter_buffer_target_delay,
            "jitterBufferEmittedCount": self.jitter_buffer_emitted_count,
            "concealedSamples": self.concealed_samples,
            "concealmentEvents": self.concealment_events,
            "insertedSamplesForDeceleration": self.inserted_samples_for_deceleration,
            "removedSamplesForAcceleration": self.removed_samples_for_acceleration,
            "currentDelayMs": self.current_delay_ms,
            "targetDelayMs": self.target_delay_ms,
        }


class DelayHistogram:
    """Histogram of relative delays that forgets, and its quantile.

    Like NetEq's: each new sample weighs (1 - forget) of the whole and the
    past fades by `forget` per sample; at the start all samples weigh the
    same (a running mean), so that the first packets are not drowned by the
    initial guess. Fading is done by giving each new sample 1/forget times
    the weight of the one before (rescaled now and then), so that adding is
    O(1).
    """

    def __init__(self, bucket: float, max_delay: float, forget: float, initial: float) -> None:
        self.bucket = bucket
        self.forget = forget
        # Plain floats, not numpy: one bucket changes per packet and the
        # quantile is read per frame, each a few Python operations where a
        # numpy call costs a microsecond. The arithmetic is the same IEEE
        # double arithmetic in the same order (cumsum adds in sequence, as
        # `accumulate` does), so the quantiles are bit for bit numpy's.
        self._hist = [0.0] * (int(max_delay / bucket) + 2)
        self._last = len(self._hist) - 1
        self._top = self._index(initial)  # highest bucket with any weight
        self._hist[self._top] = 1.0
        self._weight = 1.0
        self._count = 0
        self._ramp = 1.0 / (1.0 - forget)

    def _index(self, delay: float) -> int:
        # The bucket's upper edge: a quantile never understates a delay.
        i = math.ceil(delay / self.bucket - 1e-9)
        return min(max(i, 0), len(self._hist) - 1)

    def add(self, delay: float) -> None:
        self._count += 1
        if self._count > self._ramp:
            self._weight /= self.forget
            if self._weight > 1e100:
                w = self._weight
                self._hist = [v / w for v in self._hist]
                self._weight = 1.0
        # _index, inline (once per packet).
        i = math.ceil(delay / self.bucket - 1e-9)
        if i < 0:
            i = 0
        elif i > self._last:
            i = self._last
        self._hist[i] += self._weight
        if i > self._top:
            self._top = i

    def quantile(self, q: float) -> float:
        # Buckets above the top hold zeros: the running sum ends there.
        cum = list(itertools.accumulate(self._hist[: self._top + 1]))
        i = bisect.bisect_left(cum, q * cum[-1])
        return min(i, len(self._hist) - 1) * self.bucket


class _MinWindow:
    """Minimum of (time, value) samples over the last `window` seconds."""

    def __init__(self, window: float) -> None:
        self.window = window
        #: (time, value), values increasing: the first is the minimum.
        self.samples: deque[tuple[float, float]] = deque()

    def add(self, t: float, v: float) -> None:
        q = self.samples
        while q and q[-1][1] >= v:
            q.pop()
        q.append((t, v))
        while q[0][0] < t - self.window:
            q.popleft()

    @property
    def value(self) -> float | None:
        return self.samples[0][1] if self.samples else None


@dataclass(slots=True)
class _Peak:
    start: float  # arrival of its first packet, seconds
    height: float  # its highest relative delay, seconds
    packets: int


class DelayPeaks:
    """Stalls of the path, and the least delay that rides them out.

    A stall of height H holds the packets sent during it, which then arrive
    back to back, each a frame time less late than the one before: a delay
    D below H loses about (H - D) / frame time frames per stall, however
    rare stalls are. In a delay histogram they are a few percent of the
    packets, so a quantile either ignores them or, steered by the frames
    they make late, jumps to near H and drifts down before the next stall
    (hence NetEq's peak detector beside its histogram). So the buffer hands
    the packets far above its jitter quantile to this class instead (`add`);
    one peak is such packets arriving within `JOIN` of each other, a stall
    is a peak of at least `MIN_PACKETS` (a lone outlier is handed back as
    jitter). `floor` is the smallest delay that would have lost at most
    `loss` of the frames sent over the time the remembered stalls cover:
    the best fixed delay for the recent past, which falls as calm time
    passes. Cost: `add` only for peak packets; per tick, the owner compares
    `now` with `due` and calls `solve` when the allowance has grown by 5%.
    """

    #: Packets above the threshold this close together are one peak.
    JOIN = 0.2
    #: Stalls remembered (as NetEq's peaks).
    MEMORY = 8
    #: A peak this many packets wide is a stall.
    MIN_PACKETS = 2
    #: The floor is re-solved when the allowance grows by this factor.
    RESOLVE = 1.05

    def __init__(self, frame_time: float, loss: float) -> None:
        self.frame_time = frame_time
        self.loss = loss
        #: The delay (s) the stalls ask for, as of the last `solve`.
        self.floor = 0.0
        #: When `solve` is next needed (plain attribute: read every tick).
        self.due = -math.inf
        self._peak: _Peak | None = None  # the last peak, stall or not
        self._last = -math.inf  # arrival of the last packet handed in
        self._stalls: deque[_Peak] = deque()
        self._since: float | None = None  # start of the time they cover

    def add(self, arrival: float, delay: float) -> float | None:
        """A packet whose relative delay (s) is far above the jitter.

        Returns the height of the previous peak when this packet starts a
        new one and that one stayed narrower than a stall: a lone outlier
        is jitter, for the owner's histogram (and known as such only now).
        """
        peak = self._peak
        self._last, last = arrival, self._last
        if peak is not None and arrival - last <= self.JOIN:
            peak.height = max(peak.height, delay)
            peak.packets += 1
            if peak.packets == self.MIN_PACKETS:
                self._stalls.append(peak)
                if len(self._stalls) > self.MEMORY:
                    self._since = self._stalls.popleft().start
            if peak.packets >= self.MIN_PACKETS:
                self.due = -math.inf
            return None
        self._peak = _Peak(arrival, delay, 1)
        if peak is not None and peak.packets < self.MIN_PACKETS:
            return peak.height
        return None

    def solve(self, now: float) -> None:
        """Recompute `floor` and `due` for `now` (the first call starts the
        time the stalls are counted over)."""
        if self._since is None:
            self._since = now
        if not self._stalls:
            self.floor, self.due = 0.0, math.inf
            return
        elapsed = max(now - self._since, self.frame_time)
        self.floor = self._solve(self.loss * elapsed / self.frame_time)
        self.due = self._since + elapsed * self.RESOLVE

    def _solve(self, allowed: float) -> float:
        # The D where sum(max(H - D, 0)) / frame time = allowed frames: with
        # the heights in descending order, D lies below the k highest for
        # the first k whose solution is not below the next height.
        heights = sorted((p.height for p in self._stalls), reverse=True)
        total = 0.0
        for k, h in enumerate(heights, 1):
            total += h
            d = (total - allowed * self.frame_time) / k
            if k == len(heights) or d >= heights[k]:
                return max(d, 0.0)
        return 0.0


@dataclass(slots=True)
class _Epoch:
    """A run of packets whose timestamps are continuous.

    Internal timestamps are unwrapped and shifted so that a timestamp jump
    (the sender restarting its clock) continues the previous epoch.
    """

    start_seq: int
    ref_raw: int
    ref_internal: int

    def internal(self, raw: int) -> int:
        delta = ((raw - self.ref_raw + 0x80000000) & 0xFFFFFFFF) - 0x80000000
        return self.ref_internal + delta


@dataclass(slots=True)
class _Counters:
    received: int = 0
    discarded: int = 0
    duplicated: int = 0
    delay: float = 0.0
    target: float = 0.0
    emitted: int = 0
    concealed: int = 0
    events: int = 0
    inserted: int = 0
    removed: int = 0


@dataclass(slots=True)
class _Stream:
    """Per-SSRC state, replaced when the source changes."""

    ssrc: int
    max_seq: int
    max_arrival: float
    epochs: list[_Epoch]
    min_offset: _MinWindow
    frames: dict[int, Frame[Any]] = field(default_factory=dict)
    keys: list[int] = field(default_factory=list)  # sorted internal timestamps
    seqs: set[int] = field(default_factory=set)
    emitted: set[int] = field(default_factory=set)
    playout_ts: int | None = None
    waits: int = 0  # concealments while waiting for the frame at playout_ts
    next_seq: int | None = None  # extended seq after the last frame played
    started: bool = False
    bad_seq: int | None = None


class JitterBuffer(Generic[P]):
    """Reorders one stream's packets and paces them out at an adaptive delay."""

    #: After an SSRC change, packets of the previous source arriving within
    #: this time are stragglers and dropped; later, that source is new again.
    STALE_SSRC_TIME = 1.0
    #: RFC 3550 A.1: a sequence number further than this from the highest
    #: seen is a restart of the sender once the next packet confirms it.
    MAX_DROPOUT = 3000
    MAX_MISORDER = 100
    LATE_STEP = 0.9
    MIN_TAIL = 0.001
    MAX_TAIL = 0.1
    #: A packet this many frame times above the jitter quantile belongs to
    #: a delay peak (`DelayPeaks`), not to the jitter histogram.
    PEAK_MARGIN = 2

    def __init__(
        self,
        *,
        clock_rate: int = 8000,
        frame_samples: int = 160,
        min_delay: float = 0.0,
        max_delay: float = 1.0,
        initial_delay: float = 0.08,
        initial_quantile: float = 0.98,
        late_loss_target: float = 0.006,
        forget: float = 0.999,
        bucket: float = 0.005,
        min_window: float = 4.0,
        min_stretch: int = 20,
        jump_threshold: float = 2.0,
    ) -> None:
        self.clock_rate = clock_rate
        self.frame_samples = frame_samples
        self.min_delay = min_delay
        self.max_delay = max_delay
        self.initial_delay = initial_delay
        self.late_loss_target = late_loss_target
        # The quantile's tail (1 - q) is steered so that the late losses
        # actually seen match late_loss_target: each late frame shrinks it
        # by LATE_STEP (a spike raises the delay at once), each frame in
        # time grows it by the factor that balances at the target rate (the
        # delay comes down slowly).
        self._tail = 1.0 - initial_quantile
        self._grow = late_loss_target * -np.log(self.LATE_STEP) / (1.0 - late_loss_target)
        self.min_stretch = min_stretch
        self.min_window = min_window
        self.jump_threshold = jump_threshold
        self._half = frame_samples // 2
        self._frame_time = frame_samples / clock_rate
        self._hist = DelayHistogram(bucket, max_delay, forget, initial_delay)
        # The stalls' floor is solved for late_loss_target itself, not for
        # the steered tail: the late frames of a stall drive the tail down
        # (which only lifts the jitter quantile within the calm jitter, the
        # stalls being out of its histogram), and a floor solved for that
        # tail would hold the delay near the stalls' height.
        self._peaks = DelayPeaks(frame_samples / clock_rate, late_loss_target)
        self._peak_margin = self.PEAK_MARGIN * frame_samples / clock_rate
        self._peak_threshold = math.inf  # set with the target, each tick
        self._s: _Stream | None = None
        self._retired: tuple[int, float] | None = None
        self._c = _Counters()
        self._last_kind = PlayoutKind.EMPTY
        self._current = 0.0

    # -- input ---------------------------------------------------------------

    def put(
        self,
        seq: int,
        timestamp: int,
        ssrc: int,
        marker: bool,
        payload: P,
        arrival_time: float,
    ) -> PutResult:
        """Buffer one received packet (seq 16-bit, timestamp 32-bit)."""
        self._c.received += 1
        s = self._s
        if s is None or ssrc != s.ssrc:
            if self._retired is not None and ssrc == self._retired[0]:
                if arrival_time < self._retired[1] + self.STALE_SSRC_TIME:
                    self._c.discarded += 1
                    return PutResult.STALE_SSRC
            if s is not None:
                # A new source: what the old one left is never played.
                self._retired = (s.ssrc, arrival_time)
                self._c.discarded += len(s.frames)
            s = self._s = self._new_stream(ssrc, seq, timestamp, arrival_time)
        # The extended sequence number nearest the highest seen (inline: per packet).
        ext = s.max_seq + ((seq - s.max_seq + 0x8000) & 0xFFFF) - 0x8000
        if not -self.MAX_MISORDER <= ext - s.max_seq <= self.MAX_DROPOUT:
            if seq != s.bad_seq:
                s.bad_seq = (seq + 1) & 0xFFFF
                self._c.discarded += 1
                return PutResult.SEQ_JUMP
            # Two packets in sequence: the sender restarted its numbering.
            self._c.discarded += len(s.frames)
            s = self._s = self._new_stream(ssrc, seq, timestamp, arrival_time)
            ext = seq
        if ext in s.seqs or ext in s.emitted:
            self._c.duplicated += 1
            return PutResult.DUPLICATE
        ts = self._internal_ts(s, ext, timestamp, arrival_time)
        offset = arrival_time - ts / self.clock_rate
        window = s.min_offset
        window.add(arrival_time, offset)
        rel = offset - window.samples[0][1]  # above the fastest packet of the window
        if rel > self._peak_threshold:
            # Maybe a stall: its own model, out of the quantile's (a lone
            # outlier comes back once it is known to be one).
            lone = self._peaks.add(arrival_time, rel)
            if lone is not None:
                self._hist.add(lone)
        else:
            self._hist.add(rel)
        if s.playout_ts is not None and ts < s.playout_ts - self._half:
            self._c.discarded += 1
            s.emitted.add(ext)  # a second copy is then a duplicate
            self._late(1)
            return PutResult.LATE
        frames = s.frames
        if ts in frames:
            self._c.duplicated += 1
            return PutResult.DUPLICATE
        frames[ts] = Frame(ext, timestamp, ssrc, marker, payload, arrival_time)
        keys = s.keys
        if not keys or ts > keys[-1]:
            keys.append(ts)  # in order: the usual case
        else:
            bisect.insort(keys, ts)
        s.seqs.add(ext)
        return PutResult.BUFFERED

    def _new_stream(self, ssrc: int, seq: int, ts: int, arrival: float) -> _Stream:
        return _Stream(
            ssrc=ssrc,
            max_seq=seq,
            max_arrival=arrival,
            epochs=[_Epoch(seq, ts, ts)],
            min_offset=_MinWindow(self.min_window),
        )

    def _internal_ts(self, s: _Stream, ext: int, raw: int, arrival: float) -> int:
        if ext <= s.max_seq:
            # Reordered: the epoch its sequence number belongs to.
            for epoch in reversed(s.epochs):
                if ext >= epoch.start_seq:
                    return epoch.internal(raw)
            return s.epochs[0].internal(raw)
        epoch = s.epochs[-1]
        ts = epoch.internal(raw)
        gap = ts - epoch.ref_internal
        elapsed = arrival - s.max_arrival
        if gap < 0 or gap / self.clock_rate > elapsed + self.jump_threshold:
            # A timestamp jump the elapsed time cannot explain: continue the
            # timeline as if the frames in between had been sent.
            ts = epoch.ref_internal + (ext - s.max_seq) * self.frame_samples
            s.epochs.append(_Epoch(ext, raw, ts))
            del s.epochs[:-3]
        else:
            epoch.ref_raw, epoch.ref_internal = raw, ts
        s.max_seq, s.max_arrival = ext, arrival
        return ts

    # -- output --------------------------------------------------------------

    @property
    def target_delay(self) -> float:
        """Target delay above the fastest packet of the window, seconds
        (with the stalls' floor as of the last tick)."""
        q = self._hist.quantile(1.0 - self._tail)
        return min(max(q, self._peaks.floor, self.min_delay), self.max_delay)

    def _target(self, now: float) -> float:
        """The target for the tick at `now`; moves the peak threshold."""
        q = self._hist.quantile(1.0 - self._tail)
        self._peak_threshold = q + self._peak_margin
        peaks = self._peaks
        if now >= peaks.due:
            peaks.solve(now)
        return min(max(q, peaks.floor, self.min_delay), self.max_delay)

    @property
    def current_delay(self) -> float:
        """Delay of the last played frame above the fastest packet, seconds.

        It includes the caller's queued samples: the time from the frame's
        arrival slot to when its first sample is heard.
        """
        return self._current

    def _lead(self, s: _Stream, ts: int, now: float) -> float:
        """How late (s) the frame at `ts` may arrive and still be played now,
        relative to the fastest packet of the window: what protects against
        jitter. Compared with the target delay."""
        m = s.min_offset.value
        assert m is not None
        return now - ts / self.clock_rate - m

    def get(self, now: float, queued_samples: int = 0) -> Playout[P]:
        """What to play for the next frame of media.

        Call it at the playout tick whenever fewer than a frame of decoded
        samples are queued (once per tick but for the tick after a stretch
        that left a whole frame queued); `queued_samples` is what is queued.
        A frame must be here when its tick asks for it, so what protects it
        is the "lead" (tick time minus the frame's slot, on the 20 ms grid of
        ticks); queued samples only add delay, and the buffer trims them
        with accelerate when the signal allows.
        """
        target = self._target(now)
        out = self._decide(now, queued_samples, target)
        # _account, inline for the usual one frame played.
        if out.kind is _NORMAL_KIND and len(out.frames) == 1:
            c = self._c
            fs = self.frame_samples
            c.emitted += fs
            c.delay += (now - out.frames[0].arrival) * fs
            c.target += target * fs
            self._last_kind = _NORMAL_KIND
        else:
            self._account(out, now, target)
        return out

    def _decide(self, now: float, queued: int, target: float) -> Playout[P]:
        s = self._s
        half = self._half
        frame_time = self._frame_time
        if s is None or not s.keys and not s.started:
            return _EMPTY
        if not s.started:
            first = s.keys[0]
            if self._lead(s, first, now) < target:
                return _EMPTY
            s.started = True
            s.playout_ts = first
        assert s.playout_ts is not None
        # _lead, inline (once per frame).
        lead = now - s.playout_ts / self.clock_rate - s.min_offset.samples[0][1]
        if lead > self.max_delay + frame_time:
            self._skip_to(s, now, target)
            lead = self._lead(s, s.playout_ts, now)
        self._current = max(lead + queued / self.clock_rate, 0.0)
        if s.keys and s.keys[0] <= s.playout_ts + half:
            return self._play(s, lead, target, queued)
        if not s.keys:
            # Underrun: a loss, a delay spike or the end of a talkspurt.
            # Below target, waiting raises the delay by a frame per tick.
            # At or above it, the frame is given up as a fixed buffer would
            # (if late, it is dropped and counted, which raises the target):
            # waiting there would add a concealment and delay to every loss.
            if lead < target and lead + frame_time <= self.max_delay:
                s.waits += 1
                return Playout(PlayoutKind.CONCEAL, waiting=True)
            return self._conceal_skip(s)
        nxt = s.frames[s.keys[0]]
        if nxt.marker or nxt.seq == s.next_seq:
            # Talkspurt start (marker, or timestamps moved on while sequence
            # numbers did not): re-time playout in the silence before it.
            s.playout_ts = s.keys[0]
            s.next_seq = None
            s.waits = 0
            lead = self._lead(s, s.playout_ts, now)
            if lead < target:
                s.started = False
                return _EMPTY
            self._current = lead + queued / self.clock_rate
            return self._play(s, lead, target, queued)
        if lead < target:
            # A hole with later packets held, below target: wait for it (it
            # may be reordered), which also raises the delay.
            s.waits += 1
            return Playout(PlayoutKind.CONCEAL, waiting=True)
        return self._conceal_skip(s)

    def _play(self, s: _Stream, lead: float, target: float, queued: int) -> Playout[P]:
        fs = self.frame_samples
        assert s.playout_ts is not None
        first = self._pop(s)
        frames: tuple[Frame[P], ...] = (first,)
        keys = s.keys
        adjacent = bool(keys) and keys[0] <= s.playout_ts + self._half
        # Removing up to the queued samples keeps the lead; removing more
        # takes one frame (a tick) off it, allowed when the lead exceeds the
        # target by a frame. Below target nothing is removed: what is queued
        # then is what EXPAND inserted to raise the delay (a tick is skipped
        # once a frame's worth has built up), and trimming it undid each
        # expansion, so the delay never rose to the target between stalls.
        if lead - self._frame_time >= target:
            removable = fs
        else:
            removable = queued
        if removable >= self.min_stretch and adjacent and lead >= target:
            return Playout(PlayoutKind.ACCELERATE, (first, self._pop(s)), stretch_samples=removable)
        if lead < target:
            missing = int((target - lead) * self.clock_rate) + 1
            if adjacent:
                frames = (first, self._pop(s))
            return Playout(PlayoutKind.EXPAND, frames, stretch_samples=missing)
        return Playout(PlayoutKind.NORMAL, frames)

    def _pop(self, s: _Stream) -> Frame[P]:
        key = s.keys.pop(0)
        frame = s.frames.pop(key)
        s.seqs.discard(frame.seq)
        s.emitted.add(frame.seq)
        if len(s.emitted) > 4096:
            floor = frame.seq - 2048
            s.emitted = {q for q in s.emitted if q > floor}
        s.next_seq = frame.seq + 1
        s.playout_ts = key + self.frame_samples
        if s.waits:
            # The frame waited for came: those concealments were lateness.
            self._late(s.waits)
            s.waits = 0
        else:
            self._tail = min(self._tail * (1.0 + self._grow), self.MAX_TAIL)
        return frame

    def _late(self, frames: int) -> None:
        self._tail = max(self._tail * self.LATE_STEP**frames, self.MIN_TAIL)

    def _conceal_skip(self, s: _Stream) -> Playout[P]:
        assert s.playout_ts is not None
        s.playout_ts += self.frame_samples
        s.waits = 0
        held = s.keys[0] if s.keys else None
        nxt = None
        if held is not None and held <= s.playout_ts + self.frame_samples // 2:
            nxt = s.frames[held]
        return Playout(PlayoutKind.CONCEAL, next=nxt)

    def _skip_to(self, s: _Stream, now: float, target: float) -> None:
        """Drop media to bring the delay back to target (overflow)."""
        assert s.playout_ts is not None
        excess = self._lead(s, s.playout_ts, now) - target
        n = int(excess * self.clock_rate) // self.frame_samples
        s.playout_ts += n * self.frame_samples
        s.waits = 0
        while s.keys and s.keys[0] < s.playout_ts - self.frame_samples // 2:
            frame = s.frames.pop(s.keys.pop(0))
            s.seqs.discard(frame.seq)
            self._c.discarded += 1

    def _account(self, out: Playout[P], now: float, target: float) -> None:
        c = self._c
        if out.kind is PlayoutKind.CONCEAL:
            c.concealed += self.frame_samples
            if self._last_kind is not PlayoutKind.CONCEAL:
                c.events += 1
        for f in out.frames:
            c.emitted += self.frame_samples
            c.delay += (now - f.arrival) * self.frame_samples
            c.target += target * self.frame_samples
        self._last_kind = out.kind

    def skip(self, frames: int) -> None:
        """Playout moves on by `frames` the caller could not play in time (it stalled):
        what the buffer holds for them is dropped, and the delay stays where it was.

        Without it a stall would leave its frames in the buffer as extra
        delay, to be removed a pitch period at a time by accelerating.
        """
        s = self._s
        if s is None or not s.started or s.playout_ts is None or frames <= 0:
            return
        s.playout_ts += frames * self.frame_samples
        s.waits = 0
        while s.keys and s.keys[0] < s.playout_ts - self._half:
            frame = s.frames.pop(s.keys.pop(0))
            s.seqs.discard(frame.seq)
            s.emitted.add(frame.seq)  # a copy still to come is a duplicate, not late
            self._c.discarded += 1

    def record_stretch(self, samples: int) -> None:
        """Report what the stretcher did: samples inserted (> 0) or removed."""
        if samples > 0:
            self._c.inserted += samples
        else:
            self._c.removed -= samples

    def stats(self) -> JitterBufferStats:
        c = self._c
        return JitterBufferStats(
            packets_received=c.received,
            packets_discarded=c.discarded,
            packets_duplicated=c.duplicated,
            jitter_buffer_delay=c.delay,
            jitter_buffer_target_delay=c.target,
            jitter_buffer_emitted_count=c.emitted,
            concealed_samples=c.concealed,
            concealment_events=c.events,
            inserted_samples_for_deceleration=c.inserted,
            removed_samples_for_acceleration=c.removed,
            current_delay_ms=self._current * 1000.0,
            target_delay_ms=self.target_delay * 1000.0,
        )
