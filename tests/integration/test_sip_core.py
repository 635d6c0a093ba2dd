"""The SIP core of a real `softswitch run` over real UDP, TCP and TLS sockets."""

from __future__ import annotations

import signal
import socket
import time

import pytest

from tests.support.server import ServerProcess
from tests.support.sip_client import SipClient, build_request, options_request

pytestmark = pytest.mark.integration

TRANSPORTS = ["udp", "tcp", "tls"]


def _client(server: ServerProcess, transport: str) -> SipClient:
    port = {"udp": server.udp_port, "tcp": server.tcp_port, "tls": server.tls_port}[transport]
    return SipClient(transport, ("127.0.0.1", port))


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_options_to_the_server_lists_capabilities(server: ServerProcess, transport: str) -> None:
    with _client(server, transport) as client:
        response = client.request(options_request(client))
    assert response is not None and response.status == 200
    allow = {m.strip() for m in (response.get("allow") or "").split(",")}
    assert {"OPTIONS", "ACK", "CANCEL"} <= allow
    assert response.get("accept") == "application/sdp"
    assert response.has("supported") or response.get("supported") is None
    assert response.to_tag


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_unknown_method_gets_405_with_allow(server: ServerProcess, transport: str) -> None:
    with _client(server, transport) as client:
        response = client.request(build_request(client, "FROBNICATE", "sip:127.0.0.1"))
    assert response is not None and response.status == 405
    assert "OPTIONS" in (response.get("allow") or "")


def test_unknown_extension_in_require_gets_420(server: ServerProcess) -> None:
    with _client(server, "udp") as client:
        response = client.request(options_request(client, headers={"Require": "foo-ext, bar"}))
    assert response is not None and response.status == 420
    assert response.get("unsupported") == "foo-ext, bar"


def test_max_forwards_zero_on_a_routed_request_gets_483(server: ServerProcess) -> None:
    with _client(server, "udp") as client:
        response = client.request(build_request(client, "OPTIONS", "sip:1001@127.0.0.1",
                                                max_forwards=0))
        assert response is not None and response.status == 483
        # Addressed to the server itself it is answered, not forwarded.
        response = client.request(options_request(client, max_forwards=0))
        assert response is not None and response.status == 200


def test_udp_answer_goes_to_the_source_port_with_rport(server: ServerProcess) -> None:
    # The Via claims port 9 (discard); rport makes the answer come back to
    # the port we really sent from, as it must for a client behind NAT.
    with _client(server, "udp") as client:
        request = build_request(client, "OPTIONS", f"sip:127.0.0.1:{server.udp_port}")
        request = request.replace(f"127.0.0.1:{client.local[1]};".encode(), b"127.0.0.1:9;", 1)
        response = client.request(request)
    assert response is not None and response.status == 200
    via = response.top_via
    assert via.params.get("rport") == str(client.local[1])
    assert via.params.get("received") is None or via.params["received"] == "127.0.0.1"


def test_retransmitted_request_gets_the_same_answer(server: ServerProcess) -> None:
    with _client(server, "udp") as client:
        request = options_request(client)
        first = client.request(request)
        second = client.request(request)
    assert first is not None and second is not None
    assert first.to_bytes() == second.to_bytes()


def test_tcp_stream_framing_and_keepalive(server: ServerProcess) -> None:
    with _client(server, "tcp") as client:
        one, two = options_request(client, cseq=1), options_request(client, cseq=2)
        # two messages in one segment, preceded by a keep-alive ping
        client.send(b"\r\n\r\n" + one + two)
        statuses = [client.recv(), client.recv()]
        assert client.raw.startswith(b"\r\nSIP/2.0 200")  # the pong came first
        assert [r.status for r in statuses if r] == [200, 200]
        assert [r.cseq.seq for r in statuses if r] == [1, 2]
        # one message across many segments
        three = options_request(client, cseq=3)
        for i in range(0, len(three), 7):
            client.send(three[i:i + 7])
            time.sleep(0.001)
        response = client.recv()
        assert response is not None and response.cseq.seq == 3


def test_pong_is_a_single_crlf(server: ServerProcess) -> None:
    with _client(server, "tcp") as client:
        client.send(b"\r\n\r\n")
        client.sock.settimeout(2)
        assert client.sock.recv(100) == b"\r\n"


def test_sigterm_stops_cleanly(own_server: ServerProcess) -> None:
    own_server.start()
    assert (own_server.data_dir / "softswitch.pid").exists()
    assert own_server.stop(signal.SIGTERM) == 0
    assert not (own_server.data_dir / "softswitch.pid").exists()
    assert '"stopped"' in own_server.log()


def test_idle_tcp_connection_is_closed(own_server: ServerProcess) -> None:
    own_server.extra_config = "sip:\n  idle_timeout: 0.5\n"
    own_server.start()
    with _client(own_server, "tcp") as client:
        assert client.request(options_request(client)) is not None
        client.sock.settimeout(5)
        start = time.monotonic()
        assert client.sock.recv(100) == b""  # closed by the server
        assert time.monotonic() - start < 4


def test_bad_listen_address_fails_with_a_clear_error(own_server: ServerProcess) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        own_server.udp_port = busy.getsockname()[1]
        own_server.write_config()
        with pytest.raises(RuntimeError, match="start_failed"):
            own_server.start(timeout=10)
