"""Locating SIP servers (RFC 3263 section 4, RFC 2782 SRV ordering), without DNS."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from softswitch.sip.locate import (
    SUPPORTED_TRANSPORTS,
    Locator,
    NaptrRecord,
    Phase,
    Query,
    Record,
    RecordType,
    SrvRecord,
    TargetList,
    TargetSpec,
    fails_over,
    locate_with,
    naptr_services,
    order_srv,
    probe_services,
)
from softswitch.sip.peer import Peer
from softswitch.sip.uri import SipURI

NAPTR, SRV, A, AAAA = RecordType.NAPTR, RecordType.SRV, RecordType.A, RecordType.AAAA


def naptr(order: int, pref: int, service: str, replacement: str, flags: str = "s") -> NaptrRecord:
    return NaptrRecord(order, pref, flags, service, "", replacement)


# A test zone: answers by query, anything missing is an empty answer.
ZONE: dict[Query, list[Record]] = {
    Query("provider.test", NAPTR): [
        naptr(10, 20, "SIP+D2U", "_sip._udp.provider.test"),
        naptr(20, 10, "SIPS+D2T", "_sips._tcp.provider.test"),
        naptr(10, 10, "SIP+D2T", "_sip._tcp.provider.test"),
        naptr(5, 10, "SIP+D2S", "_sip._sctp.provider.test"),  # SCTP: not ours
        NaptrRecord(5, 10, "u", "E2U+sip", "!^.*$!sip:info@provider.test!", "."),
    ],
    Query("_sip._tcp.provider.test", SRV): [SrvRecord(10, 0, 5070, "sip1.provider.test")],
    Query("_sip._udp.provider.test", SRV): [SrvRecord(10, 0, 5080, "sip1.provider.test")],
    Query("_sips._tcp.provider.test", SRV): [SrvRecord(10, 0, 5061, "sip1.provider.test")],
    Query("sip1.provider.test", A): ["192.0.2.10"],
    Query("sip1.provider.test", AAAA): ["2001:db8::10"],
    Query("provider.test", A): ["192.0.2.1"],
    # No NAPTR: SRV probing finds TLS and UDP.
    Query("_sips._tcp.probe.test", SRV): [SrvRecord(1, 0, 5061, "tls.probe.test")],
    Query("_sip._udp.probe.test", SRV): [SrvRecord(1, 0, 5060, "udp.probe.test")],
    Query("tls.probe.test", A): ["192.0.2.21"],
    Query("udp.probe.test", A): ["192.0.2.22"],
    # Neither NAPTR nor SRV.
    Query("plain.test", A): ["192.0.2.30", "192.0.2.31"],
    Query("plain.test", AAAA): ["2001:db8::30"],
    # NAPTR pointing at an SRV name that has no records.
    Query("dangling.test", NAPTR): [naptr(1, 1, "SIP+D2T", "_sip._tcp.dangling.test")],
    Query("dangling.test", A): ["192.0.2.40"],
    # RFC 2782: a target of "." means the service is decidedly not there.
    Query("_sip._udp.refused.test", SRV): [SrvRecord(0, 0, 0, ".")],
    Query("refused.test", A): ["192.0.2.50"],
    # Failover: two priorities, and an address in a target.
    Query("_sip._udp.pool.test", SRV): [SrvRecord(20, 0, 5060, "b.pool.test"),
                                        SrvRecord(10, 0, 5060, "192.0.2.60")],
    Query("b.pool.test", A): ["192.0.2.61"],
}

SIP1_TCP = [Peer("tcp", "192.0.2.10", 5070), Peer("tcp", "2001:db8::10", 5070)]
SIP1_UDP = [Peer("udp", "192.0.2.10", 5080), Peer("udp", "2001:db8::10", 5080)]
SIP1_TLS = [Peer("tls", "192.0.2.10", 5061), Peer("tls", "2001:db8::10", 5061)]


def locate(uri: str, supported: tuple[str, ...] = SUPPORTED_TRANSPORTS,
           address_types: tuple[RecordType, ...] = (A, AAAA)) -> list[Peer]:
    return locate_with(TargetSpec.from_uri(SipURI.parse(uri)), ZONE, rng=random.Random(1),
                       supported=supported, address_types=address_types)


# RFC 3263 4.1 (transport) and 4.2 (port and address), one row a rule.
@pytest.mark.parametrize(("uri", "expected"), [
    # numeric TARGET: UDP for SIP, TLS for SIPS, default ports, no DNS
    ("sip:192.0.2.7", [Peer("udp", "192.0.2.7", 5060)]),
    ("sips:192.0.2.7", [Peer("tls", "192.0.2.7", 5061)]),
    ("sip:192.0.2.7:5099", [Peer("udp", "192.0.2.7", 5099)]),
    ("sip:[2001:db8::7]:5062;transport=tcp", [Peer("tcp", "2001:db8::7", 5062)]),
    ("sip:192.0.2.7;transport=TLS", [Peer("tls", "192.0.2.7", 5061)]),
    ("sips:192.0.2.7;transport=tcp", [Peer("tls", "192.0.2.7", 5061)]),
    # maddr is the TARGET
    ("sip:bob@provider.test;maddr=192.0.2.99", [Peer("udp", "192.0.2.99", 5060)]),
    # explicit transport, no port: SRV for that transport only
    ("sip:provider.test;transport=udp", SIP1_UDP),
    ("sip:provider.test;transport=tcp", SIP1_TCP),
    ("sips:provider.test;transport=tcp", SIP1_TLS),
    # explicit port: A/AAAA of the host at that port, UDP (TLS for SIPS)
    ("sip:provider.test:5090", [Peer("udp", "192.0.2.1", 5090)]),
    ("sips:provider.test:5091", [Peer("tls", "192.0.2.1", 5091)]),
    ("sip:provider.test:5092;transport=tcp", [Peer("tcp", "192.0.2.1", 5092)]),
    # NAPTR: supported services by order then preference; SIPS keeps only SIPS
    ("sip:+15551234@provider.test", SIP1_TCP + SIP1_UDP + SIP1_TLS),
    ("sip:Provider.TEST.", SIP1_TCP + SIP1_UDP + SIP1_TLS),
    ("sips:provider.test", SIP1_TLS),
    # no NAPTR: SRV probing, _sips._tcp, _sip._tcp, _sip._udp in turn
    ("sip:probe.test", [Peer("tls", "192.0.2.21", 5061), Peer("udp", "192.0.2.22", 5060)]),
    ("sips:probe.test", [Peer("tls", "192.0.2.21", 5061)]),
    # no SRV either: A/AAAA at the default port, UDP for SIP, TLS for SIPS
    ("sip:plain.test", [Peer("udp", "192.0.2.30", 5060), Peer("udp", "192.0.2.31", 5060),
                        Peer("udp", "2001:db8::30", 5060)]),
    ("sips:plain.test", [Peer("tls", "192.0.2.30", 5061), Peer("tls", "192.0.2.31", 5061),
                         Peer("tls", "2001:db8::30", 5061)]),
    ("sip:plain.test;transport=tcp", [Peer("tcp", "192.0.2.30", 5060),
                                      Peer("tcp", "192.0.2.31", 5060),
                                      Peer("tcp", "2001:db8::30", 5060)]),
    # NAPTR whose SRV is empty: the host, with the transport NAPTR chose
    ("sip:dangling.test", [Peer("tcp", "192.0.2.40", 5060)]),
    # SRV priorities; an address as a target is used as it is
    ("sip:pool.test;transport=udp", [Peer("udp", "192.0.2.60", 5060),
                                     Peer("udp", "192.0.2.61", 5060)]),
    # nothing to be found, or nothing we can speak
    ("sip:nowhere.test", []),
    ("sip:refused.test;transport=udp", []),
    ("sips:provider.test;transport=udp", []),
    ("sip:provider.test;transport=sctp", []),
    ("sip:192.0.2.7;transport=ws", []),
])
def test_rfc3263_rules(uri: str, expected: list[Peer]) -> None:
    assert locate(uri) == expected


def test_supported_transports_filter_naptr_and_probing() -> None:
    assert locate("sip:provider.test", supported=("udp",)) == SIP1_UDP
    assert locate("sip:probe.test", supported=("udp", "tcp")) == [Peer("udp", "192.0.2.22", 5060)]
    assert locate("sips:plain.test", supported=("udp", "tcp")) == []
    assert locate("sip:192.0.2.7", supported=("tcp",)) == [Peer("tcp", "192.0.2.7", 5060)]


def test_address_types_choose_families_and_their_order() -> None:
    assert locate("sip:plain.test", address_types=(A,)) == [
        Peer("udp", "192.0.2.30", 5060), Peer("udp", "192.0.2.31", 5060)]
    assert locate("sip:plain.test", address_types=(AAAA, A))[0] == Peer("udp", "2001:db8::30", 5060)


def test_trunk_spec_without_port_or_transport_uses_dns() -> None:
    spec = TargetSpec("provider.test")
    assert locate_with(spec, ZONE) == SIP1_TCP + SIP1_UDP + SIP1_TLS
    assert locate_with(TargetSpec("provider.test", 5060, "udp"), ZONE) == [
        Peer("udp", "192.0.2.1", 5060)]


def test_queries_come_in_batches_one_phase_at_a_time() -> None:
    locator = Locator(TargetSpec("provider.test"), rng=random.Random(1))
    assert locator.queries() == [Query("provider.test", NAPTR)]
    locator.receive(Query("unasked.test", A), ["192.0.2.99"])  # ignored
    locator.receive(Query("provider.test", NAPTR), ZONE[Query("provider.test", NAPTR)])
    assert locator.phase is Phase.SRV
    assert locator.queries() == [Query("_sip._tcp.provider.test", SRV),
                                 Query("_sip._udp.provider.test", SRV),
                                 Query("_sips._tcp.provider.test", SRV)]
    for query in locator.queries():
        locator.receive(query, ZONE[query])
    # two services share a target: its addresses are asked once
    assert locator.queries() == [Query("sip1.provider.test", A), Query("sip1.provider.test", AAAA)]
    locator.receive(Query("sip1.provider.test", A), ["192.0.2.10"])
    assert not locator.done and locator.peers() == []
    locator.receive(Query("sip1.provider.test", AAAA), [])
    assert locator.done and locator.queries() == []
    assert locator.peers() == [Peer("tcp", "192.0.2.10", 5070), Peer("udp", "192.0.2.10", 5080),
                               Peer("tls", "192.0.2.10", 5061)]


def test_numeric_target_needs_no_query() -> None:
    locator = Locator(TargetSpec("[2001:db8::1]", None, None, secure=True))
    assert locator.done and locator.queries() == []
    assert locator.peers() == [Peer("tls", "2001:db8::1", 5061)]


def test_naptr_filtering() -> None:
    records = [naptr(1, 1, "sip+d2u", "_sip._udp.x.test."),
               naptr(1, 1, "SIP+D2T", "_sip._tcp.x.test", flags="a"),  # not an SRV pointer
               naptr(1, 2, "SIPS+D2T", "."),  # no replacement
               naptr(2, 1, "SIP+D2W", "_sip._ws.x.test"),
               naptr(0, 9, "SIPS+D2T", "_sips._tcp.x.test"),
               naptr(3, 1, "SIP+D2U", "_sip._udp.x.test")]  # duplicate
    assert [(s.transport, s.name) for s in naptr_services(records, secure=False)] == [
        ("tls", "_sips._tcp.x.test"), ("udp", "_sip._udp.x.test")]
    assert [s.transport for s in naptr_services(records, secure=True)] == ["tls"]
    assert [s.name for s in probe_services("x.test", secure=False)] == [
        "_sips._tcp.x.test", "_sip._tcp.x.test", "_sip._udp.x.test"]


def srv(priority: int, weight: int, name: str) -> SrvRecord:
    return SrvRecord(priority, weight, 5060, name)


def test_srv_priorities_first() -> None:
    records = [srv(20, 100, "c"), srv(10, 0, "a"), srv(30, 5, "d"), srv(10, 0, "b")]
    ordered = order_srv(records, random.Random(7))
    assert [r.priority for r in ordered] == [10, 10, 20, 30]
    assert {r.target for r in ordered[:2]} == {"a", "b"}


def test_srv_weights_statistically() -> None:
    rng = random.Random(2782)
    records = [srv(1, 60, "a"), srv(1, 30, "b"), srv(1, 10, "c")]
    runs = 20000
    first = Counter(order_srv(records, rng)[0].target for _ in range(runs))
    for target, weight in (("a", 60), ("b", 30), ("c", 10)):
        assert first[target] / runs == pytest.approx(weight / 100, abs=0.02)
    # a zero weight is picked first only rarely while others remain
    zero = Counter(order_srv([srv(1, 0, "z"), srv(1, 100, "w")], rng)[0].target
                   for _ in range(runs))
    assert 0 < zero["z"] / runs < 0.03
    # all zero: each as likely as the others to come first
    flat = Counter(order_srv([srv(1, 0, n) for n in "abcd"], rng)[0].target for _ in range(runs))
    for name in "abcd":
        assert flat[name] / runs == pytest.approx(0.25, abs=0.02)


def test_srv_order_is_reproducible_with_a_seed() -> None:
    records = [srv(1, w, str(w)) for w in (5, 10, 20, 40)]
    assert order_srv(records, random.Random(3)) == order_srv(records, random.Random(3))


srv_records = st.lists(st.builds(SrvRecord, st.integers(0, 3), st.integers(0, 100),
                                 st.integers(1, 65535), st.sampled_from(["a", "b", "c", "d"])),
                       max_size=12)


@given(srv_records, st.integers(0, 2**32))
def test_srv_order_is_a_permutation_by_priority(records: list[SrvRecord], seed: int) -> None:
    ordered = order_srv(records, random.Random(seed))
    assert Counter(ordered) == Counter(records)
    priorities = [r.priority for r in ordered]
    assert priorities == sorted(priorities)
    for priority in set(priorities):
        assert Counter(r for r in ordered if r.priority == priority) == \
            Counter(r for r in records if r.priority == priority)


def test_target_list_moves_on_after_failures() -> None:
    peers = [Peer("udp", "192.0.2.1", 5060), Peer("tcp", "192.0.2.2", 5060)]
    targets = TargetList(peers)
    assert targets.current == peers[0] and len(targets) == 2
    assert targets.failed() == peers[1]
    assert list(targets) == [peers[1]]
    assert targets.failed() is None and not targets and targets.current is None
    assert targets.failed() is None


def test_only_503_fails_over() -> None:
    assert fails_over(503)
    assert not any(fails_over(code) for code in (404, 480, 486, 500, 502, 504, 603))
