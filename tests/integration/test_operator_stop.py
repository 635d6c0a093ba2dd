"""Stopping the server whatever happened to its output (issue 18, point 1)."""

from __future__ import annotations

import signal
import subprocess

import pytest

from tests.support.server import ServerProcess
from tests.support.sip_client import SipClient, options_request

pytestmark = pytest.mark.integration


def _answers(server: ServerProcess) -> bool:
    with SipClient("udp", ("127.0.0.1", server.udp_port)) as client:
        response = client.request(options_request(client))
    return response is not None and response.status == 200


def test_server_piped_into_tee_keeps_running_and_stops_after_tee_dies(
        own_server: ServerProcess) -> None:
    # `softswitch run 2>&1 | tee server.log`, then Ctrl-C kills tee first.
    tee = subprocess.Popen(["tee", str(own_server.log_path)], stdin=subprocess.PIPE,
                           stdout=subprocess.DEVNULL)
    assert tee.stdin is not None
    try:
        own_server.start(output=tee.stdin)
    finally:
        tee.stdin.close()  # the server holds the only write end now
    tee.send_signal(signal.SIGINT)
    tee.wait(10)

    # Every SIP message is logged (debug): each write now meets a dead pipe.
    assert _answers(own_server), "the server stopped answering once its log pipe broke"
    assert _answers(own_server)

    assert own_server.process is not None
    own_server.process.send_signal(signal.SIGINT)
    try:
        code = own_server.process.wait(15)
    except subprocess.TimeoutExpired:
        pytest.fail("SIGINT did not stop a server whose stdout reader died")
    assert code == 0
    assert not (own_server.data_dir / "softswitch.pid").exists()
