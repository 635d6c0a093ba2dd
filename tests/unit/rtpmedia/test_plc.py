"""Packet loss concealment: what a listener gets for each lost frame.

The quality test speaks a sentence with espeak-ng, drops a fixed pattern of
20 ms packets and checks that our concealer scores a higher PESQ (P.862 narrow
band) than silence fill and packet repetition.
"""

from __future__ import annotations

import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from rtpmedia import codecs
from rtpmedia.plc import (
    FRAME,
    RATE,
    Concealer,
    G711AppendixI,
    Repeat,
    Silence,
    Tuning,
    conceal_many,
    good_many,
)

ALL = [Silence, Repeat, G711AppendixI, Concealer]


def voiced(n_frames: int, f0: float = 140.0, amp: float = 8000.0, noise: float = 0.0) -> np.ndarray:
    """A vowel-like signal: a few decaying harmonics of f0, with optional background noise."""
    t = np.arange(n_frames * FRAME) / RATE
    x = sum(amp / k * np.sin(2 * np.pi * k * f0 * t + k) for k in range(1, 6))
    if noise:
        x = x + np.random.default_rng(1).normal(0, noise, len(t))
    return np.asarray(np.round(x), dtype=np.int16)


def frames(x: np.ndarray) -> np.ndarray:
    return x.reshape(-1, FRAME)


def play(c, fr: np.ndarray, lost: list[bool], lookahead: bool = True) -> np.ndarray:
    out = []
    for i, f in enumerate(fr):
        if lost[i]:
            nxt = fr[i + 1] if lookahead and i + 1 < len(fr) and not lost[i + 1] else None
            out.append(c.conceal(nxt))
        else:
            out.append(c.good(f))
    return np.concatenate(out)


@pytest.mark.parametrize("make", ALL)
def test_every_call_gives_one_frame_of_int16(make) -> None:
    c = make()
    fr = frames(voiced(6))
    for got in (
        c.conceal(),
        c.good(fr[0]),
        c.conceal(fr[2]),
        c.good(fr[2]),
        c.conceal(),
        c.conceal(),
    ):
        assert got.shape == (FRAME,) and got.dtype == np.int16


@pytest.mark.parametrize("make", ALL)
def test_a_frame_of_the_wrong_size_is_refused(make) -> None:
    with pytest.raises(ValueError):
        make().good(np.zeros(80, dtype=np.int16))


def test_received_frames_pass_unchanged_and_appendix_i_delays_them_by_30_samples() -> None:
    x = voiced(5)
    assert np.array_equal(play(Concealer(), frames(x), [False] * 5), x)
    y = play(G711AppendixI(), frames(x), [False] * 5)
    assert np.array_equal(y[30:], x[:-30])


def _largest_step(y: np.ndarray) -> float:
    return float(np.max(np.abs(np.diff(y.astype(np.float64)))))


@pytest.mark.parametrize("lookahead", [True, False])
def test_concealment_joins_the_real_signal_without_a_click(lookahead: bool) -> None:
    x = voiced(12)
    lost = [False] * 12
    lost[5] = lost[6] = True
    y = play(Concealer(), frames(x), lost, lookahead=lookahead)
    natural = _largest_step(x)
    for join in (5 * FRAME, 7 * FRAME):
        assert _largest_step(y[join - 4 : join + 4]) <= 1.2 * natural


def test_a_next_frame_that_then_does_not_come_leaves_no_click() -> None:
    # The jitter buffer offered a next frame (another vowel), then concealed it too.
    x = voiced(12)
    other = frames(voiced(12, f0=210.0))
    fr = frames(x)
    c = Concealer()
    out = [c.good(f) for f in fr[:5]]
    out += [c.conceal(other[6]), c.conceal(), c.conceal(fr[8]), c.good(fr[8])]
    y = np.concatenate(out)
    natural = max(_largest_step(x), _largest_step(other.ravel()))
    for join in (5 * FRAME, 6 * FRAME, 7 * FRAME, 8 * FRAME):
        assert _largest_step(y[join - 4 : join + 4]) <= 1.2 * natural, join


def test_an_isolated_loss_of_a_steady_vowel_is_nearly_restored() -> None:
    x = voiced(10)
    lost = [False] * 10
    lost[5] = True
    y = play(Concealer(), frames(x), lost).astype(np.float64)
    seg = slice(5 * FRAME, 6 * FRAME)
    err = x[seg] - y[seg]
    snr = 10 * np.log10(np.sum(x[seg].astype(np.float64) ** 2) / np.sum(err**2))
    assert snr > 20


def test_appendix_i_repeats_the_pitch_period_then_falls_silent_after_60_ms() -> None:
    # A 100 Hz signal: exactly 80 samples a period, which Appendix I finds.
    x = voiced(20, f0=100.0)
    lost = [False] * 6 + [True] * 6 + [False] * 8
    y = play(G711AppendixI(), frames(x), lost).astype(np.float64)
    d = 30  # its overlap-add delay
    first10ms = slice(6 * FRAME + d, 6 * FRAME + d + 80)
    assert np.max(np.abs(y[first10ms] - x[6 * FRAME : 6 * FRAME + 80])) < 300
    # 20% less each 10 ms after the first: about half by 30-40 ms
    later = y[6 * FRAME + d + 240 : 6 * FRAME + d + 320]
    assert 0.3 < np.sqrt(np.mean(later**2)) / np.sqrt(np.mean(x[:FRAME].astype(float) ** 2)) < 0.7
    silent = slice(6 * FRAME + d + 480, 12 * FRAME + d)
    assert not y[silent].any()


def test_a_long_loss_fades_to_comfort_noise_not_to_silence() -> None:
    background = 200.0
    x = voiced(40, noise=background)
    x[: 10 * FRAME] = np.random.default_rng(2).normal(0, background, 10 * FRAME)  # a pause first
    lost = [False] * 20 + [True] * 20
    y = play(Concealer(), frames(x), lost).astype(np.float64)
    tail = y[-5 * FRAME :]  # 300 ms into the loss
    rms = np.sqrt(np.mean(tail**2))
    assert 0.5 * background < rms < 2 * background
    assert np.count_nonzero(tail) > 0.9 * len(tail)


@pytest.mark.parametrize("make", ALL)
@pytest.mark.parametrize("level", [32767, -32768])
def test_full_scale_input_is_clipped_not_wrapped(make, level: int) -> None:
    c = make()
    dc = np.full(FRAME, level, dtype=np.int16)
    for _ in range(5):
        c.good(dc)
    out = np.concatenate([c.conceal() for _ in range(4)] + [c.good(dc)])
    # A wrap-around would flip the sign of a full-scale sample.
    assert np.all(np.sign(out.astype(np.int32)) * np.sign(level) >= 0)


@pytest.mark.parametrize("make", ALL)
def test_nyquist_square_at_full_scale_stays_finite(make) -> None:
    c = make()
    sq = np.tile(np.array([32767, -32768], dtype=np.int16), FRAME // 2)
    for _ in range(4):
        c.good(sq)
    for nxt in (None, sq, None):
        out = c.conceal(nxt)
        assert out.dtype == np.int16 and out.shape == (FRAME,)
    assert c.good(sq).dtype == np.int16


frame_strategy = hnp.arrays(np.int16, FRAME, elements=st.integers(-32768, 32767))


@pytest.mark.parametrize("make", ALL)
@settings(max_examples=40, deadline=None)
@given(
    # (frame, lost, whether the jitter buffer offers the next frame when lost)
    data=st.lists(st.tuples(frame_strategy, st.booleans(), st.booleans()), min_size=1, max_size=12),
)
def test_arbitrary_frames_and_losses_always_give_160_int16_samples(make, data) -> None:
    c = make()
    for i, (frame, lost, offered) in enumerate(data):
        if lost:
            nxt = data[i + 1][0] if offered and i + 1 < len(data) else None
            y = c.conceal(nxt)
        else:
            y = c.good(frame)
        assert y.dtype == np.int16 and y.shape == (FRAME,)


# --- many streams at once (conceal_many) ------------------------------------


def _stream(i: int, n_frames: int) -> np.ndarray:
    """Stream i's frames: vowels of different pitch and level, some with noise,
    and a few awkward ones (digital silence, a full-scale Nyquist square)."""
    if i % 11 == 7:
        return np.zeros((n_frames, FRAME), dtype=np.int16)
    if i % 11 == 9:
        sq = np.tile(np.array([32767, -32768], dtype=np.int16), FRAME // 2)
        return np.tile(sq, (n_frames, 1))
    x = voiced(n_frames, f0=95.0 + 17.0 * i, amp=2000.0 + 900.0 * i, noise=40.0 * (i % 3))
    return frames(x)


def _tuning(i: int) -> Tuning | None:
    # Mostly the default; a few streams with steps switched off share the batches.
    return {4: Tuning(lpc=False), 5: Tuning(fractional_pitch=False), 6: Tuning(lookahead=False)}.get(
        i
    )


def _run(
    n_streams: int, lost: list[list[bool]], offered: list[list[bool]], groups=None
) -> list[np.ndarray]:
    """Play every stream tick by tick; the good frames and the concealments of each tick
    either one at a time (`groups` None) or in the batches `groups(tick, rows)` gives."""
    n_frames = len(lost[0])
    data = [_stream(i, n_frames) for i in range(n_streams)]
    cs = [Concealer(seed=i, tuning=_tuning(i)) for i in range(n_streams)]
    out: list[list[np.ndarray]] = [[] for _ in range(n_streams)]
    for f in range(n_frames):
        requests = {}
        received = []
        for i in range(n_streams):
            if lost[i][f]:
                has_next = f + 1 < n_frames and not lost[i][f + 1] and offered[i][f]
                requests[i] = data[i][f + 1] if has_next else None
            else:
                received.append(i)
        for batch in [[i] for i in received] if groups is None else groups(f, received):
            played = good_many([(cs[i], data[i][f]) for i in batch])
            for i, y in zip(batch, played, strict=True):
                assert y.dtype == np.int16 and y.shape == (FRAME,)
                out[i].append(y)
        batches = [[i] for i in requests] if groups is None else groups(f, list(requests))
        for batch in batches:
            got = conceal_many([(cs[i], requests[i]) for i in batch])
            for i, y in zip(batch, got, strict=True):
                assert y.dtype == np.int16 and y.shape == (FRAME,)
                out[i].append(y)
    return [np.concatenate(o) for o in out]


def test_a_stream_conceals_the_same_whichever_streams_share_its_batch() -> None:
    n, n_frames = 14, 14
    rng = np.random.default_rng(3)
    lost = [[bool(v) for v in rng.random(n_frames) < 0.4] for _ in range(n)]
    for row in lost:
        row[0] = row[1] = False  # a little history first
    offered = [[bool(v) for v in rng.random(n_frames) < 0.6] for _ in range(n)]
    alone = _run(n, lost, offered)
    together = _run(n, lost, offered, groups=lambda f, rows: [rows] if rows else [])
    halves = _run(n, lost, offered, groups=lambda f, rows: [rows[::2], rows[1::2]])
    for i in range(n):
        assert np.array_equal(alone[i], together[i]), i
        assert np.array_equal(alone[i], halves[i]), i
    # The batches were large enough for the vector paths (more than four rows),
    # for concealments and for the merges of the frames that follow them.
    assert max(sum(row[f] for row in lost) for f in range(n_frames)) > 4
    assert max(sum(row[f - 1] and not row[f] for row in lost) for f in range(1, n_frames)) > 4


def test_a_concealer_twice_in_one_merge_batch_is_refused_before_anything_changes() -> None:
    fr = frames(voiced(6))
    a, b = Concealer(), Concealer()
    for c in (a, b):
        for f in fr[:3]:
            c.good(f)
        c.conceal()
    with pytest.raises(ValueError):
        good_many([(a, fr[4]), (a, fr[4])])
    assert np.array_equal(good_many([(a, fr[4]), (Concealer(), fr[4])])[0], b.good(fr[4]))


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 14),
    n_frames=st.integers(3, 10),
    loss=st.floats(0.1, 0.8),
    most_groups=st.integers(1, 4),
    seed=st.integers(0, 2**32 - 1),
)
def test_any_grouping_of_any_losses_equals_one_at_a_time(
    n: int, n_frames: int, loss: float, most_groups: int, seed: int
) -> None:
    # Patterns drawn from a seed: dense enough that ticks conceal many streams.
    rng = np.random.default_rng(seed)
    lost = [[bool(v) for v in rng.random(n_frames) < loss] for _ in range(n)]
    offered = [[bool(v) for v in rng.random(n_frames) < 0.5] for _ in range(n)]
    labels = rng.integers(0, most_groups, size=(n_frames, n))

    def groups(f: int, rows: list[int]) -> list[list[int]]:
        by: dict[int, list[int]] = {}
        for i in rows:
            by.setdefault(int(labels[f][i]), []).append(i)
        return list(by.values())

    alone = _run(n, lost, offered)
    batched = _run(n, lost, offered, groups=groups)
    for i in range(n):
        assert np.array_equal(alone[i], batched[i]), i


def test_a_concealer_twice_in_one_batch_is_refused_before_anything_changes() -> None:
    fr = frames(voiced(6))
    a, b = Concealer(), Concealer()
    for f in fr[:3]:
        a.good(f)
        b.good(f)
    with pytest.raises(ValueError):
        conceal_many([(a, None), (a, fr[4])])
    with pytest.raises(ValueError):
        conceal_many([(a, None), (Concealer(), np.zeros(80, dtype=np.int16))])
    # a was left as it was: it conceals as b, which never saw the bad calls.
    assert np.array_equal(a.conceal(fr[4]), b.conceal(fr[4]))
    assert conceal_many([]) == []


def test_other_concealers_in_a_batch_conceal_one_by_one() -> None:
    fr = frames(voiced(6))
    mixed = [Concealer(), G711AppendixI(), Repeat(), Concealer(seed=1)]
    alone = [Concealer(), G711AppendixI(), Repeat(), Concealer(seed=1)]
    for f in fr[:4]:
        for c in mixed + alone:
            c.good(f)
    got = conceal_many([(c, fr[5]) for c in mixed])
    for c, y in zip(alone, got, strict=True):
        assert np.array_equal(c.conceal(fr[5]), y)


def test_an_owned_frame_is_kept_and_returned_without_copies() -> None:
    fr = frames(voiced(8))
    owner, copier = Concealer(), Concealer()
    for f in fr[:4]:
        mine = f.copy()
        played = owner.good(mine, owned=True)
        assert played is mine
        assert copier.good(f) is not f
    # The history holds the handed-over frames: concealment sounds the same.
    assert np.array_equal(owner.conceal(), copier.conceal())
    assert np.array_equal(owner.good(fr[5].copy(), owned=True), copier.good(fr[5]))


# --- quality ---------------------------------------------------------------

SENTENCE = "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background."


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    if shutil.which("espeak-ng") is None or shutil.which("sox") is None:
        pytest.skip("needs espeak-ng and sox (Debian packages; .ci/run installs them)")
    d: Path = tmp_path_factory.mktemp("speech")
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(d / "raw.wav"), SENTENCE], check=True)
    subprocess.run(
        ["sox", str(d / "raw.wav"), "-r", "8000", "-c", "1", "-b", "16", str(d / "s.wav")],
        check=True,
    )
    with wave.open(str(d / "s.wav"), "rb") as w:
        x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.int16)
    return x[: len(x) // FRAME * FRAME]


def test_our_concealment_scores_higher_pesq_than_silence_and_repetition(speech: np.ndarray) -> None:
    pesq = pytest.importorskip("pesq").pesq
    pcmu = codecs.get("PCMU/8000")
    decoded = frames(pcmu.decode_array(pcmu.encode_array(speech)))
    n = len(decoded)
    # About 14% loss: isolated losses, and bursts of three packets.
    lost = [i % 13 == 4 or i % 47 in (30, 31, 32) for i in range(n)]
    scores = {
        make.__name__: pesq(
            RATE, speech.astype(float), play(make(), decoded, lost).astype(float), "nb"
        )
        for make in (Silence, Repeat, Concealer)
    }
    assert scores["Concealer"] > scores["Repeat"] + 0.1, scores
    assert scores["Concealer"] > scores["Silence"] + 0.1, scores
