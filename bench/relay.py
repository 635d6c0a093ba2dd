"""RTP relay throughput, added latency and CPU: rtpengine, our relay, the kernel fast path.

    .venv/bin/python bench/relay.py                      # flood 50 pairs, paced 500 and 1000 streams
    .venv/bin/python bench/relay.py --quick              # 2 s windows, paced 500 only
    .venv/bin/python bench/relay.py --targets direct,kernel --pairs 100 --streams 1000,2000

Targets, measured side by side in one run:

- direct: phones send to each other (the baseline for latency and load CPU);
- rtpengine: Debian's `rtpengine` daemon in userspace (`--table=-1`), driven
  with ng offer/answer on a local port;
- ours: any ng relay started by `--relay-cmd` (default: `softswitch relay
  --no-kernel`, the userspace path), driven like rtpengine;
- ours-kernel: the same relay with its kernel path (latched streams move into
  nftables); "not measured" with the reason when it does not
  answer an ng ping;
- kernel: `rtpmedia.relay.kernel` flows installed directly (the relay's two
  sockets per pair are bound and never read), until the relay drives it.

Two loads, from a sender and a receiver process (sockets inherited by fork):
**flood** sends 172-byte RTP (12 + 160) round-robin over all streams as fast
as one Python process can; **paced** sends 50 packets/s per stream (20 ms
PCMU), spread over each 20 ms, with the send time (CLOCK_MONOTONIC, shared
by all processes) in the payload. A stream is one direction of a pair.
After a warm-up (latching), a window of `--seconds` is measured: forwarded
packets/s, loss, one-way latency p50/p99/p99.9 (paced; `direct` is the
part that is not the relay's), relay CPU from /proc/PID/stat (all threads;
100% = one core) and the load processes' own CPU. On loopback the kernel
forwards inside the sender's sendto(), so the kernel path's cost shows as
load CPU above `direct`'s, not as relay CPU. Figures only, no assertions.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import re
import resource
import selectors
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from abc import ABC, abstractmethod
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rtpmedia import ng  # noqa: E402
from rtpmedia.relay import ctnetlink  # noqa: E402
from rtpmedia.relay.fastpath import Flow  # noqa: E402
from rtpmedia.relay.kernel import NftablesFastPath, probe  # noqa: E402
from rtpmedia.relay.netlink import NetfilterSocket, Request, attr, nested  # noqa: E402
from rtpmedia.relay.quality import ReceptionStats, ReportBlock, RtcpReport, mos, parse_rtcp  # noqa: E402

HOST = "127.0.0.1"
PAYLOAD = 160
PACKET = 12 + PAYLOAD
PTIME = 0.020
WARMUP = 1.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
# seq, timestamp, ssrc after the first two header bytes; the send time in ns opens the payload
_HEAD = struct.Struct("!HIIQ")

DEFAULT_RELAY_CMD = ("{softswitch} relay --control udp:127.0.0.1:{ng_port} --ports {port_min}-{port_max}"
                     " --advertise 127.0.0.1 --data-dir {workdir}")


# -- /proc ------------------------------------------------------------------------


def process_cpu(pid: int) -> float:
    """utime + stime of every thread of `pid`, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


# -- ng client ------------------------------------------------------------------------


def _bdecode(data: bytes, i: int = 0) -> tuple[Any, int]:
    """Bencode without fastbencode's key-order check: rtpengine does not sort its keys."""
    c = data[i:i + 1]
    if c == b"i":
        end = data.index(b"e", i)
        return int(data[i + 1:end]), end + 1
    if c in (b"l", b"d"):
        i += 1
        items = []
        while data[i:i + 1] != b"e":
            value, i = _bdecode(data, i)
            items.append(value)
        if c == b"l":
            return items, i + 1
        return dict(zip(items[::2], items[1::2], strict=True)), i + 1
    colon = data.index(b":", i)
    n = int(data[i:colon])
    return data[colon + 1:colon + 1 + n], colon + 1 + n


class NgClient:
    def __init__(self, address: tuple[str, int]) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, 0))
        self.n = 0

    def ask(self, message: dict[str, Any], timeout: float = 2.0, tries: int = 3) -> dict[str, Any]:
        self.n += 1
        cookie = f"b{os.getpid()}_{self.n}".encode()
        self.sock.settimeout(timeout)
        for _ in range(tries):
            self.sock.sendto(ng.encode(cookie, message), self.address)
            try:
                while True:
                    data = self.sock.recv(65535)
                    got, _, body = data.partition(b" ")
                    if got == cookie:
                        return ng.text(_bdecode(body)[0])
            except TimeoutError:
                continue
        raise TimeoutError(f"no ng answer from {self.address} to {message.get('command')}")

    def close(self) -> None:
        self.sock.close()


def sdp(port: int, version: int) -> str:
    return (f"v=0\r\no=- {version} 1 IN IP4 {HOST}\r\ns=bench\r\nc=IN IP4 {HOST}\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n")


def media_address(answer: dict[str, Any]) -> tuple[str, int]:
    if answer.get("result") != "ok":
        raise RuntimeError(f"relay refused: {answer}")
    text = answer["sdp"]
    host = re.search(r"^c=IN IP4 (\S+)", text, re.M)
    port = re.search(r"^m=audio (\d+)", text, re.M)
    if not (host and port):
        raise RuntimeError(f"no media address in {text!r}")
    return host[1], int(port[1])


# -- the streams ------------------------------------------------------------------------


@dataclass
class Pair:
    a: socket.socket
    b: socket.socket
    a_to: tuple[str, int] = ("", 0)  # where phone A sends (the relay's A-side port)
    b_to: tuple[str, int] = ("", 0)


# Phones (and the kernel path's never-read relay sockets) take ports below
# the ephemeral range, so that they never sit in a relay's port range.
PHONE_PORTS = range(20000, 29999)
_next_port = iter(PHONE_PORTS)


def bound_socket() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    for port in _next_port:
        try:
            s.bind((HOST, port))
            return s
        except OSError:
            continue
    s.close()
    raise SystemExit(f"no free port left in {PHONE_PORTS}")


def make_pairs(n: int) -> list[Pair]:
    global _next_port
    _next_port = iter(PHONE_PORTS)  # the previous step's sockets are closed
    return [Pair(bound_socket(), bound_socket()) for _ in range(n)]


def close_pairs(pairs: Sequence[Pair]) -> None:
    for p in pairs:
        p.a.close()
        p.b.close()


# -- targets ------------------------------------------------------------------------------


class Target(ABC):
    name = ""
    pid: int | None = None

    def start(self) -> str | None:
        """None when ready, else why it cannot be measured."""
        return None

    @abstractmethod
    def setup(self, pairs: list[Pair], tag: str) -> None:
        """Make `pairs` forward through this target."""

    def teardown(self, pairs: list[Pair], tag: str) -> None:
        return None

    def stop(self) -> None:
        return None


class Direct(Target):
    name = "direct"

    def setup(self, pairs: list[Pair], tag: str) -> None:
        for p in pairs:
            p.a_to, p.b_to = p.b.getsockname(), p.a.getsockname()


class NgRelay(Target):
    """A relay process we start and drive with ng offer/answer/delete."""

    def __init__(self, name: str, argv: list[str], ng_port: int, workdir: Path) -> None:
        self.name = name
        self.argv = argv
        self.ng_port = ng_port
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.client = NgClient((HOST, ng_port))

    def start(self) -> str | None:
        if shutil.which(self.argv[0]) is None and not Path(self.argv[0]).exists():
            return f"{self.argv[0]} not found"
        log = open(self.workdir / f"{self.name}.log", "wb")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT)
        self.pid = self.proc.pid
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = (self.workdir / f"{self.name}.log").read_text(errors="replace").strip().splitlines()[-3:]
                return f"exited with {self.proc.returncode}: {' / '.join(tail)}"
            try:
                if self.client.ask({"command": "ping"}, timeout=0.3, tries=1).get("result") == "pong":
                    return None
            except TimeoutError:
                pass
        return "no answer to an ng ping within 15 s"

    def setup(self, pairs: list[Pair], tag: str) -> None:
        for i, p in enumerate(pairs):
            call = {"call-id": f"{tag}-{i}", "from-tag": "a"}
            offer = self.client.ask({"command": "offer", **call, "sdp": sdp(p.a.getsockname()[1], 1),
                                     "replace": ["origin", "session-connection"], "ICE": "remove"})
            p.b_to = media_address(offer)
            answer = self.client.ask({"command": "answer", **call, "to-tag": "b",
                                      "sdp": sdp(p.b.getsockname()[1], 1),
                                      "replace": ["origin", "session-connection"], "ICE": "remove"})
            p.a_to = media_address(answer)

    def teardown(self, pairs: list[Pair], tag: str) -> None:
        for i in range(len(pairs)):
            try:
                self.client.ask({"command": "delete", "call-id": f"{tag}-{i}", "from-tag": "a"}, timeout=1.0)
            except TimeoutError:
                pass

    def stop(self) -> None:
        self.client.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Kernel(Target):
    """Flows installed straight through the FastPath; the relay's sockets are never read."""

    name = "kernel"

    def __init__(self) -> None:
        self.fast: NftablesFastPath | None = None
        self.relay_socks: dict[str, list[socket.socket]] = {}
        self.install_rate = 0.0
        self.remove_rate = 0.0

    def start(self) -> str | None:
        fast, reason = probe(table=f"ssr_bench_{os.getpid()}")
        if reason is not None:
            return reason
        assert isinstance(fast, NftablesFastPath)
        self.fast = fast
        return None

    def setup(self, pairs: list[Pair], tag: str) -> None:
        assert self.fast is not None
        flows = self._bind(pairs, tag)
        start = time.perf_counter()
        for flow in flows:
            self.fast.install(flow)
        self.install_rate = len(flows) / (time.perf_counter() - start)

    def _bind(self, pairs: list[Pair], tag: str) -> list[Flow]:
        """The relay's two never-read sockets per pair, and the flows through them."""
        socks = []
        flows = []
        for i, p in enumerate(pairs):
            ra, rb = bound_socket(), bound_socket()
            socks += [ra, rb]
            p.a_to, p.b_to = ra.getsockname(), rb.getsockname()
            flows.append(Flow(f"{tag}-{i}", p.a_to, p.a.getsockname(), p.b_to, p.b.getsockname()))
        self.relay_socks[tag] = socks
        return flows

    def teardown(self, pairs: list[Pair], tag: str) -> None:
        assert self.fast is not None
        start = time.perf_counter()
        for i in range(len(pairs)):
            self.fast.remove(f"{tag}-{i}")
        self.remove_rate = len(pairs) / (time.perf_counter() - start)
        for s in self.relay_socks.pop(tag, []):
            s.close()

    def stop(self) -> None:
        if self.fast is not None:
            self.fast.close()


class ConntrackNat(Kernel):
    """MediaProxy's way, for comparison: one conntrack entry with DNAT+SNAT made per pair over ctnetlink."""

    name = "conntrack"
    # nfnetlink_conntrack.h
    CTA_NAT_SRC, CTA_TIMEOUT, CTA_NAT_DST = 6, 7, 13
    CTA_NAT_V4_MINIP, CTA_NAT_V4_MAXIP, CTA_NAT_PROTO = 1, 2, 3
    CTA_PROTONAT_PORT_MIN, CTA_PROTONAT_PORT_MAX = 1, 2
    NLM_F_EXCL, NLM_F_CREATE = 0x200, 0x400

    def __init__(self) -> None:
        super().__init__()
        self.nl: NetfilterSocket | None = None
        self.ct: ctnetlink.Conntrack | None = None
        self.flows: dict[str, list[Flow]] = {}

    def start(self) -> str | None:
        try:
            self.nl, self.ct = NetfilterSocket(), ctnetlink.Conntrack()
        except OSError as exc:
            return f"no ctnetlink: {exc}"
        return None

    def _nat(self, kind: int, to: tuple[str, int]) -> bytes:
        ip = socket.inet_aton(to[0])
        port = struct.pack("!H", to[1])
        return nested(kind, attr(self.CTA_NAT_V4_MINIP, ip), attr(self.CTA_NAT_V4_MAXIP, ip),
                      nested(self.CTA_NAT_PROTO, attr(self.CTA_PROTONAT_PORT_MIN, port),
                             attr(self.CTA_PROTONAT_PORT_MAX, port)))

    def setup(self, pairs: list[Pair], tag: str) -> None:
        assert self.nl is not None and self.ct is not None
        flows = self._bind(pairs, tag)
        start = time.perf_counter()
        for flow in flows:
            self.ct.delete([(flow.a_remote, flow.a_local), (flow.b_remote, flow.b_local)])
            family, orig = ctnetlink.tuple_attr(ctnetlink.CTA_TUPLE_ORIG, flow.a_remote, flow.a_local)
            _, reply = ctnetlink.tuple_attr(ctnetlink.CTA_TUPLE_REPLY, flow.a_local, flow.a_remote)
            body = (orig + reply + attr(self.CTA_TIMEOUT, struct.pack("!I", 600))
                    + self._nat(self.CTA_NAT_DST, flow.b_remote) + self._nat(self.CTA_NAT_SRC, flow.b_local))
            (answer,) = self.nl.transact([Request(ctnetlink.NFNL_SUBSYS_CTNETLINK, ctnetlink.IPCTNL_MSG_CT_NEW,
                                                  family, body, self.NLM_F_CREATE | self.NLM_F_EXCL)])
            if answer.error:
                raise OSError(answer.error, f"conntrack entry for {flow.key}: {os.strerror(answer.error)}")
        self.install_rate = len(flows) / (time.perf_counter() - start)
        self.flows[tag] = flows

    def teardown(self, pairs: list[Pair], tag: str) -> None:
        assert self.ct is not None
        start = time.perf_counter()
        for flow in self.flows.pop(tag, []):
            self.ct.delete([(flow.a_remote, flow.a_local)])
        self.remove_rate = len(pairs) / (time.perf_counter() - start)
        for s in self.relay_socks.pop(tag, []):
            s.close()

    def stop(self) -> None:
        if self.nl is not None:
            self.nl.close()
        if self.ct is not None:
            self.ct.close()


# -- load processes -----------------------------------------------------------------------


def sender(streams: list[tuple[socket.socket, tuple[str, int]]], paced: bool, t_start: float,
           t_end: float, out: Any) -> None:
    bufs = [bytearray(PACKET) for _ in streams]
    for buf in bufs:
        buf[0], buf[1] = 0x80, 0  # V=2, PT 0 (PCMU)
    seqs = [0] * len(streams)
    sent = errors = 0
    usage0 = None
    n = len(streams)
    slots = 10  # a paced tick is spread over 10 slots of 2 ms
    tick = 0
    now = time.monotonic()
    while now < t_end:
        if usage0 is None and now >= t_start:
            usage0, sent, errors = resource.getrusage(resource.RUSAGE_SELF), 0, 0
        if paced:
            slot_at = t_start - WARMUP + tick * PTIME / slots
            if slot_at > now:
                time.sleep(slot_at - now)
            lo, hi = (tick % slots) * n // slots, (tick % slots + 1) * n // slots
            tick += 1
        else:
            lo, hi = 0, n
        for i in range(lo, hi):
            sock, dest = streams[i]
            seq = seqs[i] = (seqs[i] + 1) & 0xFFFF
            _HEAD.pack_into(bufs[i], 2, seq, seq * 160, i + 1, time.monotonic_ns())
            try:
                sock.sendto(bufs[i], dest)
                sent += 1
            except OSError:
                errors += 1
        now = time.monotonic()
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = 0.0 if usage0 is None else (usage1.ru_utime + usage1.ru_stime - usage0.ru_utime - usage0.ru_stime)
    out.send({"sent": sent, "errors": errors, "cpu": cpu})


def receiver(socks: list[socket.socket], t_start: float, t_end: float, out: Any) -> None:
    sel = selectors.DefaultSelector()
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    buf = bytearray(2048)
    received = 0
    latency = array("q")
    usage0 = None
    stop_at = t_end + 0.2  # packets in flight at the end of the window
    while True:
        now = time.monotonic()
        if now >= stop_at:
            break
        if usage0 is None and now >= t_start:
            usage0 = resource.getrusage(resource.RUSAGE_SELF)
        for key, _ in sel.select(0.05):
            s = key.fileobj
            while True:
                try:
                    n = s.recv_into(buf)  # type: ignore[union-attr]
                except BlockingIOError:
                    break
                if n < 20:
                    continue
                sent_ns = struct.unpack_from("!Q", buf, 12)[0]
                if t_start * 1e9 <= sent_ns < t_end * 1e9:
                    received += 1
                    latency.append(time.monotonic_ns() - sent_ns)
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = 0.0 if usage0 is None else (usage1.ru_utime + usage1.ru_stime - usage0.ru_utime - usage0.ru_stime)
    latency = array("q", sorted(latency))
    out.send({"received": received, "cpu": cpu, "latency": latency.tobytes()})


@dataclass
class Result:
    target: str
    streams: int
    seconds: float
    sent: int = 0
    received: int = 0
    relay_cpu: float | None = None
    load_cpu: float = 0.0
    machine_busy: float = 0.0
    latency_ns: array = field(default_factory=lambda: array("q"))
    note: str = ""

    @property
    def pps(self) -> float:
        return self.received / self.seconds

    @property
    def loss(self) -> float:
        return max(0, self.sent - self.received) / self.sent if self.sent else 0.0

    def percentile(self, q: float) -> float | None:
        if not self.latency_ns:
            return None
        return self.latency_ns[min(len(self.latency_ns) - 1, int(q * len(self.latency_ns)))] / 1000.0


def measure(target: Target, pairs: list[Pair], paced: bool, seconds: float, tag: str) -> Result:
    streams = [(p.a, p.a_to) for p in pairs] + [(p.b, p.b_to) for p in pairs]
    t_start = time.monotonic() + 0.3 + WARMUP
    t_end = t_start + seconds
    ctx = mp.get_context("fork")
    s_recv, s_send = ctx.Pipe(duplex=False)
    r_recv, r_send = ctx.Pipe(duplex=False)
    rx = ctx.Process(target=receiver, args=([p.a for p in pairs] + [p.b for p in pairs], t_start, t_end, r_send))
    tx = ctx.Process(target=sender, args=(streams, paced, t_start, t_end, s_send))
    rx.start()
    tx.start()
    while time.monotonic() < t_start:
        time.sleep(min(0.05, max(0.0, t_start - time.monotonic())))
    cpu0 = process_cpu(target.pid) if target.pid else None
    busy0 = machine_busy()
    while time.monotonic() < t_end:
        time.sleep(min(0.05, max(0.0, t_end - time.monotonic())))
    cpu1 = process_cpu(target.pid) if target.pid else None
    busy1 = machine_busy()
    sent = s_recv.recv()
    got = r_recv.recv()
    tx.join()
    rx.join()
    latency = array("q")
    latency.frombytes(got["latency"])
    return Result(
        target.name, len(streams), seconds, sent["sent"], got["received"],
        None if cpu0 is None or cpu1 is None else cpu1 - cpu0,
        sent["cpu"] + got["cpu"],
        (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1]),
        latency,
        f"{sent['errors']} send errors" if sent["errors"] else "")


# -- report ------------------------------------------------------------------------------


def pct(x: float | None, seconds: float) -> str:
    return "-" if x is None else f"{100 * x / seconds:.0f}%"


def us(x: float | None) -> str:
    return "-" if x is None else f"{x:.0f}"


def print_flood(results: list[Result], skipped: dict[str, str]) -> None:
    print(f"{'target':<11} {'fwd pps':>9} {'loss':>6} {'relay CPU':>9} {'relay CPU/10k pps':>17}"
          f" {'load CPU':>8} {'load CPU/10k pps':>16} {'machine':>7}")
    for r in results:
        per10k = None if r.relay_cpu is None or not r.pps else 100 * r.relay_cpu / r.seconds / (r.pps / 1e4)
        load10k = 100 * r.load_cpu / r.seconds / (r.pps / 1e4) if r.pps else 0.0
        print(f"{r.target:<11} {r.pps:>9,.0f} {100 * r.loss:>5.1f}% {pct(r.relay_cpu, r.seconds):>9}"
              f" {'-' if per10k is None else f'{per10k:.1f}%':>17} {pct(r.load_cpu, r.seconds):>8}"
              f" {load10k:>15.1f}% {100 * r.machine_busy:>6.0f}% {r.note}")
    for name, why in skipped.items():
        print(f"{name:<11} not measured: {why}")


def print_paced(results: list[Result], skipped: dict[str, str]) -> None:
    print(f"{'target':<11} {'streams':>7} {'fwd pps':>8} {'loss':>7} {'p50 us':>7} {'p99 us':>7} {'p99.9 us':>8}"
          f" {'relay CPU':>9} {'relay CPU/10k pps':>17} {'load CPU':>8} {'machine':>7}")
    for r in results:
        per10k = None if r.relay_cpu is None or not r.pps else 100 * r.relay_cpu / r.seconds / (r.pps / 1e4)
        print(f"{r.target:<11} {r.streams:>7} {r.pps:>8,.0f} {100 * r.loss:>6.2f}% {us(r.percentile(0.5)):>7}"
              f" {us(r.percentile(0.99)):>7} {us(r.percentile(0.999)):>8} {pct(r.relay_cpu, r.seconds):>9}"
              f" {'-' if per10k is None else f'{per10k:.1f}%':>17} {pct(r.load_cpu, r.seconds):>8}"
              f" {100 * r.machine_busy:>6.0f}% {r.note}")
    for name, why in skipped.items():
        print(f"{name:<11} not measured: {why}")


# -- per-packet Python costs of stream health ----------------------------------------


def micro(n: int = 200_000) -> None:
    """What the userspace forwarder pays per packet for health figures (best of 3)."""
    in_order = [((i & 0xFFFF), i * 160 & 0xFFFFFFFF, i * 0.02) for i in range(n)]
    best_in_order = float("inf")
    for _ in range(3):
        stats = ReceptionStats(8000)
        update = stats.update
        start = time.perf_counter()
        for seq, ts, arrival in in_order:
            update(seq, ts, arrival)
        best_in_order = min(best_in_order, time.perf_counter() - start)
    class Empty:
        __slots__ = ()

        def update(self, seq: int, ts: int, arrival: float) -> None:
            return None

    best_empty = float("inf")
    for _ in range(3):
        update = Empty().update
        start = time.perf_counter()
        for seq, ts, arrival in in_order:
            update(seq, ts, arrival)
        best_empty = min(best_empty, time.perf_counter() - start)
    block = ReportBlock(1, 2, 3, 4, 5, 6, 7)
    compound = RtcpReport(9, (block,), ntp=1 << 40, rtp_timestamp=1, packet_count=2, octet_count=3).serialize()
    start = time.perf_counter()
    for _ in range(n // 10):
        parse_rtcp(compound)
    rtcp = (time.perf_counter() - start) / (n // 10)
    start = time.perf_counter()
    for _ in range(n // 10):
        mos("PCMU", 0.01, 5.0, 40.0)
    e_model = (time.perf_counter() - start) / (n // 10)
    print(f"ReceptionStats.update: {1e9 * best_in_order / n:.0f} ns a packet"
          f" (an empty method in the same loop: {1e9 * best_empty / n:.0f} ns);"
          f" parse_rtcp(SR + 1 block): {1e9 * rtcp:.0f} ns;"
          f" mos(): {1e9 * e_model:.0f} ns")


# -- main ------------------------------------------------------------------------------


def step(t: Target, pairs_n: int, paced: bool, seconds: float, tag: str,
         failed: dict[str, str]) -> Result | None:
    """One target under one load; a target that fails is reported, not fatal to the run."""
    pairs = make_pairs(pairs_n)
    try:
        t.setup(pairs, f"{tag}-{t.name}")
        result = measure(t, pairs, paced=paced, seconds=seconds, tag=tag)
        t.teardown(pairs, f"{tag}-{t.name}")
        return result
    except (OSError, RuntimeError) as exc:
        failed[t.name] = f"failed: {exc}"
        return None
    finally:
        close_pairs(pairs)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def build_targets(names: list[str], workdir: Path, relay_cmd: str) -> list[Target]:
    targets: list[Target] = []
    for name in names:
        if name == "direct":
            targets.append(Direct())
        elif name == "rtpengine":
            port = free_udp_port()
            targets.append(NgRelay("rtpengine", [
                "rtpengine", "--foreground", "--log-stderr", "--log-level=3", "--table=-1",
                f"--interface={HOST}", f"--listen-ng={HOST}:{port}", "--port-min=42000", "--port-max=47999",
                "--no-fallback", f"--pidfile={workdir}/rtpengine.pid"], port, workdir))
        elif name in ("ours", "ours-kernel"):
            # "ours": userspace only (--no-kernel on the default command); "ours-kernel":
            # the same relay letting latched streams move into the kernel.
            port = free_udp_port()
            softswitch = str(Path(sys.executable).with_name("softswitch"))
            # Below the ephemeral range (32768-60999), where the load's sockets would take ports.
            low = 10000 if name == "ours" else 15000
            command = relay_cmd + (" --no-kernel" if name == "ours" and relay_cmd == DEFAULT_RELAY_CMD else "")
            argv = command.format(softswitch=softswitch, ng_port=port, port_min=low, port_max=low + 4999,
                                  workdir=workdir / name).split()
            (workdir / name).mkdir(exist_ok=True)
            targets.append(NgRelay(name, argv, port, workdir))
        elif name == "kernel":
            targets.append(Kernel())
        elif name == "conntrack":
            targets.append(ConntrackNat())
        else:
            raise SystemExit(f"unknown target {name!r} (direct, rtpengine, ours, ours-kernel, kernel, conntrack)")
    return targets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", default="direct,rtpengine,ours,ours-kernel,kernel,conntrack")
    parser.add_argument("--pairs", type=int, default=50, help="stream pairs of the flood load")
    parser.add_argument("--streams", default="500,1000", help="stream counts of the paced load (50 pps each)")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured window of each step")
    parser.add_argument("--relay-cmd", default=DEFAULT_RELAY_CMD,
                        help="how to start our relay; {softswitch} {ng_port} {port_min} {port_max} {workdir}")
    parser.add_argument("--quick", action="store_true", help="2 s windows, paced 500 streams only")
    args = parser.parse_args()
    if args.quick:
        args.seconds = 2.0
        if args.streams == parser.get_default("streams"):
            args.streams = "500"
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    workdir = Path(tempfile.mkdtemp(prefix="bench-relay-"))
    targets = build_targets(args.targets.split(","), workdir, args.relay_cmd)
    skipped: dict[str, str] = {}
    ready: list[Target] = []
    for t in targets:
        why = t.start()
        if why is None:
            ready.append(t)
        else:
            skipped[t.name] = why
            t.stop()
    print(f"# bench/relay.py: {os.cpu_count()} cores, shared with other work (compare ratios);"
          f" {PACKET}-byte RTP, windows of {args.seconds:g} s after {WARMUP:g} s of warm-up")
    micro()
    try:
        print(f"\n## flood: {args.pairs} pairs ({2 * args.pairs} streams), one sender process at full speed")
        flood = []
        failed: dict[str, str] = {}
        for t in ready:
            result = step(t, args.pairs, False, args.seconds, "flood", failed)
            if result is not None:
                flood.append(result)
        print_flood(flood, skipped | failed)
        for n in [int(x) for x in args.streams.split(",") if x]:
            print(f"\n## paced: {n} streams at 50 packets/s ({n * 50:,} pps offered), one-way latency")
            paced = []
            failed = {}
            for t in ready:
                result = step(t, n // 2, True, args.seconds, f"paced{n}", failed)
                if result is not None:
                    paced.append(result)
            print_paced(paced, skipped | failed)
        for t in ready:
            if isinstance(t, Kernel):
                print(f"{t.name} flows: {t.install_rate:,.0f} installs/s, {t.remove_rate:,.0f} removes/s"
                      f" (last step, {n // 2} flows, one at a time, stale conntrack flushed first)")
    finally:
        for t in ready:
            t.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
