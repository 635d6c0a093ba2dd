"""The relay process on loopback: ng over UDP, two sockets as phones, a third as a stranger."""

from __future__ import annotations

import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rtpmedia import ng
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]
HOST = "127.0.0.1"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class RelayProcess:
    def __init__(self, data_dir: Path, low: int, high: int, *extra: str) -> None:
        self.data_dir = data_dir
        self.extra = list(extra)
        self.low, self.high = low, high
        self.control = (HOST, free_udp_port())
        self.process: subprocess.Popen[bytes] | None = None
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, 0))
        self.sock.settimeout(2.0)
        self._n = 0

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "softswitch", "relay", "--control",
             f"udp:{HOST}:{self.control[1]}", "--ports", f"{self.low}-{self.high}",
             "--advertise", HOST, "--data-dir", str(self.data_dir), *self.extra],
            cwd=ROOT, stdout=subprocess.DEVNULL,
            stderr=open(self.data_dir / "relay.log", "ab"))  # noqa: SIM115
        wait_for(self._pong, timeout=20, what="the relay to answer ping")

    def _pong(self) -> bool:
        try:
            return self.command({"command": "ping"}, timeout=0.2)["result"] == "pong"
        except TimeoutError:
            assert self.process is not None and self.process.poll() is None, \
                (self.data_dir / "relay.log").read_text()
            return False

    def send_raw(self, datagram: bytes, timeout: float = 2.0) -> tuple[bytes, dict[str, Any]]:
        self.sock.settimeout(timeout)
        self.sock.sendto(datagram, self.control)
        while True:
            data, _ = self.sock.recvfrom(65535)
            cookie, message = ng.decode(data)
            if cookie == datagram.split(b" ", 1)[0]:
                return cookie, message

    def command(self, message: dict[str, Any], timeout: float = 2.0) -> dict[str, Any]:
        self._n += 1
        return self.send_raw(ng.encode(f"t{self._n}_{random.random()}".encode(), message),
                             timeout)[1]

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.sock.close()


def port_range(size: int) -> tuple[int, int]:
    low = random.randrange(20000, 32000, 2)
    return low, low + size - 1


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayProcess]:
    low, high = port_range(40)
    proc = RelayProcess(Path(tmp_path_factory.mktemp("relay")), low, high)
    proc.start()
    yield proc
    proc.stop()


class Phone:
    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, 0))
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])

    def sdp(self, port: int | None = None, extra: str = "") -> str:
        return (f"v=0\r\no=- 1 1 IN IP4 {HOST}\r\ns=-\r\nc=IN IP4 {HOST}\r\nt=0 0\r\n"
                f"m=audio {port or self.port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n{extra}")

    def rtp(self, seq: int, to: int, payload: bytes = b"x" * 160) -> None:
        header = bytes([0x80, 0]) + seq.to_bytes(2, "big") + (seq * 160).to_bytes(4, "big") \
            + (0x1234).to_bytes(4, "big")
        self.sock.sendto(header + payload, (HOST, to))

    def receive(self) -> tuple[bytes, tuple[str, int]] | None:
        try:
            data, source = self.sock.recvfrom(2048)
        except TimeoutError:
            return None
        return data, source

    def close(self) -> None:
        self.sock.close()


def relay_port(body: str) -> int:
    return int(next(x for x in body.split("\r\n") if x.startswith("m=audio")).split()[1])


def call(relay: RelayProcess, a: Phone, b: Phone, call_id: str, a_sdp: str | None = None,
         **offer_extra: Any) -> tuple[int, int]:
    """Offer from a, answer from b; the relay ports (a sends to, b sends to)."""
    out = relay.command({"command": "offer", "call-id": call_id, "from-tag": "A", "to-tag": "B",
                         "via-branch": "B", "sdp": a_sdp or a.sdp(), **offer_extra})
    assert out["result"] == "ok", out
    back = relay.command({"command": "answer", "call-id": call_id, "from-tag": "A",
                          "to-tag": "B", "sdp": b.sdp()})
    assert back["result"] == "ok", back
    return relay_port(back["sdp"]), relay_port(out["sdp"])


def flows(sender: Phone, to: int, receiver: Phone, seq: int) -> tuple[bytes, tuple[str, int]]:
    """Packets from `sender` reach `receiver` (retrying: the first may race the socket)."""
    def attempt() -> tuple[bytes, tuple[str, int]] | None:
        sender.rtp(seq, to)
        return receiver.receive()
    return wait_for(attempt, timeout=5, what="RTP through the relay")


@pytest.fixture
def phones() -> Iterator[tuple[Phone, Phone, Phone]]:
    trio = (Phone(), Phone(), Phone())
    yield trio
    for p in trio:
        p.close()


def test_rtp_both_ways_query_counts_delete_frees(relay: RelayProcess,
                                                 phones: tuple[Phone, Phone, Phone]) -> None:
    a, b, _ = phones
    to_a, to_b = call(relay, a, b, "both-ways")
    data, source = flows(a, to_a, b, 1)
    assert source == (HOST, to_b) and data[2:4] == (1).to_bytes(2, "big")
    data, source = flows(b, to_b, a, 2)
    assert source == (HOST, to_a)
    for seq in range(3, 13):
        # Paced as a phone sends (ptime 20 ms): a packet in flight while the
        # stream moves into the kernel (about a millisecond) may be lost.
        time.sleep(0.02)
        a.rtp(seq, to_a)
        assert b.receive() is not None
    q = relay.command({"command": "query", "call-id": "both-ways"})
    assert q["result"] == "ok"
    a_stats = q["tags"]["A"]["medias"][0]["streams"][0]["stats"]
    assert a_stats["packets"] >= 11 and a_stats["bytes"] >= 11 * 172
    assert q["totals"]["RTP"]["packets"] >= 12
    assert relay.command({"command": "list"})["calls"].count("both-ways") == 1
    gone = relay.command({"command": "delete", "call-id": "both-ways"})
    assert gone["result"] == "ok"
    a.rtp(99, to_a)
    assert b.receive() is None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((HOST, to_a))  # the port is free again
    assert relay.command({"command": "query", "call-id": "both-ways"})["result"] == "error"


def test_latches_to_a_nated_source_and_a_stranger_cannot_steal(
        relay: RelayProcess, phones: tuple[Phone, Phone, Phone]) -> None:
    a, b, stranger = phones
    # A's SDP names a port nobody listens on: its NAT sends from another one.
    to_a, to_b = call(relay, a, b, "nat", a_sdp=a.sdp(port=free_udp_port()),
                      flags=["strict-source"])
    flows(a, to_a, b, 1)  # latches A's side to its real source
    _, source = flows(b, to_b, a, 2)  # so B's packets now reach A's real socket
    assert source == (HOST, to_a)
    stranger.rtp(500, to_a, b"evil" * 40)
    a.rtp(3, to_a)
    got = b.receive()
    assert got is not None and got[0][2:4] == (3).to_bytes(2, "big")  # only A's packet came
    assert b.receive() is None
    b.rtp(4, to_b)
    assert a.receive() is not None and stranger.receive() is None  # the stream stayed A's
    q = relay.command({"command": "query", "call-id": "nat"})
    assert q["tags"]["A"]["medias"][0]["streams"][0]["stats"]["errors"] >= 1
    relay.command({"command": "delete", "call-id": "nat"})


def test_ports_exhausted_is_an_error_answer(relay: RelayProcess,
                                            phones: tuple[Phone, Phone, Phone]) -> None:
    a, _, _ = phones
    made = []
    for n in range(100):
        out = relay.command({"command": "offer", "call-id": f"fill-{n}", "from-tag": "A",
                             "to-tag": "B", "sdp": a.sdp()})
        if out["result"] == "error":
            assert out["error-reason"] == "Ran out of ports"
            break
        made.append(f"fill-{n}")
    else:
        pytest.fail("never ran out of ports")
    assert len(made) == 10  # 40 ports: 20 pairs, two per call
    assert relay.command({"command": "ping"})["result"] == "pong"
    for call_id in made:
        assert relay.command({"command": "delete", "call-id": call_id})["result"] == "ok"


def test_same_cookie_same_answer(relay: RelayProcess, phones: tuple[Phone, Phone, Phone]) -> None:
    a, _, _ = phones
    datagram = ng.encode(b"retry-1", {"command": "offer", "call-id": "retry", "from-tag": "A",
                                      "to-tag": "B", "sdp": a.sdp()})
    first = relay.send_raw(datagram)
    again = relay.send_raw(datagram)
    assert first == again and first[1]["result"] == "ok"
    relay.command({"command": "delete", "call-id": "retry"})


def kamailio_dict(*items: tuple[bytes, bytes]) -> bytes:
    """A dictionary in the order Kamailio's module adds its keys (not sorted)."""
    def enc(value: Any) -> bytes:
        if isinstance(value, bytes):
            return str(len(value)).encode() + b":" + value
        if isinstance(value, list):
            return b"l" + b"".join(enc(v) for v in value) + b"e"
        raise TypeError(value)
    return b"d" + b"".join(enc(k) + enc(v) for k, v in items) + b"e"


def test_kamailio_rtpengine_module_messages(relay: RelayProcess,
                                            phones: tuple[Phone, Phone, Phone]) -> None:
    a, b, _ = phones
    # rtpengine_offer("replace-origin replace-session-connection ICE=remove RTP/AVP
    #   rtcp-mux-demux strict-source port-latching direction=external") on an INVITE
    offer = kamailio_dict(
        (b"supports", [b"load limit"]), (b"sdp", a.sdp(extra="a=rtcp-mux\r\n").encode()),
        (b"flags", [b"strict-source", b"port-latching"]), (b"ICE", b"remove"),
        (b"direction", [b"external"]), (b"replace", [b"origin", b"session-connection"]),
        (b"transport-protocol", b"RTP/AVP"), (b"rtcp-mux", [b"demux"]),
        (b"received-from", [b"IP4", HOST.encode()]), (b"call-id", b"kam-1@host"),
        (b"via-branch", b"z9hG4bK.kam1"), (b"from-tag", b"ftag1"), (b"command", b"offer"),
        (b"sip-message-type", b"request"))
    _, out = relay.send_raw(b"4213_5 " + offer)
    assert out["result"] == "ok", out
    assert f"o=- 1 1 IN IP4 {HOST}" in out["sdp"] and "a=rtcp-mux" not in out["sdp"]
    # rtpengine_answer(...) on the 200 OK: from-tag is the From tag, to-tag the To tag
    answer = kamailio_dict(
        (b"supports", [b"load limit"]), (b"sdp", b.sdp().encode()),
        (b"flags", [b"strict-source", b"port-latching"]), (b"replace", [b"origin"]),
        (b"received-from", [b"IP4", HOST.encode()]), (b"call-id", b"kam-1@host"),
        (b"via-branch", b"z9hG4bK.kam1"), (b"from-tag", b"ftag1"), (b"to-tag", b"ttag1"),
        (b"command", b"answer"), (b"sip-message-type", b"reply"))
    _, back = relay.send_raw(b"4213_6 " + answer)
    assert back["result"] == "ok", back
    assert "a=rtcp-mux" in back["sdp"]  # A offered mux; the relay demultiplexes for B
    to_a, to_b = relay_port(back["sdp"]), relay_port(out["sdp"])
    flows(a, to_a, b, 1)
    flows(b, to_b, a, 2)
    # rtpengine_delete() on the BYE: from-tag only
    delete = kamailio_dict((b"supports", [b"load limit"]), (b"call-id", b"kam-1@host"),
                           (b"from-tag", b"ftag1"), (b"command", b"delete"),
                           (b"sip-message-type", b"request"))
    _, gone = relay.send_raw(b"4213_7 " + delete)
    assert gone["result"] == "ok" and "totals" in gone
    _, pong = relay.send_raw(b"4213_8 " + kamailio_dict((b"command", b"ping")))
    assert pong == {"result": "pong"}


def test_kill_9_and_restart_keeps_the_stream(tmp_path: Path,
                                              phones: tuple[Phone, Phone, Phone]) -> None:
    a, b, _ = phones
    low, high = port_range(20)
    relay = RelayProcess(tmp_path, low, high)
    relay.start()
    try:
        to_a, to_b = call(relay, a, b, "survivor", a_sdp=a.sdp(port=free_udp_port()))
        flows(a, to_a, b, 1)  # latched to A's real source, stored
        flows(b, to_b, a, 2)
        relay.kill()
        relay.start()
        _, source = flows(b, to_b, a, 3)  # the latch came back from the store
        assert source == (HOST, to_a)
        flows(a, to_a, b, 4)
        q = relay.command({"command": "query", "call-id": "survivor"})
        assert q["result"] == "ok" and q["totals"]["RTP"]["packets"] >= 2
    finally:
        relay.stop()


def test_a_port_held_by_another_program_is_refused_then_skipped(
        tmp_path: Path, phones: tuple[Phone, Phone, Phone]) -> None:
    a, b, _ = phones
    low, high = port_range(8)
    squatter = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    squatter.bind((HOST, low))  # the first pair the relay would hand out
    relay = RelayProcess(tmp_path, low, high)
    relay.start()
    try:
        out = relay.command({"command": "offer", "call-id": "squat", "from-tag": "A",
                             "to-tag": "B", "sdp": a.sdp()})
        assert out["result"] == "error" and str(low) in out["error-reason"]
        assert relay.command({"command": "query", "call-id": "squat"})["result"] == "error"
        to_a, to_b = call(relay, a, b, "after")
        assert low not in (to_a, to_b)
        flows(a, to_a, b, 1)
    finally:
        relay.stop()
        squatter.close()


def test_silent_call_is_torn_down_and_the_softswitch_told_until_it_acks(
        tmp_path: Path, phones: tuple[Phone, Phone, Phone]) -> None:
    a, b, softswitch = phones
    low, high = port_range(8)
    relay = RelayProcess(tmp_path, low, high, "--notify", f"udp:{HOST}:{softswitch.port}",
                         "--silence-timeout", "1")
    relay.start()
    try:
        to_a, to_b = call(relay, a, b, "quiet")
        flows(a, to_a, b, 1)
        softswitch.sock.settimeout(5)
        data, source = softswitch.sock.recvfrom(2048)
        cookie, message = ng.decode(data)
        assert message == {"command": "teardown", "call-id": "quiet", "reason": "media timeout"}
        again, _ = softswitch.sock.recvfrom(2048)  # not acknowledged: sent again
        assert ng.decode(again)[0] == cookie
        softswitch.sock.sendto(ng.encode(cookie, {"result": "ok"}), source)
        assert relay.command({"command": "query", "call-id": "quiet"})["result"] == "error"
        softswitch.sock.settimeout(2.5)
        late = 0
        with pytest.raises(TimeoutError):  # acknowledged: no more repeats
            while late < 2:  # one already on its way is fine; a second is not
                softswitch.sock.recvfrom(2048)
                late += 1
        assert late < 2
    finally:
        relay.stop()


def test_rtcp_on_its_own_port_and_demultiplexed(relay: RelayProcess) -> None:
    """A multiplexes RTCP on its RTP port (rtcp-mux-demux); B uses RTP port + 1."""
    a = Phone()
    b_rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for base in range(20001, 32000, 2):  # B needs an even/odd pair of its own
        try:
            b_rtp.bind((HOST, base - 1))
            b_rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            b_rtcp.bind((HOST, base))
            break
        except OSError:
            b_rtp.close()
            b_rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b_rtcp.settimeout(0.2)
    b_port = b_rtp.getsockname()[1]
    try:
        out = relay.command({"command": "offer", "call-id": "rtcp", "from-tag": "A",
                             "to-tag": "B", "sdp": a.sdp(extra="a=rtcp-mux\r\n"),
                             "rtcp-mux": ["demux"]})
        back = relay.command({"command": "answer", "call-id": "rtcp", "from-tag": "A",
                              "to-tag": "B", "sdp": a.sdp(port=b_port)})
        assert "a=rtcp-mux" not in out["sdp"] and "a=rtcp-mux" in back["sdp"]
        to_a, to_b = relay_port(back["sdp"]), relay_port(out["sdp"])
        receiver_report = bytes([0x81, 201, 0, 7]) + bytes(28)  # RR, one report block

        def rtcp_through() -> tuple[bytes, Any] | None:
            a.sock.sendto(receiver_report, (HOST, to_a))  # on A's RTP port: muxed
            try:
                return b_rtcp.recvfrom(2048)
            except TimeoutError:
                return None
        data, source = wait_for(rtcp_through, timeout=5, what="RTCP through the relay")
        assert data == receiver_report and source == (HOST, to_b + 1)
        b_rtcp.sendto(receiver_report, (HOST, to_b + 1))  # B's RTCP goes to A's RTP port
        got = wait_for(a.receive, timeout=5, what="RTCP back to A")
        assert got == (receiver_report, (HOST, to_a))
        q = relay.command({"command": "query", "call-id": "rtcp"})
        assert q["totals"]["RTCP"]["packets"] >= 2
    finally:
        relay.command({"command": "delete", "call-id": "rtcp"})
        a.close()
        b_rtp.close()
        b_rtcp.close()
