"""CPU cost per concealed frame when many streams conceal on the same tick (`plc.conceal_many`).

The relay conceals every repaired stream's lost frame on one 20 ms tick. For
batches of k streams (mixed: a third start a loss without the next frame, a
third start one with it, a third continue a loss already one frame long),
this times one tick's concealment two ways, side by side in one process on
the same states:

* BEFORE: `rtpmedia/plc.py` as committed at `--before` (default `main`),
  loaded from git into a temporary module, one `conceal` call per stream;
* AFTER: the working tree's `plc.conceal_many` over the whole batch.

Each stream is synthetic voice (harmonics with a wandering pitch, as
bench/receiver.py) with its own seed; every repetition starts from new
concealers fed the same frames, with an earlier loss (as on a long call: the
per-stream caches filled) and 140 ms of received audio before the timed one. It prints the median µs per concealed frame
for each k and kind, and whether BEFORE and AFTER gave the same audio, sample
for sample.

    .venv/bin/python bench/plc_batch.py [--reps 30] [--sizes 1,10,50,200] [--before main]
    .venv/bin/python bench/plc_batch.py --speech   # also: bench/plc.py's talkers, all at once

`--speech` also conceals bench/plc.py's espeak-ng recordings (PCMU, its
five loss conditions, `--seeds` each) as concurrent streams of one relay:
AFTER conceals every tick's losses of all of them in one `conceal_many`,
BEFORE one stream at a time; it counts the samples that differ (none means
bench/plc.py's PESQ table cannot change).
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rtpmedia import plc  # noqa: E402

FRAME = plc.FRAME
RATE = plc.RATE
KINDS = ("first", "first+next", "continued")


def load_before(ref: str) -> ModuleType:
    """`rtpmedia/plc.py` as at git `ref`, as module `plcbefore`."""
    src = subprocess.run(["git", "-C", str(ROOT), "show", f"{ref}:rtpmedia/plc.py"],
                         check=True, capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp(prefix="plcbefore-")) / "plcbefore.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("plcbefore", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["plcbefore"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def voice(n_samples: int, rng: np.random.Generator) -> np.ndarray:
    """Voiced segments (5 harmonics, wandering pitch) with low noise, no pauses."""
    f0 = rng.uniform(90, 250) * (1 + 0.1 * np.sin(np.linspace(0, 3, n_samples)))
    phase = 2 * np.pi * np.cumsum(f0) / RATE + rng.uniform(0, 6)
    x = 6000 * sum(np.sin(k * phase) / k for k in range(1, 6)) + rng.normal(0, 20, n_samples)
    return np.clip(x, -32768, 32767).astype(np.int16)


class Streams:
    """k streams' frames and the kind of loss each has on the timed tick."""

    def __init__(self, k: int) -> None:
        self.kinds = [KINDS[i % 3] for i in range(k)]
        self.frames = [voice(16 * FRAME, np.random.default_rng(1000 + i)).reshape(-1, FRAME)
                       for i in range(k)]

    def prepare(self, mod: Any) -> list[tuple[Any, np.ndarray | None]]:
        """Concealers brought to the timed tick as on a long call: an earlier loss (whose
        fades each concealer keeps), a history of received frames, then the timed
        loss; the (concealer, next frame) requests."""
        requests = []
        for i, (kind, fr) in enumerate(zip(self.kinds, self.frames, strict=True)):
            c = mod.Concealer(seed=i)
            for f in fr[:3]:
                c.good(f)
            c.conceal()
            c.conceal()
            for f in fr[5:12]:
                c.good(f)
            if kind == "continued":
                c.conceal()  # frame 12 lost, frame 13 is the timed one
            requests.append((c, fr[13] if kind == "first+next" else None))
        return requests


def time_tick(before: ModuleType, streams: Streams, reps: int) -> tuple[float, float, bool]:
    """Median µs per concealed frame, BEFORE and AFTER, and whether the audio matched."""
    tb, ta = [], []
    same = True
    k = len(streams.kinds)
    for rep in range(reps):
        rb = streams.prepare(before)
        ra = streams.prepare(plc)
        gc.collect()
        gc.disable()
        # Each goes first on every other tick, so that neither gains from the other's caches.
        for which in ((0, 1) if rep % 2 else (1, 0)):
            t0 = time.perf_counter_ns()
            if which == 0:
                out_b = [c.conceal(n) for c, n in rb]
            else:
                out_a = plc.conceal_many(ra)
            (tb if which == 0 else ta).append((time.perf_counter_ns() - t0) / 1e3 / k)
        gc.enable()
        same &= all(np.array_equal(x, y) for x, y in zip(out_b, out_a, strict=True))
    return statistics.median(tb), statistics.median(ta), same


def speech_check(before: ModuleType, seeds: int) -> tuple[int, int, int]:
    """(differing samples, concealed samples, streams) over bench/plc.py's talkers, batched."""
    sys.path.insert(0, str(ROOT / "bench"))
    import plc as bench_plc  # bench/plc.py (rtpmedia's plc is imported as `plc` here too)

    if not bench_plc.have_tools():
        sys.exit("--speech needs espeak-ng and sox (apt-get install espeak-ng sox)")
    clips = [bench_plc.codec_roundtrip(x).reshape(-1, FRAME) for x in bench_plc.speech_samples()]
    streams = []  # (frames, lost, lookahead): bench/plc.py's "ours" and "ours, no lookahead"
    for model, p, r in bench_plc.CONDITIONS.values():
        for idx, fr in enumerate(clips):
            for seed in range(seeds):
                lost = bench_plc.loss_pattern(model, p, r, len(fr), seed * 1000 + idx)
                streams += [(fr, lost, True), (fr, lost, False)]
    cb = [before.Concealer(tuning=before.Tuning(lookahead=la)) for _, _, la in streams]
    ca = [plc.Concealer(tuning=plc.Tuning(lookahead=la)) for _, _, la in streams]
    differ = concealed = 0
    for f in range(max(len(fr) for fr, _, _ in streams)):
        batch: list[tuple[Any, np.ndarray | None]] = []
        want = []
        for s, (fr, lost, _) in enumerate(streams):
            if f >= len(fr):
                continue
            if lost[f]:
                nxt = fr[f + 1] if f + 1 < len(fr) and not lost[f + 1] else None
                want.append(cb[s].conceal(nxt))
                batch.append((ca[s], nxt))
            else:
                differ += int(np.count_nonzero(cb[s].good(fr[f]) != ca[s].good(fr[f])))
        for x, y in zip(want, plc.conceal_many(batch), strict=True):
            differ += int(np.count_nonzero(x != y))
            concealed += FRAME
    return differ, concealed, len(streams)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--sizes", default="1,10,50,200", help="batch sizes k, comma-separated")
    ap.add_argument("--before", default="main", help="git ref of the BEFORE plc.py")
    ap.add_argument("--speech", action="store_true",
                    help="also compare BEFORE and AFTER on bench/plc.py's talkers, batched")
    ap.add_argument("--seeds", type=int, default=2, help="loss patterns per talker (--speech)")
    args = ap.parse_args()
    before = load_before(args.before)
    sizes = [int(s) for s in args.sizes.split(",")]
    all_same = True
    print(f"µs per concealed frame (median of {args.reps} ticks); BEFORE = {args.before}, "
          "one conceal() each; AFTER = conceal_many over the batch\n")
    print("| k | batch | before | after | ratio |")
    print("|---:|---|---:|---:|---:|")
    rows: list[tuple[int, str, Streams]] = []
    for kind in KINDS:  # k = 1 for each kind on its own
        s = Streams(1)
        s.kinds = [kind]
        rows.append((1, kind, s))
    rows += [(k, "mixed", Streams(k)) for k in sizes if k > 1]
    for k, label, s in rows:
        b, a, same = time_tick(before, s, args.reps)
        all_same &= same
        print(f"| {k} | {label} | {b:.0f} | {a:.1f} | {b / a:.1f}x |")
    print(f"\nsame audio before and after, sample for sample: {'yes' if all_same else 'NO'}")
    if args.speech:
        differ, concealed, n = speech_check(before, args.seeds)
        print(f"bench/plc.py talkers, {n} streams concealed together each tick: "
              f"{differ} samples differ in {concealed} concealed")


if __name__ == "__main__":
    main()
