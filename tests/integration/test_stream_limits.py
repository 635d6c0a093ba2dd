"""TCP limits on a running server: connections per source, slow partial messages."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server import ServerProcess
from tests.support.sip_client import SipClient, options_request
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

LIMITS = """\
sip:
  max_connections_per_source: 3
  partial_timeout: 0.5
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(Path(tmp_path_factory.mktemp("limits")), extra_config=LIMITS)
    proc.start()
    yield proc
    proc.stop()


def closed_by_server(sock: socket.socket, timeout: float) -> bool:
    """True once the server closed (EOF or reset), False if still open after `timeout`."""
    sock.settimeout(timeout)
    try:
        return sock.recv(65536) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_one_connection_too_many_from_a_source_is_closed_and_a_slot_comes_back(
        server: ServerProcess) -> None:
    address = ("127.0.0.1", server.tcp_port)
    clients = [SipClient("tcp", address) for _ in range(3)]
    try:
        for client in clients:
            answer = client.request(options_request(client))
            assert answer is not None and answer.status == 200
        extra = socket.create_connection(address, timeout=5)
        try:
            assert closed_by_server(extra, 5)
        finally:
            extra.close()
        # The first three still work.
        answer = clients[0].request(options_request(clients[0]))
        assert answer is not None and answer.status == 200
        clients.pop().close()

        def fourth_served() -> bool:
            with SipClient("tcp", address) as again:
                answer = again.request(options_request(again), timeout=1)
                return answer is not None and answer.status == 200
        wait_for(fourth_served, 5, "a connection accepted once one closed")
    finally:
        for client in clients:
            client.close()


def test_a_message_that_never_completes_is_cut_a_complete_one_is_not(
        server: ServerProcess) -> None:
    address = ("127.0.0.1", server.tcp_port)
    with SipClient("tcp", address) as client:
        request = options_request(client)
        began = time.monotonic()
        client.send(request[: len(request) // 2])
        time.sleep(0.2)
        client.send(request[len(request) // 2: -10])  # still not whole
        assert closed_by_server(client.sock, 5)
        assert time.monotonic() - began < 4
    with SipClient("tcp", address) as client:
        for _ in range(3):
            answer = client.request(options_request(client))
            assert answer is not None and answer.status == 200
        assert not closed_by_server(client.sock, 1.0)
