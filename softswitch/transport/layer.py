"""The transport layer: listening sockets, stream connections, and sending.

`TransportLayer` starts the UDP, TCP and TLS listeners of the config, keeps
the table of open stream connections (by id and by remote address, the
connection alias), and sends a message to a `Peer`: on the socket or
connection it names, on an open connection to that address, or on a new
outbound connection. Received bytes go to one sink, the SIP core.
"""

from __future__ import annotations

import collections
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet import reactor as default_reactor
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.protocol import ClientFactory

from softswitch.config import ListenAddress
from softswitch.logs import get_logger
from softswitch.sip.message import DEFAULT_LIMITS, Message, ParserLimits
from softswitch.sip.peer import Peer
from softswitch.transport import tls
from softswitch.transport.local_address import LocalAddressResolver
from softswitch.transport.stream import StreamServerFactory, StreamTransport
from softswitch.transport.udp import UDPTransport

Sink = Callable[[bytes, Peer, bool], None]


class TransportLayer:
    def __init__(self, listen: list[ListenAddress], *, sink: Sink,
                 limits: ParserLimits = DEFAULT_LIMITS, idle_timeout: float = 600.0,
                 advertised: str | None = None, tls_certificate: Path | None = None,
                 tls_private_key: Path | None = None, reactor: Any = None,
                 udp_receive_buffer: int = 0, max_connections_per_source: int = 0,
                 max_send_buffer: int = 1 << 20, partial_timeout: float = 10.0) -> None:
        self.listen = listen
        self.sink = sink
        self.limits = limits
        self.idle_timeout = idle_timeout
        self.advertised = advertised
        self.tls_certificate = tls_certificate
        self.tls_private_key = tls_private_key
        self.reactor: Any = reactor or default_reactor
        self.udp_receive_buffer = udp_receive_buffer
        self.max_connections_per_source = max_connections_per_source
        self.max_send_buffer = max_send_buffer
        self.partial_timeout = partial_timeout
        self._inbound: collections.Counter[str] = collections.Counter()  # host -> connections
        self.log = get_logger("softswitch.transport")
        self._udp: dict[int, UDPTransport] = {}
        self._ports: list[Any] = []  # IListeningPort
        self._connections: dict[int, StreamTransport] = {}
        self._aliases: dict[tuple[str, str, int], int] = {}
        self._next_id = 1
        # One per listener, in the order of `bound`: what our address is, seen from a peer.
        self.resolvers: list[LocalAddressResolver] = []
        self._udp_listener: dict[int, int] = {}  # UDP socket id -> its index in `bound`
        # Told when an outbound connection cannot be made, so that the
        # transactions waiting on it fail now rather than at Timer B/F.
        self.connect_failed: Callable[[Peer], None] | None = None
        self.bound: list[ListenAddress] = []  # with the real ports (0 resolved)
        # The listeners' certificate (one for all TLS listeners), reloadable.
        self.tls_server: tls.ReloadableServerContext | None = None
        # The checks an outbound TLS connection makes of its peer (trunks);
        # None from it, or no function: no checks.
        self.tls_policy: Callable[[Peer], tls.TlsClientPolicy | None] | None = None

    # -- life cycle -----------------------------------------------------------

    def start(self) -> None:
        """Open every listener; raise if one cannot be bound (a clear start error)."""
        for address in self.listen:
            if address.transport == "udp":
                family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
                socket_id = self._new_id()
                protocol = UDPTransport(self, socket_id, family)
                port = self.reactor.listenUDP(address.port, protocol, interface=address.host,
                                              maxPacketSize=self.limits.max_message_size + 1)
                self._udp[socket_id] = protocol
                self._udp_listener[socket_id] = len(self.bound)
                if self.udp_receive_buffer:
                    _grow_receive_buffer(port.socket, self.udp_receive_buffer)
            elif address.transport == "tcp":
                port = self.reactor.listenTCP(address.port, StreamServerFactory(self, "tcp"),
                                              interface=address.host, backlog=1024)
            else:
                if self.tls_certificate is None or self.tls_private_key is None:
                    raise ValueError(f"{address}: TLS needs tls.certificate and tls.private_key")
                if self.tls_server is None:
                    # TlsFilesError (a ValueError) stops the start with the reason.
                    self.tls_server = tls.ReloadableServerContext(self.tls_certificate,
                                                                  self.tls_private_key)
                port = self.reactor.listenSSL(address.port, StreamServerFactory(self, "tls"),
                                              self.tls_server, interface=address.host,
                                              backlog=1024)
            self._ports.append(port)
            real = ListenAddress(address.transport, address.host, port.getHost().port)
            self.bound.append(real)
            self.resolvers.append(LocalAddressResolver(address.host, self.advertised))
            self.log.info("listening", address=str(real))

    def stop_listening(self) -> Deferred[Any]:
        """Close the listeners and every connection."""
        waits = [d for d in (p.stopListening() for p in self._ports) if isinstance(d, Deferred)]
        for conn in list(self._connections.values()):
            if conn.transport is not None:
                conn.transport.loseConnection()
        self._ports.clear()
        return DeferredList(waits)

    # -- connections ------------------------------------------------------------

    def _new_id(self) -> int:
        ident = self._next_id
        self._next_id += 1
        return ident

    def add_connection(self, conn: StreamTransport) -> int:
        ident = self._new_id()
        self._connections[ident] = conn
        address = conn.transport.getPeer()
        host = address.host[7:] if address.host.startswith("::ffff:") else address.host
        self._aliases[(conn.transport_name, host, address.port)] = ident
        return ident

    def admit_inbound(self, host: str) -> bool:
        """Count an inbound connection from `host`; False (not counted) beyond the limit."""
        if 0 < self.max_connections_per_source <= self._inbound[host]:
            self.log.info("connection_refused", source=host, reason="too many connections",
                          limit=self.max_connections_per_source)
            return False
        self._inbound[host] += 1
        return True

    def inbound_closed(self, host: str) -> None:
        self._inbound[host] -= 1
        if self._inbound[host] <= 0:
            del self._inbound[host]

    def alias(self, transport: str, host: str, port: int, ident: int) -> None:
        self._aliases[(transport, host, port)] = ident

    def remove_connection(self, ident: int) -> None:
        self._connections.pop(ident, None)
        for key in [k for k, v in self._aliases.items() if v == ident]:
            del self._aliases[key]

    def udp_sockets(self) -> list[socket.socket]:
        """The listening UDP sockets (for the overload monitor's queue reading)."""
        return [udp.transport.socket for udp in self._udp.values()
                if udp.transport is not None and getattr(udp.transport, "socket", None) is not None]

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    # -- data in and out -------------------------------------------------------

    def deliver(self, data: bytes, peer: Peer, *, datagram: bool) -> None:
        self.sink(data, peer, datagram)

    def send(self, message: Message, peer: Peer) -> None:
        self.send_bytes(message.to_bytes(), peer)

    def send_bytes(self, data: bytes, peer: Peer) -> None:
        if peer.transport == "udp":
            udp = self._udp.get(peer.connection) if peer.connection is not None else None
            if udp is None:
                udp = self._udp_for(peer.host)
            if udp is None:
                self.log.warning("no_udp_listener", peer=str(peer))
                return
            udp.send(data, peer.host, peer.port)
            return
        conn = self._connections.get(peer.connection) if peer.connection is not None else None
        if conn is None:
            ident = self._aliases.get((peer.transport, peer.host, peer.port))
            conn = self._connections.get(ident) if ident is not None else None
        if conn is None:
            conn = self._connect(peer)
        conn.send(data)

    def _udp_for(self, host: str) -> UDPTransport | None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        for udp in self._udp.values():
            if udp.family == family:
                return udp
        return next(iter(self._udp.values()), None)

    def _connect(self, peer: Peer) -> StreamTransport:
        """Open an outbound TCP/TLS connection; data queues until it is up."""
        protocol = StreamTransport(self, peer.transport, outbound_to=(peer.host, peer.port))
        factory = _OneShotFactory(protocol, self, peer)
        if peer.transport == "tls":
            policy = self.tls_policy(peer) if self.tls_policy is not None else None
            protocol.tls_policy = policy
            try:
                creator = tls.client_creator(policy) if policy else tls.client_context()
            except tls.TlsFilesError as exc:
                self.log.error("tls_client_setup_failed", peer=str(peer), error=str(exc))
                self.reactor.callLater(0, self._connect_failed, peer)
                return protocol
            self.reactor.connectSSL(peer.host, peer.port, factory, creator, timeout=10)
        else:
            self.reactor.connectTCP(peer.host, peer.port, factory, timeout=10)
        return protocol

    def _connect_failed(self, peer: Peer) -> None:
        if self.connect_failed is not None:
            self.connect_failed(peer)

    def local(self, peer: Peer) -> tuple[str, int]:
        """Our address and port as `peer` sees them (for Via, Contact, SDP-less bookkeeping).

        With several listeners of a transport (IPv4 and IPv6, or two
        interfaces) the one that serves the peer names itself: the UDP socket
        the peer's message came on; else a listener of the peer's address
        family, one bound to the address the kernel would send from first.
        """
        index = self._listener_for(peer)
        return self.resolvers[index].for_peer(peer.host), self.bound[index].port

    def udp_listener_ids(self) -> dict[int, int]:
        """UDP socket id (a received message's `Peer.connection`) -> its index in `bound`."""
        return dict(self._udp_listener)

    def _listener_for(self, peer: Peer) -> int:
        if peer.transport == "udp" and peer.connection is not None:
            index = self._udp_listener.get(peer.connection)
            if index is not None:
                return index
        family6 = ":" in peer.host
        same = [i for i, a in enumerate(self.bound) if a.transport == peer.transport]
        if not same:
            return 0
        fitting = [i for i in same
                   if (":" in self.bound[i].host) == family6 or self.bound[i].host in ("", "::")]
        if len(fitting) > 1:
            source = self.resolvers[fitting[0]].route_source(peer.host)
            for i in fitting:
                if self.bound[i].host == source:
                    return i
        return (fitting or same)[0]


def _grow_receive_buffer(sock: socket.socket, size: int) -> None:
    # SO_RCVBUFFORCE passes net.core.rmem_max when we may (CAP_NET_ADMIN);
    # otherwise the kernel caps SO_RCVBUF at rmem_max, which is still better
    # than the default.
    force = getattr(socket, "SO_RCVBUFFORCE", None)
    if force is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, force, size)
            return
        except OSError:
            pass
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    except OSError:
        pass


class _OneShotFactory(ClientFactory):
    def __init__(self, protocol: StreamTransport, layer: TransportLayer, peer: Peer) -> None:
        self.protocol_instance = protocol
        self.layer = layer
        self.peer = peer

    def buildProtocol(self, addr: object) -> StreamTransport:  # noqa: N802
        return self.protocol_instance

    def clientConnectionFailed(self, connector: Any, reason: Any) -> None:  # noqa: N802
        self.layer.log.info("connect_failed", peer=str(self.peer),
                            error=reason.getErrorMessage())
        if self.layer.connect_failed is not None:
            self.layer.connect_failed(self.peer)
