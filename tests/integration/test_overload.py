"""Overload control on a running server with real phones: new work refused, accepted work served.

The server runs with a test-sized limit (two server transactions owed a
final answer), so two calls left ringing put it beyond capacity: a real
signal through the real monitor, no hook. Then a new INVITE and an initial
REGISTER get 503 with Retry-After, while the established call's BYE, the
ringing calls' CANCELs and a phone's REGISTER refresh are served; once the
ringing calls end, new calls are admitted again.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from softswitch.cdr import read_cdrs
from tests.support.phone import Phone, start_phones
from tests.support.server import ServerProcess
from tests.support.sip_client import SipClient, build_request
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

OVERLOAD = """\
overload:
  max_lag: 0
  max_udp_queue: 0
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
            out.append(json.loads(line)["new"])
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
