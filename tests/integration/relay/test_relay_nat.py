"""A phone behind a masquerading NAT (its own network namespace, see
tests/support/natnet.py) calls a phone on the host through softswitch + the
embedded relay: registration, the call and two-way audio work, and packets
from a third address sent to the relay's port for the NATed phone's stream
neither steal it nor reach the other phone.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.integration.relay.test_relay_phones import INTACT, assert_relayed, exchange
from tests.support.natnet import NatNetwork
from tests.support.phone import Phone, answered_call
from tests.support.server import ServerProcess, embedded_relay_config, free_port
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def nat() -> Iterator[NatNetwork]:
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    network = NatNetwork().create()
    try:
        yield network
    finally:
        network.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, nat: NatNetwork) -> Iterator[ServerProcess]:
    media, ports = embedded_relay_config(100, advertise=nat.host_ip,
                                         extra=f"  listen_address: {nat.host_ip}\n")
    port = free_port()
    # SIP on every address, so that its Via/Contact towards each peer is the
    # address on the route to it (with two specific listen addresses the first
    # one is named to every peer: see the report of this branch). The relay
    # listens and advertises on the host's end of the veth, which host phones
    # reach too (a local address).
    server = ServerProcess(
        tmp_path_factory.mktemp("relay-nat"), udp_port=port,
        run_args=("--listen", f"udp:0.0.0.0:{port}"),
        extra_config=media)
    server.port_range = ports  # type: ignore[attr-defined]
    server.start()
    try:
        yield server
    finally:
        server.stop()


class Stranger:
    """A UDP socket on a third address that sends loud noise as RTP (its own
    SSRC) to one relay port, 50 times a second, and counts what it receives."""

    def __init__(self, host: str, target: tuple[str, int]) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.settimeout(0.02)
        self.target = target
        self.sent = 0
        self.received = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        noise = np.random.default_rng(7).integers(0, 256, 160, dtype=np.uint8).tobytes()
        seq = 0
        while not self._stop.is_set():
            header = struct.pack("!BBHII", 0x80, 0, seq & 0xFFFF, seq * 160, 0x5EC0_0001)
            self.sock.sendto(header + noise, self.target)
            self.sent += 1
            seq += 1
            try:  # also paces the sending at about 50 packets/s
                self.sock.recvfrom(2048)
                self.received += 1
            except TimeoutError:
                pass

    def __enter__(self) -> Stranger:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


def test_phone_behind_nat_registers_calls_and_keeps_its_stream(
        server: ServerProcess, nat: NatNetwork, tmp_path: Path) -> None:
    inside = Phone.start("1001", "1001pass", server.udp_port, log_dir=tmp_path,
                         bind=nat.phone_ip, server_host=nat.host_ip, netns=nat.phone_ns)
    host = Phone.start("1002", "1002pass", server.udp_port, log_dir=tmp_path)
    try:
        assert inside.register() == 200
        # The phone names only its private address (Via, Contact, later its SDP):
        # nothing in it tells the server about the NAT.
        assert inside.contact_hostport.startswith(nat.phone_ip)
        assert host.register() == 200

        call, incoming = answered_call(inside, host, f"sip:1002@{nat.host_ip}:{server.udp_port}")
        behind, there = (inside, call), (host, incoming)
        assert_relayed(server, behind, there, address=nat.host_ip)
        scores = exchange(tmp_path / "nat", (behind, there), (there, behind))
        assert min(scores) > INTACT, scores

        # The relay's port that the NATed phone sends to (its SDP answer).
        relay_port = int(str(inside.stats(call)["remote_rtp"]).rpartition(":")[2])
        with Stranger("127.0.0.1", (nat.host_ip, relay_port)) as stranger:
            wait_for(lambda: stranger.sent > 25, 5, "the stranger's first packets")
            scores = exchange(tmp_path / "stranger", (behind, there), (there, behind))
        assert min(scores) > INTACT, scores  # the noise reached no phone, the stream stayed
        assert stranger.received == 0  # nothing of the host phone's stream went to it

        inside.hangup(call)
        host.wait_call_state(incoming, "DISCONNECTED", 10)
    finally:
        inside.close()
        host.close()
