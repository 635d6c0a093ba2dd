"""Several listeners of one transport: each peer is told the address and port that serve it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from twisted.internet import reactor

from softswitch.config import ListenAddress
from softswitch.sip.peer import Peer
from softswitch.transport.layer import TransportLayer


@pytest.fixture
def layer() -> Iterator[TransportLayer]:
    listen = [ListenAddress("udp", "127.0.0.1", 0), ListenAddress("udp", "::1", 0),
              ListenAddress("udp", "127.0.0.2", 0), ListenAddress("tcp", "127.0.0.1", 0)]
    layer = TransportLayer(listen, sink=lambda data, peer, datagram: None, reactor=reactor)
    layer.start()
    yield layer
    layer.stop_listening()


def port(layer: TransportLayer, transport: str, host: str) -> int:
    return next(a.port for a in layer.bound if a.transport == transport and a.host == host)


def test_an_ipv6_peer_gets_the_ipv6_listener(layer: TransportLayer) -> None:
    assert layer.local(Peer("udp", "::1", 5060)) == ("::1", port(layer, "udp", "::1"))
    assert layer.local(Peer("udp", "127.0.0.1", 5060)) == \
        ("127.0.0.1", port(layer, "udp", "127.0.0.1"))


def test_a_message_that_came_on_a_socket_is_answered_from_it(layer: TransportLayer) -> None:
    socket_id = next(i for i, index in layer.udp_listener_ids().items()
                     if layer.bound[index].host == "127.0.0.2")
    assert layer.local(Peer("udp", "127.0.0.1", 5060, socket_id)) == \
        ("127.0.0.2", port(layer, "udp", "127.0.0.2"))


def test_tcp_is_told_its_own_port(layer: TransportLayer) -> None:
    assert layer.local(Peer("tcp", "127.0.0.1", 5060)) == \
        ("127.0.0.1", port(layer, "tcp", "127.0.0.1"))
