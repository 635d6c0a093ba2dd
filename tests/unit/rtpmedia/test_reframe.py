"""Packets of 10, 20, 30, 40 and 60 ms cut into the 20 ms frames the jitter buffer takes."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from rtpmedia.reframe import MAX_FRAMES, Piece, Reframer

FB = 160  # G.711: one byte a sample, 160 bytes a 20 ms frame
BLOCK = 80  # samples (and G.711 bytes) in 10 ms


def packets(audio: bytes, ptime: int, seq0: int, ts0: int) -> list[tuple[int, int, bytes]]:
    """(seq, timestamp, payload) of `audio` sent in `ptime` ms packets."""
    size = ptime * 8
    return [(((seq0 + i) & 0xFFFF), (ts0 + i * size) & 0xFFFFFFFF, audio[i * size:(i + 1) * size])
            for i in range(len(audio) // size)]


def feed(r: Reframer, sent: list[tuple[int, int, bytes]], order: list[int], *,
         ssrc: int = 9, marker: set[int] | None = None) -> list[Piece]:
    out: list[Piece] = []
    for n, i in enumerate(order):
        seq, ts, payload = sent[i]
        pieces = r.put(seq, ts, ssrc, i in (marker or set()), payload, float(n), FB)
        assert pieces is not None
        out += pieces
    return out


def in_time_order(frames: list[Piece], ts0: int) -> list[Piece]:
    return sorted(frames, key=lambda f: (f[1] - ts0) & 0xFFFFFFFF)


def jittered(n: int, rng: random.Random, spread: float = 3.0) -> list[int]:
    """0..n-1 reordered, no packet further than `spread` places from its own."""
    return sorted(range(n), key=lambda i: i + rng.uniform(0, spread))


@settings(max_examples=200, deadline=None)
@given(ptime=st.sampled_from([10, 20, 30, 40, 60]), frames=st.integers(3, 40),
       seq0=st.integers(0, 0xFFFF), ts0=st.integers(0, 0xFFFFFFFF), seed=st.integers(0, 2**32))
def test_any_ptime_reordered_comes_out_as_the_input_in_consecutive_frames(
        ptime: int, frames: int, seq0: int, ts0: int, seed: int) -> None:
    rng = random.Random(seed)
    size = ptime * 8
    audio = rng.randbytes(frames * 3 * FB // size * size)  # whole packets (of 30 or 60 ms too)
    sent = packets(audio, ptime, seq0, ts0)
    order = jittered(len(sent), rng)
    out = in_time_order(feed(Reframer(), sent, order), ts0)
    assert all(len(f[4]) == FB for f in out)
    # Consecutive frames, numbered one by one.
    assert all((b[1] - a[1]) & 0xFFFFFFFF == 160 for a, b in zip(out, out[1:], strict=False))
    assert all((b[0] - a[0]) & 0xFFFF == 1 for a, b in zip(out, out[1:], strict=False))
    # The grid is anchored at the first packet to arrive: with 10 or 30 ms
    # packets it may lie half a frame off the first sample, so at most a
    # half frame is missing at either end.
    start = (out[0][1] - ts0) & 0xFFFFFFFF
    joined = b"".join(f[4] for f in out)
    assert start in (0, BLOCK)
    assert joined == audio[start:start + len(joined)]
    assert len(joined) >= len(audio) - FB
    if ptime % 20 == 0 or order[0] % 2 == 0:
        assert joined == audio  # on the grid from the first packet: all of it


@settings(max_examples=200, deadline=None)
@given(ptime=st.sampled_from([10, 20, 30, 40, 60]), frames=st.integers(4, 30),
       seed=st.integers(0, 2**32))
def test_a_lost_packet_removes_exactly_the_frames_it_touches(ptime: int, frames: int,
                                                             seed: int) -> None:
    rng = random.Random(seed)
    size = ptime * 8
    audio = rng.randbytes(frames * 3 * FB // size * size)
    sent = packets(audio, ptime, 1000, 5000)
    lost = rng.randrange(1, len(sent))  # the first one anchors the grid
    order = [i for i in range(len(sent)) if i != lost]
    out = feed(Reframer(), sent, order)
    got = {(f[1] - 5000) // 160: f for f in out}
    touched = set(range(lost * size // FB, ((lost + 1) * size - 1) // FB + 1))
    every = set(range(len(audio) // FB))
    assert set(got) == every - touched
    for index, f in got.items():
        assert f[0] == 1000 + index  # numbered by place: the jitter buffer sees the gap
        assert f[4] == audio[index * FB:(index + 1) * FB]


@settings(max_examples=100, deadline=None)
@given(ptime=st.sampled_from([10, 20, 30, 40, 60]), seed=st.integers(0, 2**32))
def test_duplicates_give_no_frame_twice(ptime: int, seed: int) -> None:
    rng = random.Random(seed)
    audio = rng.randbytes(24 * FB)
    sent = packets(audio, ptime, 0xFFF0, 0xFFFFFF00)  # both numbers wrap on the way
    order = jittered(len(sent), rng)
    order = [i for i in order for _ in range(1 + (rng.random() < 0.4))]
    out = feed(Reframer(), sent, [0, *order])
    assert len({f[1] for f in out}) == len(out) == len(audio) // FB
    assert b"".join(f[4] for f in in_time_order(out, 0xFFFFFF00)) == audio


def test_a_30_ms_stream_completes_a_frame_per_20_ms_with_the_completing_arrival() -> None:
    audio = bytes(range(240)) * 4
    sent = packets(audio, 30, 7, 0)
    r = Reframer()
    per_packet = [r.put(seq, ts, 1, False, p, 10.0 + i, FB) for i, (seq, ts, p) in enumerate(sent)]
    assert [len(p or []) for p in per_packet] == [1, 2, 1, 2]
    second = per_packet[1]
    assert second is not None
    assert [(f[0], f[1], f[5]) for f in second] == [(8, 160, 11.0), (9, 320, 11.0)]
    assert r.counts.frames == 6 and r.counts.packets == 4


def test_marker_and_timestamp_jump_reanchor_with_sequence_numbers_going_on() -> None:
    r = Reframer()
    a = bytes(240)
    # A talkspurt of three 30 ms packets: four whole frames and a half left over.
    out = [f for i in range(3) for f in r.put(100 + i, 1000 + 240 * i, 3, i == 0, a, i, FB) or []]
    assert [f[0] for f in out] == [100, 101, 102, 103] and out[0][3]
    # Silence, then the next talkspurt starts off the old grid (marker set):
    # numbering goes on from the last frame emitted, so the jitter buffer sees
    # timestamps move on while sequence numbers do not, a talkspurt boundary.
    out = r.put(103, 50_040, 3, True, a, 5.0, FB)
    assert out is not None and [(f[0], f[1], f[3]) for f in out] == [(104, 50_040, True)]
    # A timestamp that jumps without a marker, off the grid, re-anchors too.
    out = (r.put(104, 50_280, 3, False, a, 5.03, FB) or []) \
        + (r.put(105, 90_001, 3, False, a, 6.0, FB) or [])
    assert [(f[0], f[1]) for f in out] == [(105, 50_200), (106, 50_360), (107, 90_001)]
    # Stragglers of the old grid are not placed on the new one.
    assert r.put(101, 1240, 3, False, a, 6.01, FB) == []
    assert r.counts.reanchored == 2


def test_a_silence_on_the_grid_without_marker_keeps_numbering_contiguous() -> None:
    r = Reframer()
    a = bytes(320)
    first = r.put(1, 0, 3, False, a, 0.0, FB)
    # Sequence numbers follow, timestamps jump a second (DTX): not a loss.
    later = r.put(2, 8000, 3, False, a, 1.0, FB)
    assert first is not None and later is not None
    assert [(f[0], f[1]) for f in first + later] == [(1, 0), (2, 160), (3, 8000), (4, 8160)]


def test_an_ssrc_change_starts_a_new_grid_and_old_stragglers_are_dropped() -> None:
    r = Reframer()
    a = bytes(240)
    r.put(1, 0, 3, False, a, 0.0, FB)
    out = r.put(500, 77_777, 4, False, a, 0.03, FB)
    assert out is not None and [(f[0], f[1], f[2]) for f in out] == [(500, 77_777, 4)]
    assert r.put(2, 240, 3, False, a, 0.05, FB) == []  # the old source's straggler
    out = r.put(501, 77_777 + 240, 4, False, a, 0.06, FB)
    assert out is not None and [(f[0], f[1]) for f in out] == [(501, 77_937), (502, 78_097)]


def test_payloads_that_are_not_whole_blocks_or_too_long_are_refused() -> None:
    r = Reframer()
    assert r.put(1, 0, 3, False, bytes(200), 0.0, FB) is None  # 25 ms
    assert r.put(1, 0, 3, False, bytes(MAX_FRAMES * FB + BLOCK), 0.0, FB) is None  # 130 ms
    assert r.put(1, 0, 3, False, b"", 0.0, FB) is None
    assert not Reframer.accepts(200, FB) and Reframer.accepts(240, FB)
    # L16: two bytes a sample, so 30 ms is 480 bytes and 25 ms is not reframed.
    assert Reframer.accepts(480, 320) and not Reframer.accepts(400, 320)
    out = r.put(1, 0, 3, False, bytes(480), 0.0, 320)
    assert out is not None and [len(f[4]) for f in out] == [320]


def test_half_frames_of_lost_packets_do_not_pile_up() -> None:
    r = Reframer()
    a = bytes(240)
    # Every other 30 ms packet lost: each packet gives its whole frame, and
    # the halves waiting for their lost neighbours are dropped as they fall behind.
    for i in range(0, 2000, 2):
        r.put(i & 0xFFFF, 240 * i, 3, False, a, i * 0.03, FB)
    assert r.counts.reanchored == 0
    assert r.counts.abandoned > 900


def test_a_marker_on_every_packet_loses_nothing() -> None:
    # Some phones set the marker bit on every packet: where the packet follows
    # on exactly it moves no grid (which would drop the half frame held).
    audio = bytes(range(240)) * 10
    sent = packets(audio, 30, 40, 0)
    r = Reframer()
    out = feed(r, sent, list(range(len(sent))), marker=set(range(len(sent))))
    assert b"".join(f[4] for f in out) == audio and r.counts.reanchored == 0
    assert [f[0] for f in out] == list(range(40, 40 + len(audio) // FB))


@settings(max_examples=150, deadline=None)
@given(spurts=st.lists(st.tuples(st.sampled_from([10, 20, 30, 40, 60]), st.integers(1, 6),
                                 st.integers(0, 80_000), st.booleans()), min_size=1, max_size=6),
       seq0=st.integers(0, 0xFFFF), ts0=st.integers(0, 0xFFFFFFFF), seed=st.integers(0, 2**32))
def test_talkspurts_after_silences_come_out_whole_and_numbered_on(
        spurts: list[tuple[int, int, int, bool]], seq0: int, ts0: int, seed: int) -> None:
    # Talkspurts of any ptime (a whole number of 120 ms each), separated by
    # silences of any length (so the next starts anywhere, on the grid or
    # off), with or without the marker bit: every frame comes out, with
    # sequence numbers that go on by one across the silences, as a 20 ms
    # sender's would (the jitter buffer tells silence from loss by them).
    rng = random.Random(seed)
    r = Reframer()
    seq, ts, arrival = seq0, ts0, 0.0
    out: list[Piece] = []
    expected: list[tuple[int, bytes]] = []
    for ptime, units, silence, marker in spurts:
        size = ptime * 8
        audio = rng.randbytes(units * 960)
        for i in range(len(audio) // size):
            pieces = r.put(seq & 0xFFFF, ts & 0xFFFFFFFF, 9, marker and i == 0,
                           audio[i * size:(i + 1) * size], arrival, FB)
            assert pieces is not None
            out += pieces
            seq, ts, arrival = seq + 1, ts + size, arrival + ptime / 1000
        expected += [((ts - len(audio) + k * FB) & 0xFFFFFFFF, audio[k * FB:(k + 1) * FB])
                     for k in range(len(audio) // FB)]
        ts += silence
        arrival += silence / 8000
    assert [(f[1], f[4]) for f in out] == expected
    assert [f[0] for f in out] == [(seq0 + k) & 0xFFFF for k in range(len(out))]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF), st.sampled_from([1, 2]),
                          st.booleans(), st.integers(0, 1100), st.sampled_from([160, 320])),
                max_size=60),
       st.randoms(use_true_random=False))
def test_any_packets_give_whole_frames_or_none_and_never_raise(
        packets_in: list[tuple[int, int, int, bool, int, int]], rng: random.Random) -> None:
    r = Reframer()
    taken = given_out = 0
    for n, (seq, ts, ssrc, marker, size, fb) in enumerate(packets_in):
        out = r.put(seq, ts, ssrc, marker, rng.randbytes(size), n * 0.01, fb)
        assert (out is None) == (not Reframer.accepts(size, fb))
        assert out is None or all(len(f[4]) == fb and 0 <= f[0] <= 0xFFFF
                                  and 0 <= f[1] <= 0xFFFFFFFF for f in out)
        taken += 0 if out is None else size
        given_out += sum(len(f[4]) for f in out or [])
    assert given_out <= taken  # no block given out twice
