"""Prompts for the relay's `playback` and voicemail: WAV in, 8 kHz mono frames out.

- `read_wav` reads PCM WAV of any rate, channel count and width (8-bit
  unsigned, 16, 24, 32-bit) and `to_narrowband` makes it 8 kHz mono 16-bit:
  channels averaged, then resampled with soxr (libsoxr's "HQ" filter: a
  proper anti-alias low-pass, which a 44.1 kHz prompt needs before it is
  decimated to 8 kHz; numpy alone would mean writing and tuning a
  polyphase filter of our own).
- `PromptCache` converts a WAV once and keeps the result in
  DATA/prompts/cache/, named by a hash of the source's bytes: a prompt
  replaced by another file is converted again, an unchanged one never.
- The shipped dialplan's prompts (`SHIPPED`) are spoken by espeak-ng at
  first use (`PromptCache.shipped`) into DATA/prompts/<name>.wav, and any
  other text can be (`PromptCache.say`): no audio binaries in the repository.
- `beep` is the tone before a voicemail recording; `Player` hands out a
  prompt as 20 ms frames, all cut at once.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

RATE = 8000
FRAME = 160  # 20 ms at 8 kHz
PROMPTS_DIR = "prompts"
CACHE_DIR = "cache"
VOICE = "en-us"
ESPEAK = "espeak-ng"

#: The prompts the shipped dialplan and the voicemail machine use, by name.
SHIPPED: dict[str, str] = {
    "vm-greeting": "The person you called is not available. "
                   "Please leave a message after the tone.",
    "vm-goodbye": "Goodbye.",
    "vm-main-menu": "Press 1 to listen to your messages. Press pound to hang up.",
    "vm-message-menu": "Press 7 to delete this message, 9 to save it, 5 to hear it again, "
                       "4 for the previous message, or pound for the next one.",
    "vm-no-messages": "You have no messages.",
    "vm-no-more": "There are no more messages.",
    "vm-first": "This is the first message.",
    "vm-deleted": "Message deleted.",
    "vm-saved": "Message saved.",
    "vm-too-short": "Your message was too short and has not been kept.",
    "vm-record-greeting": "Record your greeting after the tone. Press pound when you are done.",
    "vm-greeting-saved": "Your greeting has been saved.",
    "echo-intro": "This is the echo test. What you say will be played back to you. "
                  "Hang up when you are done.",
}


class PromptError(Exception):
    """A prompt that cannot be read, converted or generated."""


Samples = npt.NDArray[np.int16]


def read_wav(path: Path) -> tuple[npt.NDArray[np.float32], int]:
    """The samples of a PCM WAV as float32 in [-1, 1), shape (frames, channels), and its rate."""
    try:
        with wave.open(str(path), "rb") as w:
            rate, channels, width = w.getframerate(), w.getnchannels(), w.getsampwidth()
            raw = w.readframes(w.getnframes())
    except (OSError, EOFError, wave.Error) as exc:
        raise PromptError(f"{path}: not a PCM WAV file ({exc})") from None
    if channels < 1 or rate < 1000:
        raise PromptError(f"{path}: {channels} channels at {rate} Hz")
    usable = len(raw) - len(raw) % (width * channels)
    raw = raw[:usable]
    if width == 1:  # 8-bit WAV is unsigned
        data = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        data = np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
    elif width == 3:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        value = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        value = np.where(value >= 1 << 23, value - (1 << 24), value)
        data = value.astype(np.float32) / float(1 << 23)
    elif width == 4:
        data = (np.frombuffer(raw, "<i4").astype(np.float64) / float(1 << 31)).astype(np.float32)
    else:
        raise PromptError(f"{path}: {width * 8}-bit samples are not supported")
    return data.reshape(-1, channels), rate


def to_narrowband(samples: npt.NDArray[np.float32], rate: int) -> Samples:
    """Mix down to mono and resample to 8 kHz 16-bit (with soxr's anti-alias filter)."""
    import soxr

    mono = samples.mean(axis=1) if samples.ndim == 2 else samples
    if rate != RATE and len(mono):
        mono = soxr.resample(mono.astype(np.float32), rate, RATE, quality="HQ")
    return np.clip(np.round(mono * 32768.0), -32768, 32767).astype(np.int16)


def write_wav(path: Path, samples: Samples, rate: int = RATE) -> None:
    """Write mono 16-bit samples durably (temporary file, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            with wave.open(f, "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(rate)
                w.writeframes(samples.astype("<i2").tobytes())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def load_narrowband(path: Path) -> Samples:
    """A WAV already at 8 kHz mono 16-bit, as written by `PromptCache`."""
    data, rate = read_wav(path)
    if rate != RATE or data.shape[1] != 1:
        return to_narrowband(data, rate)
    return np.clip(np.round(data[:, 0] * 32768.0), -32768, 32767).astype(np.int16)


def beep(frequency: float = 1000.0, duration: float = 0.25, level_dbfs: float = -10.0) -> Samples:
    """A tone with 5 ms raised-cosine ramps: no click at either end."""
    n = int(round(duration * RATE))
    t = np.arange(n) / RATE
    tone = np.sin(2 * np.pi * frequency * t) * 10 ** (level_dbfs / 20)
    ramp = min(int(0.005 * RATE), n // 2)
    if ramp:
        window = 0.5 - 0.5 * np.cos(np.pi * np.arange(ramp) / ramp)
        tone[:ramp] *= window
        tone[n - ramp:] *= window[::-1]
    return np.round(tone * 32767).astype(np.int16)


@dataclass(frozen=True, slots=True)
class PreparedPrompt:
    name: str
    path: Path
    generated: bool  # made now (False: found in the cache)
    seconds: float


class PromptCache:
    """Converted and generated prompts under DATA/prompts."""

    def __init__(self, data_dir: Path, *, voice: str = VOICE, espeak: str = ESPEAK) -> None:
        self.root = data_dir / PROMPTS_DIR
        self.voice = voice
        self.espeak = espeak
        self.conversions = 0  # how many times a source was converted (tests, stats)

    def converted(self, source: Path) -> Path:
        """`source` as 8 kHz mono 16-bit, converted at the first call only."""
        try:
            content = source.read_bytes()
        except OSError as exc:
            raise PromptError(f"{source}: {exc}") from None
        digest = hashlib.sha256(content).hexdigest()[:32]
        target = self.root / CACHE_DIR / f"{digest}.wav"
        if not target.exists():
            data, rate = read_wav(source)
            write_wav(target, to_narrowband(data, rate))
            self.conversions += 1
        return target

    def say(self, text: str) -> Path:
        """`text` spoken by espeak-ng, generated once per text and voice."""
        digest = hashlib.sha256(f"{self.voice}\0{text}".encode()).hexdigest()[:32]
        target = self.root / CACHE_DIR / f"say-{digest}.wav"
        if not target.exists():
            write_wav(target, self._speak(text))
        return target

    def shipped(self, name: str, *, force: bool = False) -> PreparedPrompt:
        """A prompt of `SHIPPED` as DATA/prompts/<name>.wav; an operator's own file there wins.

        A file an operator put there (a recorded greeting) is converted if
        it is not 8 kHz mono 16-bit already, and never overwritten unless
        `force`.
        """
        if name not in SHIPPED:
            raise PromptError(f"no shipped prompt {name!r}")
        target = self.root / f"{name}.wav"
        generated = False
        if force or not target.exists():
            write_wav(target, self._speak(SHIPPED[name]))
            generated = True
        samples = load_narrowband(target)
        return PreparedPrompt(name, target, generated, len(samples) / RATE)

    def all_shipped(self, *, force: bool = False) -> list[PreparedPrompt]:
        return [self.shipped(name, force=force) for name in SHIPPED]

    def _speak(self, text: str) -> Samples:
        if shutil.which(self.espeak) is None:
            raise PromptError(f"{self.espeak} is not installed: it speaks the prompts "
                              "(Debian: apt-get install espeak-ng)")
        with tempfile.TemporaryDirectory() as folder:
            out = Path(folder) / "say.wav"
            try:
                subprocess.run([self.espeak, "-v", self.voice, "-s", "150", "-w", str(out),
                                "--", text], check=True, capture_output=True, timeout=60)
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
                stderr = getattr(exc, "stderr", b"") or b""
                raise PromptError(f"{self.espeak} failed: {stderr.decode(errors='replace')}"
                                  ) from None
            data, rate = read_wav(out)
        return to_narrowband(data, rate)


class Player:
    """A prompt as consecutive 20 ms frames; the last one padded with silence."""

    def __init__(self, samples: Samples) -> None:
        count = -(-len(samples) // FRAME)
        padded = np.zeros(count * FRAME, np.int16)
        padded[:len(samples)] = samples
        self._frames = padded.reshape(count, FRAME)
        self.position = 0

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def done(self) -> bool:
        return self.position >= len(self._frames)

    def next_frame(self) -> Samples | None:
        """The next frame, or None once the prompt is over."""
        if self.done:
            return None
        frame = self._frames[self.position]
        self.position += 1
        return frame

    def frames(self) -> Iterator[Samples]:
        while (frame := self.next_frame()) is not None:
            yield frame

    def rewind(self) -> None:
        self.position = 0
