"""The relay process's kernel fast path (issue 14): latched streams forward with the relay
stopped (SIGSTOP), their counters include what the kernel forwarded, and a re-offer to a new
address takes the stream back to userspace, then into the kernel with the new address.
"""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.relay.test_relay_process import HOST, RelayProcess, port_range, relay_port
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


class Phone:
    """A UDP 'phone' on any loopback address (a re-INVITE moves to another one)."""

    def __init__(self, host: str = HOST) -> None:
        self.host = host
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.settimeout(0.3)
        self.port = int(self.sock.getsockname()[1])

    def sdp(self, version: int = 1) -> str:
        return (f"v=0\r\no=- 1 {version} IN IP4 {self.host}\r\ns=-\r\nc=IN IP4 {self.host}\r\n"
                f"t=0 0\r\nm=audio {self.port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")

    def rtp(self, seq: int, to: int) -> None:
        header = bytes([0x80, 0]) + seq.to_bytes(2, "big") + (seq * 160).to_bytes(4, "big") \
            + (0x5678).to_bytes(4, "big")
        self.sock.sendto(header + b"k" * 160, (HOST, to))

    def receive_seqs(self, count: int) -> list[int]:
        """Sequence numbers of up to `count` packets, stopping at the first silence of 0.3 s."""
        seqs = []
        while len(seqs) < count:
            try:
                data, _ = self.sock.recvfrom(2048)
            except TimeoutError:
                break
            seqs.append(int.from_bytes(data[2:4], "big"))
        return seqs

    def drain(self) -> None:
        self.sock.setblocking(False)
        try:
            while True:
                self.sock.recvfrom(2048)
        except BlockingIOError:
            pass
        finally:
            self.sock.settimeout(0.3)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def kernel_relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayProcess]:
    low, high = port_range(20)
    proc = RelayProcess(Path(tmp_path_factory.mktemp("kernel-relay")), low, high)
    proc.start()
    log = (proc.data_dir / "relay.log").read_text()
    if "path=kernel" not in log and "path=nftables" not in log:
        proc.stop()
        pytest.skip(f"the kernel path is not available here: {log[-400:]}")
    yield proc
    proc.stop()


def streams(relay: RelayProcess, call_id: str) -> dict[str, dict[str, Any]]:
    q = relay.command({"command": "query", "call-id": call_id})
    assert q["result"] == "ok", q
    return {tag: mono["medias"][0]["streams"][0] for tag, mono in q["tags"].items()}


def kernelized(relay: RelayProcess, call_id: str) -> bool:
    return all(s["kernelized"] == 1 for s in streams(relay, call_id).values())


def latch_both(a: Phone, to_a: int, b: Phone, to_b: int, seq: int) -> None:
    def attempt() -> bool:
        a.rtp(seq, to_a)
        b.rtp(seq, to_b)
        return bool(b.receive_seqs(1)) and bool(a.receive_seqs(1))
    wait_for(attempt, timeout=5, what="RTP both ways through the relay")


def burst(sender: Phone, to: int, first: int, count: int) -> list[int]:
    for seq in range(first, first + count):
        sender.rtp(seq, to)
    return list(range(first, first + count))


def test_kernel_forwards_while_stopped_and_a_reoffer_moves_the_stream(kernel_relay: RelayProcess) -> None:
    relay = kernel_relay
    assert relay.process is not None
    pid = relay.process.pid
    a, b, a2 = Phone(), Phone(), Phone()
    try:
        offer = relay.command({"command": "offer", "call-id": "kpath", "from-tag": "A",
                               "to-tag": "B", "via-branch": "B", "sdp": a.sdp()})
        answer = relay.command({"command": "answer", "call-id": "kpath", "from-tag": "A",
                                "to-tag": "B", "sdp": b.sdp()})
        assert offer["result"] == answer["result"] == "ok", (offer, answer)
        to_a, to_b = relay_port(answer["sdp"]), relay_port(offer["sdp"])  # where a / b send
        latch_both(a, to_a, b, to_b, 1)
        wait_for(lambda: kernelized(relay, "kpath"), 5, "the stream in the kernel")
        a.drain()
        b.drain()
        before = {tag: s["stats"]["packets"] for tag, s in streams(relay, "kpath").items()}

        os.kill(pid, signal.SIGSTOP)
        try:
            sent_ab = burst(a, to_a, 100, 30)
            assert b.receive_seqs(30) == sent_ab  # forwarded with the relay's Python stopped
            sent_ba = burst(b, to_b, 200, 30)
            assert a.receive_seqs(30) == sent_ba
        finally:
            os.kill(pid, signal.SIGCONT)
        after = {tag: s["stats"]["packets"] for tag, s in streams(relay, "kpath").items()}
        assert after["A"] - before["A"] >= 30 and after["B"] - before["B"] >= 30, (before, after)

        # A re-INVITE moves A to another address: the old flow leaves the kernel at once.
        reoffer = relay.command({"command": "offer", "call-id": "kpath", "from-tag": "A",
                                 "to-tag": "B", "sdp": a2.sdp(2)})
        assert reoffer["result"] == "ok" and relay_port(reoffer["sdp"]) == to_b
        assert relay.command({"command": "answer", "call-id": "kpath", "from-tag": "A",
                              "to-tag": "B", "sdp": b.sdp(2)})["result"] == "ok"
        # Same host, new port: A's latch is kept (a NATed phone's SDP port often differs) until
        # a2's packets, from the address its SDP names, reach the relay and re-latch the stream.
        latch_both(a2, to_a, b, to_b, 300)
        wait_for(lambda: kernelized(relay, "kpath")
                 and streams(relay, "kpath")["A"]["endpoint"]["port"] == a2.port, 5,
                 "the moved stream back in the kernel, latched to the new address")
        a2.drain()
        b.drain()
        a.drain()
        os.kill(pid, signal.SIGSTOP)
        try:
            sent = burst(b, to_b, 400, 20)
            assert a2.receive_seqs(20) == sent  # the kernel sends to the new address
            assert a.receive_seqs(1) == []  # and nothing to the old one
            sent = burst(a2, to_a, 500, 20)
            assert b.receive_seqs(20) == sent
            burst(a, to_a, 600, 5)  # the old address is a stranger now: not forwarded
            assert b.receive_seqs(1) == []
        finally:
            os.kill(pid, signal.SIGCONT)
        assert relay.command({"command": "delete", "call-id": "kpath"})["result"] == "ok"
    finally:
        for phone in (a, b, a2):
            phone.close()
