"""Where a message came from and where its answer goes.

`Peer` names the far end of a hop independently of sockets: a transport name,
an address, and for streams the connection the message arrived on, so that
answers and requests back to a client that connected reuse it (RFC 3261
18.2.2, RFC 5923 connection reuse).

`stamp_via` and `response_peer` implement RFC 3261 18.2.1/18.2.2 with
RFC 3581 (rport): a client behind NAT gets its answers at the address and
port it sent from.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from softswitch.sip.headers import Via
from softswitch.sip.message import Request

RELIABLE_TRANSPORTS = frozenset({"tcp", "tls", "ws", "wss"})
DEFAULT_PORTS = {"udp": 5060, "tcp": 5060, "tls": 5061, "ws": 80, "wss": 443}


@dataclass(slots=True, frozen=True)
class Peer:
    transport: str  # "udp", "tcp", "tls"
    host: str  # an IP address, without brackets
    port: int
    # The stream connection it came on, or for UDP the local socket; None
    # lets the transport layer choose (or connect).
    connection: int | None = None
    # The host name this address was found for (RFC 3263), which a TLS
    # peer's certificate must carry (RFC 5922 7.2); not part of its identity.
    name: str | None = field(default=None, compare=False)

    @property
    def reliable(self) -> bool:
        return self.transport in RELIABLE_TRANSPORTS

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}:{host}:{self.port}"


def _bare(host: str) -> str:
    return host[1:-1] if host.startswith("[") else host


def stamp_via(request: Request, source: Peer) -> None:
    """Add `received` and fill `rport` in the top Via (RFC 3261 18.2.1, RFC 3581 4).

    `received` is added whenever the sent-by host differs from the source
    address; `rport` is filled only when the client asked for it.
    """
    via = request.top_via
    if stamp(via, source):
        # Rewrite the header text so responses copy the stamped Via.
        request.replace_top_via(via)


def stamp(via: Via, source: Peer) -> bool:
    """The rules of `stamp_via` on one Via value; True if it changed."""
    changed = False
    if _bare(via.host) != source.host:
        via.params["received"] = source.host
        changed = True
    if "rport" in via.params and via.params["rport"] is None:
        via.params["rport"] = str(source.port)
        if "received" not in via.params:
            via.params["received"] = source.host
        changed = True
    return changed


def response_peer(via: Via, source: Peer) -> Peer:
    """Where to send responses to a request with top Via `via` received from `source`."""
    if source.reliable:
        # Over a stream the answer goes back on the same connection; if that
        # closed, the transport opens a new one to the received address and
        # the sent-by port.
        port = via.port or DEFAULT_PORTS.get(source.transport, 5060)
        return Peer(source.transport, source.host, port, source.connection)
    # Over UDP `connection` names the socket the request came in on: the
    # answer leaves from it, so a NAT sees the same 5-tuple.
    maddr = via.params.get("maddr")
    if maddr:
        return Peer(source.transport, _bare(maddr), via.port or 5060, source.connection)
    if "rport" in via.params:
        # Filled in by stamp_via, or still empty when we answer a request we
        # could not parse: either way the answer goes to the source port.
        rport = via.params["rport"]
        port = int(rport) if rport and rport.isdigit() else source.port
        return Peer(source.transport, source.host, port, source.connection)
    host = via.params.get("received") or source.host
    return Peer(source.transport, _bare(host), via.port or 5060, source.connection)
