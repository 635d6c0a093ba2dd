"""Brute force: repeated failed REGISTERs ban their source, in the kernel.

The attacker sends from 127.0.0.5, an honest phone from 127.0.0.6 (both
loopback addresses, so two sources to the server); the ban lands in an
nftables set of the server's own table, whose rule counts the packets it
drops. `softswitch bans` lists the ban and `bans lift` lifts it. The same
over TCP and TLS (other attacking addresses, the same server): the banned
source's open connection is closed by the server and new ones never get
through the kernel; with the drop in userspace (no nftables), the server
closes the connection and refuses new ones itself.
"""

from __future__ import annotations

import json
import secrets
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from softswitch.guard.kernel import NftBans
from softswitch.sip.digest import authorization, first_challenge
from softswitch.sip.message import Response
from tests.support.server import ROOT, ServerProcess, free_port
from tests.support.sip_client import SipClient, build_request, options_request
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

ATTACKER, HONEST, SCANNER = "127.0.0.5", "127.0.0.6", "127.0.0.7"
STREAM_ATTACKERS = {"tcp": "127.0.0.8", "tls": "127.0.0.9"}
USERSPACE_ATTACKER = "127.0.0.10"


def guarded_server(folder: Path, drop: str) -> ServerProcess:
    server = ServerProcess(folder)
    server.udp_port = free_port()
    # A table of its own: other test servers on this machine have theirs.
    server.extra_config = (f"guard:\n  auth_failures: 3\n  failure_window: 60\n"
                           f"  ban_time: 120\n  nft_table: softswitch_test_{server.udp_port}\n"
                           f"  drop: {drop}\n")
    server.start()
    return server


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    if shutil.which("nft") is None:
        pytest.skip("nft is not installed")
    server = guarded_server(Path(tmp_path_factory.mktemp("guarded")), "kernel")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def guarded_userspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = guarded_server(Path(tmp_path_factory.mktemp("guarded-userspace")), "userspace")
    yield server
    server.stop()


def register(client: SipClient, server: ServerProcess, password: str | None,
             call_id: str) -> Response | None:
    """REGISTER 1001 from `client`: answer the challenge with `password` (None: no answer)."""
    uri = f"sip:127.0.0.1:{server.udp_port}"

    def request(cseq: int, auth: str | None) -> bytes:
        headers = {"Contact": f"<sip:1001@{client.local[0]}:{client.local[1]}>",
                   "Expires": "60"}
        if auth is not None:
            headers["Authorization"] = auth
        data = build_request(client, "REGISTER", uri, headers=headers, call_id=call_id,
                             cseq=cseq)
        return data.replace(f"To: <{uri}>".encode(),
                            f"To: <sip:1001@127.0.0.1:{server.udp_port}>".encode()).replace(
            f"From: <sip:tester@{client.local[0]}>".encode(),
            f"From: <sip:1001@127.0.0.1:{server.udp_port}>".encode())

    challenge = client.request(request(1, None))
    if challenge is None or challenge.status != 401 or password is None:
        return challenge
    found = first_challenge(challenge)
    assert found is not None
    auth = authorization(found[0], "REGISTER", uri, "1001", password,
                         cnonce=secrets.token_hex(8))
    return client.request(request(2, auth))


def cli(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    command, *rest = args
    return subprocess.run([sys.executable, "-m", "softswitch", command, "--config",
                           str(server.config_path), "--data-dir", str(server.data_dir), *rest],
                          cwd=ROOT, capture_output=True, text=True, timeout=30)


def test_failed_registers_ban_the_source_in_the_kernel_and_lift_unbans(
        guarded: ServerProcess) -> None:
    kernel = NftBans(f"softswitch_test_{guarded.udp_port}", [])
    server = ("127.0.0.1", guarded.udp_port)
    with SipClient("udp", server, bind=ATTACKER) as attacker:
        for attempt in range(3):
            refused = register(attacker, guarded, "guess", f"guess{attempt}")
            assert refused is not None and refused.status == 403
        # The fourth failure is one too many: its 403 is the last answer.
        refused = register(attacker, guarded, "guess", "guess3")
        assert refused is not None and refused.status == 403
        assert ATTACKER in kernel.listed()
        before = kernel.dropped_packets()
        assert attacker.request(options_request(attacker), timeout=1.0) is None
        assert kernel.dropped_packets() > before  # the kernel dropped it, not the server

        # Another source still registers.
        with SipClient("udp", server, bind=HONEST) as honest:
            ok = register(honest, guarded, "1001pass", "honest")
            assert ok is not None and ok.status == 200

        listed = cli(guarded, "bans", "--json")
        assert listed.returncode == 0, listed.stderr
        [ban] = json.loads(listed.stdout)
        assert ban["address"] == ATTACKER and "failures" in ban["reason"]
        assert 0 < ban["remaining"] <= 120
        table = cli(guarded, "bans")
        assert table.stdout.splitlines()[0].split("\t")[0] == "address"
        assert table.stdout.splitlines()[1].startswith(f"{ATTACKER}\t")

        assert cli(guarded, "bans", "lift", HONEST).returncode == 1  # not banned: refused
        lifted = cli(guarded, "bans", "lift", ATTACKER)
        assert lifted.returncode == 0, lifted.stderr
        assert lifted.stdout.strip() == f"lifted: {ATTACKER}"
        assert ATTACKER not in kernel.listed()
        answer = wait_for(lambda: attacker.request(options_request(attacker), timeout=0.5),
                          5, "an answer once the ban is lifted")
        assert answer.status == 200
    assert json.loads(cli(guarded, "bans", "--json").stdout) == []


def test_a_scanner_user_agent_is_dropped_unanswered(guarded: ServerProcess) -> None:
    with SipClient("udp", ("127.0.0.1", guarded.udp_port), bind=SCANNER) as scanner:
        probe = options_request(scanner, headers={"User-Agent": "friendly-scanner"})
        assert scanner.request(probe, timeout=1.0) is None
        honest = options_request(scanner, headers={"User-Agent": "Linphone/5.2"})
        answer = scanner.request(honest)
        assert answer is not None and answer.status == 200


def stream_port(server: ServerProcess, transport: str) -> int:
    return server.tls_port if transport == "tls" else server.tcp_port


def guess_until_banned(attacker: SipClient, server: ServerProcess, prefix: str) -> None:
    """Four wrong passwords: the fourth is one too many (auth_failures: 3)."""
    for attempt in range(4):
        refused = register(attacker, server, "guess", f"{prefix}-guess{attempt}")
        assert refused is not None and refused.status == 403


def closed_by_server(sock: socket.socket, timeout: float = 5.0) -> bool:
    """Whether the server closes `sock` within `timeout` (EOF or reset seen)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            if sock.recv(4096) == b"":
                return True
        except TimeoutError:
            return False
        except (ConnectionError, ssl.SSLError):
            return True
        except OSError:
            return True
    return False


def connects(source: str, port: int, timeout: float = 1.0) -> bool:
    """Whether a TCP connection from `source` is accepted and stays open a moment."""
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                        source_address=(source, 0))
    except OSError:
        return False
    with sock:
        return not closed_by_server(sock, 0.5)


@pytest.mark.parametrize("transport", ["tcp", "tls"])
def test_failed_registers_over_a_stream_ban_the_source_in_the_kernel(
        guarded: ServerProcess, transport: str) -> None:
    kernel = NftBans(f"softswitch_test_{guarded.udp_port}", [])
    source, port = STREAM_ATTACKERS[transport], stream_port(guarded, transport)
    with SipClient(transport, ("127.0.0.1", port), bind=source) as attacker:
        guess_until_banned(attacker, guarded, transport)
        assert source in kernel.listed()
        before = kernel.dropped_packets()
        # The open connection carries nothing more to the server.
        assert attacker.request(options_request(attacker), timeout=1.0) is None
        assert kernel.dropped_packets() > before
    # Nor does a new one get through (the SYN is dropped in the kernel).
    before = kernel.dropped_packets()
    assert not connects(source, port)
    assert kernel.dropped_packets() > before
    # Another source registers over the same transport.
    with SipClient(transport, ("127.0.0.1", port), bind=HONEST) as honest:
        ok = register(honest, guarded, "1001pass", f"{transport}-honest")
        assert ok is not None and ok.status == 200
    # Lifted, the source connects and is answered again.
    assert cli(guarded, "bans", "lift", source).returncode == 0
    assert source not in kernel.listed()
    with SipClient(transport, ("127.0.0.1", port), bind=source) as again:
        answer = again.request(options_request(again))
        assert answer is not None and answer.status == 200


def test_with_the_drop_in_userspace_a_banned_stream_is_closed_and_not_taken_again(
        guarded_userspace: ServerProcess) -> None:
    server = guarded_userspace
    with SipClient("tcp", ("127.0.0.1", server.tcp_port), bind=USERSPACE_ATTACKER) as attacker:
        guess_until_banned(attacker, server, "userspace")
        # Closed by the server, not left open for ten minutes of idle timeout.
        assert closed_by_server(attacker.sock)
    assert not connects(USERSPACE_ATTACKER, server.tcp_port)
    [ban] = json.loads(cli(server, "bans", "--json").stdout)
    assert ban["address"] == USERSPACE_ATTACKER
    with SipClient("tcp", ("127.0.0.1", server.tcp_port), bind=HONEST) as honest:
        answer = honest.request(options_request(honest))
        assert answer is not None and answer.status == 200
