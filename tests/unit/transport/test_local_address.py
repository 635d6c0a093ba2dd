"""Which local address goes into Via and Contact."""

from __future__ import annotations

from softswitch.transport.local_address import LocalAddressResolver, kernel_source_address


def test_kernel_route_lookup_for_loopback() -> None:
    # The kernel's own answer: loopback is reached from 127.0.0.1.
    assert kernel_source_address("127.0.0.5") == "127.0.0.1"
    assert kernel_source_address("::1") == "::1"
    assert kernel_source_address("not-an-address") is None


def test_wildcard_listener_asks_per_peer_and_caches() -> None:
    calls: list[str] = []

    def lookup(host: str) -> str | None:
        calls.append(host)
        return {"192.0.2.9": "192.0.2.1"}.get(host)

    resolver = LocalAddressResolver("0.0.0.0", lookup=lookup)
    assert resolver.for_peer("192.0.2.9") == "192.0.2.1"
    assert resolver.for_peer("192.0.2.9") == "192.0.2.1"
    assert calls == ["192.0.2.9"]
    # no route: fall back to loopback of the peer's family
    assert resolver.for_peer("2001:db8::1") == "::1"


def test_specific_listener_and_advertised_address_win() -> None:
    assert LocalAddressResolver("10.1.2.3", lookup=lambda h: "x").for_peer("1.1.1.1") == "10.1.2.3"
    assert LocalAddressResolver("0.0.0.0", advertised="203.0.113.5",
                                lookup=lambda h: "x").for_peer("1.1.1.1") == "203.0.113.5"
