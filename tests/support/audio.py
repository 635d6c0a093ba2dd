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


def similarity(reference: np.ndarray, recording: np.ndarray, block_ms: int = 100,
               slack_ms: int = 250) -> float:
    """How intact `reference` is in `recording`: the mean, over its 100 ms
    blocks, of each block's Pearson correlation with the recording (0.0 for
    a silent or short recording).

    The first block is looked for at the best overall lag, each next one
    within `slack_ms` of where the one before it was found: a jitter buffer
    adds or drops frames now and then (on this shared 2-core machine under
    the full suite, slips of 40 to 140 ms were seen), which shifts what
    follows without damaging it; only the block with the slip scores lower.
    """
    ref = reference.astype(np.float64)
    rec = recording.astype(np.float64)
    if len(rec) < len(ref) or not rec.any():
        return 0.0
    size = 1 << (len(rec) + len(ref)).bit_length()
    xcorr = np.fft.irfft(np.fft.rfft(rec, size) * np.conj(np.fft.rfft(ref, size)), size)
    lag = int(np.argmax(np.abs(xcorr[:len(rec) - len(ref) + 1])))
    block, slack = RATE * block_ms // 1000, RATE * slack_ms // 1000
    scores = []
    for start in range(0, len(ref) - block + 1, block):
        part = ref[start:start + block]
        if not part.std():
            continue
        low = max(0, lag + start - slack)
        window = rec[low:lag + start + block + slack]
        if len(window) < block:
            scores.append(0.0)
            continue
        centred = part - part.mean()
        # Pearson's r at every shift: the dot products by np.correlate, each
        # piece's spread from running sums.
        dots = np.correlate(window, centred, "valid")
        sums = np.concatenate([[0.0], np.cumsum(window)])
        squares = np.concatenate([[0.0], np.cumsum(window * window)])
        s1 = sums[block:] - sums[:-block]
        spread = squares[block:] - squares[:-block] - s1 * s1 / block
        norm = np.sqrt(np.clip(spread, 0.0, None)) * np.linalg.norm(centred)
        r = np.divide(dots, norm, out=np.zeros_like(dots), where=norm > 1e-6 * block)
        found = int(np.argmax(r))
        lag = low + found - start  # the next block follows this one's slip
        scores.append(float(max(r[found], 0.0)))
    return float(np.mean(scores)) if scores else 0.0


def speech_wav(path: Path, text: str) -> np.ndarray:
    """Write `text` spoken by espeak-ng as an 8 kHz mono 16-bit WAV; return its samples.

    Needs espeak-ng and sox (Debian packages, installed by .ci/run); the
    caller skips without them.
    """
    import subprocess

    raw = path.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(raw), text], check=True)
    subprocess.run(["sox", str(raw), "-r", str(RATE), "-c", "1", "-b", "16", str(path)],
                   check=True)
    raw.unlink()
    return read_wav(path)


def aligned(reference: np.ndarray, recording: np.ndarray) -> np.ndarray:
    """The stretch of `recording` that best lines up with `reference` (cross-correlation),
    as long as `reference` (zero-padded where the recording ends first)."""
    ref = reference.astype(np.float64)
    rec = recording.astype(np.float64)
    size = 1 << (len(rec) + len(ref)).bit_length()
    xcorr = np.fft.irfft(np.fft.rfft(rec, size) * np.conj(np.fft.rfft(ref, size)), size)
    lag = int(np.argmax(xcorr[:max(1, len(rec) - len(ref) // 2)]))
    part = recording[lag:lag + len(reference)]
    return np.concatenate([part, np.zeros(len(reference) - len(part), dtype=recording.dtype)])


def pesq_score(reference: np.ndarray, recording: np.ndarray) -> float:
    """PESQ (ITU-T P.862, narrowband) of `recording` against `reference`, once aligned."""
    from pesq import pesq

    return float(pesq(RATE, reference.astype(np.float64), aligned(reference, recording)
                      .astype(np.float64), "nb"))
