"""Simultaneous transcoded calls one relay process sustains in real time (issue 15: aim 500).

A real `softswitch relay --no-kernel` process gets N calls over ng: party A
speaks PCMU only and asks for transcoding (`codec: {transcode: [PCMU,
PCMA]}`), party B speaks PCMA only, so the relay converts both directions.
A sender process sends 20 ms packets from both parties of every call (50
packets/s per party, 100 per call); this process receives what the relay
sends each party. Modes, each at each N, side by side in one run:

- `forward`: both parties PCMU, no transcoding (the userspace floor);
- `transcode`: PCMU <-> PCMA per packet (payload table, payload type
  rewritten, no jitter buffer);
- `repair`: transcoding plus `media-repair` on both parties: every packet
  through a Receiver (jitter buffer, decode, concealment, stretching) and
  re-encoded on the relay's 20 ms tick; the sender drops --loss of its
  packets so that concealment runs.

Printed per run: packets offered and delivered per second (delivered: read
at the parties of every --sample-th call, scaled up), delivered/expected
(loss; for `repair` the relay's own frames, where concealment fills the
dropped ones), inter-arrival gap p99 per party (a relay that falls behind
delivers in bursts), latency p50/p99 for the modes that keep the sender's
sequence numbers (arrival minus the sender's schedule for that packet), and
the relay's CPU (100% = one core), that CPU per packet the relay received,
the calls one core would carry at that cost, and for `repair` the share of
the read parties whose last packet was still the relay's own frame
(`repaired`: repair not shed at the end, or restored since). A mode sustains N calls when
delivery is ~100%, the gap p99 stays near 20 ms and the CPU under 100%; on a
machine whose cores are shared with the sender and receiver (and anything
else), delivery and latency fail first for lack of CPU for everyone, and the
per-packet cost is the figure to compare.

With --burst N, repair runs get N more calls, transcoded only, that send for
the first half of --seconds and then stop (a burst of calls that ends: the
relay sheds repair during it and has room again after). With --before TREE
each repair run is made twice, first with the relay of TREE (another
checkout, e.g. `git archive main | tar -x -C /tmp/before`), then this one.

Run: .venv/bin/python bench/transcode.py [--calls 100,300,500] [--repair-calls 100,150,200]
     [--modes forward,transcode] [--seconds 5] [--loss 0.05] [--profile PREFIX]
     [--burst 0] [--before TREE]
The machine is shared: compare the rows of one run, not runs.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import selectors
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.relay_forward import command, start_relay, udp  # noqa: E402
from rtpmedia.codecs.g711 import PCMA, PCMU  # noqa: E402

HOST = "127.0.0.1"
TICK = 0.020
CLK_TCK = os.sysconf("SC_CLK_TCK")
PROFILE = ""
DEBUG = bool(os.environ.get("TRANSCODE_DEBUG"))
SAMPLE = 1


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def sdp(port: int, pcma: bool) -> str:
    pt, name = (8, "PCMA") if pcma else (0, "PCMU")
    return (f"v=0\r\no=- 1 1 IN IP4 {HOST}\r\ns=-\r\nc=IN IP4 {HOST}\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP {pt}\r\na=rtpmap:{pt} {name}/8000\r\n")


def port_of(body: str) -> int:
    return int(next(x for x in body.split("\r\n") if x.startswith("m=")).split()[1])


def voice(frames: int) -> np.ndarray:
    """A voiced signal (harmonics, moving envelope): concealment works on something real."""
    t = np.arange(frames * 160) / 8000
    tone = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 6))
    return (5000 * tone * (0.6 + 0.4 * np.sin(2 * np.pi * 2 * t))).astype(np.int16)


def send(parties: list[tuple[socket.socket, int, int]], seconds: float, loss: float,
         start: float, out: multiprocessing.Queue, burst_from: int) -> None:
    """Every tick, one packet from every party (pt 0 or 8), minus `loss` of them at random;
    the parties from `burst_from` on only for the first half."""
    ticks = int(seconds / TICK)
    pcm = voice(50)
    payloads = {0: [PCMU.encode(pcm[i * 160:(i + 1) * 160]) for i in range(50)],
                8: [PCMA.encode(pcm[i * 160:(i + 1) * 160]) for i in range(50)]}
    rng = random.Random(1)
    sent = 0
    for tick in range(ticks):
        due = start + tick * TICK
        pause = due - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        for sock, port, pt in parties if tick < ticks // 2 else parties[:burst_from]:
            if loss and rng.random() < loss:
                continue
            header = struct.pack("!BBHII", 0x80, pt, tick & 0xFFFF, tick * 160,
                                 sock.fileno())
            sock.sendto(header + payloads[pt][tick % 50], (HOST, port))
            sent += 1
    out.put((sent, ticks))


def run(mode: str, calls: int, seconds: float, loss: float, work: Path, burst: int = 0,
        tree: Path | None = None, label: str = "") -> None:
    relay, ctl, control = start_relay(calls + burst, work, tree)
    parties: list[tuple[socket.socket, int, int]] = []
    try:
        b_pcma = mode != "forward"
        extra: dict = {"codec": {"transcode": ["PCMU", "PCMA"]}} if b_pcma else {}
        for i in range(calls + burst):
            flags = {"flags": ["media-repair"]} if mode == "repair" and i < calls else {}
            a, b = udp(), udp()
            out = command(ctl, control, {"command": "offer", "call-id": f"c{i}", "from-tag": "A",
                                         "to-tag": "B", "sdp": sdp(a.getsockname()[1], False),
                                         **extra, **flags})
            back = command(ctl, control, {"command": "answer", "call-id": f"c{i}",
                                          "from-tag": "A", "to-tag": "B",
                                          "sdp": sdp(b.getsockname()[1], b_pcma), **flags})
            assert out.get("result") == "ok" and back.get("result") == "ok", (out, back)
            parties.append((a, port_of(back["sdp"]), 0))
            parties.append((b, port_of(out["sdp"]), 8 if b_pcma else 0))
        measure(mode, calls, relay.pid, parties, seconds, loss if mode == "repair" else 0.0,
                label or mode, 2 * calls)
        if mode == "repair":
            print(f"{'':13} {'':6} {shed_restored(ctl, control, calls)}", flush=True)
    finally:
        for sock, _, _ in parties:
            sock.close()
        relay.terminate()
        relay.wait(10)


def shed_restored(ctl: socket.socket, control: tuple[str, int], calls: int) -> str:
    """How many repaired directions the relay shed and restored (its ng query's bridge counts;
    a relay that does not count them says so)."""
    shed = restored = 0
    for i in range(calls):
        answer = command(ctl, control, {"command": "query", "call-id": f"c{i}"})
        for tag in answer.get("tags", {}).values():
            for media in tag.get("medias", []):
                bridge = media["streams"][0].get("bridge", {})
                if "shed" not in bridge:
                    return "shed/restored not counted by this relay"
                shed += bridge["shed"]
                restored += bridge["restored"]
    return f"of {2 * calls} repaired directions: shed {shed} times, restored {restored} times"


def measure(mode: str, calls: int, pid: int, parties: list[tuple[socket.socket, int, int]],
            seconds: float, loss: float, label: str, burst_from: int) -> None:
    sel = selectors.DefaultSelector()
    # Only the parties of every SAMPLE-th call are read (the others' packets are
    # dropped by their full socket buffers): a Python receiver of every packet
    # would need a core of its own at 500 calls, and the relay does the same work.
    # Not the burst's: they stop halfway.
    watched = {i for i in range(burst_from) if (i // 2) % SAMPLE == 0}
    for index in range(len(parties)):
        sock = parties[index][0]
        sock.setblocking(False)
        if index in watched:
            sel.register(sock, selectors.EVENT_READ, index)
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    ctx = multiprocessing.get_context("fork")
    queue: multiprocessing.Queue = ctx.Queue()
    start = time.perf_counter() + 0.3
    sender = ctx.Process(target=send, args=(parties, seconds, loss, start, queue, burst_from))
    sender.start()
    spy = None
    if PROFILE:
        spy = subprocess.Popen(["py-spy", "record", "-p", str(pid), "-d", str(int(seconds)),
                                "-f", "raw", "-o", f"{PROFILE}-{mode}-{calls}.txt"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cpu0, t0 = cpu_seconds(pid), time.perf_counter()
    last = [0.0] * len(parties)
    last_ssrc = [0] * len(parties)
    senders = {sock.fileno() for sock, _, _ in parties}  # the sender's SSRCs
    gaps: list[float] = []
    latencies: list[float] = []
    received = 0
    wrong_codec = 0
    # Steady state: from 0.5 s after the first packet (jitter buffers filled)
    # to the last tick: every party should get one packet per 20 ms there.
    window = (start + 0.5, start + int(seconds / TICK) * TICK)
    in_window = 0
    # What each party must hear: A (even index) PCMU, B PCMA when transcoding.
    want = [0 if i % 2 == 0 or mode == "forward" else 8 for i in range(len(parties))]
    buf = bytearray(2048)
    deadline = None
    keeps_seq = mode != "repair"
    while True:
        if deadline is None and not sender.is_alive():
            deadline = time.perf_counter() + 0.5  # what the jitter buffers still hold
        if deadline is not None and time.perf_counter() > deadline:
            break
        for key, _ in sel.select(0.05):
            sock, index = key.fileobj, key.data
            while True:
                try:
                    n = sock.recv_into(buf)  # type: ignore[union-attr]
                except BlockingIOError:
                    break
                now = time.perf_counter()
                received += 1
                if window[0] <= now < window[1]:
                    in_window += 1
                if n < 12:
                    continue
                if buf[1] & 0x7F != want[index]:  # its own codec: the other party's, converted
                    wrong_codec += 1
                    if DEBUG and wrong_codec <= 5:
                        print("wrong", index, buf[1] & 0x7F, int.from_bytes(buf[2:4], "big"), int.from_bytes(buf[8:12], "big"), file=sys.stderr)
                last_ssrc[index] = int.from_bytes(buf[8:12], "big")
                if last[index]:
                    gaps.append(now - last[index])
                last[index] = now
                if keeps_seq:
                    seq = int.from_bytes(buf[2:4], "big")
                    latencies.append(now - (start + seq * TICK))
    elapsed = time.perf_counter() - t0
    cpu = cpu_seconds(pid) - cpu0
    sent, ticks = queue.get()
    sender.join()
    if spy is not None:
        spy.wait(30)
    expected = (window[1] - window[0]) / TICK * len(watched) * (1 - loss if mode != "repair"
                                                                 else 1)
    gaps.sort()
    latencies.sort()

    def pct(values: list[float], p: float) -> str:
        return f"{values[min(len(values) - 1, int(p * len(values)))] * 1e3:.1f}" \
            if values else "-"
    span = ticks * TICK
    core = 100 * cpu / elapsed
    # The relay's CPU per packet it received, and the calls one core would carry at
    # that cost: the figure that does not depend on what else the machine runs.
    per_packet = cpu / sent * 1e6 if sent else float("nan")
    capacity = calls * 100 / core if core else float("nan")
    scale = burst_from / len(watched)  # received by the watched parties, for all
    repaired = "-"
    if mode == "repair":
        still = sum(1 for i in watched if last_ssrc[i] and last_ssrc[i] not in senders)
        repaired = f"{100 * still / len(watched):.0f}%"
    print(f"{label:13} {calls:6} {sent / span:9.0f} {received * scale / span:9.0f} "
          f"{100 * in_window / expected:7.1f}% {pct(gaps, 0.99):>7} "
          f"{pct(latencies, 0.5):>7} {pct(latencies, 0.99):>7} "
          f"{core:6.1f}% {per_packet:7.1f} {capacity:9.0f} {wrong_codec:6} {repaired:>8}",
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--calls", default="100,300,500")
    parser.add_argument("--modes", default="forward,transcode")
    parser.add_argument("--repair-calls", default="100,150,200",
                        help="call counts for the repair mode (it costs far more per call)")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--loss", type=float, default=0.05,
                        help="packets the sender drops in repair mode")
    parser.add_argument("--sample", type=int, default=5,
                        help="read the parties of every SAMPLE-th call only")
    parser.add_argument("--profile", default="",
                        help="py-spy the relay: raw stacks to PREFIX-MODE-CALLS.txt")
    parser.add_argument("--burst", type=int, default=0,
                        help="repair runs: this many more transcoded calls for the first half")
    parser.add_argument("--before", type=Path, default=None,
                        help="repair runs: also with the relay of this source tree, first")
    args = parser.parse_args()
    global PROFILE, SAMPLE
    PROFILE = args.profile
    SAMPLE = args.sample
    print(f"{'mode':13} {'calls':>6} {'sent pps':>9} {'recv pps':>9} {'deliv':>8} "
          f"{'gap p99':>7} {'lat p50':>7} {'lat p99':>7} {'CPU':>7} {'us/pkt':>7} "
          f"{'calls@1cpu':>9} {'wrong':>6} {'repaired':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        runs: list[tuple[str, int, Path | None]] = [
            (mode, int(n), None) for n in args.calls.split(",") if n
            for mode in args.modes.split(",")]
        for n in args.repair_calls.split(","):
            if n:
                if args.before is not None:
                    runs.append(("repair", int(n), args.before))
                runs.append(("repair", int(n), None))
        for index, (mode, n, tree) in enumerate(runs):
            label = f"{mode}/before" if tree is not None else mode
            try:
                # A data dir of its own: a relay finding calls stored by the last run
                # would take their ports up again.
                run(mode, n, args.seconds, args.loss, Path(tmp) / str(index),
                    args.burst if mode == "repair" else 0, tree, label)
            except (AssertionError, OSError) as exc:  # a port of the range taken by another program
                print(f"{label:13} {n:6} not measured: {exc!r}"[:200], flush=True)


if __name__ == "__main__":
    main()
