"""Time stretching: one pitch period out or in, without clicks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from rtpmedia import timestretch

RATE = 8000


def tone(freq: float, n: int = 320, amp: float = 8000.0, phase: float = 0.3) -> np.ndarray:
    t = np.arange(n)
    x = amp * np.sin(2 * np.pi * freq * t / RATE + phase)
    x += 0.3 * amp * np.sin(2 * np.pi * 2 * freq * t / RATE + 1.0)  # a harmonic
    return np.rint(x).astype(np.int16)


def max_step(x: np.ndarray) -> float:
    return float(np.abs(np.diff(x.astype(np.float64))).max())


@pytest.mark.parametrize("freq", [70.0, 100.0, 150.0, 220.0, 310.0])
def test_accelerate_removes_one_period_without_a_click(freq: float) -> None:
    x = tone(freq)
    out = timestretch.accelerate(x)
    period = RATE / freq
    assert abs(out.samples - period) <= 1.0
    assert len(out.audio) == len(x) - out.samples
    assert out.audio.dtype == np.int16
    # No sample-to-sample jump larger than the tone's own steepest slope
    # (plus a little for rounding and a non-integer period).
    assert max_step(out.audio) <= max_step(x) * 1.05 + 2
    # The result starts where the input started and ends where it ended, so
    # it joins the audio around it.
    assert out.audio[0] == pytest.approx(x[0], abs=600)
    assert np.array_equal(out.audio[-50:], x[-50:])


@pytest.mark.parametrize("freq", [70.0, 100.0, 150.0, 220.0, 310.0])
def test_expand_inserts_one_period_without_a_click(freq: float) -> None:
    x = tone(freq)
    out = timestretch.preemptive_expand(x)
    period = RATE / freq
    assert abs(out.samples - period) <= 1.0
    assert len(out.audio) == len(x) + out.samples
    assert max_step(out.audio) <= max_step(x) * 1.05 + 2
    assert np.array_equal(out.audio[:10], x[:10])
    assert np.array_equal(out.audio[-50:], x[-50:])


def test_splice_follows_the_sine() -> None:
    # A pure sine with an integer period: the stretched signal is the sine
    # itself, shifted by whole periods, to within rounding.
    x = tone(100.0)
    acc = timestretch.accelerate(x).audio.astype(float)
    exp = timestretch.preemptive_expand(x).audio.astype(float)
    assert np.abs(acc - x[: len(acc)]).max() <= 2
    assert np.abs(exp[: len(x)] - x).max() <= 2


def test_the_fundamental_not_a_multiple() -> None:
    lag, corr = timestretch.find_period(tone(200.0).astype(float))
    assert lag == 40 and corr > 0.99


def test_loud_noise_is_left_alone() -> None:
    x = np.random.default_rng(3).normal(0, 4000, 320).astype(np.int16)
    for fn in (timestretch.accelerate, timestretch.preemptive_expand):
        out = fn(x)
        assert out.samples == 0
        assert np.array_equal(out.audio, x)


def test_silence_is_stretched_as_far_as_allowed() -> None:
    x = np.random.default_rng(4).normal(0, 10, 320).astype(np.int16)
    assert timestretch.accelerate(x).samples == timestretch.MAX_LAG
    assert timestretch.accelerate(x, max_samples=50).samples == 50
    assert timestretch.accelerate(x, max_samples=10).samples == 0
    assert timestretch.preemptive_expand(x).samples == timestretch.MAX_LAG


def test_max_samples_bounds_the_period() -> None:
    x = tone(100.0)  # period 80
    assert timestretch.accelerate(x, max_samples=79).samples == 0
    assert timestretch.accelerate(x, max_samples=80).samples == 80


def test_too_short_and_float_input() -> None:
    assert timestretch.accelerate(np.zeros(10)).samples == 0
    out = timestretch.accelerate(tone(150.0).astype(np.float32))
    assert out.audio.dtype == np.int16 and out.samples > 0


@given(arrays(np.float64, st.integers(0, 400),
              elements=st.floats(-32768.0, 32767.0, allow_nan=False)))
def test_find_period_of_any_length_gives_a_lag_in_range_or_none(x: np.ndarray) -> None:
    lag, corr = timestretch.find_period(x)
    if lag == 0:
        assert corr == 0.0
    else:
        assert timestretch.MIN_LAG <= lag <= min(timestretch.MAX_LAG, len(x) // 2)
        assert -1.0 - 1e-6 <= corr <= 1.0 + 1e-6


@pytest.mark.parametrize("n", [2 * timestretch.MIN_LAG, 2 * timestretch.MIN_LAG + 1])
def test_a_signal_with_room_for_one_lag_only_gets_that_lag(n: int) -> None:
    # 40 and 41 samples used to raise IndexError (one candidate lag, no neighbour).
    lag, corr = timestretch.find_period(tone(RATE / timestretch.MIN_LAG, n).astype(float))
    assert lag == timestretch.MIN_LAG and corr > 0.99


def _reference_period(x: np.ndarray) -> tuple[int, float]:
    """find_period written plainly: every candidate refined on its own, no shortcuts."""
    lo, hi = timestretch.MIN_LAG, min(timestretch.MAX_LAG, len(x) // 2)
    ref = x[:lo]
    corr = []
    for p in range(lo, hi + 1):
        seg = x[p : p + lo]
        corr.append(float(seg @ ref) / (np.sqrt(float(seg @ seg) * float(ref @ ref)) + 1e-9))
    peaks = [i for i in range(1, len(corr) - 1) if corr[i] >= corr[i - 1] and corr[i] >= corr[i + 1]]
    if len(corr) == 1 or corr[0] > corr[1]:
        peaks.insert(0, 0)
    if len(corr) > 1 and corr[-1] > corr[-2]:
        peaks.append(len(corr) - 1)
    full = []
    for i in peaks:
        p = lo + i
        a, b = x[:p], x[p : 2 * p]
        full.append((p, float(a @ b) / (np.sqrt(float(a @ a) * float(b @ b)) + 1e-9)))
    top = max(c for _, c in full)
    return next((p, c) for p, c in full if c >= top - 0.03)


@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2 * timestretch.MIN_LAG, 400),
       tone=st.floats(0.0, 1.0))
def test_find_period_with_many_candidates_picks_what_one_by_one_would(
        seed: int, n: int, tone: float) -> None:
    # Noise gives dozens of candidate periods (refined together), a tone few
    # (refined one by one): both ways pick the lag the plain definition picks.
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    x = tone * 3000 * np.sin(2 * np.pi * 150 * t / 8000) + (1 - tone) * rng.normal(0, 2000, n)
    lag, corr = timestretch.find_period(x)
    want_lag, want_corr = _reference_period(x)
    assert lag == want_lag
    assert corr == pytest.approx(want_corr, abs=1e-9)
