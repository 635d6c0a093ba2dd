"""The forwarder with real loopback sockets, driven by hand, and a fake kernel fast path."""

from __future__ import annotations

import random
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from rtpmedia.relay.calls import MediaEnd
from rtpmedia.relay.control import Bind, Control, Unbind, Unkernel
from rtpmedia.relay.fastpath import Flow, FlowCounters
from rtpmedia.relay.forwarder import Forwarder
from rtpmedia.relay.ports import PortPool

HOST = "127.0.0.1"


class FakeReactor:
    def __init__(self) -> None:
        self.readers: list[Any] = []

    def addReader(self, reader: Any) -> None:  # noqa: N802
        self.readers.append(reader)

    def removeReader(self, reader: Any) -> None:  # noqa: N802
        self.readers.remove(reader)

    def pump(self) -> None:
        for reader in list(self.readers):
            reader.doRead()


class FakeKernel:
    name = "fake-kernel"

    def __init__(self) -> None:
        self.flows: dict[str, Flow] = {}
        self.counts: dict[str, FlowCounters] = {}
        self.removed: list[str] = []

    def install(self, flow: Flow) -> None:
        self.flows[flow.key] = flow

    def remove(self, key: str) -> FlowCounters:
        self.removed.append(key)
        self.flows.pop(key, None)
        return self.counts.pop(key, FlowCounters())

    def counters(self, key: str) -> FlowCounters:
        return self.counts.get(key, FlowCounters())

    def close(self) -> None:
        self.flows.clear()


def phone() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((HOST, 0))
    s.settimeout(1.0)
    return s


def sdp(port: int) -> str:
    return (f"v=0\r\no=- 1 1 IN IP4 {HOST}\r\ns=-\r\nc=IN IP4 {HOST}\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP 0\r\n")


RTP = bytes([0x80, 0, 0, 1]) + bytes(8) + b"p" * 160


@pytest.fixture
def rig() -> Iterator[tuple[Control, Forwarder, FakeReactor, FakeKernel, list[MediaEnd]]]:
    reactor, kernel = FakeReactor(), FakeKernel()
    latched: list[MediaEnd] = []
    forwarder = Forwarder(reactor, HOST, kernel, latched.append)
    low = random.randrange(20000, 32000, 2)
    control = Control(PortPool(low, low + 19), HOST, kernel_counts=forwarder.kernel_counts)
    yield control, forwarder, reactor, kernel, latched
    forwarder.close()


def apply(forwarder: Forwarder, effects: list[Any]) -> None:
    for e in effects:
        if isinstance(e, Bind):
            forwarder.bind(e.end)
        elif isinstance(e, Unbind):
            forwarder.unbind(e.end)
        elif isinstance(e, Unkernel):
            forwarder.unkernel(e.end)


def test_latched_both_ways_goes_to_the_kernel_and_back_on_reoffer(rig: Any) -> None:
    control, forwarder, reactor, kernel, latched = rig
    a, b = phone(), phone()
    a_port, b_port = a.getsockname()[1], b.getsockname()[1]
    out, effects = control.handle({"command": "offer", "call-id": "k", "from-tag": "A",
                                   "to-tag": "B", "sdp": sdp(a_port)}, 0)
    apply(forwarder, effects)
    out2, effects = control.handle({"command": "answer", "call-id": "k", "from-tag": "A",
                                    "to-tag": "B", "sdp": sdp(b_port)}, 0)
    apply(forwarder, effects)
    a_end, b_end = (control.calls["k"].monologues[t].ends[0] for t in ("A", "B"))
    a.sendto(RTP, (HOST, a_end.port))
    reactor.pump()
    assert b.recvfrom(2048) == (RTP, (HOST, b_end.port))
    assert latched == [a_end] and kernel.flows == {}  # one side latched: userspace still
    b.sendto(RTP, (HOST, b_end.port))
    reactor.pump()
    assert a.recvfrom(2048) == (RTP, (HOST, a_end.port))
    (flow,) = kernel.flows.values()
    assert (flow.a_local, flow.a_remote) == ((HOST, a_end.port), (HOST, a_port))
    assert (flow.b_local, flow.b_remote) == ((HOST, b_end.port), (HOST, b_port))
    assert a_end.kernelized == b_end.kernelized == flow.key
    # the kernel counts; query adds them to userspace's
    kernel.counts[flow.key] = FlowCounters(10, 1720, 7, 1204)
    q = control.handle({"command": "query", "call-id": "k"}, 1)[0]
    assert q["tags"]["A"]["medias"][0]["streams"][0]["stats"]["packets"] == 11
    assert q["tags"]["A"]["medias"][0]["streams"][0]["kernelized"] == 1
    assert q["totals"]["RTP"]["packets"] == 19
    # a re-INVITE moves the stream back to userspace and keeps the counts
    _, effects = control.handle({"command": "offer", "call-id": "k", "from-tag": "B",
                                 "to-tag": "A", "sdp": sdp(b_port)}, 2)
    apply(forwarder, effects)
    assert kernel.removed == [flow.key] and a_end.kernelized is None
    q = control.handle({"command": "query", "call-id": "k"}, 3)[0]
    assert q["totals"]["RTP"]["packets"] == 19
    a.close()
    b.close()


def test_strict_source_drops_a_stranger_before_and_after_latching(rig: Any) -> None:
    control, forwarder, reactor, kernel, latched = rig
    a, b, stranger = phone(), phone(), phone()
    # Expected at 127.0.0.2: only packets from that IP may latch a trusted end.
    body = sdp(a.getsockname()[1]).replace(f"IN IP4 {HOST}", "IN IP4 127.0.0.2")
    _, effects = control.handle({"command": "offer", "call-id": "s", "from-tag": "A",
                                 "to-tag": "B", "sdp": body, "flags": ["strict-source"]}, 0)
    apply(forwarder, effects)
    _, effects = control.handle({"command": "answer", "call-id": "s", "from-tag": "A",
                                 "to-tag": "B", "sdp": sdp(b.getsockname()[1])}, 0)
    apply(forwarder, effects)
    a_end = control.calls["s"].monologues["A"].ends[0]
    stranger.sendto(RTP, (HOST, a_end.port))
    reactor.pump()
    b.settimeout(0.2)
    with pytest.raises(TimeoutError):
        b.recvfrom(2048)
    assert a_end.latched is None and a_end.errors == 1
    for s in (a, b, stranger):
        s.close()


class Arrivals:
    """A processor that keeps the time the forwarder gives each packet."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def rtp(self, end: MediaEnd, packet: memoryview, now: float) -> None:
        self.times.append(now)

    def tick(self, now: float, emit: Any) -> None:
        pass

    def close(self) -> None:
        pass


def test_a_stamped_end_gets_the_kernels_arrival_time_not_the_time_it_was_read(rig: Any) -> None:
    import time

    control, forwarder, reactor, _, _ = rig
    a, b = phone(), phone()
    _, effects = control.handle({"command": "offer", "call-id": "s", "from-tag": "A",
                                 "to-tag": "B", "sdp": sdp(a.getsockname()[1])}, 0)
    apply(forwarder, effects)
    _, effects = control.handle({"command": "answer", "call-id": "s", "from-tag": "A",
                                 "to-tag": "B", "sdp": sdp(b.getsockname()[1])}, 0)
    apply(forwarder, effects)
    a_end = control.calls["s"].monologues["A"].ends[0]
    seen = Arrivals()
    a_end.processor = seen

    def wait_in_socket() -> float:
        sent = time.time()
        a.sendto(RTP, (HOST, a_end.port))
        # The relay busy elsewhere: the packet waits in the socket before it is read.
        time.sleep(0.08)
        reactor.pump()
        return seen.times[-1] - sent

    assert wait_in_socket() >= 0.08  # unstamped: when it was read
    forwarder.stamp(a_end)
    # Linux turns receive timestamps on for the whole system a moment after
    # the first socket asks (a deferred static key); until then the packet is
    # stamped when it is read. So the kernel's time must show within a few.
    waits = [wait_in_socket() for _ in range(3)]
    assert any(-0.005 < w < 0.03 for w in waits), waits  # when it came
    forwarder.stamp(a_end, False)
    assert wait_in_socket() >= 0.08
    a.close()
    b.close()
