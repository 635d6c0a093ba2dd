"""Calls through the B2BUA between real pjsua2 softphones."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from softswitch.cdr import Disposition, read_cdrs
from tests.support.phone import Phone, start_phones
from tests.support.server import ServerProcess

pytestmark = pytest.mark.integration


def wait_for(predicate, timeout: float = 10.0, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def cdrs(server: ServerProcess) -> list:  # type: ignore[type-arg]
    path = server.data_dir / "cdr.sqlite"
    return read_cdrs(path) if path.exists() else []


@pytest.fixture
def phones(server: ServerProcess, tmp_path: Path) -> Iterator[tuple[Phone, Phone]]:
    a, b = start_phones([
        dict(user="1001", password="1001pass", server_port=server.udp_port, log_dir=tmp_path),
        dict(user="1002", password="1002pass", server_port=server.udp_port, log_dir=tmp_path),
    ])
    try:
        assert a.register() == 200 and b.register() == 200
        yield a, b
    finally:
        a.close()
        b.close()


def test_call_answer_rtp_both_ways_and_caller_hangs_up(server: ServerProcess,
                                                       phones: tuple[Phone, Phone]) -> None:
    a, b = phones
    before = len(cdrs(server))
    call = a.call(f"sip:1002@127.0.0.1:{server.udp_port}")
    incoming = b.wait_event("incoming_call", 10)
    assert "1001" in incoming["remote_uri"]
    b.answer(incoming["call"], 180)
    a.wait_call_state(call, "EARLY", 10)
    b.answer(incoming["call"], 200)
    a.wait_call_state(call, "CONFIRMED", 10)
    # Direct media: each phone receives the other's RTP.
    wait_for(lambda: a.stats(call)["rx_packets"] > 25 and b.stats(incoming["call"])["rx_packets"] > 25,
             10, "RTP both ways")
    a.hangup(call)
    b.wait_call_state(incoming["call"], "DISCONNECTED", 10)
    records = wait_for(lambda: cdrs(server)[before:], 10, "the CDR")
    [record] = records
    assert record.caller == "1001" and record.dialled == "1002" and record.callee == "user/1002"
    assert record.disposition is Disposition.ANSWERED and record.hangup_side.value == "caller"
    assert record.answer is not None and record.billsec > 0.5
