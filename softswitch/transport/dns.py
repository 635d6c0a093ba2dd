"""DNS lookups for RFC 3263 server location, with twisted.names.

`DnsLocator.locate` drives the sans-IO `softswitch.sip.locate.Locator`: it
looks up each batch of queries in parallel and returns a Deferred of the
ordered `Peer`s to try. A small cache keeps answers for their TTL (bounded
in size and in time) and remembers empty answers and failures briefly
(RFC 2308 negative caching, with our own short limit). The whole resolution
is bounded by a deadline; a failure of any kind yields an empty list, which
the caller answers with 503.
"""

from __future__ import annotations

import random
import socket
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.names import client, dns
from twisted.names.error import DomainError
from twisted.python.failure import Failure

from softswitch.logs import get_logger
from softswitch.sip.locate import (
    SUPPORTED_TRANSPORTS,
    Locator,
    NaptrRecord,
    Query,
    Record,
    RecordType,
    SrvRecord,
    TargetSpec,
)
from softswitch.sip.peer import Peer
from softswitch.sip.uri import SipURI

_LOOKUPS = {
    RecordType.NAPTR: "lookupNamingAuthorityPointer",
    RecordType.SRV: "lookupService",
    RecordType.A: "lookupAddress",
    RecordType.AAAA: "lookupIPV6Address",
}
_WIRE_TYPES = {RecordType.NAPTR: dns.NAPTR, RecordType.SRV: dns.SRV,
               RecordType.A: dns.A, RecordType.AAAA: dns.AAAA}


class AnswerCache:
    """Answers by (name, type) until their TTL runs out; least recently used goes first."""

    def __init__(self, size: int = 1024, max_ttl: float = 3600.0, negative_ttl: float = 30.0) -> None:
        self.size = size
        self.max_ttl = max_ttl
        self.negative_ttl = negative_ttl
        self._entries: OrderedDict[Query, tuple[float, list[Record]]] = OrderedDict()

    def get(self, query: Query, now: float) -> list[Record] | None:
        entry = self._entries.get(query)
        if entry is None:
            return None
        expires, records = entry
        if now >= expires:
            del self._entries[query]
            return None
        self._entries.move_to_end(query)
        return records

    def put(self, query: Query, records: list[Record], ttl: float, now: float) -> None:
        ttl = min(ttl, self.max_ttl) if records else min(ttl, self.negative_ttl)
        if ttl <= 0:
            return
        self._entries[query] = (now + ttl, records)
        self._entries.move_to_end(query)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


class DnsLocator:
    """Resolves SIP URIs and trunk hosts to the `Peer`s to try (RFC 3263).

    `resolver` is any twisted.names `IResolver`; given `servers` instead, a
    client that asks only those ((host, port) pairs) is made; given neither,
    the system's (`client.getResolver()`, /etc/resolv.conf and /etc/hosts).
    """

    def __init__(self, resolver: Any = None, *, servers: Sequence[tuple[str, int]] | None = None,
                 reactor: Any = None, deadline: float = 4.0,
                 query_timeouts: tuple[int, ...] = (1, 2), cache: AnswerCache | None = None,
                 supported: Sequence[str] = SUPPORTED_TRANSPORTS,
                 address_types: Sequence[RecordType] = (RecordType.A, RecordType.AAAA),
                 rng: random.Random | None = None) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor
            reactor = default_reactor
        self.reactor = reactor
        if resolver is None:
            # client.createResolver(servers=...) would also ask the servers
            # in /etc/resolv.conf, in turn with ours: a bare Resolver does not.
            resolver = (client.Resolver(servers=list(servers), reactor=reactor) if servers
                        else client.getResolver())
        self.resolver = resolver
        self.deadline = deadline
        self.query_timeouts = query_timeouts
        self.cache = cache if cache is not None else AnswerCache()
        self.supported = tuple(supported)
        self.address_types = tuple(address_types)
        self.rng = rng or random.Random()
        self.log = get_logger("softswitch.dns")

    def locate_uri(self, uri: SipURI) -> Deferred[list[Peer]]:
        return self.locate(TargetSpec.from_uri(uri))

    def locate(self, spec: TargetSpec) -> Deferred[list[Peer]]:
        """The hops to try for `spec`, best first; [] when nothing was found in time."""
        locator = Locator(spec, supported=self.supported, rng=self.rng,
                          address_types=self.address_types)

        def cancel(_: Deferred[list[Peer]]) -> None:
            if timer.active():
                timer.cancel()

        # Cancelling it (or the deadline) stops the resolution between
        # batches; queries in flight finish under their own timeouts and
        # still fill the cache.
        result: Deferred[list[Peer]] = Deferred(cancel)

        def finish(peers: list[Peer]) -> None:
            if not result.called:
                if timer.active():
                    timer.cancel()
                result.callback(peers)

        def expire() -> None:
            self.log.warning("dns_deadline", host=spec.host, deadline=self.deadline)
            finish([])

        def step() -> None:
            if result.called:
                return  # past the deadline, or cancelled: stop asking
            queries = locator.queries()
            if not queries:
                finish(locator.peers())
                return
            batch = defer.gatherResults([self._lookup(q) for q in queries])

            def answered(answers: list[list[Record]]) -> None:
                for query, records in zip(queries, answers, strict=True):
                    locator.receive(query, records)
                step()

            batch.addCallback(answered)
            batch.addErrback(crashed)

        def crashed(failure: Failure) -> None:
            self.log.error("dns_locate_failed", host=spec.host, error=str(failure.value))
            finish([])

        timer = self.reactor.callLater(self.deadline, expire)
        step()
        return result

    def _lookup(self, query: Query) -> Deferred[list[Record]]:
        now = self.reactor.seconds()
        cached = self.cache.get(query, now)
        if cached is not None:
            return defer.succeed(cached)
        method = getattr(self.resolver, _LOOKUPS[query.type])
        try:
            d: Deferred[Any] = method(query.name, timeout=self.query_timeouts)
        except Exception:  # noqa: BLE001 - a resolver refusing the name is an empty answer
            return defer.succeed([])

        def got(answer: tuple[list[dns.RRHeader], Any, Any]) -> list[Record]:
            records, ttl = _records(query.type, answer[0])
            self.cache.put(query, records, ttl if records else self.cache.negative_ttl,
                           self.reactor.seconds())
            return records

        def failed(failure: Failure) -> list[Record]:
            if not failure.check(DomainError, defer.TimeoutError):
                self.log.info("dns_query_failed", name=query.name, type=query.type.value,
                              error=repr(failure.value))
            self.cache.put(query, [], self.cache.negative_ttl, self.reactor.seconds())
            return []

        return d.addCallbacks(got, failed)


def _records(rtype: RecordType, answers: Sequence[dns.RRHeader]) -> tuple[list[Record], float]:
    """Our records from the answer section, and the TTL to keep them for.

    Answers may start with CNAMEs: the records of the asked type at the end
    of the chain are what counts, whatever their owner name.
    """
    wire = _WIRE_TYPES[rtype]
    records: list[Record] = []
    ttl: float | None = None
    for rr in answers:
        if rr.type != wire:
            continue
        record = _convert(rtype, rr.payload)
        if record is None:
            continue
        records.append(record)
        ttl = rr.ttl if ttl is None else min(ttl, rr.ttl)
    return records, ttl or 0


def _convert(rtype: RecordType, payload: Any) -> Record | None:
    if rtype is RecordType.NAPTR:
        return NaptrRecord(payload.order, payload.preference, _text(payload.flags.string),
                           _text(payload.service.string), _text(payload.regexp.string),
                           _text(payload.replacement.name))
    if rtype is RecordType.SRV:
        return SrvRecord(payload.priority, payload.weight, payload.port, _text(payload.target.name))
    if rtype is RecordType.A:
        return str(payload.dottedQuad())
    try:
        return socket.inet_ntop(socket.AF_INET6, payload.address)
    except (OSError, ValueError):
        return None


def _text(value: bytes) -> str:
    return value.decode("ascii", "replace")
