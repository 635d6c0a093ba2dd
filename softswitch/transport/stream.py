"""SIP over TCP and TLS: one protocol per connection (RFC 3261 18.3, RFC 5626 4.4.1).

Each connection gets an id; messages from it carry that id in their `Peer`
so answers and requests back to the client reuse the connection (connection
alias). An idle connection is closed after the configured timeout.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from OpenSSL import SSL
from service_identity import VerificationError
from twisted.internet.protocol import Protocol, ServerFactory
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure

from softswitch.sip.errors import MessageError
from softswitch.sip.framing import PONG, KeepAlivePing, StreamFramer
from softswitch.sip.peer import Peer

if TYPE_CHECKING:
    from softswitch.transport.layer import TransportLayer
    from softswitch.transport.tls import TlsClientPolicy


class StreamTransport(Protocol, TimeoutMixin):
    # Twisted's interfaces are zope interfaces, which mypy cannot follow.
    transport: Any

    def __init__(self, layer: TransportLayer, transport_name: str,
                 outbound_to: tuple[str, int] | None = None) -> None:
        self.layer = layer
        self.transport_name = transport_name
        self.framer = StreamFramer(layer.limits)
        self.connection_id = 0
        self.peer: Peer | None = None
        self.outbound_to = outbound_to
        self._queued: list[bytes] = []
        # Outbound TLS: the checks made of the peer (for the log when they fail).
        self.tls_policy: TlsClientPolicy | None = None
        self._received = False

    def connectionMade(self) -> None:  # noqa: N802
        address = self.transport.getPeer()
        host = address.host[7:] if address.host.startswith("::ffff:") else address.host
        self.connection_id = self.layer.add_connection(self)
        self.peer = Peer(self.transport_name, host, address.port, self.connection_id)
        self.setTimeout(self.layer.idle_timeout)
        if self.outbound_to is not None:
            self.layer.alias(self.transport_name, *self.outbound_to, self.connection_id)
        for data in self._queued:
            self.transport.write(data)
        self._queued.clear()

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self.resetTimeout()
        self._received = True
        try:
            items = self.framer.feed(data)
        except MessageError as exc:
            # The stream has lost its framing: nothing after this point can be
            # found reliably, so the connection goes (RFC 3261 18.3).
            self.layer.log.info("stream_framing_error", peer=str(self.peer), reason=exc.reason)
            self.transport.loseConnection()
            return
        assert self.peer is not None
        for item in items:
            if isinstance(item, KeepAlivePing):
                self.transport.write(PONG)
            else:
                self.layer.deliver(item, self.peer, datagram=False)

    def send(self, data: bytes) -> None:
        if self.transport is None or not self.connected:
            self._queued.append(data)
            return
        self.resetTimeout()
        self.transport.write(data)

    def timeoutConnection(self) -> None:  # noqa: N802
        self.layer.log.debug("stream_idle_timeout", peer=str(self.peer))
        self.transport.loseConnection()

    def connectionLost(self, reason: Failure | None = None) -> None:  # noqa: N802
        self.setTimeout(None)
        if self.connection_id:
            self.layer.remove_connection(self.connection_id)
        if (self.outbound_to is not None and self.transport_name == "tls"
                and not self._received and reason is not None
                and reason.check(SSL.Error, VerificationError) is not None):
            self._tls_refused(reason)
        if self.framer.pending:
            self.layer.log.info("stream_cut", peer=str(self.peer), pending=self.framer.pending)

    def _tls_refused(self, reason: Failure) -> None:
        # The handshake failed (a certificate for another name, an unknown
        # root, a pin that does not match): say so plainly, and fail the
        # transactions waiting on this connection now rather than at Timer B.
        assert self.outbound_to is not None
        host, port = self.outbound_to
        self.layer.log.warning(
            "tls_peer_refused", peer=f"tls:{host}:{port}",
            checks=self.tls_policy.describe() if self.tls_policy else "none",
            error=_tls_error_text(reason.value))
        if self.layer.connect_failed is not None:
            self.layer.connect_failed(Peer("tls", host, port))


def _tls_error_text(error: BaseException) -> str:
    if isinstance(error, VerificationError):
        wanted = ", ".join(str(getattr(e, "mismatched_id", e)) for e in error.errors)
        return f"the certificate is not for the name expected ({wanted})"
    if isinstance(error, SSL.Error) and error.args and isinstance(error.args[0], list):
        return "; ".join(str(item[-1]) for item in error.args[0] if isinstance(item, tuple))
    return str(error) or type(error).__name__


class StreamServerFactory(ServerFactory):
    def __init__(self, layer: TransportLayer, transport_name: str) -> None:
        self.layer = layer
        self.transport_name = transport_name

    def buildProtocol(self, addr: object) -> StreamTransport:  # noqa: N802
        return StreamTransport(self.layer, self.transport_name)
