"""Voicemail costs: the MWI poll per mailbox count, the recorder, prompt conversion.

    .venv/bin/python bench/voicemail.py [--mailboxes 100,1000,10000]

- poll: what the server's once-a-second MWI poll does when nothing changed
  (list DATA/voicemail, stat each mailbox folder), on the reactor thread:
  milliseconds per poll for each mailbox count;
- counts: reading one mailbox of 50 messages after a change;
- recorder: two-party frames per second into a WAV (one 20 ms frame of
  each party per tick), as a multiple of real time for one call;
- prompt: converting a 10 s 44.1 kHz stereo WAV to 8 kHz mono (soxr HQ).
"""

from __future__ import annotations

import argparse
import tempfile
import time
import wave
from pathlib import Path

import numpy as np

from rtpmedia.prompts import PromptCache
from rtpmedia.recorder import Recorder
from softswitch.voicemail import VoicemailStore, deposit


def bench_poll(root: Path, count: int, rounds: int = 20) -> float:
    data = root / f"poll-{count}"
    for n in range(count):
        (data / "voicemail" / f"{1000 + n}@pbx.example.com").mkdir(parents=True)
    store = VoicemailStore(data)
    start = time.perf_counter()
    for _ in range(rounds):
        store.stamps()
    return (time.perf_counter() - start) / rounds * 1000


def bench_counts(root: Path, messages: int = 50, rounds: int = 50) -> float:
    data = root / "counts"
    wav = root / "m.wav"
    for _ in range(messages):
        with wave.open(str(wav), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(8000)
            w.writeframes(b"\0\0" * 800)
        deposit(data, "1001@pbx.example.com", wav, caller="1002", duration=0.1)
    store = VoicemailStore(data)
    store.ingest()
    start = time.perf_counter()
    for _ in range(rounds):
        store.counts("1001@pbx.example.com")
    return (time.perf_counter() - start) / rounds * 1000


def bench_recorder(root: Path, seconds: float = 300.0) -> float:
    frames = int(seconds / 0.02)
    rng = np.random.default_rng(1)
    audio = rng.integers(-3000, 3000, (64, 160)).astype(np.int16)
    recorder = Recorder(root / "rec.wav", parties=2)
    start = time.perf_counter()
    for i in range(frames):
        arrival = (i + 1) * 0.02
        recorder.add(0, 1000 + i * 160, arrival + 0.003, audio[i % 64])
        recorder.add(1, 777_777 + i * 160, arrival + 0.011, audio[(i + 7) % 64])
    recorder.close()
    elapsed = time.perf_counter() - start
    return seconds / elapsed


def bench_prompt(root: Path) -> float:
    t = np.arange(441000) / 44100
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 660 * t)], 1) * 0.3
    source = root / "p.wav"
    with wave.open(str(source), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(44100)
        w.writeframes((stereo * 32767).astype("<i2").tobytes())
    start = time.perf_counter()
    PromptCache(root / "prompts").converted(source)
    return (time.perf_counter() - start) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mailboxes", default="100,1000,10000")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        print("| measure | figure |")
        print("|---|---|")
        for count in (int(c) for c in args.mailboxes.split(",")):
            print(f"| MWI poll, {count} mailboxes, nothing changed | "
                  f"{bench_poll(root, count):.2f} ms per poll |")
        print(f"| counts of a mailbox of 50 messages | {bench_counts(root):.2f} ms |")
        print(f"| recorder, 2 parties | {bench_recorder(root):.0f}x real time (one call) |")
        print(f"| convert 10 s 44.1 kHz stereo to 8 kHz mono | {bench_prompt(root):.1f} ms |")


if __name__ == "__main__":
    main()
