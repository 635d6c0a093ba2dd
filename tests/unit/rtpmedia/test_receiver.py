"""The relay's receive pipeline: packets in any order out as 20 ms frames of audio."""

from __future__ import annotations

import numpy as np

from rtpmedia.codecs import PCMU
from rtpmedia.receiver import FRAME, Receiver, play
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


def _streams(n_streams: int, n_frames: int, loss: float, jitter: float,
             seed: int) -> list[list[tuple[float, bytes]]]:
    """(arrival, datagram) per stream, in arrival order: loss, exponential jitter, pauses."""
    rng = np.random.default_rng(seed)
    out = []
    for s in range(n_streams):
        audio = tone(n_frames)
        packets = []
        for i in range(n_frames):
            if i and rng.random() < loss:
                continue
            if 60 <= i % 150 < 70:  # a pause (no packets): talkspurts restart
                continue
            packet = RtpPacket(payload_type=0, sequence_number=(1000 * s + i) & 0xFFFF,
                               timestamp=i * FRAME, ssrc=s + 1, marker=i % 150 == 70,
                               payload=PCMU.encode(audio[i * FRAME:(i + 1) * FRAME]))
            packets.append((0.02 * i + float(rng.exponential(jitter)), packet.serialize()))
        out.append(sorted(packets, key=lambda p: p[0]))
    return out


def test_play_gives_every_stream_what_frame_gives_it_alone() -> None:
    # The relay's tick (`play` over all streams at once: one decode, one batch
    # of concealments) must be exactly the per-stream pipeline, which is what
    # `softswitch media conceal` runs: losses, jitter that makes the buffer
    # stretch, pauses, on several streams with their own times.
    streams = _streams(6, 400, 0.08, 0.015, seed=3)
    alone = [Receiver({0: PCMU}) for _ in streams]
    batch = [Receiver({0: PCMU}) for _ in streams]
    cursor = [0] * len(streams)
    got_alone: list[list[np.ndarray | None]] = [[] for _ in streams]
    got_batch: list[list[np.ndarray | None]] = [[] for _ in streams]
    for tick in range(420):
        times = [0.02 * tick + 0.003 * k for k in range(len(streams))]
        for k, packets in enumerate(streams):
            while cursor[k] < len(packets) and packets[cursor[k]][0] <= times[k]:
                arrival, data = packets[cursor[k]]
                alone[k].put_packet(data, arrival)
                batch[k].put_packet(data, arrival)
                cursor[k] += 1
        for k, rx in enumerate(alone):
            got_alone[k].append(rx.frame(times[k]))
        for k, frame in enumerate(play(batch, times)):
            got_batch[k].append(frame)
    stretched = concealed = 0
    for k in range(len(streams)):
        for a, b in zip(got_alone[k], got_batch[k], strict=True):
            assert (a is None) == (b is None)
            if a is not None:
                assert np.array_equal(a, b)
        assert alone[k].counts == batch[k].counts
        stretched += alone[k].stats().removed_samples_for_acceleration + \
            alone[k].stats().inserted_samples_for_deceleration
        concealed += alone[k].counts.concealed_frames
    assert stretched > 0 and concealed > 20  # the slow paths were taken


def test_last_payload_is_set_only_for_a_frame_played_as_it_came() -> None:
    streams = _streams(1, 200, 0.1, 0.0, seed=5)
    rx = Receiver({0: PCMU})
    cursor = 0
    passed = 0
    for tick in range(210):
        now = 0.02 * tick + 0.01
        while cursor < len(streams[0]) and streams[0][cursor][0] <= now:
            rx.put_packet(streams[0][cursor][1], streams[0][cursor][0])
            cursor += 1
        concealed = rx.counts.concealed_frames
        (frame,) = play([rx], now)
        if rx.last_payload is not None:
            passed += 1
            assert frame is not None and rx.counts.concealed_frames == concealed
            assert np.array_equal(PCMU.decode(rx.last_payload[1]), frame)
    assert passed > 100


def play_ptime(ptime: int, seconds: int = 6) -> tuple[np.ndarray, np.ndarray, Receiver]:
    """A chirp sent in `ptime` ms packets on time: (what was sent, what was played, receiver)."""
    size = ptime * 8
    count = seconds * 1000 // ptime
    audio = PCMU.decode(PCMU.encode(tone(count * size // FRAME)))
    encoded = PCMU.encode(audio)
    rx = Receiver({0: PCMU})
    out = []
    sent = 0
    for tick in range(seconds * 50 + 50):
        if rx.counts.consumed >= len(audio) // FRAME:
            break  # past the last packet the buffer conceals the stream's end
        now = tick * 0.02 + 0.01
        while sent < count and sent * ptime / 1000 <= now:
            packet = RtpPacket(payload_type=0, sequence_number=sent, timestamp=sent * size,
                               ssrc=7, marker=sent == 0, payload=encoded[sent * size:(sent + 1) * size])
            rx.put_packet(packet.serialize(), sent * ptime / 1000)
            sent += 1
        frame = rx.frame(now)
        if frame is not None:
            out.append(frame)
    return audio, np.concatenate(out), rx


def test_packets_of_10_30_40_and_60_ms_play_out_as_the_signal_sent() -> None:
    for ptime in (10, 30, 40, 60):
        audio, out, rx = play_ptime(ptime)
        assert rx.counts.other_duration == 0 and rx.counts.reframed == 6000 // ptime
        assert rx.counts.concealed_frames == 0, ptime
        # Playout starts after the jitter delay, and packets longer than the
        # 20 ms tick arrive in bursts, so the buffer may stretch a pitch period
        # now and then: between stretches the audio played is the audio sent,
        # sample for sample, at a lag below 200 ms.
        windows = range(0, len(out) // FRAME - 20, 20)
        exact = 0
        for w in windows:
            played = out[w * FRAME:(w + 20) * FRAME]
            exact += any(np.array_equal(played, audio[k:k + len(played)])
                         for k in range(max(w * FRAME - 1600, 0), w * FRAME + 1))
        assert exact >= len(windows) - 3, (ptime, exact, len(windows))
        assert abs(rx.counts.stretched_samples) < 160 and len(out) >= len(audio)


def test_a_stream_that_changes_from_20_to_30_ms_packets_plays_on_unbroken() -> None:
    # A re-INVITE (or a trunk) changes a=ptime mid-call: the numbering of the
    # frames the jitter buffer sees goes on from the packets' own.
    audio = PCMU.decode(PCMU.encode(tone(150)))
    encoded = PCMU.encode(audio)
    schedule = [(i, i * 160, 160, i * 0.02) for i in range(50)]  # 1 s of 20 ms packets
    schedule += [(50 + k, 8000 + k * 240, 240, 1.0 + k * 0.03) for k in range(66)]  # then 30 ms
    rx = Receiver({0: PCMU})
    out = []
    sent = 0
    for tick in range(200):
        if rx.counts.consumed >= 149:
            break
        now = tick * 0.02 + 0.01
        while sent < len(schedule) and schedule[sent][3] <= now:
            seq, ts, size, at = schedule[sent]
            rx.put(0, seq, ts, 7, seq == 0, encoded[ts:ts + size], at)
            sent += 1
        frame = rx.frame(now)
        if frame is not None:
            out.append(frame)
    played = np.concatenate(out)
    # Nothing lost or concealed at the change: the frames' numbers followed on.
    assert rx.counts.concealed_frames == 0 and rx.counts.reframed == 66
    assert rx.counts.consumed == 149 and rx.stats().packets_discarded == 0
    # The audio played is the audio sent, but where the buffer shortened it:
    # half the 30 ms stream's frames come 10 ms before their turn, so it sees
    # 10 ms more delay than it needs and removes it (a pitch period at a time).
    exact = [any(np.array_equal(played[w:w + 10 * FRAME], audio[k:k + 10 * FRAME])
                 for k in range(max(w - 1600, 0), w + 1600))
             for w in range(0, len(played) - 10 * FRAME, 10 * FRAME)]
    assert exact[:4] == [True] * 4 and all(exact[6:]), exact
    assert -320 < rx.counts.stretched_samples < 0
