"""A trunk that refuses the TCP connection fails the call at once, not after 32 s.

An emergency call failing that way is logged at error level.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.support.phone import Phone
from tests.support.server import ServerProcess, free_port
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


def test_refused_tcp_connection_to_a_trunk_fails_the_call_quickly(own_server: ServerProcess,
                                                                   tmp_path: Path) -> None:
    own_server.extra_config = (
        "trunks:\n"
        f"  - {{name: provider, host: 127.0.0.1, port: {free_port()}, transport: tcp,"
        " context: from-provider, acl: ['127.0.0.1:1']}\n")
    own_server.start()
    with Phone.start("1001", "1001pass", own_server.udp_port, log_dir=tmp_path) as phone:
        assert phone.register() == 200
        start = time.monotonic()
        call = phone.call(f"sip:2125551234@127.0.0.1:{own_server.udp_port}")
        ended = phone.wait_call_state(call, "DISCONNECTED", 10)
        # The shipped plan answers a failed trunk dial with 503.
        assert ended["code"] == 503
        assert time.monotonic() - start < 5  # not Timer B's 32 s
        # An emergency call that fails is logged at error level; the other was not.
        assert not _emergency_failures(own_server)
        call = phone.call(f"sip:911@127.0.0.1:{own_server.udp_port}")
        assert phone.wait_call_state(call, "DISCONNECTED", 10)["code"] == 503
    assert '"connect_failed"' in own_server.log()
    [failed] = wait_for(lambda: _emergency_failures(own_server), 5, "the emergency failure logged")
    assert failed["level"] == "error"
    assert failed["caller"] == "1001" and failed["dialled"] == "911" and failed["code"] == 503
    assert failed["b_legs"] == ["trunk/provider/911"]


def _emergency_failures(server: ServerProcess) -> list[dict]:
    return [json.loads(line) for line in server.log_path.read_text().splitlines()
            if '"emergency_call_failed"' in line]
