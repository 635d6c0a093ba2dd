"""The relay's userspace forwarding cost per packet, side by side with a bare Python loop.

Two forwarders get the same load in one run:
- `relay`: a real `softswitch relay` process (userspace path), streams set
  up over ng (offer/answer; both sides latched first);
- `bare`: the floor for Python, a process doing nothing but epoll +
  `recvfrom_into` + `sendto` between the same number of port pairs.

The load: --streams streams of 20 ms packets (50 packets/s each, 172-byte
PCMU-sized datagrams carrying a send timestamp) from a sender process to a
receiver in this process, for --seconds. Printed per forwarder: packets/s
offered and forwarded, loss, added latency p50/p99/p99.9 (sender and
receiver on the same clock), and the forwarder's CPU per 10,000 packets/s
(100% = one core) and per packet. The kernel fast path and rtpengine are
bench/relay.py's (the kernel helper's); this isolates the Python path.

Run: .venv/bin/python bench/relay_forward.py [--streams 200,500] [--seconds 5]
The machine is shared: compare the two columns of one run, not runs.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rtpmedia import ng  # noqa: E402

HOST = "127.0.0.1"
PAYLOAD = 160
TICKS = os.sysconf("SC_CLK_TCK")
BARE = r"""
import selectors, socket, sys
low, n, dests = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3].split(",")
sel = selectors.DefaultSelector()
socks = []
for i in range(n):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", low + 2 * i))
    s.setblocking(False); socks.append(s)
for i, s in enumerate(socks):
    sel.register(s, selectors.EVENT_READ, ("127.0.0.1", int(dests[i])))
buf = bytearray(65535); view = memoryview(buf)
print("ready", flush=True)
while True:
    for key, _ in sel.select():
        s, dest = key.fileobj, key.data
        for _ in range(64):
            try:
                k, src = s.recvfrom_into(buf)
            except BlockingIOError:
                break
            s.sendto(view[:k], dest)
"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def udp(port: int = 0) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    s.bind((HOST, port))
    return s


def command(ctl: socket.socket, control: tuple[str, int], message: dict) -> dict:
    cookie = f"b{random.random()}".encode()
    ctl.sendto(ng.encode(cookie, message), control)
    while True:
        data, _ = ctl.recvfrom(65535)
        got_cookie, answer = ng.decode(data)
        if got_cookie == cookie:
            return answer


def sdp(port: int) -> str:
    return (f"v=0\r\no=- 1 1 IN IP4 {HOST}\r\ns=-\r\nc=IN IP4 {HOST}\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP 0\r\n")


def port_of(body: str) -> int:
    return int(next(x for x in body.split("\r\n") if x.startswith("m=")).split()[1])


def send(targets: list[tuple[socket.socket, int]], seconds: float, out: multiprocessing.Queue) -> None:
    """50 packets/s per target, spread over each 20 ms tick; the timestamp in the payload."""
    header = bytes([0x80, 0])
    sent = 0
    start = time.perf_counter()
    tick = 0
    while True:
        tick_start = start + tick * 0.02
        if tick_start - start >= seconds:
            break
        now = time.perf_counter()
        if now < tick_start:
            time.sleep(tick_start - now)
        for sock, port in targets:
            body = struct.pack("!HII", tick & 0xFFFF, tick * 160, 1) + struct.pack("!d", time.perf_counter())
            sock.sendto(header + body + bytes(PAYLOAD - 8), (HOST, port))
            sent += 1
        tick += 1
    out.put(sent)


def run_load(name: str, pid: int, targets: list[tuple[socket.socket, int]],
             receivers: list[socket.socket], seconds: float) -> None:
    sel = selectors.DefaultSelector()
    for r in receivers:
        r.setblocking(False)
        sel.register(r, selectors.EVENT_READ)
    queue: multiprocessing.Queue = multiprocessing.get_context("fork").Queue()
    sender = multiprocessing.get_context("fork").Process(target=send, args=(targets, seconds, queue))
    cpu0, t0 = cpu_seconds(pid), time.perf_counter()
    sender.start()
    latencies: list[float] = []
    received = 0
    buf = bytearray(2048)
    deadline = None
    while True:
        if deadline is None and not sender.is_alive():
            deadline = time.perf_counter() + 0.5
        if deadline is not None and time.perf_counter() > deadline:
            break
        for key, _ in sel.select(0.05):
            sock = key.fileobj
            while True:
                try:
                    n = sock.recv_into(buf)  # type: ignore[union-attr]
                except BlockingIOError:
                    break
                received += 1
                if n >= 20:
                    latencies.append(time.perf_counter() - struct.unpack_from("!d", buf, 12)[0])
    elapsed = time.perf_counter() - t0
    cpu = cpu_seconds(pid) - cpu0
    sent = queue.get()
    sender.join()
    for r in receivers:
        sel.unregister(r)
    latencies.sort()

    def pct(p: float) -> str:
        return f"{latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1e3:.2f}" if latencies else "-"
    pps = received / seconds
    loss = 100 * (sent - received) / sent if sent else 0
    core = 100 * cpu / elapsed
    per_10k = core * 10000 / pps if pps else float("nan")
    per_packet = cpu / received * 1e6 if received else float("nan")
    print(f"{name:6} {len(targets):7} {sent / seconds:9.0f} {pps:9.0f} {loss:6.2f}% "
          f"{pct(0.5):>7} {pct(0.99):>7} {pct(0.999):>7} {core:6.1f}% {per_10k:8.1f}% {per_packet:7.1f}",
          flush=True)


def start_relay(streams: int, work: Path, tree: Path | None = None
                ) -> tuple[subprocess.Popen, socket.socket, tuple[str, int]]:
    """A userspace `softswitch relay` with ports for `streams` stream pairs, answering ng
    ping: (the process, a control socket, the control address). `tree`: the source tree
    to run it from (another checkout, to compare), else this one."""
    low = random.randrange(10000, 30000, 2)
    ctl = udp()
    control = (HOST, udp().getsockname()[1])
    relay = subprocess.Popen([sys.executable, "-m", "softswitch", "relay", "--no-kernel", "--control",
                              f"udp:{HOST}:{control[1]}", "--ports", f"{low}-{low + 4 * streams + 3}",
                              "--advertise", HOST, "--data-dir", str(work), "--log-level", "warning"],
                             cwd=tree or Path(__file__).resolve().parents[1])
    ctl.settimeout(0.2)
    for _ in range(100):
        try:
            if command(ctl, control, {"command": "ping"}).get("result") == "pong":
                break
        except TimeoutError:
            continue
    ctl.settimeout(5)
    return relay, ctl, control


def bench_relay(streams: int, seconds: float, work: Path) -> None:
    relay, ctl, control = start_relay(streams, work)
    try:
        targets, receivers = [], []
        for i in range(streams):
            a, b = udp(), udp()
            out = command(ctl, control, {"command": "offer", "call-id": f"s{i}", "from-tag": "A",
                                         "to-tag": "B", "sdp": sdp(a.getsockname()[1])})
            back = command(ctl, control, {"command": "answer", "call-id": f"s{i}", "from-tag": "A",
                                          "to-tag": "B", "sdp": sdp(b.getsockname()[1])})
            to_a, to_b = port_of(back["sdp"]), port_of(out["sdp"])
            b.sendto(b"\x80\x00" + bytes(170), (HOST, to_b))  # latch B
            targets.append((a, to_a))
            receivers.append(b)
        time.sleep(0.5)
        for b in receivers:  # latch A and drain what reached A
            b.setblocking(False)
        run_load("relay", relay.pid, targets, receivers, seconds)
        for a, _ in targets:
            a.close()
        for b in receivers:
            b.close()
    finally:
        relay.terminate()
        relay.wait(10)


def bench_bare(streams: int, seconds: float) -> None:
    low = random.randrange(10000, 30000, 2)
    receivers = [udp() for _ in range(streams)]
    dests = ",".join(str(r.getsockname()[1]) for r in receivers)
    proc = subprocess.Popen([sys.executable, "-c", BARE, str(low), str(streams), dests],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        targets = [(udp(), low + 2 * i) for i in range(streams)]
        run_load("bare", proc.pid, targets, receivers, seconds)
        for a, _ in targets:
            a.close()
        for r in receivers:
            r.close()
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--streams", default="200,500")
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    print(f"{'path':6} {'streams':>7} {'offered':>9} {'fwd pps':>9} {'loss':>7} "
          f"{'p50 ms':>7} {'p99 ms':>7} {'p99.9':>7} {'CPU':>7} {'/10kpps':>9} {'us/pkt':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        for n in [int(x) for x in args.streams.split(",")]:
            bench_relay(n, args.seconds, Path(tmp) / f"r{n}")
            bench_bare(n, args.seconds)


if __name__ == "__main__":
    main()
