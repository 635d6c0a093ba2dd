"""Packets of any 10 ms multiple cut into the 20 ms frames the jitter buffer takes (sans-IO).

RFC 3264 6 leaves the packet duration to the sender (`a=ptime` is only the
receiver's preference, RFC 4566 6), so a phone or trunk may send 10, 30, 40
or 60 ms packets where `jitterbuffer.JitterBuffer` and `plc.Concealer` work
in 20 ms frames (160 samples at 8 kHz). A `Reframer` per stream turns each
packet into the frames it completes:

- Frames lie on a grid of 160 samples anchored at one packet's RTP timestamp
  (RFC 3550 5.1: the timestamp is the sampling instant of the first octet).
  A packet covers a whole number of 10 ms blocks; a 30 ms packet straddles
  two frames, so a frame is emitted when both its blocks are here, with the
  arrival of the packet that completed it and its own first sample's
  timestamp.
- Frames carry synthetic sequence numbers, one per frame of the grid, so
  that the jitter buffer's duplicate, reordering and loss logic holds: a
  lost packet leaves a gap exactly where its frames were, and a silence
  (timestamps move on, sequence numbers do not) stays a talkspurt boundary.
- The grid is re-anchored where a sender may restart anywhere: a new SSRC,
  a marker bit (RFC 3551 4.1: the first packet of a talkspurt) on a packet
  that does not follow on exactly, a timestamp off the grid, or timestamps
  that do not follow the sequence numbers.
  Sequence numbers go on from the old grid's, so they stay monotonic.
- A frame whose other block never comes is never emitted (the jitter buffer
  conceals it); pending half frames far behind the newest are dropped.

A packet already one aligned frame comes out as it is. Payloads that are not
a whole number of blocks, or longer than `MAX_FRAMES` frames, are refused
(`put` returns None) and left to the caller to count.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: One frame as `JitterBuffer.put` takes it: (seq, timestamp, ssrc, marker, payload, arrival).
Piece = tuple[int, int, int, bool, bytes, float]

FRAME_SAMPLES = 160
BLOCK_SAMPLES = FRAME_SAMPLES // 2
#: The longest packet reframed: 120 ms (RFC 3551 4.5 allows G.711 packets
#: this long; anything longer is not a telephony stream we should buffer).
MAX_FRAMES = 6
#: Half frames and emitted frames this many frames behind the newest are forgotten.
WINDOW = 50
#: A source seen changed from is ignored this long (its stragglers), as the
#: jitter buffer does (`JitterBuffer.STALE_SSRC_TIME`).
STALE_SSRC_TIME = 1.0
#: RFC 3550 A.1's bounds on a sequence number's distance from the highest seen.
MAX_DROPOUT = 3000
MAX_MISORDER = 100


@dataclass(slots=True)
class ReframeCounts:
    """What a `Reframer` did with the packets it was given."""

    packets: int = 0  # taken (cut into frames, or held until their frames complete)
    frames: int = 0  # complete frames emitted
    reanchored: int = 0  # grid moved (SSRC, marker, timestamp off grid or not following)
    dropped: int = 0  # a straggler of an old grid or source, or duplicated blocks
    abandoned: int = 0  # half frames whose other half never came


@dataclass(slots=True)
class _Grid:
    """One stretch of the stream whose timestamps follow on from one packet's."""

    ssrc: int
    anchor_ts: int  # RTP timestamp of frame index 0
    base: int  # synthetic sequence number of frame index 0 (unbounded; sent mod 2**16)
    floor: int | None  # lowest frame index allowed (None: any, the stream's first grid)
    max_seq: int  # extended sequence number of the newest packet
    max_end: int  # samples from the anchor to the end of the newest packet
    top: int = -1  # highest frame index touched
    high: int = -1  # highest frame index emitted (or -1)
    #: frame index -> (which half is here: 0 first, 1 second; its bytes; arrival)
    pending: dict[int, tuple[int, bytes, float]] = field(default_factory=dict)
    done: set[int] = field(default_factory=set)  # frame indexes emitted


class Reframer:
    """Cuts one stream's packets (any whole number of 10 ms blocks) into 20 ms frames."""

    def __init__(self) -> None:
        self.counts = ReframeCounts()
        self._grid: _Grid | None = None
        self._retired: tuple[int, float] | None = None  # (ssrc, when it was left)

    @staticmethod
    def accepts(size: int, frame_bytes: int) -> bool:
        """Whether a payload of `size` bytes can be reframed into frames of `frame_bytes`."""
        return (not frame_bytes & 1 and 0 < size <= MAX_FRAMES * frame_bytes
                and size % (frame_bytes >> 1) == 0)

    def put(self, seq: int, timestamp: int, ssrc: int, marker: bool, payload: bytes,
            arrival: float, frame_bytes: int) -> list[Piece] | None:
        """One packet's fields: the frames it completes (maybe none), or None if its
        payload is not a whole number of 10 ms blocks (or too long) to reframe.

        `frame_bytes`: the payload bytes of one 20 ms frame of its payload type
        (G.711 160, L16 320).
        """
        size = len(payload)
        fb = frame_bytes
        hb = fb >> 1
        if fb & 1 or not 0 < size <= MAX_FRAMES * fb or size % hb:
            return None
        samples = size // hb * BLOCK_SAMPLES
        g = self._grid
        if g is None or ssrc != g.ssrc:
            retired = self._retired
            if retired is not None and ssrc == retired[0] and arrival < retired[1] + STALE_SSRC_TIME:
                self.counts.dropped += 1
                return []
            if g is not None:
                self._retired = (g.ssrc, arrival)
            g = self._fresh(seq, timestamp, ssrc, samples)
            step = 0
        else:
            step = ((seq - g.max_seq + 0x8000) & 0xFFFF) - 0x8000
            if not -MAX_MISORDER <= step <= MAX_DROPOUT:
                # The sender restarted its numbering: a new stream as far as the grid goes.
                g = self._fresh(seq, timestamp, ssrc, samples)
                step = 0
        delta = ((timestamp - g.anchor_ts + 0x80000000) & 0xFFFFFFFF) - 0x80000000
        if step > 0:
            # The newest packet so far: does it follow the grid? With no packet
            # lost its timestamp is where the last one ended; with some lost, a
            # whole number of blocks later, no more than they could have held.
            ext = g.max_seq + step
            gap = delta - g.max_end
            lost = step - 1
            # A marker on a packet that follows on exactly is kept on its frame
            # but moves nothing: some phones set it on every packet, and each
            # re-anchoring would drop the half frame held across it.
            if delta % BLOCK_SAMPLES or (marker and (gap or lost)) or not (
                    lost * BLOCK_SAMPLES <= gap <= lost * MAX_FRAMES * FRAME_SAMPLES):
                g = self._reanchor(g, ext, timestamp)
                delta = 0
            g.max_seq = ext
            g.max_end = delta + samples
        elif delta % BLOCK_SAMPLES or delta + samples > g.max_end:
            # An older packet (reordered or duplicated) that is not on this grid:
            # it belongs to one the stream has left.
            self.counts.dropped += 1
            return []
        self.counts.packets += 1
        first = delta // BLOCK_SAMPLES  # block index on the grid (may be negative)
        floor = g.floor
        done = g.done
        out: list[Piece] = []
        if not first & 1 and not size % fb:
            # Whole frames only (20, 40, 60 ms packets on the grid): no half to keep.
            index = first >> 1
            for k in range(0, size, fb):
                if (floor is None or index >= floor) and index not in done:
                    out.append(self._piece(g, index, marker and k == 0, payload[k:k + fb],
                                           arrival))
                index += 1
        else:
            block = first
            k = 0
            while k < size:
                index = block >> 1
                whole = not block & 1 and k + fb <= size
                if (floor is None or index >= floor) and index not in done:
                    if whole:
                        out.append(self._piece(g, index, marker and k == 0, payload[k:k + fb],
                                               arrival))
                    else:
                        self._half(g, out, index, block & 1, payload[k:k + hb],
                                   marker and k == 0, arrival)
                k += fb if whole else hb
                block += 2 if whole else 1
        last = (delta + samples - 1) // FRAME_SAMPLES
        if last > g.top:
            g.top = last
            if len(done) > 2 * WINDOW or g.pending:
                self._forget(g)
        return out

    def _half(self, g: _Grid, out: list[Piece], index: int, half: int, part: bytes,
              marker: bool, arrival: float) -> None:
        """One 10 ms block of frame `index`: the frame if it completes it, else kept."""
        held = g.pending.get(index)
        if held is None or len(held[1]) != len(part):
            # (Another payload type's half, the sender having changed codec:
            # never joined to this one.)
            g.pending[index] = (half, part, arrival)
        elif held[0] != half:
            del g.pending[index]
            out.append(self._piece(g, index, marker and not half,
                                   held[1] + part if half else part + held[1], arrival))
        else:
            self.counts.dropped += 1  # the same block again: a duplicate

    def _piece(self, g: _Grid, index: int, marker: bool, payload: bytes, arrival: float) -> Piece:
        g.done.add(index)
        if index > g.high:
            g.high = index
        self.counts.frames += 1
        return ((g.base + index) & 0xFFFF, (g.anchor_ts + index * FRAME_SAMPLES) & 0xFFFFFFFF,
                g.ssrc, marker, payload, arrival)

    def _fresh(self, seq: int, timestamp: int, ssrc: int, samples: int) -> _Grid:
        """A grid for a new source: numbered from its own sequence numbers (the jitter
        buffer starts a new stream too), any reordered packet before it allowed."""
        if self._grid is not None:
            self.counts.reanchored += 1
        g = self._grid = _Grid(ssrc, timestamp, seq, None, seq, samples)
        return g

    def _reanchor(self, old: _Grid, ext: int, timestamp: int) -> _Grid:
        """The same source restarting its timeline at `timestamp`: numbering goes on.

        A packet older than the new anchor can no longer be placed (its frames'
        numbers belong to the old grid), hence the floor at frame 0.
        """
        self.counts.reanchored += 1
        self.counts.abandoned += len(old.pending)
        # After the last frame emitted, not the last touched: a half frame that
        # never completed must not look like a lost frame (the jitter buffer
        # tells a talkspurt boundary by sequence numbers that do not move on).
        base = old.base + old.high + 1
        g = self._grid = _Grid(old.ssrc, timestamp, base, 0, ext, 0)
        return g

    def _forget(self, g: _Grid) -> None:
        """Drop half frames and memories of emitted frames far behind the newest."""
        horizon = g.top - WINDOW
        stale = [i for i in g.pending if i < horizon]
        for i in stale:
            del g.pending[i]
        self.counts.abandoned += len(stale)
        if len(g.done) > 2 * WINDOW:
            g.done = {i for i in g.done if i >= horizon}
