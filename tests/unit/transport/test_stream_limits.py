"""A peer that stops reading: bytes queued for it are bounded, then it is cut."""

from __future__ import annotations

from twisted.internet import task
from twisted.internet.testing import StringTransport

from softswitch.transport.layer import TransportLayer
from softswitch.transport.stream import StreamTransport


def connected(max_send_buffer: int) -> tuple[StreamTransport, StringTransport, task.Clock]:
    clock = task.Clock()
    layer = TransportLayer([], sink=lambda data, peer, datagram: None, reactor=clock,
                           max_send_buffer=max_send_buffer, partial_timeout=2.0)
    protocol = StreamTransport(layer, "tcp")
    transport = StringTransport()
    protocol.makeConnection(transport)
    return protocol, transport, clock


def test_writes_pass_while_the_transport_drains() -> None:
    protocol, transport, _ = connected(4096)
    for _ in range(100):
        protocol.send(b"x" * 1000)
    assert len(transport.value()) == 100_000 and not transport.disconnecting


def test_a_full_transport_cuts_the_peer_beyond_the_limit() -> None:
    protocol, transport, _ = connected(4096)
    assert transport.producer is protocol  # the protocol is told when the buffer fills
    protocol.pauseProducing()
    protocol.send(b"x" * 3000)
    assert not transport.disconnecting
    protocol.send(b"x" * 3000)
    assert transport.disconnecting  # aborted
    assert len(transport.value()) == 3000


def test_the_count_restarts_when_the_buffer_drains() -> None:
    protocol, transport, _ = connected(4096)
    protocol.pauseProducing()
    protocol.send(b"x" * 3000)
    protocol.resumeProducing()
    protocol.pauseProducing()
    protocol.send(b"x" * 3000)
    assert not transport.disconnecting


def test_a_partial_message_is_cut_after_the_timeout_from_the_last_whole_one() -> None:
    protocol, transport, clock = connected(4096)
    whole = (b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\n"
             b"From: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n"
             b"Content-Length: 0\r\n\r\n")
    protocol.dataReceived(whole + whole[:20])
    clock.advance(1.5)
    protocol.dataReceived(whole[20:] + whole[:10])  # progress: a message completed
    clock.advance(1.5)
    assert not transport.disconnecting
    clock.advance(0.6)
    assert transport.disconnecting
