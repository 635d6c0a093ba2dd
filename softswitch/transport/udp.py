"""SIP over UDP: one DatagramProtocol per listening socket (RFC 3261 18.1/18.2)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.protocol import DatagramProtocol

from softswitch.sip.peer import Peer

if TYPE_CHECKING:
    from softswitch.transport.layer import TransportLayer


class UDPTransport(DatagramProtocol):
    transport: Any  # a zope interface mypy cannot follow

    def __init__(self, layer: TransportLayer, socket_id: int, family: int) -> None:
        self.layer = layer
        self.socket_id = socket_id
        self.family = family
        # Read so far, for the overload monitor: the typical size of what
        # arrives turns the bytes the kernel holds into datagrams.
        self.datagrams_read = 0
        self.bytes_read = 0

    def datagramReceived(self, data: bytes, addr: tuple[str, int]) -> None:  # noqa: N802
        self.datagrams_read += 1
        self.bytes_read += len(data)
        if not data.strip(b"\r\n"):
            # A CRLF keep-alive ("\r\n\r\n", or a lone "\r\n") that phones send
            # every few seconds to keep their NAT binding open. RFC 5626 4.4.1
            # defines STUN, not CRLF, as the UDP keep-alive, and a double CRLF
            # has no answer over UDP (the pong is for streams, 4.4.1 / 3.5.1):
            # it is dropped without a word, never answered as a malformed request.
            return
        host = addr[0]
        if host.startswith("::ffff:"):
            host = host[7:]
        self.layer.deliver(data, Peer("udp", host, addr[1], self.socket_id), datagram=True)

    def send(self, data: bytes, host: str, port: int) -> None:
        if self.transport is None:
            return
        try:
            self.transport.write(data, (host, port))
        except OSError as exc:
            # ICMP unreachable, EPERM from a firewall, a bad address: a lost
            # datagram, which retransmission timers already account for.
            self.layer.log.debug("udp_send_failed", peer=f"{host}:{port}", error=str(exc))
