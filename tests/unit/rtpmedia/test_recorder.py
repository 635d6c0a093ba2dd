"""The call recorder: two parties' tones in two aligned channels, whatever the network did."""

from __future__ import annotations

import random
import wave
from pathlib import Path

import numpy as np
import pytest

from rtpmedia.recorder import RATE, Recorder

FRAME = 160


def tone(frequency: float, seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return np.round(8000 * np.sin(2 * np.pi * frequency * t)).astype(np.int16)


def read(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        assert (w.getframerate(), w.getsampwidth()) == (RATE, 2)
        data = np.frombuffer(w.readframes(w.getnframes()), "<i2")
        return data.reshape(-1, w.getnchannels())


def level_at(samples: np.ndarray, frequency: float) -> float:
    t = np.arange(len(samples)) / RATE
    return float(np.abs(np.dot(samples.astype(np.float64), np.exp(-2j * np.pi * frequency * t))))


def test_two_parties_in_two_channels_aligned_despite_jitter_reorder_and_loss(
        tmp_path: Path) -> None:
    rng = random.Random(7)
    path = tmp_path / "call.wav"
    recorder = Recorder(path, parties=2)
    a, b = tone(440, 3.0), tone(1000, 2.0)
    packets = []
    for party, audio, start, ts0 in ((0, a, 0.0, 123456), (1, b, 0.5, 2**32 - 800)):
        for i in range(len(audio) // FRAME):
            if party == 1 and i == 30:
                continue  # lost: 20 ms of silence at 0.5 + 0.6 s
            arrival = start + (i + 1) * FRAME / RATE + rng.uniform(0, 0.03)
            packets.append((arrival, party, (ts0 + i * FRAME) % 2**32,
                            audio[i * FRAME:(i + 1) * FRAME]))
    packets.sort(key=lambda p: p[0])
    # Swap a few neighbours: reordering on the way.
    for i in range(10, len(packets) - 1, 37):
        packets[i], packets[i + 1] = packets[i + 1], packets[i]
    for arrival, party, ts, samples in packets:
        recorder.add(party, ts, arrival, samples)
    duration = recorder.close()
    data = read(path)
    assert data.shape[1] == 2 and abs(duration - 3.0) < 0.05
    assert recorder.late_frames == 0 and not path.with_name(f".{path.name}.part").exists()
    left, right = data[:, 0], data[:, 1]
    assert level_at(left, 440) > 50 * level_at(left, 1000)
    # The second party starts half a second in (within the first packet's jitter),
    # and its lost packet is silence: aligned by timestamps, not by arrival.
    onset = int(np.argmax(np.abs(right) > 1000))
    assert abs(onset - 0.5 * RATE) <= 0.03 * RATE
    assert not right[:int(0.45 * RATE)].any()
    assert level_at(right[onset:], 1000) > 50 * level_at(right[onset:], 440)
    gap = onset + 30 * FRAME
    assert not right[gap + 5:gap + FRAME - 5].any()
    assert np.abs(right[gap - FRAME:gap]).max() > 1000
    # Timestamp-aligned means sample-exact continuity of the 440 Hz tone.
    np.testing.assert_array_equal(left[:len(a)], a)


def test_timestamp_jump_reanchors_on_arrival_and_late_frames_are_dropped(tmp_path: Path) -> None:
    path = tmp_path / "one.wav"
    recorder = Recorder(path, parties=1, hold=0.2, max_skew=2.0)
    frame = tone(500, 0.02)
    for i in range(50):
        recorder.add(0, 1000 + i * FRAME, (i + 1) * 0.02, frame)
    # A new stream (hold, SSRC change) 2 s later with a timestamp from elsewhere.
    for i in range(50):
        recorder.add(0, 9_000_000 + i * FRAME, 3.0 + (i + 1) * 0.02, frame)
    recorder.add(0, 9_000_000, 4.1, frame)  # the new stream's first packet again, too late
    recorder.close()
    data = read(path)[:, 0]
    assert abs(len(data) / RATE - 4.0) < 0.03
    assert not data[int(1.05 * RATE):int(2.95 * RATE)].any()
    assert recorder.late_frames == 1


def test_abort_leaves_no_file_and_bad_party_is_refused(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path / "x.wav", parties=1)
    with pytest.raises(ValueError):
        recorder.add(1, 0, 0.0, tone(500, 0.02))
    recorder.add(0, 0, 0.02, tone(500, 0.02))
    recorder.abort()
    assert list(tmp_path.iterdir()) == []
