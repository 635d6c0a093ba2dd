"""Recording a call to WAV: one channel per party, the directions kept in step.

Each party's audio comes as decoded frames with their RTP timestamp and the
time they arrived. The two directions have unrelated timestamp bases
(RFC 3550 5.1: random initial values), so the first frame of each party
is placed by its arrival time on the recording's common clock, and the
following ones by their timestamp relative to that first frame: network
jitter does not move the audio, and the parties stay aligned. A timestamp
that strays more than `max_skew` from what the arrival time says (a new
SSRC, a jump after hold) re-anchors that party on its arrival. Gaps (lost
packets, silence suppression, a party on hold) become silence.

Samples are held for `hold` seconds behind the newest audio, so reordered
frames still land in place, then written out interleaved; a frame older
than what was written is dropped and counted (`late_frames`). The WAV is
written to a temporary name and renamed on `close`, so a reader (the
voicemail deposit) never sees half a file.
"""

from __future__ import annotations

import os
import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt

RATE = 8000
_WRAP = 1 << 32


class Recorder:
    def __init__(self, path: Path, parties: int = 2, *, hold: float = 1.0,
                 max_skew: float = 1.0) -> None:
        if parties < 1:
            raise ValueError("a recording needs at least one party")
        self.path = path
        self.parties = parties
        self._hold = int(hold * RATE)
        self._max_skew = int(max_skew * RATE)
        self._tmp = path.with_name(f".{path.name}.part")
        path.parent.mkdir(parents=True, exist_ok=True)
        self._wav = wave.open(str(self._tmp), "wb")
        self._wav.setnchannels(parties)
        self._wav.setsampwidth(2)
        self._wav.setframerate(RATE)
        self._start: float | None = None
        self._anchors: list[tuple[int, int] | None] = [None] * parties  # (timestamp, position)
        self._chunks: list[list[tuple[int, npt.NDArray[np.int16]]]] = [[] for _ in range(parties)]
        self._end = 0  # one past the last sample received, any party
        self.written = 0  # samples per channel written to the file
        self.late_frames = 0
        self.closed = False

    def add(self, party: int, timestamp: int, arrival: float,
            samples: npt.NDArray[np.int16]) -> None:
        """One decoded frame of `party`, with its RTP timestamp and arrival time (seconds)."""
        if self.closed:
            raise ValueError("the recording is closed")
        if not 0 <= party < self.parties:
            raise ValueError(f"no party {party} in a recording of {self.parties}")
        if self._start is None:
            self._start = arrival
        by_arrival = round((arrival - self._start) * RATE) - len(samples)
        anchor = self._anchors[party]
        if anchor is None:
            position = max(0, by_arrival)
            self._anchors[party] = (timestamp, position)
        else:
            delta = (timestamp - anchor[0] + _WRAP // 2) % _WRAP - _WRAP // 2
            position = anchor[1] + delta
            if abs(position - by_arrival) > self._max_skew:
                position = max(0, by_arrival)
                self._anchors[party] = (timestamp, position)
        if position + len(samples) <= self.written:
            self.late_frames += 1
            return
        if position < self.written:  # partly late: keep what is still to be written
            samples = samples[self.written - position:]
            position = self.written
        self._chunks[party].append((position, np.asarray(samples, np.int16)))
        self._end = max(self._end, position + len(samples))
        if self._end - self.written > 2 * self._hold:
            self._flush(self._end - self._hold)

    def _flush(self, upto: int) -> None:
        count = upto - self.written
        if count <= 0:
            return
        out = np.zeros((count, self.parties), np.int16)
        for party, chunks in enumerate(self._chunks):
            keep: list[tuple[int, npt.NDArray[np.int16]]] = []
            for position, samples in chunks:
                start = max(position, self.written)
                stop = min(position + len(samples), upto)
                if stop > start:
                    out[start - self.written:stop - self.written, party] = \
                        samples[start - position:stop - position]
                if position + len(samples) > upto:
                    keep.append((upto, samples[upto - position:]) if position < upto
                                else (position, samples))
            self._chunks[party] = keep
        self._wav.writeframes(out.astype("<i2").tobytes())
        self.written = upto

    @property
    def duration(self) -> float:
        """Seconds recorded so far (written or held)."""
        return max(self._end, self.written) / RATE

    def close(self) -> float:
        """Write what is held, finish the file and put it in place; returns the duration."""
        if self.closed:
            return self.written / RATE
        self._flush(self._end)
        self._wav.close()
        with open(self._tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(self._tmp, self.path)
        self.closed = True
        return self.written / RATE

    def abort(self) -> None:
        """Drop the recording (a message too short to keep)."""
        if not self.closed:
            self._wav.close()
            self.closed = True
        try:
            os.unlink(self._tmp)
        except FileNotFoundError:
            pass
