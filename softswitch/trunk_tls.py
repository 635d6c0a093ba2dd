"""Which TLS checks an outbound connection makes: the trunk's, or none.

A connection goes to a trunk when the peer was found for the trunk's host
name (`Peer.name`, set by the dialer after RFC 3263 lookups) or is the
trunk's literal address and port. Each TLS trunk gets a `TlsClientPolicy`
from its settings; other peers (phones reached again, hosts of SIP URIs)
get none, and the transport layer connects without checks as before.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from softswitch.config import TrunkSettings
from softswitch.sip.locate import is_numeric
from softswitch.sip.peer import Peer
from softswitch.transport.tls import TlsClientPolicy


def policy_of(trunk: TrunkSettings, resolve: Callable[[str], Path]) -> TlsClientPolicy:
    """The checks made of `trunk`'s certificate; `resolve` makes config paths absolute."""
    return TlsClientPolicy(server_name=trunk.tls_server_name or trunk.host.strip("[]"),
                           verify=trunk.tls_verify, pin=trunk.tls_fingerprint,
                           ca_file=resolve(trunk.tls_ca) if trunk.tls_ca else None)


class TrunkTlsPolicies:
    """`policies(peer)`: the policy of the TLS trunk `peer` belongs to, or None."""

    def __init__(self, trunks: Sequence[TrunkSettings], resolve: Callable[[str], Path]) -> None:
        self.by_name: dict[str, tuple[TrunkSettings, TlsClientPolicy]] = {}
        self.by_address: dict[tuple[str, int], tuple[TrunkSettings, TlsClientPolicy]] = {}
        # Every trunk, whatever its `transport`: one named by host name may
        # get TLS from NAPTR, and the policy is only asked for TLS connections.
        for trunk in trunks:
            entry = (trunk, policy_of(trunk, resolve))
            host = trunk.host.strip("[]")
            if is_numeric(host):
                self.by_address[(host, trunk.port)] = entry
            else:
                self.by_name[host.lower().rstrip(".")] = entry

    def trunk_of(self, peer: Peer) -> TrunkSettings | None:
        entry = self._entry(peer)
        return entry[0] if entry else None

    def _entry(self, peer: Peer) -> tuple[TrunkSettings, TlsClientPolicy] | None:
        if peer.name:
            found = self.by_name.get(peer.name.lower().rstrip("."))
            if found is not None:
                return found
        return self.by_address.get((peer.host, peer.port))

    def __call__(self, peer: Peer) -> TlsClientPolicy | None:
        entry = self._entry(peer)
        return entry[1] if entry else None
