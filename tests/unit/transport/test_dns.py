"""RFC 3263 lookups through twisted.names, against a DNS server on 127.0.0.1.

The server is twisted.names' own, answering from an in-memory zone for
`provider.test`; the client asks only it, never the system's resolvers.
Written as trial test cases so that test methods can return Deferreds.
"""

from __future__ import annotations

import random
from typing import Any

from twisted.internet import defer, reactor, task
from twisted.internet.defer import Deferred
from twisted.names import authority, dns, server
from twisted.trial import unittest

from softswitch.sip.locate import Query, RecordType, TargetSpec
from softswitch.sip.peer import Peer
from softswitch.sip.uri import SipURI
from softswitch.transport.dns import AnswerCache, DnsLocator

SOA = dns.Record_SOA(mname=b"ns.provider.test", rname=b"admin.provider.test", serial=1,
                     refresh=3600, retry=600, expire=86400, minimum=60, ttl=300)

ZONE: dict[bytes, list[Any]] = {
    b"provider.test": [
        SOA,
        dns.Record_NAPTR(10, 10, b"S", b"SIP+D2T", b"", b"_sip._tcp.provider.test", ttl=300),
        dns.Record_NAPTR(20, 10, b"S", b"SIP+D2U", b"", b"_sip._udp.provider.test", ttl=300),
        dns.Record_NAPTR(30, 10, b"S", b"SIPS+D2T", b"", b"_sips._tcp.provider.test", ttl=300),
        dns.Record_A("192.0.2.1", ttl=300),
    ],
    b"_sip._tcp.provider.test": [
        dns.Record_SRV(10, 60, 5070, b"edge1.provider.test", ttl=300),
        dns.Record_SRV(10, 40, 5070, b"edge2.provider.test", ttl=300),
        dns.Record_SRV(20, 0, 5070, b"backup.provider.test", ttl=300),
    ],
    b"_sip._udp.provider.test": [dns.Record_SRV(10, 0, 5080, b"edge1.provider.test", ttl=300)],
    b"_sips._tcp.provider.test": [dns.Record_SRV(10, 0, 5061, b"edge1.provider.test", ttl=300)],
    b"edge1.provider.test": [dns.Record_A("192.0.2.11", ttl=300),
                             dns.Record_AAAA("2001:db8::11", ttl=300)],
    b"edge2.provider.test": [dns.Record_A("192.0.2.12", ttl=300)],
    b"backup.provider.test": [dns.Record_CNAME(b"edge3.provider.test", ttl=300)],
    b"edge3.provider.test": [dns.Record_A("192.0.2.13", ttl=300)],
    # No NAPTR: SRV probing; and no SRV at all.
    b"probe.provider.test": [dns.Record_A("192.0.2.20", ttl=300)],
    b"_sip._udp.probe.provider.test": [
        dns.Record_SRV(0, 0, 5060, b"edge2.provider.test", ttl=300)],
    b"plain.provider.test": [dns.Record_A("192.0.2.30", ttl=300),
                             dns.Record_AAAA("2001:db8::30", ttl=300)],
}

EDGE1_UDP = [Peer("udp", "192.0.2.11", 5080), Peer("udp", "2001:db8::11", 5080)]
EDGE1_TLS = [Peer("tls", "192.0.2.11", 5061), Peer("tls", "2001:db8::11", 5061)]
BACKUP_TCP = [Peer("tcp", "192.0.2.13", 5070)]


class ZoneAuthority(authority.FileAuthority):
    """An authority serving a zone held in memory rather than read from a file."""

    def loadFile(self, filename: Any) -> None:  # noqa: N802 - twisted's name
        origin, records = filename
        self.soa = (origin, SOA)  # type: ignore[assignment]  # declared None in twisted
        self.records = records


class LocateAgainstServerTests(unittest.TestCase):
    def setUp(self) -> None:
        factory = server.DNSServerFactory(authorities=[ZoneAuthority((b"provider.test", ZONE))])
        self.port = reactor.listenUDP(0, dns.DNSDatagramProtocol(factory),
                                      interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)
        self.locator = self.make_locator()

    def make_locator(self, **kwargs: Any) -> DnsLocator:
        servers = [("127.0.0.1", self.port.getHost().port)]
        return DnsLocator(servers=servers, rng=random.Random(5), **kwargs)

    async def test_naptr_srv_and_addresses(self) -> None:
        peers = await self.locator.locate_uri(SipURI.parse("sip:+15550100@provider.test"))
        # TCP first (NAPTR order 10): both edges at priority 10 in weighted
        # order, then the backup reached through a CNAME; then UDP, then TLS.
        tcp_edges = {Peer("tcp", "192.0.2.11", 5070), Peer("tcp", "2001:db8::11", 5070),
                     Peer("tcp", "192.0.2.12", 5070)}
        self.assertEqual(set(peers[:3]), tcp_edges)
        self.assertEqual(peers[3:], BACKUP_TCP + EDGE1_UDP + EDGE1_TLS)

    async def test_sips_uri_keeps_tls_only(self) -> None:
        peers = await self.locator.locate_uri(SipURI.parse("sips:provider.test"))
        self.assertEqual(peers, EDGE1_TLS)

    async def test_explicit_transport_and_port(self) -> None:
        udp = await self.locator.locate_uri(SipURI.parse("sip:provider.test;transport=udp"))
        self.assertEqual(udp, EDGE1_UDP)
        at_port = await self.locator.locate(TargetSpec("provider.test", 5090, "tcp"))
        self.assertEqual(at_port, [Peer("tcp", "192.0.2.1", 5090)])

    async def test_srv_probing_then_plain_addresses(self) -> None:
        probed = await self.locator.locate(TargetSpec("probe.provider.test"))
        self.assertEqual(probed, [Peer("udp", "192.0.2.12", 5060)])
        plain = await self.locator.locate(TargetSpec("plain.provider.test", secure=True))
        self.assertEqual(plain, [Peer("tls", "192.0.2.30", 5061), Peer("tls", "2001:db8::30", 5061)])

    async def test_unknown_names_give_no_peers(self) -> None:
        self.assertEqual(await self.locator.locate(TargetSpec("nowhere.provider.test")), [])
        # outside the zone: the server refuses, which is also "nothing found"
        self.assertEqual(await self.locator.locate(TargetSpec("elsewhere.example")), [])

    async def test_numeric_host_needs_no_dns(self) -> None:
        peers = await self.locator.locate_uri(SipURI.parse("sip:[2001:db8::5];transport=tcp"))
        self.assertEqual(peers, [Peer("tcp", "2001:db8::5", 5060)])

    async def test_answers_are_cached(self) -> None:
        first = await self.locator.locate(TargetSpec("provider.test", None, "udp"))
        await self.port.stopListening()
        again = await self.locator.locate(TargetSpec("provider.test", None, "udp"))
        self.assertEqual(again, first)
        self.assertEqual(again, EDGE1_UDP)


class NeverAnswers:
    """A resolver whose queries stay in flight for ever."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def _pending(self, name: str, timeout: Any = None) -> Deferred[Any]:
        self.asked.append(name)
        return Deferred()

    lookupNamingAuthorityPointer = lookupService = _pending  # noqa: N815
    lookupAddress = lookupIPV6Address = _pending  # noqa: N815


class FailsAlways:
    def _fail(self, name: str, timeout: Any = None) -> Deferred[Any]:
        return defer.fail(RuntimeError("resolver broke"))

    lookupNamingAuthorityPointer = lookupService = lookupAddress = lookupIPV6Address = _fail  # noqa: N815


class DeadlineAndErrorTests(unittest.TestCase):
    def test_deadline_bounds_the_whole_resolution(self) -> None:
        clock = task.Clock()
        resolver = NeverAnswers()
        locator = DnsLocator(resolver, reactor=clock, deadline=3.0)
        results: list[list[Peer]] = []
        locator.locate(TargetSpec("slow.test")).addCallback(results.append)
        self.assertEqual(resolver.asked, ["slow.test"])
        clock.advance(2.9)
        self.assertEqual(results, [])
        clock.advance(0.2)
        self.assertEqual(results, [[]])
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_failed_lookups_give_no_peers_and_are_cached_briefly(self) -> None:
        clock = task.Clock()
        cache = AnswerCache(negative_ttl=5.0)
        locator = DnsLocator(FailsAlways(), reactor=clock, cache=cache)
        results: list[list[Peer]] = []
        locator.locate(TargetSpec("broken.test")).addCallback(results.append)
        self.assertEqual(results, [[]])
        self.assertEqual(cache.get(Query("broken.test", RecordType.NAPTR), clock.seconds()), [])
        clock.advance(5.0)
        self.assertIsNone(cache.get(Query("broken.test", RecordType.NAPTR), clock.seconds()))
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_cancelling_stops_the_resolution(self) -> None:
        clock = task.Clock()
        resolver = NeverAnswers()
        d = DnsLocator(resolver, reactor=clock).locate(TargetSpec("slow.test"))
        d.cancel()
        self.failureResultOf(d, defer.CancelledError)
        self.assertEqual(clock.getDelayedCalls(), [])


class AnswerCacheTests(unittest.TestCase):
    query = Query("edge.test", RecordType.A)

    def test_ttl_is_honoured_and_capped(self) -> None:
        cache = AnswerCache(max_ttl=100.0)
        cache.put(self.query, ["192.0.2.1"], 60, now=0.0)
        self.assertEqual(cache.get(self.query, 59.9), ["192.0.2.1"])
        self.assertIsNone(cache.get(self.query, 60.0))
        cache.put(self.query, ["192.0.2.1"], 86400, now=0.0)
        self.assertIsNone(cache.get(self.query, 100.0))

    def test_zero_ttl_is_not_kept_and_empty_answers_expire_sooner(self) -> None:
        cache = AnswerCache(negative_ttl=10.0)
        cache.put(self.query, ["192.0.2.1"], 0, now=0.0)
        self.assertIsNone(cache.get(self.query, 0.0))
        cache.put(self.query, [], 3600, now=0.0)
        self.assertEqual(cache.get(self.query, 9.0), [])
        self.assertIsNone(cache.get(self.query, 10.0))

    def test_size_is_bounded_least_recently_used_first(self) -> None:
        cache = AnswerCache(size=2)
        names = [Query(f"h{i}.test", RecordType.A) for i in range(3)]
        cache.put(names[0], ["192.0.2.0"], 60, now=0.0)
        cache.put(names[1], ["192.0.2.1"], 60, now=0.0)
        cache.get(names[0], 1.0)  # used: names[1] is now the oldest
        cache.put(names[2], ["192.0.2.2"], 60, now=1.0)
        self.assertEqual(len(cache), 2)
        self.assertIsNone(cache.get(names[1], 1.0))
        self.assertEqual(cache.get(names[0], 1.0), ["192.0.2.0"])
