"""Known test signals as WAV files, and how well a recording reproduces one.

A signal is a sequence of tones of random pitch (seeded, so two directions of a
call carry different ones); nothing is committed, each test writes its own.
Comparison is a normalised cross-correlation at the best lag: the recording
starts before the signal arrives and codecs change samples slightly, so the
check is the shape of the waveform, not sample equality (see pjsua2.md: PCMU
gives about 0.9999 phone to phone).
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

RATE = 8000  # the phones' bridge rate (phone_agent sets clockRate 8000)


def tone_sequence(path: Path, seed: int, seconds: float = 2.0, tone_ms: int = 200) -> np.ndarray:
    """Write a 16-bit mono WAV of random-pitch tones (300-3000 Hz); return its samples."""
    rng = np.random.default_rng(seed)
    per_tone = RATE * tone_ms // 1000
    count = int(seconds * 1000 // tone_ms)
    t = np.arange(per_tone) / RATE
    # A short fade at each end of a tone keeps PCMU from clicking.
    envelope = np.minimum(1.0, np.minimum(t, t[::-1]) * 200)
    parts = [0.5 * np.sin(2 * np.pi * rng.uniform(300, 3000) * t) * envelope
             for _ in range(count)]
    samples = (np.concatenate(parts) * 32767).astype(np.int16)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(samples.tobytes())
    return samples


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as source:
        if source.getframerate() != RATE or source.getsampwidth() != 2:
            raise ValueError(f"{path}: {source.getframerate()} Hz, "
                             f"{8 * source.getsampwidth()} bits; expected {RATE} Hz 16 bits")
        frames = source.readframes(source.getnframes())
        channels = source.getnchannels()
    return np.frombuffer(frames, dtype=np.int16).reshape(-1, channels)[:, 0]


def similarity(reference: np.ndarray, recording: np.ndarray) -> float:
    """Pearson correlation of `reference` with the part of `recording` that
    matches it best (0.0 when the recording is shorter or silent)."""
    ref = reference.astype(np.float64)
    rec = recording.astype(np.float64)
    if len(rec) < len(ref) or not rec.any():
        return 0.0
    size = 1 << (len(rec) + len(ref)).bit_length()
    xcorr = np.fft.irfft(np.fft.rfft(rec, size) * np.conj(np.fft.rfft(ref, size)), size)
    lag = int(np.argmax(np.abs(xcorr[:len(rec) - len(ref) + 1])))
    part = rec[lag:lag + len(ref)]
    if not part.std() or not ref.std():
        return 0.0
    return float(np.corrcoef(ref, part)[0, 1])
