"""The relay's receive pipeline: packets in any order out as 20 ms frames of audio."""

from __future__ import annotations

import numpy as np

from rtpmedia.codecs import PCMU
from rtpmedia.receiver import FRAME, Receiver
from rtpmedia.rtp import RtpPacket


def tone(n_frames: int) -> np.ndarray:
    # A chirp: no two frames alike, so audio out of order would not correlate.
    t = np.arange(n_frames * FRAME) / 8000.0
    return (8000 * np.sin(2 * np.pi * (200 + 300 * t) * t)).astype(np.int16)


def run(order: list[int], lost: set[int], n: int) -> tuple[np.ndarray, Receiver]:
    audio = tone(n)
    rx = Receiver({0: PCMU})
    payloads = [PCMU.encode(audio[i * FRAME:(i + 1) * FRAME]) for i in range(n)]
    out = []
    t = 0.0
    arrivals = {i: 0.02 * pos for pos, i in enumerate(order)}
    for tick in range(n + 20):
        if rx.counts.consumed >= n:
            break  # past the last packet the buffer conceals the stream's end
        for i in order:
            if i not in lost and tick * 0.02 <= arrivals[i] < (tick + 1) * 0.02:
                packet = RtpPacket(payload_type=0, sequence_number=i, timestamp=i * FRAME,
                                   ssrc=7, marker=i == 0, payload=payloads[i])
                rx.put_packet(packet.serialize(), arrivals[i])
        t = tick * 0.02 + 0.01
        frame = rx.frame(t)
        if frame is not None:
            out.append(frame)
    return np.concatenate(out), rx


def test_frames_come_out_in_order_despite_reordering() -> None:
    order = list(range(50))
    order[10], order[11] = order[11], order[10]
    out, rx = run(order, set(), 50)
    assert rx.counts.packets == 50
    assert rx.counts.concealed_frames == 0
    reference = PCMU.decode(PCMU.encode(tone(50))).astype(float)
    # Playout starts after the jitter delay and the buffer may shorten a
    # pitch period on the way: the last second that comes out is the sent
    # audio, in order, at some lag.
    tail = out[-20 * FRAME:].astype(float)
    best = max(np.corrcoef(tail, reference[k:k + len(tail)])[0, 1]
               for k in range(0, len(reference) - len(tail) + 1))
    assert best > 0.99


def test_a_lost_packet_is_concealed_not_silenced() -> None:
    out, rx = run(list(range(50)), {20}, 50)
    assert rx.counts.concealed_frames >= 1
    assert rx.counts.consumed >= 49
    # No frame of pure silence in the middle of the tone.
    frames = out[: 45 * FRAME].reshape(-1, FRAME)
    assert min(np.abs(f).max() for f in frames[1:]) > 500


def test_unknown_payload_type_and_junk_are_counted() -> None:
    rx = Receiver({0: PCMU})
    assert rx.put(96, 1, 160, 1, False, b"\x00" * 160, 0.0) is None
    assert rx.put_packet(b"\x00\x01", 0.0) is None
    assert rx.counts.unknown_payload == 1
    assert rx.counts.malformed == 1
    assert rx.frame(0.02) is None
