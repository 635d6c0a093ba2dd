"""Prompts: any WAV to 8 kHz mono 16-bit, once; espeak-ng prompts; beep; Player frames."""

from __future__ import annotations

import shutil
import wave
from pathlib import Path

import numpy as np
import pytest

from rtpmedia.prompts import (
    FRAME,
    RATE,
    SHIPPED,
    Player,
    PromptCache,
    PromptError,
    beep,
    load_narrowband,
    read_wav,
)


def dominant_frequency(samples: np.ndarray, rate: int = RATE) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64) * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])


def stereo_44k(path: Path, seconds: float = 1.0) -> None:
    """Left 440 Hz, right 1 kHz, plus 6 kHz in both: above 4 kHz, it must not alias in."""
    t = np.arange(int(44100 * seconds)) / 44100
    left = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.3 * np.sin(2 * np.pi * 6000 * t)
    right = 0.3 * np.sin(2 * np.pi * 1000 * t) + 0.3 * np.sin(2 * np.pi * 6000 * t)
    frames = np.stack([left, right], axis=1)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(44100)
        w.writeframes((frames * 32767).astype("<i2").tobytes())


def test_44k_stereo_becomes_8k_mono_once(tmp_path: Path) -> None:
    source = tmp_path / "prompt.wav"
    stereo_44k(source)
    cache = PromptCache(tmp_path / "data")
    converted = cache.converted(source)
    with wave.open(str(converted)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
        assert abs(w.getnframes() - 8000) <= 2
    samples = load_narrowband(converted).astype(np.float64)
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    freqs = np.fft.rfftfreq(len(samples), 1 / RATE)

    def level(f: float) -> float:
        return float(spectrum[np.argmin(np.abs(freqs - f))])

    # Both channels are in the mono mix; 6 kHz would alias to 2 kHz: filtered out.
    assert level(440) > 100 * level(2000) and level(1000) > 100 * level(2000)
    again = cache.converted(source)
    assert again == converted and cache.conversions == 1
    stereo_44k(source, seconds=0.5)  # a new file under the same name is converted again
    assert cache.converted(source) != converted and cache.conversions == 2


@pytest.mark.parametrize("width", [1, 3, 4])
def test_other_sample_widths_are_read(tmp_path: Path, width: int) -> None:
    t = np.arange(16000) / 16000
    tone = 0.5 * np.sin(2 * np.pi * 500 * t)
    if width == 1:
        raw = np.round(tone * 127 + 128).astype(np.uint8).tobytes()
    elif width == 3:
        v = np.round(tone * (2**23 - 1)).astype(np.int32)
        raw = np.stack([v & 0xFF, (v >> 8) & 0xFF, (v >> 16) & 0xFF], 1).astype(np.uint8).tobytes()
    else:
        raw = np.round(tone * (2**31 - 1)).astype("<i4").tobytes()
    path = tmp_path / "w.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(width)
        w.setframerate(16000)
        w.writeframes(raw)
    data, rate = read_wav(path)
    assert rate == 16000 and np.max(np.abs(data[:, 0] - tone)) < 0.01
    converted = load_narrowband(PromptCache(tmp_path).converted(path))
    assert abs(dominant_frequency(converted) - 500) < 10


def test_a_file_that_is_not_wav_is_a_prompt_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF nonsense")
    with pytest.raises(PromptError):
        PromptCache(tmp_path).converted(bad)


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
def test_shipped_prompts_are_spoken_once_and_an_operator_file_wins(tmp_path: Path) -> None:
    cache = PromptCache(tmp_path)
    greeting = cache.shipped("vm-greeting")
    assert greeting.generated and 3.0 < greeting.seconds < 10.0
    samples = load_narrowband(greeting.path)
    assert np.sqrt(np.mean(samples.astype(np.float64) ** 2)) > 300  # speech, not silence
    assert not cache.shipped("vm-greeting").generated
    own = tmp_path / "own.wav"
    stereo_44k(own, seconds=2.0)
    own.replace(greeting.path)  # the operator's recorded greeting, 44.1 kHz stereo
    kept = cache.shipped("vm-greeting")
    assert not kept.generated and abs(kept.seconds - 2.0) < 0.01
    assert "vm-greeting" in SHIPPED and cache.say("Two new messages.").exists()
    with pytest.raises(PromptError):
        cache.shipped("no-such-prompt")


def test_beep_is_a_clean_tone_without_clicks() -> None:
    tone = beep(1000, 0.25)
    assert len(tone) == 2000
    assert abs(dominant_frequency(tone) - 1000) < 5
    assert abs(int(tone[0])) < 50 and abs(int(tone[-1])) < 50


def test_player_gives_20ms_frames_padding_the_last() -> None:
    player = Player(np.arange(1, 401, dtype=np.int16))
    frames = list(player.frames())
    assert len(player) == 3 and [len(f) for f in frames] == [FRAME] * 3
    assert frames[2][79] == 400 and not frames[2][80:].any()
    assert player.done and player.next_frame() is None
    player.rewind()
    assert player.next_frame()[0] == 1  # type: ignore[index]
