"""The softswitch drives a real rtpengine (Debian's rtpengine-daemon, userspace) as its relay.

`media: {mode: relay, embedded: false, relays: [rtpengine]}`: a call between
two pjsua2 phones must have each phone send its RTP to rtpengine's address
and ports, RTP must flow both ways through it (its counters move), and the
end of the call must delete the call in rtpengine and write the CDR.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rtpmedia import ng
from softswitch.cdr import read_cdrs
from tests.support.phone import answered_call, registered_phones
from tests.support.server import ServerProcess, free_port
from tests.support.waiting import wait_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("rtpengine") is None, reason="rtpengine-daemon not installed"),
]


class Rtpengine:
    def __init__(self, workdir: Path) -> None:
        self.ng_port = free_port()
        self.port_min = random.randrange(42000, 48000, 100)
        self.port_max = self.port_min + 99
        config = workdir / "rtpengine.conf"
        config.write_text("[rtpengine]\n")
        self.log_path = workdir / "rtpengine.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            ["rtpengine", f"--config-file={config}", "--table=-1", "--foreground",
             "--log-stderr", "--interface=127.0.0.1", f"--listen-ng=127.0.0.1:{self.ng_port}",
             f"--port-min={self.port_min}", f"--port-max={self.port_max}",
             f"--pidfile={workdir / 'rtpengine.pid'}", "--delete-delay=0"],
            stdout=self._log, stderr=subprocess.STDOUT)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.settimeout(0.3)
        self.cookies = 0

    def ask(self, message: dict[str, Any]) -> dict[str, Any] | None:
        self.cookies += 1
        cookie = f"t{self.cookies}".encode()
        self.sock.sendto(ng.encode(cookie, message), ("127.0.0.1", self.ng_port))
        try:
            while True:
                got, answer = ng.decode(self.sock.recv(65535))
                if got == cookie:
                    return answer
        except TimeoutError:
            return None

    def calls(self) -> list[str]:
        answer = self.ask({"command": "list"}) or {}
        return list(answer.get("calls", []))

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.sock.close()
        self._log.close()


@pytest.fixture(scope="module")
def rtpengine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rtpengine]:
    engine = Rtpengine(tmp_path_factory.mktemp("rtpengine"))
    try:
        wait_for(lambda: (engine.ask({"command": "ping"}) or {}).get("result") == "pong",
                 10, "rtpengine to answer ping")
        yield engine
    finally:
        engine.close()


@pytest.fixture(scope="module")
def relayed_server(rtpengine: Rtpengine, tmp_path_factory: pytest.TempPathFactory
                   ) -> Iterator[ServerProcess]:
    server = ServerProcess(
        tmp_path_factory.mktemp("relayed"),
        extra_config=(f"media:\n  mode: relay\n  embedded: false\n"
                      f"  notify: udp:127.0.0.1:{free_port()}\n"
                      f"  relays:\n    - address: udp:127.0.0.1:{rtpengine.ng_port}\n"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_a_call_through_rtpengine(rtpengine: Rtpengine, relayed_server: ServerProcess,
                                  tmp_path: Path) -> None:
    server = relayed_server
    a, b = registered_phones(server.udp_port, ["1001", "1002"], tmp_path)
    try:
        call, incoming = answered_call(a, b, f"sip:1002@127.0.0.1:{server.udp_port}")
        wait_for(lambda: a.stats(call)["rx_packets"] > 25
                 and b.stats(incoming)["rx_packets"] > 25, 10, "RTP both ways")
        # Each phone was told to send to rtpengine, on ports from its range.
        for phone, number in ((a, call), (b, incoming)):
            host, _, port = str(phone.stats(number)["remote_rtp"]).rpartition(":")
            assert host == "127.0.0.1"
            assert rtpengine.port_min <= int(port) <= rtpengine.port_max, port
        [call_id] = rtpengine.calls()
        query = rtpengine.ask({"command": "query", "call-id": call_id}) or {}
        per_tag = {tag: sum(s.get("stats", {}).get("packets", 0)
                            for m in mono.get("medias", []) for s in m.get("streams", []))
                   for tag, mono in query.get("tags", {}).items()}
        # Packets from both phones reached rtpengine (two tags, both counting).
        assert len(per_tag) == 2 and all(n > 10 for n in per_tag.values()), per_tag
        a.hangup(call)
        b.wait_call_state(incoming, "DISCONNECTED", 10)
        wait_for(lambda: not rtpengine.calls(), 10, "rtpengine to delete the call")
        records = wait_for(lambda: [r for r in read_cdrs(server.data_dir / "cdr.sqlite")
                                    if r.caller == "1001"], 10, "the CDR")
        assert records[-1].billsec > 0
    finally:
        a.close()
        b.close()


def test_hold_and_resume_keep_media_through_rtpengine(rtpengine: Rtpengine,
                                                      relayed_server: ServerProcess,
                                                      tmp_path: Path) -> None:
    server = relayed_server
    a, b = registered_phones(server.udp_port, ["1001", "1002"], tmp_path)
    try:
        call, incoming = answered_call(a, b, f"sip:1002@127.0.0.1:{server.udp_port}")
        wait_for(lambda: b.stats(incoming)["rx_packets"] > 10, 10, "RTP")
        since = a.mark()
        a.hold(call)
        a.wait_event("media_state", 10, since=since,
                     where=lambda e: e["call"] == call and e["status"] == "LOCAL_HOLD")
        since = a.mark()
        a.unhold(call)
        a.wait_event("media_state", 10, since=since,
                     where=lambda e: e["call"] == call and e["status"] == "ACTIVE")
        before = (a.stats(call)["rx_packets"], b.stats(incoming)["rx_packets"])
        wait_for(lambda: a.stats(call)["rx_packets"] > before[0] + 25
                 and b.stats(incoming)["rx_packets"] > before[1] + 25, 10,
                 "RTP both ways after resume")
        for phone, number in ((a, call), (b, incoming)):
            port = int(str(phone.stats(number)["remote_rtp"]).rpartition(":")[2])
            assert rtpengine.port_min <= port <= rtpengine.port_max
        a.hangup(call)
        b.wait_call_state(incoming, "DISCONNECTED", 10)
        wait_for(lambda: not rtpengine.calls(), 10, "rtpengine to delete the call")
    finally:
        a.close()
        b.close()


SDP = ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
       "m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")


def test_deleting_a_cancelled_fork_keeps_the_call_in_rtpengine(rtpengine: Rtpengine) -> None:
    # What RelayMedia sends when a fork is cancelled: from-tag (the offerer),
    # to-tag and via-branch (the fork). rtpengine must keep the other fork.
    flags = {"replace": ["origin", "session-connection"], "ICE": "remove",
             "transport-protocol": "RTP/AVP", "rtcp-mux": ["demux"]}
    call = "fork-test"
    for fork in ("Y1", "Y2"):
        answer = rtpengine.ask({"command": "offer", "call-id": call, "from-tag": "X",
                                "to-tag": fork, "via-branch": fork,
                                "sdp": SDP.format(port=5000), **flags})
        assert answer is not None and answer["result"] == "ok", answer
    deleted = rtpengine.ask({"command": "delete", "call-id": call, "from-tag": "X",
                             "to-tag": "Y2", "via-branch": "Y2"})
    assert deleted is not None and deleted["result"] == "ok", deleted
    answer = rtpengine.ask({"command": "answer", "call-id": call, "from-tag": "X",
                            "to-tag": "Y1", "via-branch": "Y1", "sdp": SDP.format(port=6000),
                            **flags})
    assert answer is not None and answer["result"] == "ok", answer
    assert call in rtpengine.calls()
    rtpengine.ask({"command": "delete", "call-id": call})
    wait_for(lambda: call not in rtpengine.calls(), 5, "the call deleted")
