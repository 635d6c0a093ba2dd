"""`softswitch media conceal`: hear (and score) what loss repair does to a recording.

Runs an 8 kHz mono WAV through the relay's receive path: G.711 encoding,
20 ms packets, the packets marked lost dropped, the adaptive jitter buffer
(with its time stretching), packet loss concealment and decoding.

numpy and `rtpmedia` are imported inside the command, so that the signalling
process, which imports this package, never loads them.
"""

from __future__ import annotations

import wave
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

RATE = 8000
FRAME = 160
#: Least playout delay: frames are held long enough that a lost frame's
#: successor is usually there for the concealer to interpolate towards (with
#: no floor the target falls to zero on on-time packets and it never is).
MIN_DELAY = 0.040
CODECS = {"pcmu": "PCMU/8000", "pcma": "PCMA/8000"}


@click.group()
def media() -> None:
    """Media plane tools (work on files; no server needed)."""


def read_lost(path: Path) -> list[bool]:
    """One 0 or 1 per line (1: the packet is lost); blank lines and # comments are skipped."""
    lost: list[bool] = []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"cannot read {path}: {exc}") from None
    for number, line in enumerate(text.splitlines(), 1):
        word = line.split("#", 1)[0].strip()
        if not word:
            continue
        if word not in ("0", "1"):
            raise click.ClickException(f"{path}:{number}: expected 0 or 1, got {word!r}")
        lost.append(word == "1")
    return lost


def read_wav(path: Path) -> npt.NDArray[np.int16]:
    import numpy as np

    try:
        with wave.open(str(path), "rb") as w:
            rate, channels, width = w.getframerate(), w.getnchannels(), w.getsampwidth()
            data = w.readframes(w.getnframes())
    except (OSError, EOFError, wave.Error) as exc:
        raise click.ClickException(f"cannot read {path}: {exc}") from None
    if (rate, channels, width) != (RATE, 1, 2):
        raise click.ClickException(
            f"{path}: {rate} Hz, {channels} channel(s), {8 * width}-bit; need 8000 Hz mono "
            f"16-bit (convert with: sox {path} -r 8000 -c 1 -b 16 out.wav)"
        )
    return np.frombuffer(data, dtype="<i2").astype(np.int16)


def write_wav(path: Path, samples: npt.NDArray[np.int16]) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(samples.astype("<i2").tobytes())


def receive(
    payloads: list[bytes], lost: list[bool], codec_name: str
) -> tuple[npt.NDArray[np.int16], dict[str, int]]:
    """Play the packets not lost, arriving on time every 20 ms, through the relay's `Receiver`."""
    import numpy as np

    from rtpmedia import codecs
    from rtpmedia.receiver import Receiver

    codec = codecs.get(codec_name)
    assert codec.payload_type is not None
    rx = Receiver({codec.payload_type: codec}, min_delay=MIN_DELAY)
    played: list[npt.NDArray[np.int16]] = []
    lost_count = 0
    sent = 0
    t = 0.010  # playout ticks half a frame after the arrivals
    for _tick in range(len(payloads) + 500):
        if rx.counts.consumed >= len(payloads):
            break
        while sent < len(payloads) and sent * 0.020 <= t:
            if lost[sent]:
                lost_count += 1
            else:
                rx.put(codec.payload_type, sent & 0xFFFF, sent * FRAME, 0x5EED, sent == 0,
                       payloads[sent], sent * 0.020)
            sent += 1
        frame = rx.frame(t)
        if frame is not None:
            played.append(frame)
        elif rx.started:
            played.append(np.zeros(FRAME, dtype=np.int16))
        t += 0.020
    counts = {"packets": len(payloads), "lost": lost_count,
              "concealed_frames": rx.counts.concealed_frames,
              "stretched_samples": rx.counts.stretched_samples}
    return (np.concatenate(played) if played else np.zeros(0, dtype=np.int16)), counts


@media.command()
@click.argument("in_wav", metavar="IN.wav", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("out_wav", metavar="OUT.wav", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--lost",
    "lost_file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="One 0 or 1 per line, a line per 20 ms packet; 1 = lost. Missing lines are received.",
)
@click.option("--codec", type=click.Choice(sorted(CODECS)), default="pcmu", show_default=True)
def conceal(in_wav: Path, out_wav: Path, lost_file: Path, codec: str) -> None:
    """Drop the packets marked lost from IN.wav and write what the relay plays to OUT.wav.

    IN.wav must be 8 kHz mono 16-bit. Packets arrive on time, so the jitter
    buffer only waits for, and conceals, the ones marked lost.
    """
    import numpy as np

    from rtpmedia import codecs

    samples = read_wav(in_wav)
    marks = read_lost(lost_file)
    n = -(-len(samples) // FRAME)
    padded = np.zeros(n * FRAME, dtype=np.int16)
    padded[: len(samples)] = samples
    c = codecs.get(CODECS[codec])
    payloads = [c.encode(padded[i * FRAME : (i + 1) * FRAME]) for i in range(n)]
    lost = (marks + [False] * n)[:n]
    out, counts = receive(payloads, lost, CODECS[codec])
    try:
        write_wav(out_wav, out)
    except OSError as exc:
        raise click.ClickException(f"cannot write {out_wav}: {exc}") from None
    click.echo(
        f"{counts['packets']} packets, {counts['lost']} lost, "
        f"{counts['concealed_frames']} frames concealed, "
        f"{counts['stretched_samples']:+d} samples stretched; wrote {out_wav} "
        f"({len(out) / RATE:.2f} s)",
        err=True,
    )
