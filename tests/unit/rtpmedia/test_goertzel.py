"""In-band DTMF: all 16 digits at several levels, twist and noise; no false digits otherwise."""

from __future__ import annotations

import numpy as np
import pytest

from rtpmedia.codecs.g711 import PCMA, PCMU
from rtpmedia.goertzel import (
    BLOCK_SIZE,
    COLUMN_FREQUENCIES,
    DIGITS,
    FREQUENCIES,
    NO_DIGIT,
    ROW_FREQUENCIES,
    DtmfDetector,
    classify_blocks,
    detect,
    feed_many,
    goertzel,
    tone_powers,
)

RATE = 8000
DBM0 = 22_650.0           # peak of a 0 dBm0 sine in 16-bit linear (G.711: +3.17 dBm0 is full scale)
ALL = "0123456789*#ABCD"


def amplitude(dbm0: float) -> float:
    return DBM0 * 10 ** (dbm0 / 20)


def tone(frequencies: list[float], ms: float, levels: list[float], rng: np.random.Generator,
         ) -> np.ndarray:
    t = np.arange(round(ms * RATE / 1000)) / RATE
    out = np.zeros_like(t)
    for f, level in zip(frequencies, levels, strict=True):
        out += amplitude(level) * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
    return out


def dtmf(digit: str, ms: float, level: float, rng: np.random.Generator, twist: float = 0.0,
         deviation: float = 0.0) -> np.ndarray:
    """`twist` dB: column tone louder (> 0, "reverse") or quieter (< 0, "normal") than the row tone."""
    row, col = divmod(DIGITS.index(digit), 4)
    return tone([ROW_FREQUENCIES[row] * (1 + deviation), COLUMN_FREQUENCIES[col] * (1 + deviation)],
                ms, [level, level + twist], rng)


def sequence(digits: str, rng: np.random.Generator, on_ms: float = 60, off_ms: float = 60,
             **kwargs: float) -> np.ndarray:
    parts = [np.zeros(round(off_ms * 8))]
    for digit in digits:
        parts += [dtmf(digit, on_ms, rng=rng, **kwargs), np.zeros(round(off_ms * 8))]
    return np.concatenate(parts)


def with_noise(x: np.ndarray, snr_db: float | None, rng: np.random.Generator,
               reference_power: float) -> np.ndarray:
    if snr_db is None:
        return x
    return x + rng.normal(0, np.sqrt(reference_power / 10 ** (snr_db / 10)), x.shape)


def pcm(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


@pytest.mark.parametrize("level", [-6.0, -15.0, -24.0])
@pytest.mark.parametrize("twist", [-4.0, 0.0, 4.0])
@pytest.mark.parametrize("snr", [None, 15.0])
def test_all_sixteen_digits(level: float, twist: float, snr: float | None) -> None:
    rng = np.random.default_rng(round(10_000 + 100 * level + 10 * twist + (snr or 0)))
    x = sequence(ALL, rng, level=level, twist=twist)
    tone_power = (amplitude(level) ** 2 + amplitude(level + twist) ** 2) / 2
    assert detect(pcm(with_noise(x, snr, rng, tone_power))) == ALL


@pytest.mark.parametrize("codec", [PCMU, PCMA])
def test_digits_survive_g711(codec) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(5)
    x = pcm(with_noise(sequence(ALL, rng, level=-20.0), 15.0, rng, amplitude(-20.0) ** 2))
    assert detect(codec.decode(codec.encode(x))) == ALL


@pytest.mark.parametrize("deviation", [-0.015, 0.015])
def test_frequency_tolerance_of_one_and_a_half_percent(deviation: float) -> None:
    rng = np.random.default_rng(6)
    assert detect(pcm(sequence(ALL, rng, level=-10.0, deviation=deviation))) == ALL


def test_forty_ms_is_always_enough_and_fifteen_never() -> None:
    rng = np.random.default_rng(7)
    for offset in range(0, BLOCK_SIZE, 3):
        lead = np.zeros(offset + 200)
        x = np.concatenate([lead, dtmf("5", 40, -10.0, rng), np.zeros(400)])
        assert detect(pcm(x)) == "5", offset
        short = np.concatenate([lead, dtmf("5", 15, -10.0, rng), np.zeros(400)])
        assert detect(pcm(short)) == "", offset


def test_held_key_is_one_digit_and_a_gap_makes_two() -> None:
    rng = np.random.default_rng(8)
    assert detect(pcm(sequence("7", rng, on_ms=2000, level=-10.0))) == "7"
    assert detect(pcm(sequence("77", rng, on_ms=50, off_ms=45, level=-10.0))) == "77"


def test_too_weak_and_too_much_twist_are_ignored() -> None:
    rng = np.random.default_rng(9)
    assert detect(pcm(sequence(ALL, rng, level=-40.0))) == ""
    assert detect(pcm(sequence(ALL, rng, level=-10.0, twist=12.0))) == ""
    assert detect(pcm(sequence(ALL, rng, level=-5.0, twist=-12.0))) == ""


def test_chunking_does_not_matter_and_state_is_per_detector() -> None:
    rng = np.random.default_rng(10)
    x = pcm(with_noise(sequence(ALL, rng, level=-15.0), 20.0, rng, amplitude(-15.0) ** 2))
    detector = DtmfDetector()
    frames = "".join(detector.feed(x[i:i + 160]) for i in range(0, len(x), 160))
    odd = DtmfDetector()
    odd_chunks = "".join(odd.feed(x[i:i + 37]) for i in range(0, len(x), 37))
    assert frames == odd_chunks == detect(x) == ALL
    detector.reset()
    assert detector.feed(x) == ALL


def speech_like(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Vowel-like sound: a glottal harmonic series (-6 dB/octave) on a gliding pitch through
    three moving formant resonances (|H| of second-order resonators), in syllables."""
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    f0 = 160 + 70 * np.sin(2 * np.pi * 0.7 * t) + 25 * np.sin(2 * np.pi * 3.1 * t)
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    formants = [(500 + 250 * np.sin(2 * np.pi * 0.9 * t), 60.0),
                (1500 + 600 * np.sin(2 * np.pi * 0.5 * t + 1), 90.0),
                (2500 + 200 * np.sin(2 * np.pi * 0.3 * t), 150.0)]
    x = np.zeros(n)
    for k in range(1, 40):
        freq = k * f0
        gain = 1.0 / k
        for centre, bandwidth in formants:
            gain = gain * centre ** 2 / np.sqrt((centre ** 2 - freq ** 2) ** 2
                                                + (bandwidth * freq) ** 2)
        x += np.where(freq < 3800, gain, 0.0) * np.sin(k * phase + rng.uniform(0, 2 * np.pi))
    syllables = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2        # 4 syllables a second
    x *= syllables * amplitude(-8.0) / np.sqrt(np.mean(x ** 2))
    return x + rng.normal(0, amplitude(-50.0), n)


def test_no_digits_in_speech_like_sound_noise_or_call_progress_tones() -> None:
    rng = np.random.default_rng(11)
    assert detect(pcm(speech_like(8.0, rng))) == ""
    for level in (-40.0, -20.0, -5.0):
        assert detect(pcm(rng.normal(0, amplitude(level), 8000))) == ""
    # Dial tone, ringback and busy tone (North America), then one DTMF frequency at a time.
    for pair in ([350.0, 440.0], [440.0, 480.0], [480.0, 620.0]):
        assert detect(pcm(tone(pair, 1000, [-10.0, -10.0], rng))) == ""
    for f in (*ROW_FREQUENCIES, *COLUMN_FREQUENCIES):
        assert detect(pcm(tone([f], 500, [-5.0], rng))) == ""
    # Two row tones, or two column tones, are not a digit either.
    assert detect(pcm(tone([697.0, 852.0], 500, [-10.0, -10.0], rng))) == ""
    assert detect(pcm(tone([1209.0, 1477.0], 500, [-10.0, -10.0], rng))) == ""
    assert detect(np.zeros(8000, np.int16)) == ""


def test_second_harmonics_reject_a_digit() -> None:
    # A row + column pair with strong second harmonics (as a voice would have) is refused.
    rng = np.random.default_rng(12)
    clean = dtmf("9", 200, -10.0, rng)
    row, col = ROW_FREQUENCIES[2], COLUMN_FREQUENCIES[2]
    harmonics = tone([2 * row, 2 * col], 200, [-13.0, -13.0], rng)
    assert detect(pcm(clean)) == "9"
    assert detect(pcm(clean + harmonics)) == ""


def test_goertzel_recurrence_equals_the_matrix_form() -> None:
    rng = np.random.default_rng(13)
    blocks = rng.normal(0, 3000, size=(6, 5, BLOCK_SIZE))
    reference = goertzel(blocks, FREQUENCIES) * 4 / BLOCK_SIZE ** 2
    assert reference.shape == (6, 5, 16)
    assert np.allclose(tone_powers(blocks), reference, rtol=1e-9, atol=1e-6)


def test_many_streams_in_one_call() -> None:
    rng = np.random.default_rng(14)
    streams = np.stack([pcm(dtmf(d, BLOCK_SIZE * 4 / 8, -10.0, rng)) for d in ALL])
    codes = classify_blocks(streams.reshape(16, 4, BLOCK_SIZE))
    assert codes.shape == (16, 4)
    assert [DIGITS[c] for c in codes[:, 1]] == list(ALL)
    assert classify_blocks(np.zeros((3, BLOCK_SIZE))).tolist() == [NO_DIGIT] * 3


def test_feed_many_streams_per_tick_equals_feeding_each() -> None:
    rng = np.random.default_rng(15)
    streams = [pcm(sequence(digits, rng, level=-12.0)) for digits in ("123", "A*", "", "0#9D")]
    length = max(len(s) for s in streams)
    streams = [np.concatenate([s, np.zeros(length - len(s), np.int16)]) for s in streams]
    detectors = [DtmfDetector() for _ in streams]
    got = ["", "", "", ""]
    for i in range(0, length, 160):
        for k, digits in enumerate(feed_many(detectors, [s[i:i + 160] for s in streams])):
            got[k] += digits
    assert got == ["123", "A*", "", "0#9D"]
