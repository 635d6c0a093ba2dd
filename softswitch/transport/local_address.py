"""Which local address to write into Via and Contact for a given peer.

When we listen on a wildcard address the right answer depends on the peer:
a phone on loopback must see 127.0.0.1, one on the LAN the LAN address. We
ask the kernel's routing table (pyroute2, as `ip route get` does) for the
preferred source address towards the peer, and cache the answer. A
configured advertised address (for a server behind NAT) or a specific
listen address always wins.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from pyroute2 import IPRoute


def kernel_source_address(destination: str) -> str | None:
    """The kernel's preferred source address towards `destination`, if routable."""
    try:
        with IPRoute() as ipr:
            routes = ipr.route("get", dst=destination)
    except Exception:  # noqa: BLE001 - no route, bad address, no netlink: all mean "unknown"
        return None
    for route in routes:
        source = route.get_attr("RTA_PREFSRC")
        if source:
            return str(source)
    return None


class LocalAddressResolver:
    """Answers "what is our address as seen from host X?" for one listener."""

    def __init__(self, listen_host: str, advertised: str | None = None,
                 lookup: Callable[[str], str | None] = kernel_source_address) -> None:
        self._listen_host = listen_host
        self._advertised = advertised
        self._lookup = lookup
        self._cache: dict[str, str] = {}

    def route_source(self, peer_host: str) -> str | None:
        """The address the kernel would send from towards `peer_host` (None if unknown)."""
        return self._lookup(peer_host)

    def for_peer(self, peer_host: str) -> str:
        if self._advertised:
            return self._advertised
        if not _is_wildcard(self._listen_host):
            return self._listen_host
        cached = self._cache.get(peer_host)
        if cached is None:
            cached = self._lookup(peer_host) or _fallback(peer_host)
            if len(self._cache) > 4096:
                self._cache.clear()  # routes change rarely; a bounded cache is enough
            self._cache[peer_host] = cached
        return cached


def _is_wildcard(host: str) -> bool:
    return host in ("", "0.0.0.0", "::", "[::]")


def _fallback(peer_host: str) -> str:
    try:
        version = ipaddress.ip_address(peer_host).version
    except ValueError:
        return "127.0.0.1"
    return "::1" if version == 6 else "127.0.0.1"
