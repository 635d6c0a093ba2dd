"""Locating SIP servers: from a SIP URI or a trunk to the ordered hops to try.

Implements RFC 3263 section 4 without doing any I/O: a `Locator` says which
DNS queries it needs (NAPTR, then SRV, then A/AAAA), is handed the records,
and ends with an ordered list of `Peer`s; `softswitch/transport/dns.py` does
the lookups. Transport selection is 4.1, ports and addresses 4.2 with the
SRV ordering of RFC 2782 (4.3), and `TargetList` holds the hops still to try
after a failure (4.3: a 503, a timeout, or a transport error).
"""

from __future__ import annotations

import ipaddress
import random
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TypeVar

from softswitch.sip.peer import DEFAULT_PORTS, Peer
from softswitch.sip.uri import SipURI

SUPPORTED_TRANSPORTS: tuple[str, ...] = ("udp", "tcp", "tls")

# RFC 3263 section 9 (the IANA registry), restricted to what we speak.
NAPTR_SERVICES: Mapping[str, str] = {"SIP+D2U": "udp", "SIP+D2T": "tcp", "SIPS+D2T": "tls"}

# RFC 3263 4.1 leaves the order of SRV probing to the client: prefer the
# secure, then the reliable transport.
_PROBE_ORDER = ("tls", "tcp", "udp")

# Bounds the A/AAAA queries a hostile or broken zone can make us send.
MAX_SRV_TARGETS = 16


class RecordType(Enum):
    NAPTR = "NAPTR"
    SRV = "SRV"
    A = "A"
    AAAA = "AAAA"


@dataclass(slots=True, frozen=True)
class Query:
    name: str  # lower-case, no trailing dot
    type: RecordType


@dataclass(slots=True, frozen=True)
class NaptrRecord:
    order: int
    preference: int
    flags: str
    service: str
    regexp: str
    replacement: str


@dataclass(slots=True, frozen=True)
class SrvRecord:
    priority: int
    weight: int
    port: int
    target: str


# Records handed to `Locator.receive`: A and AAAA answers are address strings.
Record = NaptrRecord | SrvRecord | str
_R = TypeVar("_R", NaptrRecord, SrvRecord, str)


@dataclass(slots=True, frozen=True)
class Service:
    """One SRV name to ask, and the transport a server found there speaks."""

    transport: str
    name: str


@dataclass(slots=True, frozen=True)
class TargetSpec:
    """What to locate: RFC 3263's TARGET with the URI's port and transport.

    `secure` is a SIPS URI: only TLS will do. A trunk is
    `TargetSpec(host, port, transport)`; leave `port` and `transport` None
    to let DNS (NAPTR/SRV) decide them.
    """

    host: str
    port: int | None = None
    transport: str | None = None
    secure: bool = False

    @classmethod
    def from_uri(cls, uri: SipURI) -> TargetSpec:
        # 4.1: maddr, when present, is the TARGET.
        maddr = uri.params.get("maddr")
        return cls(maddr or uri.host, uri.port, uri.transport, uri.scheme == "sips")


def normalise_name(name: str) -> str:
    """A domain name as we key queries: lower-case, no brackets, no final dot."""
    name = name.strip()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    return name.rstrip(".").lower()


def is_numeric(host: str) -> bool:
    try:
        ipaddress.ip_address(normalise_name(host))
    except ValueError:
        return False
    return True


def default_port(transport: str) -> int:
    """5060, or 5061 for TLS (RFC 3263 4.2)."""
    return DEFAULT_PORTS.get(transport, 5060)


def srv_name(transport: str, domain: str) -> str:
    """`_sip._udp.domain`, `_sip._tcp.domain`, or `_sips._tcp.domain` for TLS (4.2)."""
    if transport == "tls":
        return f"_sips._tcp.{domain}"
    return f"_sip._{transport}.{domain}"


def explicit_transport(transport: str, secure: bool) -> str | None:
    """The transport a `transport=` parameter asks for, or None if we cannot honour it.

    `sips:...;transport=tcp` is TLS over TCP (RFC 3261 26.2.2); `transport=tls`
    is deprecated but still written by many devices.
    """
    transport = transport.lower()
    if transport in ("tcp", "tls"):
        return "tls" if secure or transport == "tls" else "tcp"
    if transport == "udp" and not secure:
        return "udp"
    return None


def fallback_transport(secure: bool, supported: Sequence[str]) -> str | None:
    """4.1: with nothing else to go on, UDP for SIP and TLS for SIPS."""
    candidates = ("tls",) if secure else ("udp", "tcp")
    return next((t for t in candidates if t in supported), None)


def naptr_services(records: Iterable[NaptrRecord], secure: bool,
                   supported: Sequence[str] = SUPPORTED_TRANSPORTS) -> list[Service]:
    """4.1: the SRV names NAPTR records point to, best first.

    Kept: flag "s" (the replacement is an SRV name), a service we support,
    and for a SIPS URI only SIPS services; a SIP URI keeps SIPS records
    since TLS satisfies it too. Sorted by order, then preference (RFC 3403).
    """
    usable: list[tuple[int, int, Service]] = []
    for record in records:
        transport = NAPTR_SERVICES.get(record.service.upper())
        if transport is None or transport not in supported:
            continue
        if secure and transport != "tls":
            continue
        if record.flags.lower() != "s":
            continue
        name = normalise_name(record.replacement)
        if not name:  # "." replaces with nothing
            continue
        usable.append((record.order, record.preference, Service(transport, name)))
    usable.sort(key=lambda item: (item[0], item[1]))
    return _unique(service for _, _, service in usable)


def probe_services(domain: str, secure: bool,
                   supported: Sequence[str] = SUPPORTED_TRANSPORTS) -> list[Service]:
    """4.1 without NAPTR: one SRV query per transport we support, best first."""
    return [Service(t, srv_name(t, domain)) for t in _PROBE_ORDER
            if t in supported and (t == "tls" or not secure)]


def order_srv(records: Iterable[SrvRecord], rng: random.Random) -> list[SrvRecord]:
    """RFC 2782 ordering: by priority, then weighted random within a priority.

    Within a priority, records of weight 0 come first in the running sum, so
    they are picked only rarely while others remain; `rng` is injected so
    that tests can seed it.
    """
    by_priority: dict[int, list[SrvRecord]] = {}
    for record in records:
        by_priority.setdefault(record.priority, []).append(record)
    ordered: list[SrvRecord] = []
    for priority in sorted(by_priority):
        group = by_priority[priority]
        # The RFC allows any initial arrangement; a shuffled one spreads the load
        # when all weights are 0 (otherwise the first record would always win).
        rng.shuffle(group)
        group.sort(key=lambda r: r.weight != 0)
        while group:
            pick = rng.randint(0, sum(r.weight for r in group))
            running = 0
            for index, record in enumerate(group):
                running += record.weight
                if running >= pick:
                    ordered.append(group.pop(index))
                    break
    return ordered


def _unique(services: Iterable[Service]) -> list[Service]:
    seen: set[Service] = set()
    out: list[Service] = []
    for service in services:
        if service not in seen:
            seen.add(service)
            out.append(service)
    return out


class Phase(Enum):
    NAPTR = "naptr"
    SRV = "srv"
    ADDRESS = "address"
    DONE = "done"


class Locator:
    """One RFC 3263 resolution: queries go out, records come in, peers at the end.

    ```
    locator = Locator(TargetSpec.from_uri(uri))
    while queries := locator.queries():
        for query in queries:
            locator.receive(query, records_for(query))
    peers = locator.peers()
    ```

    Each phase asks a batch of queries that may be looked up in parallel;
    the next phase starts when all have an answer. An empty answer (NXDOMAIN,
    no data, or a failed lookup) moves on to the next rule of the RFC.
    """

    def __init__(self, spec: TargetSpec, *, supported: Sequence[str] = SUPPORTED_TRANSPORTS,
                 rng: random.Random | None = None,
                 address_types: Sequence[RecordType] = (RecordType.A, RecordType.AAAA),
                 max_srv_targets: int = MAX_SRV_TARGETS) -> None:
        self.spec = spec
        self.domain = normalise_name(spec.host)
        self.phase = Phase.NAPTR
        self._supported = tuple(supported)
        self._rng = rng or random.Random()
        self._address_types = tuple(address_types)
        self._max_srv_targets = max_srv_targets
        self._batch: dict[Query, list[Record] | None] = {}
        self._services: list[Service] = []
        self._fallback: str | None = None
        # (transport, host, port) still to turn into addresses, in order.
        self._hosts: list[tuple[str, str, int]] = []
        self._peers: list[Peer] = []
        self._start()

    @property
    def done(self) -> bool:
        return self.phase is Phase.DONE

    def queries(self) -> list[Query]:
        """The queries of the current phase still without an answer."""
        return [query for query, records in self._batch.items() if records is None]

    def receive(self, query: Query, records: Iterable[Record]) -> None:
        """The answer to `query`; records of another type are ignored."""
        if query not in self._batch:
            return  # a late answer to an earlier phase
        self._batch[query] = list(records)
        if all(answer is not None for answer in self._batch.values()):
            self._advance()

    def peers(self) -> list[Peer]:
        """The hops to try in turn; empty until done, and empty if nothing was found."""
        return list(self._peers)

    # A complete batch of answers decides the next phase (set by _ask_*/_finish).
    def _advance(self) -> None:
        if self.phase is Phase.NAPTR:
            naptr = self._of_type(Query(self.domain, RecordType.NAPTR), NaptrRecord)
            self._services = naptr_services(naptr, self.spec.secure, self._supported)
            if self._services:
                # 4.2: when SRV has nothing, fall back to the transport NAPTR preferred.
                self._fallback = self._services[0].transport
            else:
                self._services = probe_services(self.domain, self.spec.secure, self._supported)
                self._fallback = fallback_transport(self.spec.secure, self._supported)
            self._ask_srv()
        elif self.phase is Phase.SRV:
            self._after_srv()
        elif self.phase is Phase.ADDRESS:
            self._after_addresses()

    def _start(self) -> None:
        spec = self.spec
        if spec.transport is not None:
            transport = explicit_transport(spec.transport, spec.secure)
            if transport is None or transport not in self._supported:
                self._finish()
                return
        else:
            transport = None
        if is_numeric(self.domain):
            # 4.1/4.2: a numeric TARGET is used as it is.
            transport = transport or fallback_transport(spec.secure, self._supported)
            if transport is not None:
                self._peers = [Peer(transport, self.domain, spec.port or default_port(transport))]
            self._finish()
        elif spec.port is not None:
            # 4.2: an explicit port skips SRV: A/AAAA of the TARGET at that port.
            transport = transport or fallback_transport(spec.secure, self._supported)
            if transport is None:
                self._finish()
                return
            self._ask_addresses([(transport, self.domain, spec.port)])
        elif transport is not None:
            # 4.2: a transport but no port: SRV for that transport only.
            self._services = [Service(transport, srv_name(transport, self.domain))]
            self._fallback = transport
            self._ask_srv()
        else:
            self.phase = Phase.NAPTR
            self._batch = {Query(self.domain, RecordType.NAPTR): None}

    def _ask_srv(self) -> None:
        self.phase = Phase.SRV
        self._batch = {Query(s.name, RecordType.SRV): None for s in self._services}
        if not self._batch:
            self._finish()

    def _after_srv(self) -> None:
        hosts: list[tuple[str, str, int]] = []
        refused = 0
        for service in self._services:
            records = self._of_type(Query(service.name, RecordType.SRV), SrvRecord)
            # RFC 2782: a lone target of "." means "decidedly not available here".
            if len(records) == 1 and normalise_name(records[0].target) == "":
                refused += 1
                continue
            for record in order_srv(records, self._rng):
                target = normalise_name(record.target)
                if target:
                    hosts.append((service.transport, target, record.port))
        if not hosts:
            if refused or self._fallback is None:
                self._finish()
                return
            # 4.2: no SRV at all: A/AAAA of the TARGET at the default port.
            hosts = [(self._fallback, self.domain, default_port(self._fallback))]
        self._ask_addresses(hosts[: self._max_srv_targets])

    def _ask_addresses(self, hosts: list[tuple[str, str, int]]) -> None:
        self.phase = Phase.ADDRESS
        self._hosts = hosts
        self._batch = {}
        for _, host, _ in hosts:
            if not is_numeric(host):  # some zones put addresses in SRV targets
                for rtype in self._address_types:
                    self._batch[Query(host, rtype)] = None
        if not self._batch:
            self._after_addresses()

    def _after_addresses(self) -> None:
        peers: list[Peer] = []
        seen: set[Peer] = set()
        for transport, host, port in self._hosts:
            if is_numeric(host):
                addresses = [host]
            else:
                addresses = [address for rtype in self._address_types
                             for address in self._of_type(Query(host, rtype), str)]
            for address in addresses:
                peer = Peer(transport, normalise_name(address), port)
                if peer not in seen:
                    seen.add(peer)
                    peers.append(peer)
        self._peers = peers
        self._finish()

    def _finish(self) -> None:
        self.phase = Phase.DONE
        self._batch = {}

    def _of_type(self, query: Query, kind: type[_R]) -> list[_R]:
        return [r for r in self._batch.get(query) or () if isinstance(r, kind)]


def locate_with(spec: TargetSpec, answers: Mapping[Query, Sequence[Record]], *,
                supported: Sequence[str] = SUPPORTED_TRANSPORTS, rng: random.Random | None = None,
                address_types: Sequence[RecordType] = (RecordType.A, RecordType.AAAA)) -> list[Peer]:
    """Run a `Locator` against a fixed set of answers (missing means empty)."""
    locator = Locator(spec, supported=supported, rng=rng, address_types=address_types)
    while queries := locator.queries():
        for query in queries:
            locator.receive(query, answers.get(query, ()))
    return locator.peers()


def fails_over(status: int) -> bool:
    """Whether a final response sends the request on to the next target (RFC 3263 4.3).

    Only 503 does; a transaction timeout without any response (timer B or
    F, our locally made 408) and a transport error always do.
    """
    return status == 503


class TargetList:
    """The hops left to try for one request, in RFC 3263 order.

    After a failure (see `fails_over`) the request is sent again, with a new
    Via branch and so as a new transaction, to the next hop (4.3).
    """

    def __init__(self, peers: Iterable[Peer]) -> None:
        self._remaining: deque[Peer] = deque(peers)

    @property
    def current(self) -> Peer | None:
        return self._remaining[0] if self._remaining else None

    def failed(self) -> Peer | None:
        """Drop the current hop after a failure; return the next one, if any."""
        if self._remaining:
            self._remaining.popleft()
        return self.current

    def __len__(self) -> int:
        return len(self._remaining)

    def __bool__(self) -> bool:
        return bool(self._remaining)

    def __iter__(self) -> Iterator[Peer]:
        return iter(self._remaining)
