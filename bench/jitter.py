"""Adaptive jitter buffer against fixed buffers on synthetic delay traces.

Run `python bench/jitter.py` (add `--seconds 300 --seeds 5` for steadier
figures, `--trace spikes` for one trace). Each trace is a seeded series of
network delays for a 20 ms G.711-like stream; the stream's audio is a
synthetic voice (harmonics with a wandering pitch, pauses) so that the time
stretcher sees realistic material. Three receivers play each trace:

- adaptive: `rtpmedia.jitterbuffer.JitterBuffer` with `rtpmedia.timestretch`,
  driven by a 20 ms tick exactly as the relay will drive it;
- fixed 60: playout anchored 60 ms after the first packet's arrival, on the
  receiver's clock, late packets dropped;
- oracle: the smallest fixed delay (above the trace's fastest packet, with
  skew compensated) whose late loss is at most 1%, chosen after the fact.

Delay is the mean, over played frames, of play time minus send time minus
the trace's smallest network delay. Late % counts the frames that could not be
played in their turn (concealed or dropped) per frame sent. Figures only.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rtpmedia import timestretch  # noqa: E402
from rtpmedia.jitterbuffer import JitterBuffer, PlayoutKind, PutResult  # noqa: E402

RATE = 8000
FRAME = 160
PTIME = FRAME / RATE


# -- traces ---------------------------------------------------------------------


@dataclass
class Trace:
    name: str
    send: np.ndarray  # true send times on the receiver's clock, seconds
    delay: np.ndarray  # network delay of each packet, seconds


def _send_times(n: int, skew_ppm: float = 0.0) -> np.ndarray:
    # A sender whose clock runs slow by skew_ppm sends a frame every
    # 20 ms * (1 + skew) of the receiver's time.
    return np.arange(n) * PTIME * (1.0 + skew_ppm * 1e-6)


def steady(n: int, rng: np.random.Generator) -> Trace:
    d = 0.030 + rng.gamma(2.0, 0.004, n)
    return Trace("steady", _send_times(n), d)


def bursty(n: int, rng: np.random.Generator) -> Trace:
    # Two-state network: calm (5 ms jitter) and congested (40 ms), a few
    # seconds in each.
    state = np.zeros(n, dtype=bool)
    i, bad = 0, False
    while i < n:
        length = int(rng.exponential(2.0 if bad else 6.0) / PTIME) + 1
        state[i : i + length] = bad
        i, bad = i + length, not bad
    jitter = np.where(state, rng.gamma(2.0, 0.020, n), rng.gamma(2.0, 0.0025, n))
    return Trace("bursty", _send_times(n), 0.030 + jitter)


def spikes(n: int, rng: np.random.Generator) -> Trace:
    # Mostly calm; every ~8 s the path stalls for 100-300 ms and the queued
    # packets then arrive back to back (delay falls by 20 ms per packet).
    d = 0.030 + rng.gamma(2.0, 0.002, n)
    i = int(rng.exponential(8.0) / PTIME)
    while i < n:
        peak = rng.uniform(0.1, 0.3)
        k = 0
        while i + k < n and peak - k * PTIME > 0:
            d[i + k] += peak - k * PTIME
            k += 1
        i += k + int(rng.exponential(8.0) / PTIME)
    return Trace("spikes", _send_times(n), d)


def pareto(n: int, rng: np.random.Generator) -> Trace:
    # Heavy tail: Pareto(shape 2.5, 4 ms scale), capped at 400 ms.
    d = 0.030 + np.minimum((rng.pareto(2.5, n) + 1.0) * 0.004 - 0.004, 0.4)
    return Trace("pareto", _send_times(n), d)


def skew_slow(n: int, rng: np.random.Generator) -> Trace:
    t = steady(n, rng)
    return Trace("skew -500ppm", _send_times(n, 500.0), t.delay)


def skew_fast(n: int, rng: np.random.Generator) -> Trace:
    t = steady(n, rng)
    return Trace("skew +500ppm", _send_times(n, -500.0), t.delay)


TRACES: dict[str, Callable[[int, np.random.Generator], Trace]] = {
    "steady": steady,
    "bursty": bursty,
    "spikes": spikes,
    "pareto": pareto,
    "skew-slow": skew_slow,
    "skew-fast": skew_fast,
}


def voice(n_samples: int, rng: np.random.Generator) -> np.ndarray:
    """Voiced segments (5 harmonics, wandering pitch) separated by pauses."""
    out = np.zeros(n_samples)
    i = 0
    while i < n_samples:
        length = int(rng.uniform(0.3, 1.5) * RATE)
        seg = min(length, n_samples - i)
        f0 = rng.uniform(90, 250) * (1 + 0.1 * np.sin(np.linspace(0, 3, seg)))
        phase = 2 * np.pi * np.cumsum(f0) / RATE
        env = np.sin(np.linspace(0, np.pi, seg)) ** 0.5
        s = sum(np.sin(k * phase) / k for k in range(1, 6))
        out[i : i + seg] = 6000 * env * s
        i += seg + int(rng.uniform(0.1, 0.6) * RATE)
    out += rng.normal(0, 20, n_samples)
    return np.clip(out, -32768, 32767).astype(np.int16)


# -- receivers ------------------------------------------------------------------


@dataclass
class Result:
    delay_ms: float
    late_pct: float
    extra: str = ""


def run_adaptive(tr: Trace, audio: np.ndarray, phase: float, **params: float) -> Result:
    n = len(tr.send)
    arrival = tr.send + tr.delay
    order = np.argsort(arrival, kind="stable")
    jb: JitterBuffer[np.ndarray] = JitterBuffer(**params)
    fifo: list[np.ndarray] = []
    fifo_len = 0
    # (seq, samples before it in the fifo when queued, tick time) per frame
    play_time = np.full(n, np.nan)
    conceal_times: list[float] = []
    overflow = 0
    j = 0
    t = phase
    end = arrival.max() + 1.5
    while t < end:
        while j < n and arrival[order[j]] <= t:
            k = int(order[j])
            res = jb.put(
                k & 0xFFFF,
                (k * FRAME + 12345) & 0xFFFFFFFF,
                0x1234,
                k == 0,
                audio[k * FRAME : (k + 1) * FRAME],
                float(arrival[k]),
            )
            j += 1
            if res is PutResult.LATE:
                overflow -= 1
        while fifo_len < FRAME:
            out = jb.get(t, fifo_len)
            if out.kind is PlayoutKind.EMPTY or out.kind is PlayoutKind.CONCEAL:
                chunk = np.zeros(FRAME, dtype=np.int16)
                if out.kind is PlayoutKind.CONCEAL:
                    conceal_times.append(t)
            else:
                start = fifo_len
                for f in out.frames:
                    seq = (f.timestamp - 12345) & 0xFFFFFFFF
                    play_time[seq // FRAME] = t + start / RATE
                    start += FRAME
                chunk = np.concatenate([f.payload for f in out.frames])
                if out.kind is PlayoutKind.ACCELERATE:
                    st = timestretch.accelerate(chunk, out.stretch_samples)
                    jb.record_stretch(-st.samples)
                    chunk = st.audio
                elif out.kind is PlayoutKind.EXPAND:
                    st = timestretch.preemptive_expand(chunk)
                    jb.record_stretch(st.samples)
                    chunk = st.audio
            fifo.append(chunk)
            fifo_len += len(chunk)
        # play one frame out of the fifo
        need = FRAME
        while need:
            head = fifo[0]
            if len(head) <= need:
                need -= len(head)
                fifo.pop(0)
            else:
                fifo[0] = head[need:]
                need = 0
        fifo_len -= FRAME
        t += PTIME
    stats = jb.stats()
    overflow += stats.packets_discarded
    base = tr.delay.min()
    played = ~np.isnan(play_time)
    d = (play_time[played] - tr.send[played] - base).mean() * 1000
    # Concealment after the last frame is the stream's end, not lateness.
    concealed = sum(1 for c in conceal_times if c <= np.nanmax(play_time))
    late = (concealed + overflow) / n * 100
    extra = (
        f"stretch -{stats.removed_samples_for_acceleration / RATE:.2f}s"
        f" +{stats.inserted_samples_for_deceleration / RATE:.2f}s"
    )
    return Result(d, late, extra)


def _next_tick(t: np.ndarray | float, phase: float) -> np.ndarray:
    return np.ceil((np.asarray(t) - phase) / PTIME - 1e-9) * PTIME + phase


def run_fixed(tr: Trace, delay: float, phase: float) -> Result:
    """Playout 60 ms after the first packet, on the receiver's tick."""
    arrival = tr.send + tr.delay
    play = _next_tick(arrival[0] + delay, phase) + np.arange(len(arrival)) * PTIME
    ok = arrival <= play
    base = tr.delay.min()
    d = (play[ok] - tr.send[ok] - base).mean() * 1000
    return Result(d, (~ok).mean() * 100)


def run_ideal(tr: Trace, max_late: float = 0.01) -> Result:
    """The smallest fixed delay with at most 1% late, played at any instant."""
    rel = np.sort(tr.delay - tr.delay.min())
    k = int(np.floor(len(rel) * (1 - max_late)))  # frames allowed on time
    d = rel[max(k - 1, 0)]
    late = (rel > d).mean() * 100
    return Result(d * 1000, late)


def run_oracle(tr: Trace, phase: float, max_late: float = 0.01) -> Result:
    """The smallest fixed delay with at most 1% late, on the receiver's tick.

    A frame delayed by D plays at the first tick at or after send + base + D
    (a receiver that knew the skew); the delay searched is D, the delay
    reported is the mean of what the ticks make of it.
    """
    base = tr.delay.min()
    arrival = tr.send + tr.delay
    lo, hi = 0.0, float(tr.delay.max() - base) + PTIME
    for _ in range(40):
        mid = (lo + hi) / 2
        play = _next_tick(tr.send + base + mid, phase)
        if (arrival > play).mean() <= max_late:
            hi = mid
        else:
            lo = mid
    play = _next_tick(tr.send + base + hi, phase)
    ok = arrival <= play
    d = (play[ok] - tr.send[ok] - base).mean() * 1000
    return Result(d, (~ok).mean() * 100)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--trace", choices=sorted(TRACES), action="append")
    ap.add_argument("--quantile", type=float)
    ap.add_argument("--forget", type=float)
    ap.add_argument("--late-target", type=float)
    ap.add_argument("--bucket", type=float)
    ap.add_argument("--min-window", type=float)
    args = ap.parse_args(argv)
    params: dict[str, float] = {}
    if args.quantile:
        params["initial_quantile"] = args.quantile
    if args.forget:
        params["forget"] = args.forget
    if args.late_target:
        params["late_loss_target"] = args.late_target
    if args.bucket:
        params["bucket"] = args.bucket
    if args.min_window:
        params["min_window"] = args.min_window
    n = int(args.seconds / PTIME)
    names = args.trace or list(TRACES)
    print(f"{args.seconds:.0f} s per trace, seeds 0-{args.seeds - 1} (mean over seeds)")
    header = (
        f"{'trace':14} {'adaptive ms':>11} {'late %':>6} {'worst':>5}  {'fixed60 ms':>10}"
        f" {'late %':>6}  {'oracle ms':>9} {'late %':>6}  {'adaptive/oracle':>15}"
        f"  {'ideal ms':>8}"
    )
    print(header)
    for name in names:
        rows = []
        for seed in range(args.seeds):
            rng = np.random.default_rng(seed)
            tr = TRACES[name](n, rng)
            audio = voice(n * FRAME, np.random.default_rng(1000 + seed))
            phase = float(rng.uniform(0, PTIME))
            rows.append(
                (
                    run_adaptive(tr, audio, phase, **params),
                    run_fixed(tr, 0.060, phase),
                    run_oracle(tr, phase),
                    run_ideal(tr),
                )
            )
        a = [r[0] for r in rows]
        f = [r[1] for r in rows]
        o = [r[2] for r in rows]
        ideal = [r[3] for r in rows]

        def mean(xs: list[Result], attr: str) -> float:
            return float(np.mean([getattr(x, attr) for x in xs]))

        ratio = mean(a, "delay_ms") / max(mean(o, "delay_ms"), 1e-9)
        print(
            f"{tr.name:14} {mean(a, 'delay_ms'):11.1f} {mean(a, 'late_pct'):6.2f}"
            f" {max(x.late_pct for x in a):5.2f}"
            f"  {mean(f, 'delay_ms'):10.1f} {mean(f, 'late_pct'):6.2f}"
            f"  {mean(o, 'delay_ms'):9.1f} {mean(o, 'late_pct'):6.2f}  {ratio:15.2f}"
            f"  {mean(ideal, 'delay_ms'):8.1f}"
        )


if __name__ == "__main__":
    main()
