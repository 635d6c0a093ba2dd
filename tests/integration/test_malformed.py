"""Broken messages sent to a real server over UDP and TCP.

Every case of tests/sipcases/malformed.py gets its expected answer (or none),
and the server keeps answering OPTIONS after each one.
"""

from __future__ import annotations

import socket

import pytest

from tests.sipcases.malformed import CASES, MalformedCase
from tests.support.server import ServerProcess
from tests.support.sip_client import SipClient, options_request

pytestmark = pytest.mark.integration

MAX_UDP_PAYLOAD = 65507


def _still_answers(server: ServerProcess, transport: str) -> None:
    with SipClient(transport, ("127.0.0.1", server.udp_port)) as client:
        response = client.request(options_request(client), timeout=3)
    assert response is not None and response.status == 200, server.log()


@pytest.mark.parametrize("case", CASES, ids=str)
def test_malformed_over_udp(server: ServerProcess, case: MalformedCase) -> None:
    with SipClient("udp", ("127.0.0.1", server.udp_port)) as client:
        if len(case.data) > MAX_UDP_PAYLOAD:
            # Too big for one datagram: the kernel refuses to send it, which
            # is the UDP form of this case. TCP below sends it for real.
            with pytest.raises(OSError):
                client.send(case.data)
        else:
            client.send(case.data)
            if case.expect == "drop":
                assert client.recv_raw(timeout=0.4) is None
            else:
                # Read the status line only: an answer to a request without
                # Call-ID cannot carry one, so it is no full message.
                answer = client.recv_raw(timeout=2)
                assert isinstance(answer, bytes), f"no answer to {case.name}"
                assert int(answer.split(b" ", 2)[1]) == case.expect
    _still_answers(server, "udp")


@pytest.mark.parametrize("case", CASES, ids=str)
def test_malformed_over_tcp(server: ServerProcess, case: MalformedCase) -> None:
    with SipClient("tcp", ("127.0.0.1", server.tcp_port)) as client:
        try:
            client.send(case.data)
        except OSError:
            pass  # the server may close on a framing error while we write
        item = client.recv_raw(timeout=0.5)
        if isinstance(item, bytes):
            # A stream the server could frame is answered like a datagram;
            # one it cannot frame is closed without an answer.
            status = int(item.split(b" ", 2)[1])
            assert case.expect != "drop" and status == case.expect
    _still_answers(server, "tcp")


def test_cut_tcp_stream(server: ServerProcess) -> None:
    with SipClient("tcp", ("127.0.0.1", server.tcp_port)) as client:
        whole = options_request(client)
        client.send(whole[: len(whole) // 2])
    with socket.create_connection(("127.0.0.1", server.tcp_port)) as raw:
        raw.sendall(b"OPTIONS sip:x SIP/2.0\r\nContent-Length: 500\r\n\r\nshort")
    _still_answers(server, "tcp")
    _still_answers(server, "udp")


def test_header_bomb_on_a_stream_is_refused(server: ServerProcess) -> None:
    with SipClient("tcp", ("127.0.0.1", server.tcp_port)) as client:
        bomb = b"OPTIONS sip:x SIP/2.0\r\n" + b"X-Bomb: " + b"a" * 1000 + b"\r\n"
        try:
            for _ in range(200):  # 200 KB of headers, never ending
                client.send(bomb)
        except OSError:
            pass  # closed by the server: what we want
        client.sock.settimeout(5)
        try:
            while client.sock.recv(65536):
                pass
        except (ConnectionResetError, TimeoutError):
            pass
    _still_answers(server, "tcp")
