"""SIP over TCP and TLS: one protocol per connection (RFC 3261 18.3, RFC 5626 4.4.1).

Each connection gets an id; messages from it carry that id in their `Peer`
so answers and requests back to the client reuse the connection (connection
alias). An idle connection is closed after the configured timeout.

Limits against hostile or broken peers (docs/hardening.md): connections per
source address (the factory refuses the one too many), bytes queued towards
a peer that stops reading (we are the transport's streaming producer: once
Twisted says its buffer is full, more than `max_send_buffer` bytes written
cut the connection), and a message that does not arrive whole within
`partial_timeout` of the last complete one (a slow-loris sender) cuts it
too. Bytes buffered from a peer are already bounded by the framer
(`max_message_size`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from OpenSSL import SSL
from service_identity import VerificationError
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Protocol, ServerFactory
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure
from zope.interface import implementer

from softswitch.sip.errors import MessageError
from softswitch.sip.framing import PONG, KeepAlivePing, StreamFramer
from softswitch.sip.peer import Peer

if TYPE_CHECKING:
    from softswitch.transport.layer import TransportLayer
    from softswitch.transport.tls import TlsClientPolicy


@implementer(IPushProducer)
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
        # Set by the server factory for inbound connections (per-source count).
        self.source_host: str | None = None
        self._send_blocked = False  # the transport's write buffer is full
        self._backlog = 0  # bytes written since it filled up
        self._partial: Any = None  # IDelayedCall cutting a message that never completes
        # Outbound TLS: the checks made of the peer (for the log when they fail).
        self.tls_policy: TlsClientPolicy | None = None
        self._received = False

    def connectionMade(self) -> None:  # noqa: N802
        address = self.transport.getPeer()
        host = address.host[7:] if address.host.startswith("::ffff:") else address.host
        self.connection_id = self.layer.add_connection(self)
        self.peer = Peer(self.transport_name, host, address.port, self.connection_id)
        self.setTimeout(self.layer.idle_timeout)
        self.transport.registerProducer(self, True)
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
        self._watch_partial(bool(items))
        for item in items:
            if isinstance(item, KeepAlivePing):
                self.transport.write(PONG)
            else:
                self.layer.deliver(item, self.peer, datagram=False)

    def _watch_partial(self, completed: bool) -> None:
        """Time a message from the last complete one: cut the peer if it never ends."""
        if completed and self._partial is not None:
            self._partial.cancel()
            self._partial = None
        if self.framer.pending and self._partial is None:
            self._partial = self.layer.reactor.callLater(self.layer.partial_timeout,
                                                         self._cut_partial)

    def _cut_partial(self) -> None:
        self._partial = None
        self.layer.log.info("stream_partial_timeout", peer=str(self.peer),
                            pending=self.framer.pending, timeout=self.layer.partial_timeout)
        self._abort()

    def _abort(self) -> None:
        abort = getattr(self.transport, "abortConnection", None)
        if abort is not None:
            abort()
        else:
            self.transport.loseConnection()

    def send(self, data: bytes) -> None:
        if self.transport is None or not self.connected:
            self._queued.append(data)
            return
        if self._send_blocked:
            self._backlog += len(data)
            if self._backlog > self.layer.max_send_buffer:
                # A peer that does not read: what we would queue for it is
                # memory it takes from everyone else.
                self.layer.log.info("stream_send_buffer_full", peer=str(self.peer),
                                    queued=self._backlog, limit=self.layer.max_send_buffer)
                self._abort()
                return
        self.resetTimeout()
        self.transport.write(data)

    # -- IPushProducer: told by the transport when its write buffer fills and drains

    def pauseProducing(self) -> None:  # noqa: N802
        self._send_blocked = True

    def resumeProducing(self) -> None:  # noqa: N802
        self._send_blocked = False
        self._backlog = 0

    def stopProducing(self) -> None:  # noqa: N802
        self._send_blocked = True

    def timeoutConnection(self) -> None:  # noqa: N802
        self.layer.log.debug("stream_idle_timeout", peer=str(self.peer))
        self.transport.loseConnection()

    def connectionLost(self, reason: Failure | None = None) -> None:  # noqa: N802
        self.setTimeout(None)
        if self._partial is not None:
            self._partial.cancel()
            self._partial = None
        if self.source_host is not None:
            self.layer.inbound_closed(self.source_host)
            self.source_host = None
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

    def buildProtocol(self, addr: Any) -> StreamTransport | None:  # noqa: N802
        host = getattr(addr, "host", "")
        host = host[7:] if host.startswith("::ffff:") else host
        if not self.layer.admit_inbound(host):
            return None  # Twisted closes the socket at once
        protocol = StreamTransport(self.layer, self.transport_name)
        protocol.source_host = host
        return protocol
