"""A trunk that refuses the TCP connection fails the call at once, not after 32 s."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support.phone import Phone
from tests.support.server import ServerProcess, free_port

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
    assert '"connect_failed"' in own_server.log()
