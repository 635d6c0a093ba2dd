"""CPU cost of one stream's receive pipeline (`rtpmedia.receiver.Receiver`) per 20 ms frame.

N streams of synthetic voice (harmonics with a wandering pitch, pauses with
low noise; RTP sent without DTX) in PCMU: packets sent every 20 ms arrive
after a fixed delay plus small jitter (exponential, mean `--jitter` ms),
some dropped (0% and 5% loss), and every stream's `frame(now)` is pulled on a
20 ms clock, as the relay's media-repair tick does. Each `frame` call is
timed and classed by what the jitter buffer decided for it: `normal`,
`conceal` (a missing frame), `stretch` (accelerate or expand tried).

BEFORE and AFTER run side by side in one process, tick by tick on the same
packets: BEFORE is `rtpmedia/{receiver,jitterbuffer,plc,timestretch}.py` as
committed at `--before` (default `main`), loaded from git into a temporary
package; AFTER is the working tree. Both must give the same audio sample for
sample (the changes are meant to keep behaviour); the last line says whether
they did.

    .venv/bin/python bench/receiver.py [--streams 50] [--seconds 20] [--before main] [--ptime 30]
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rtpmedia.codecs import PCMU  # noqa: E402
from rtpmedia.rtp import RtpPacket  # noqa: E402

RATE = 8000
FRAME = 160
TICK = 0.020
MODULES = ("receiver", "jitterbuffer", "plc", "timestretch", "lpc", "reframe")


def load_before(ref: str) -> ModuleType:
    """`rtpmedia.receiver` and the modules it uses as at git `ref`, as package `rxbefore`."""
    pkg = Path(tempfile.mkdtemp(prefix="rxbefore-")) / "rxbefore"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for name in MODULES:
        shown = subprocess.run(["git", "-C", str(ROOT), "show", f"{ref}:rtpmedia/{name}.py"],
                               capture_output=True, text=True)
        if shown.returncode:
            continue  # not there yet at `ref` (nothing there imports it)
        src = shown.stdout
        for other in MODULES:
            src = src.replace(f"from rtpmedia.{other} import", f"from rxbefore.{other} import")
            src = src.replace(f"from rtpmedia import {other}", f"from rxbefore import {other}")
        (pkg / f"{name}.py").write_text(src)
    sys.path.insert(0, str(pkg.parent))
    return importlib.import_module("rxbefore.receiver")


def voice(n_samples: int, rng: np.random.Generator) -> np.ndarray:
    """Voiced segments (5 harmonics, wandering pitch) separated by pauses (as bench/jitter.py)."""
    out = np.zeros(n_samples)
    i = 0
    while i < n_samples:
        seg = min(int(rng.uniform(0.3, 1.5) * RATE), n_samples - i)
        f0 = rng.uniform(90, 250) * (1 + 0.1 * np.sin(np.linspace(0, 3, seg)))
        phase = 2 * np.pi * np.cumsum(f0) / RATE
        env = np.sin(np.linspace(0, np.pi, seg)) ** 0.5
        out[i : i + seg] = 6000 * env * sum(np.sin(k * phase) / k for k in range(1, 6))
        i += seg + int(rng.uniform(0.1, 0.6) * RATE)
    out += rng.normal(0, 20, n_samples)
    return np.clip(out, -32768, 32767).astype(np.int16)


def stream_packets(n_frames: int, loss: float, jitter: float, rng: np.random.Generator,
                   ptimes: tuple[int, ...] = (20,)) -> list[list[tuple[float, bytes]]]:
    """(arrival time, datagram) of one stream, in arrival order: the same audio sent in
    packets of each of `ptimes` ms (each with its own losses and jitter)."""
    audio = voice(n_frames * FRAME, rng)
    ssrc = int(rng.integers(1, 2**31))
    seq0, ts0 = int(rng.integers(0, 65536)), int(rng.integers(0, 2**32))
    start = rng.uniform(0, TICK)
    streams = []
    for ptime in ptimes:
        size = ptime * RATE // 1000
        out = []
        for i in range(n_frames * FRAME // size):
            if i and rng.random() < loss:
                continue
            payload = PCMU.encode(audio[i * size : (i + 1) * size])
            packet = RtpPacket(payload_type=0, sequence_number=(seq0 + i) & 0xFFFF,
                               timestamp=(ts0 + i * size) & 0xFFFFFFFF, ssrc=ssrc,
                               marker=i == 0, payload=payload).serialize()
            arrival = start + i * ptime / 1000 + 0.005 + min(rng.exponential(jitter), 0.1)
            out.append((arrival, packet))
        out.sort(key=lambda p: p[0])
        streams.append(out)
    return streams


class Timed:
    """One Receiver and the cost of each of its `frame` calls, by playout kind."""

    def __init__(self, receiver_cls: Callable[..., Any]) -> None:
        self.rx = receiver_cls({0: PCMU})
        self.kinds: list[str] = []
        get = self.rx.jitter.get

        def spy(now: float, queued: int = 0) -> Any:
            p = get(now, queued)
            self.kinds.append(p.kind.value)
            return p

        self.rx.jitter.get = spy  # the bench's own probe; both versions carry it alike
        self.cost: dict[str, list[float]] = {"normal": [], "conceal": [], "stretch": []}
        self.put_ns: list[int] = []
        self.out: list[np.ndarray] = []

    def put(self, data: bytes, arrival: float) -> None:
        t0 = time.perf_counter_ns()
        self.rx.put_packet(data, arrival)
        self.put_ns.append(time.perf_counter_ns() - t0)

    def frame(self, now: float) -> None:
        self.kinds.clear()
        t0 = time.perf_counter_ns()
        f = self.rx.frame(now)
        dt = (time.perf_counter_ns() - t0) / 1000.0
        if f is None:
            return
        self.out.append(f)
        kinds = set(self.kinds)
        if "conceal" in kinds:
            self.cost["conceal"].append(dt)
        elif kinds & {"accelerate", "expand"}:
            self.cost["stretch"].append(dt)
        else:
            self.cost["normal"].append(dt)


def run(loss: float, args: argparse.Namespace, before_cls: Any, after_cls: Any,
        play: Callable[..., list[Any]] | None = None) -> bool:
    rng = np.random.default_rng(args.seed)
    n_frames = int(args.seconds / TICK)
    ptimes = (20,) if args.ptime == 20 else (20, args.ptime)
    made = [stream_packets(n_frames, loss, args.jitter / 1000.0, rng, ptimes)
            for _ in range(args.streams)]
    # BEFORE gets 20 ms packets; AFTER the same unless --ptime says otherwise.
    streams = {"before": [m[0] for m in made], "after": [m[-1] for m in made]}
    sides = {"before": [Timed(before_cls) for _ in made],
             "after": [Timed(after_cls) for _ in made]}
    cursor = {"before": [0] * len(made), "after": [0] * len(made)}
    batch_ns = {"before": 0, "after": 0}
    for tick in range(n_frames + 10):
        now = (tick + 1) * TICK
        for i in range(len(made)):
            # Alternate which side goes first so that neither has the warm caches.
            for side in (("before", "after") if tick % 2 else ("after", "before")):
                packets = streams[side][i]
                j = cursor[side][i]
                while j < len(packets) and packets[j][0] <= now:
                    arrival, data = packets[j]
                    sides[side][i].put(data, arrival)
                    j += 1
                cursor[side][i] = j
        for side in (("before", "after") if tick % 2 else ("after", "before")):
            if side == "after" and play is not None:
                # The relay's tick: every stream at once through `receiver.play`.
                t0 = time.perf_counter_ns()
                got = play([t.rx for t in sides[side]], now)
                batch_ns[side] += time.perf_counter_ns() - t0
                for t, f in zip(sides[side], got, strict=True):
                    if f is not None:
                        t.out.append(f)
                continue
            t0 = time.perf_counter_ns()
            for t in sides[side]:
                t.frame(now)
            batch_ns[side] += time.perf_counter_ns() - t0
    print(f"\n{args.streams} streams, {args.seconds:.0f} s, loss {loss:.0%}, "
          f"jitter exp. mean {args.jitter} ms"
          + (f"; AFTER is sent {args.ptime} ms packets, BEFORE 20 ms" if args.ptime != 20 else ""))
    print("| path | frames | before mean µs | before p99 | after mean µs | after p99 | ratio |")
    print("|---|---|---|---|---|---|---|")
    for path in ("normal", "conceal", "stretch", "all"):
        figs = []
        for side in ("before", "after"):
            xs = [x for t in sides[side]
                  for p, v in t.cost.items() if path in (p, "all") for x in v]
            figs.append((len(xs), float(np.mean(xs)) if xs else float("nan"),
                         float(np.percentile(xs, 99)) if xs else float("nan")))
        (n, bm, bp), (an, am, ap) = figs
        if not an:  # --batch: AFTER's frames are not timed one by one
            print(f"| {path} | {n} | {bm:.1f} | {bp:.1f} | - | - | - |")
            continue
        print(f"| {path} | {n} | {bm:.1f} | {bp:.1f} | {am:.1f} | {ap:.1f} | {bm / am:.2f}x |")
    frames = {side: sum(len(t.out) for t in sides[side]) for side in sides}
    per = {side: batch_ns[side] / 1000.0 / max(frames[side], 1) for side in sides}
    label = "receiver.play" if play is not None else "frame"
    print(f"| whole tick, per frame (after: {label}) | {frames['after']} | {per['before']:.1f} | - | "
          f"{per['after']:.1f} | - | {per['before'] / per['after']:.2f}x |")
    puts = {side: [x / 1000.0 for t in sides[side] for x in t.put_ns] for side in sides}
    print(f"| put (per packet) | {len(puts['after'])} | {np.mean(puts['before']):.1f} | "
          f"{np.percentile(puts['before'], 99):.1f} | {np.mean(puts['after']):.1f} | "
          f"{np.percentile(puts['after'], 99):.1f} | "
          f"{np.mean(puts['before']) / np.mean(puts['after']):.2f}x |")
    if args.ptime != 20:
        # Packets of another duration are fewer or more than frames: per 20 ms of audio.
        audio = {side: sum(puts[side]) / n_frames / len(made) for side in sides}
        print(f"| put (per 20 ms of audio) | {n_frames * len(made)} | {audio['before']:.1f} | - | "
              f"{audio['after']:.1f} | - | {audio['before'] / audio['after']:.2f}x |")
    same = all(len(b.out) == len(a.out) and all(np.array_equal(x, y) for x, y in zip(b.out, a.out, strict=True))
               for b, a in zip(sides["before"], sides["after"], strict=True))
    return same


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--jitter", type=float, default=3.0, help="mean extra delay, ms")
    ap.add_argument("--loss", default="0,0.05")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--before", default="main", help="git ref of the BEFORE modules")
    ap.add_argument("--ptime", type=int, default=20, choices=(10, 20, 30, 40, 60),
                    help="AFTER is sent packets of this many ms (cut into 20 ms frames by "
                         "rtpmedia/reframe.py), BEFORE the same audio in 20 ms packets: the "
                         "cost of reframing (the audio then differs)")
    ap.add_argument("--batch", action="store_true",
                    help="AFTER plays every stream's frame in one receiver.play per tick "
                         "(the relay's way; per-path rows then cover BEFORE only)")
    args = ap.parse_args()
    before_cls = load_before(args.before).Receiver
    after_mod = importlib.import_module("rtpmedia.receiver")
    after_cls = after_mod.Receiver
    play = after_mod.play if args.batch else None
    same = True
    for loss in (float(x) for x in args.loss.split(",")):
        same &= run(loss, args, before_cls, after_cls, play)
    print(f"\nBEFORE ({args.before}) and AFTER (working tree) audio identical: "
          f"{'yes' if same else 'NO'}"
          + (" (expected: their packets differ)" if args.ptime != 20 else ""))


if __name__ == "__main__":
    main()
