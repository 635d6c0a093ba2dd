"""Overload control on a running server with real phones: new work refused, accepted work served.

The server runs with a test-sized limit (two server transactions owed a
final answer), so two calls left ringing put it beyond capacity: a real
signal through the real monitor, no hook. Then a new INVITE and an initial
REGISTER get 503 with Retry-After (and the loss in the Via's RFC 7339 `oc`
for a client that asks), while the established call's BYE, the
ringing calls' CANCELs and a phone's REGISTER refresh are served; once the
ringing calls end, new calls are admitted again.

The UDP queue signal counts datagrams: a server held still (SIGSTOP) while
big junk datagrams fill its queue past what the old limit in bytes allowed
does not shed when it resumes; held still while small requests pile up,
it does.
"""

from __future__ import annotations

import json
import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from softswitch.cdr import read_cdrs
from tests.support.phone import Phone, start_phones
from tests.support.server import ServerProcess
from tests.support.sip_client import SipClient, build_request, options_request
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

OVERLOAD = """\
overload:
  max_lag: 0
  max_udp_datagrams: 0
  max_transactions: 2
  recover_after: 0.3
  loss_step: 1.0
  retry_after: 9
"""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path / "server", extra_config=OVERLOAD)
    proc.start()
    yield proc
    proc.stop()


def levels(server: ServerProcess) -> list[str]:
    out = []
    for line in server.log_path.read_text(errors="replace").splitlines():
        if '"overload_level"' in line:
            entry = json.loads(line)
            if entry.get("event") == "overload_level":  # not the signals report's field
                out.append(entry["new"])
    return out


def test_beyond_capacity_new_work_gets_503_and_accepted_work_is_served(
        server: ServerProcess, tmp_path: Path) -> None:
    port = server.udp_port
    phones: list[Phone] = start_phones([
        dict(user=user, password=f"{user}pass", server_port=port, log_dir=tmp_path)
        for user in ("1001", "1002", "1003")])
    a, b, c = phones
    try:
        for phone in phones:
            assert phone.register() == 200
        # An established call, A to B.
        call = a.call(f"sip:1002@127.0.0.1:{port}")
        incoming = b.wait_event("incoming_call", 10)
        b.answer(incoming["call"], 200)
        a.wait_call_state(call, "CONFIRMED", 10)
        # Two calls from C left ringing at B: two INVITE transactions owed
        # a final answer, the limit.
        ringing = [c.call(f"sip:1002@127.0.0.1:{port}") for _ in range(2)]
        wait_for(lambda: len(b.events_named("incoming_call")) >= 3, 10, "both calls ringing")
        wait_for(lambda: "refuse" in levels(server), 10, "the server to refuse new work")

        with SipClient("udp", ("127.0.0.1", port)) as client:
            invite = client.request(build_request(client, "INVITE", f"sip:1002@127.0.0.1:{port}"))
            assert invite is not None and invite.status == 503
            assert invite.get("retry-after") == "9"
            register = client.request(build_request(
                client, "REGISTER", f"sip:1004@127.0.0.1:{port}",
                headers={"Contact": f"<sip:1004@{client.local[0]}:{client.local[1]}>"}))
            assert register is not None and register.status == 503
            assert register.get("retry-after") == "9"
            # A client that asks for RFC 7339 overload control (a trunk) is
            # told to shed all new work itself.
            asking = client.request(build_request(
                client, "INVITE", f"sip:1002@127.0.0.1:{port}").replace(b";rport", b";rport;oc"))
            assert asking is not None and asking.status == 503
            assert asking.top_via.params["oc"] == "100"
            assert asking.top_via.params["oc-algo"] == '"loss"'

        # A refresh of a live binding is served.
        assert a.register() == 200
        # The established call ends properly: BYE answered, CDR written.
        before = len(read_cdrs(server.data_dir / "cdr.sqlite"))
        a.hangup(call)
        b.wait_call_state(incoming["call"], "DISCONNECTED", 10)
        wait_for(lambda: len(read_cdrs(server.data_dir / "cdr.sqlite")) > before, 10, "the CDR")
        # The ringing calls are cancelled (CANCEL admitted), and the server
        # comes back: a new INVITE is no longer refused.
        for ringing_call in ringing:
            c.hangup(ringing_call)
        wait_for(lambda: levels(server)[-1:] == ["normal"], 10, "the server back to normal")
        with SipClient("udp", ("127.0.0.1", port)) as client:
            again = client.request(build_request(client, "INVITE", f"sip:1002@127.0.0.1:{port}"))
            assert again is not None and again.status != 503
    finally:
        for phone in phones:
            phone.close()


QUEUE_ONLY = """\
overload:
  max_lag: 0
  max_transactions: 0
  max_udp_datagrams: 400
  recover_after: 0.3
  report_interval: 0.05
sip:
  udp_receive_buffer: 16777216
"""
OLD_BYTE_LIMIT = 2 << 20  # the signal's limit when it counted bytes


def queue_bytes(port: int) -> int:
    """rx_queue of the server's UDP socket on 127.0.0.1:`port` (bytes, kernel accounting)."""
    wanted = f"0100007F:{port:04X}"
    with open("/proc/net/udp") as table:
        for line in table.read().splitlines()[1:]:
            fields = line.split()
            if fields[1] == wanted:
                return int(fields[4].split(":")[1], 16)
    return 0


def peak_udp_bytes(server: ServerProcess) -> int:
    peaks = [json.loads(line).get("udp_bytes", 0)
             for line in server.log_path.read_text(errors="replace").splitlines()
             if '"overload_signals"' in line]
    return max(peaks, default=0)


def held_still_while(server: ServerProcess, send: list[bytes], at_least: int) -> None:
    """SIGSTOP the server, send `send` to its UDP port, wait until its queue holds
    `at_least` bytes, SIGCONT."""
    assert server.process is not None
    pid = server.process.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            for data in send:
                sender.sendto(data, ("127.0.0.1", server.udp_port))
        wait_for(lambda: queue_bytes(server.udp_port) >= at_least, 10, "the queue to fill")
    finally:
        os.kill(pid, signal.SIGCONT)


def test_big_junk_datagrams_do_not_shed_and_a_flood_of_requests_does(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "server", extra_config=QUEUE_ONLY)
    server.start()
    try:
        # More than the old limit even after the reads that come before the
        # first sample (about 2 MB when the server resumes).
        junk = [os.urandom(60_000) for _ in range(130)]
        held_still_while(server, junk, 130 * 60_000)
        # The monitor saw the queue full of junk (bytes over the old limit)...
        wait_for(lambda: peak_udp_bytes(server) >= OLD_BYTE_LIMIT, 10,
                 "a sample of the junk-filled queue")
        with SipClient("udp", ("127.0.0.1", server.udp_port)) as client:
            answer = client.request(options_request(client))
            assert answer is not None and answer.status == 200
        # ...and did not take it for overload.
        assert levels(server) == []

        with SipClient("udp", ("127.0.0.1", server.udp_port)) as client:
            flood = [options_request(client) for _ in range(2500)]
            held_still_while(server, flood, 2500 * 1000)
            wait_for(lambda: levels(server)[:1] in (["refuse"], ["drop"]), 10,
                     "the flood to be shed")
            wait_for(lambda: levels(server)[-1:] == ["normal"], 20, "back to normal")
    finally:
        server.stop()
