"""PESQ of packet loss concealers under uniform and bursty loss.

Speech is generated with espeak-ng (several voices and sentences), resampled
to 8 kHz mono with sox, encoded with G.711 mu-law in 20 ms packets, and the
packets are dropped under five loss conditions (uniform 5, 10, 20%;
Gilbert-Elliott bursts at about 9% and 25% mean loss), several seeds each.
Each concealer repairs the stream and PESQ (ITU-T P.862 narrow band, the
`pesq` package) scores the result against the clean speech.

    .venv/bin/python bench/plc.py                 # the table in docs/benchmarks.md
    .venv/bin/python bench/plc.py --seeds 2       # quicker
    .venv/bin/python bench/plc.py --ablate        # ours with each step switched off
    .venv/bin/python bench/plc.py --corpus flite  # other talkers (Debian's flite)

Needs espeak-ng and sox (Debian packages of the same names), `pip install
pesq`, and, for the spandsp column, Debian's libspandsp2.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import functools
import os
import shutil
import subprocess
import sys
import tempfile
import wave
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rtpmedia import codecs, plc  # noqa: E402

RATE = plc.RATE
FRAME = plc.FRAME
CACHE = Path(__file__).resolve().parent / "out" / "plc"

# (voice, sentence): male and female voices, US and British English.
SPEECH = [
    (
        "en-us",
        "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background.",
    ),
    (
        "en-us+f3",
        "It is easy to tell the depth of a well. These days a chicken leg is a rare dish.",
    ),
    ("en-gb", "Rice is often served in round bowls. The juice of lemons makes fine punch."),
    (
        "en-gb+f4",
        "The box was thrown beside the parked truck. The hogs were fed chopped corn and garbage.",
    ),
    ("en-us+m3", "Four hours of steady work faced us. A large size in stockings is hard to sell."),
    (
        "en-gb+m7",
        "A king ruled the state in the early days. The ship was torn apart on the sharp reef.",
    ),
]

CONDITIONS: dict[str, tuple[str, float, float]] = {
    # name: (model, p, r) -- uniform: p is the loss rate;
    # Gilbert-Elliott: p = P(good -> bad), r = P(bad -> good), every packet in bad lost.
    "uniform 5%": ("uniform", 0.05, 0.0),
    "uniform 10%": ("uniform", 0.10, 0.0),
    "uniform 20%": ("uniform", 0.20, 0.0),
    "bursty 9%": ("gilbert", 0.05, 0.50),  # mean loss 9.1%, mean burst 2 packets
    "bursty 25%": ("gilbert", 0.10, 0.30),  # mean loss 25%, mean burst 3.3 packets
}


# A second corpus from another synthesiser (Debian's flite: diphone and
# statistical voices), to check that conclusions do not hang on espeak-ng's
# formant synthesis.
FLITE_SPEECH = [
    (voice, text)
    for voice in ("kal16", "awb", "rms", "slt")
    for text in (SPEECH[0][1], SPEECH[2][1])
]


def have_tools(corpus: str = "espeak") -> bool:
    synth = "flite" if corpus == "flite" else "espeak-ng"
    return shutil.which(synth) is not None and shutil.which("sox") is not None


def speak(voice: str, text: str, path: Path, synth: str = "espeak-ng") -> None:
    """Speech from espeak-ng or flite, as 8 kHz mono 16-bit WAV (sox resamples)."""
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.wav"
        if synth == "flite":
            subprocess.run(["flite", "-voice", voice, "-t", text, "-o", str(raw)], check=True)
        else:
            subprocess.run(["espeak-ng", "-v", voice, "-w", str(raw), text], check=True)
        subprocess.run(
            ["sox", str(raw), "-r", str(RATE), "-c", "1", "-b", "16", str(path)],
            check=True,
        )


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        assert w.getframerate() == RATE and w.getnchannels() == 1 and w.getsampwidth() == 2
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.int16)


def speech_samples(corpus: str = "espeak") -> list[np.ndarray]:
    CACHE.mkdir(parents=True, exist_ok=True)
    out = []
    flite = corpus == "flite"
    for i, (voice, text) in enumerate(FLITE_SPEECH if flite else SPEECH):
        path = CACHE / (f"flite{i}.wav" if flite else f"speech{i}.wav")
        if not path.exists():
            speak(voice, text, path, "flite" if flite else "espeak-ng")
        x = read_wav(path)
        out.append(x[: len(x) // FRAME * FRAME])
    return out


def codec_roundtrip(x: np.ndarray, codec: str = "PCMU/8000") -> np.ndarray:
    """Encode and decode with G.711 (what the packets carry)."""
    c = codecs.get(codec)
    return c.decode_array(c.encode_array(x))


# --- loss patterns -------------------------------------------------------------


def loss_pattern(model: str, p: float, r: float, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if model == "uniform":
        return np.asarray(rng.random(n) < p)
    lost = np.zeros(n, dtype=bool)
    bad = rng.random() < p / (p + r)  # start in the stationary distribution
    for i in range(n):
        lost[i] = bad
        bad = rng.random() >= r if bad else rng.random() < p
    return lost


# --- spandsp through ctypes ------------------------------------------------------


# From spandsp/plc.h: PLC_PITCH_MIN 120, PLC_HISTORY_LEN = 160 + 120.
class _PlcState(ctypes.Structure):
    _fields_ = [
        ("missing_samples", ctypes.c_int),
        ("pitch_offset", ctypes.c_int),
        ("pitch", ctypes.c_int),
        ("pitchbuf", ctypes.c_float * 120),
        ("history", ctypes.c_int16 * 280),
        ("buf_ptr", ctypes.c_int),
    ]


def _spandsp() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("spandsp") or "libspandsp.so.2"
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        return None
    for f in ("plc_rx", "plc_fillin"):
        getattr(lib, f).argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int16), ctypes.c_int]
        getattr(lib, f).restype = ctypes.c_int
    lib.plc_init.argtypes = [ctypes.c_void_p]
    lib.plc_init.restype = ctypes.c_void_p
    return lib


class SpanDSP(plc.PacketConcealer):
    """spandsp's plc.c, the PLC of FreeSWITCH and many others."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self._lib = lib
        self._state = _PlcState()
        lib.plc_init(ctypes.byref(self._state))

    def good(self, frame: npt.ArrayLike, *, owned: bool = False) -> plc.Frame:
        buf = np.ascontiguousarray(frame, dtype=np.int16).copy()
        self._lib.plc_rx(
            ctypes.byref(self._state), buf.ctypes.data_as(ctypes.POINTER(ctypes.c_int16)), FRAME
        )
        return buf

    def conceal(self, next_frame: npt.ArrayLike | None = None) -> plc.Frame:
        buf = np.zeros(FRAME, dtype=np.int16)
        self._lib.plc_fillin(
            ctypes.byref(self._state), buf.ctypes.data_as(ctypes.POINTER(ctypes.c_int16)), FRAME
        )
        return buf


# --- running ---------------------------------------------------------------------


def methods(ablate: bool) -> dict[str, Callable[[], plc.PacketConcealer]]:
    m: dict[str, Callable[[], plc.PacketConcealer]] = {
        "silence": plc.Silence,
        "repeat": plc.Repeat,
    }
    if _spandsp() is not None:
        m["spandsp"] = lambda: SpanDSP(_spandsp())  # type: ignore[arg-type]
    m["G.711 App. I"] = plc.G711AppendixI
    m["ours, no lookahead"] = lambda: plc.Concealer(tuning=plc.Tuning(lookahead=False))
    m["ours"] = plc.Concealer
    if ablate:
        for k in ("lpc", "fractional_pitch", "comfort_noise"):
            m[f"ours, no {k}"] = functools.partial(plc.Concealer, tuning=plc.Tuning(**{k: False}))
    return m


def conceal_stream(c: plc.PacketConcealer, decoded: np.ndarray, lost: np.ndarray) -> np.ndarray:
    frames = decoded.reshape(-1, FRAME)
    out = []
    for i, f in enumerate(frames):
        if lost[i]:
            nxt = frames[i + 1] if i + 1 < len(frames) and not lost[i + 1] else None
            out.append(c.conceal(nxt))
        else:
            out.append(c.good(f))
    y = np.concatenate(out)
    if c.delay:  # compare like with like: take out a concealer's constant delay
        y = np.concatenate([y[c.delay :], np.zeros(c.delay, dtype=np.int16)])
    return y


def _score(job: tuple[int, str, int, bool, str]) -> dict[str, float]:
    from pesq import pesq

    idx, cond, seed, ablate, corpus = job
    clean = speech_samples(corpus)[idx]
    decoded = codec_roundtrip(clean)
    model, p, r = CONDITIONS[cond]
    lost = loss_pattern(model, p, r, len(clean) // FRAME, seed * 1000 + idx)
    ref = clean.astype(np.float64)
    scores = {}
    for name, make in methods(ablate).items():
        y = conceal_stream(make(), decoded, lost)
        scores[name] = pesq(RATE, ref, y.astype(np.float64), "nb")
    return scores


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--ablate", action="store_true", help="also ours with each step switched off")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument(
        "--corpus",
        choices=("espeak", "flite"),
        default="espeak",
        help="talkers from espeak-ng (the documented table) or from flite (a cross-check)",
    )
    args = ap.parse_args()
    if not have_tools(args.corpus):
        synth = "flite" if args.corpus == "flite" else "espeak-ng"
        sys.exit(f"bench/plc.py needs {synth} and sox (apt-get install {synth} sox)")
    samples = speech_samples(args.corpus)
    names = list(methods(args.ablate))
    jobs = [
        (i, c, s, args.ablate, args.corpus)
        for c in CONDITIONS
        for i in range(len(samples))
        for s in range(args.seeds)
    ]
    with ProcessPoolExecutor(args.jobs) as ex:
        results = list(ex.map(_score, jobs))
    table: dict[str, dict[str, list[float]]] = {c: {n: [] for n in names} for c in CONDITIONS}
    for (_i, c, _s, _a, _c), res in zip(jobs, results, strict=True):
        for n, v in res.items():
            table[c][n].append(v)
    secs = sum(len(x) for x in samples) / RATE
    print(
        f"PESQ (P.862 narrow band, mean of {len(samples)} {args.corpus} recordings x {args.seeds} seeds, "
        f"{secs:.0f} s of speech per seed), G.711 mu-law, 20 ms packets\n"
    )
    print("| condition | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for c in CONDITIONS:
        print(f"| {c} | " + " | ".join(f"{np.mean(table[c][n]):.2f}" for n in names) + " |")


if __name__ == "__main__":
    main()
