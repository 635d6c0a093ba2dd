"""The kernel fast path on the real kernel: two UDP phones and a relay whose sockets nobody reads.

The relay's two sockets are bound and never read by anyone, so a packet
that arrives at a phone from the relay's port was forwarded by the kernel.
Loopback exercises the nat output hook; the namespace test puts phone A
behind a veth, where packets come in through prerouting.
"""

from __future__ import annotations

import ctypes.util
import os
import socket
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import suppress

import pytest

from rtpmedia.relay.fastpath import Flow, FlowCounters
from rtpmedia.relay.kernel import KernelError, NftablesFastPath, probe
from rtpmedia.relay.libnftables import Libnftables, NftError

RECV_TIMEOUT = 2.0


@pytest.fixture(scope="module")
def fast() -> Iterator[NftablesFastPath]:
    table = f"ssr_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    path, reason = probe(table=table)
    if reason is not None:
        if os.geteuid() != 0 or ctypes.util.find_library("nftables") is None:
            pytest.skip(f"kernel fast path unavailable here: {reason}")
        pytest.fail(f"running as root with libnftables, yet: {reason}")
    assert isinstance(path, NftablesFastPath)
    try:
        yield path
    finally:
        path.close()


def udp(host: str = "127.0.0.1", sock: socket.socket | None = None) -> socket.socket:
    s = sock or socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((host, 0))
    s.settimeout(RECV_TIMEOUT)
    return s


def recv(sock: socket.socket) -> tuple[bytes, tuple[str, int]]:
    data, source = sock.recvfrom(2048)
    return data, source


def nothing_queued(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        sock.recvfrom(2048)
    except BlockingIOError:
        return True
    finally:
        sock.settimeout(RECV_TIMEOUT)
    return False


class Call:
    """Phone A, phone B and the relay's two never-read sockets on one address."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.phone_a, self.relay_a, self.relay_b, self.phone_b = (udp(host) for _ in range(4))
        self.key = f"call-{uuid.uuid4().hex[:8]}"

    def flow(self, b_remote: tuple[str, int] | None = None) -> Flow:
        return Flow(self.key, self.relay_a.getsockname(), self.phone_a.getsockname(),
                    self.relay_b.getsockname(), b_remote or self.phone_b.getsockname())

    def close(self) -> None:
        for s in (self.phone_a, self.relay_a, self.relay_b, self.phone_b):
            s.close()


@pytest.fixture
def call() -> Iterator[Call]:
    c = Call()
    try:
        yield c
    finally:
        c.close()


def test_forwards_both_ways_from_the_relay_ports_and_counts(fast: NftablesFastPath, call: Call) -> None:
    flow = call.flow()
    # Before install the stream goes to the relay's sockets (and leaves a
    # conntrack entry that install must flush).
    call.phone_a.sendto(b"early", flow.a_local)
    assert recv(call.relay_a) == (b"early", flow.a_remote)
    call.phone_b.sendto(b"early-b", flow.b_local)
    assert recv(call.relay_b) == (b"early-b", flow.b_remote)

    fast.install(flow)
    for i in range(5):
        call.phone_a.sendto(b"a%d" % i + bytes(160), flow.a_local)
        assert recv(call.phone_b) == (b"a%d" % i + bytes(160), flow.b_local)
    for i in range(3):
        call.phone_b.sendto(b"b%d" % i + bytes(80), flow.b_local)
        assert recv(call.phone_a) == (b"b%d" % i + bytes(80), flow.a_local)

    counts = fast.counters(flow.key)
    # Bytes are whole IP packets: 20 (IPv4) + 8 (UDP) + payload.
    assert counts == FlowCounters(5, 5 * (28 + 162), 3, 3 * (28 + 82))
    assert nothing_queued(call.relay_a) and nothing_queued(call.relay_b)
    assert fast.remove(flow.key) == counts


def test_a_third_source_is_not_forwarded(fast: NftablesFastPath, call: Call) -> None:
    flow = call.flow()
    fast.install(flow)
    stranger = udp()
    try:
        stranger.sendto(b"hijack", flow.a_local)
        # The stranger's packet is the relay's business (strict source), not forwarded.
        assert recv(call.relay_a) == (b"hijack", stranger.getsockname())
        stranger.sendto(b"hijack-b", flow.b_local)
        assert recv(call.relay_b) == (b"hijack-b", stranger.getsockname())
        call.phone_a.sendto(b"legit", flow.a_local)
        # Loopback keeps order: what phone B gets first is the legitimate packet.
        assert recv(call.phone_b) == (b"legit", flow.b_local)
        call.phone_b.sendto(b"legit-b", flow.b_local)
        assert recv(call.phone_a) == (b"legit-b", flow.a_local)
        assert fast.counters(flow.key).a_to_b_packets == 1
    finally:
        stranger.close()
        fast.remove(flow.key)


def test_after_remove_packets_reach_the_relay_again(fast: NftablesFastPath, call: Call) -> None:
    flow = call.flow()
    fast.install(flow)
    call.phone_a.sendto(b"kernel", flow.a_local)
    assert recv(call.phone_b) == (b"kernel", flow.b_local)
    counts = fast.remove(flow.key)
    assert counts.a_to_b_packets == 1 and counts.b_to_a_packets == 0
    assert fast.counters(flow.key) == FlowCounters()

    call.phone_a.sendto(b"userspace", flow.a_local)
    assert recv(call.relay_a) == (b"userspace", flow.a_remote)
    call.phone_b.sendto(b"userspace-b", flow.b_local)
    assert recv(call.relay_b) == (b"userspace-b", flow.b_remote)
    assert nothing_queued(call.phone_a) and nothing_queued(call.phone_b)
    assert fast.remove(flow.key) == FlowCounters()  # unknown key: zeros, no error


def test_reinstall_with_a_new_remote_forwards_to_the_new_one(fast: NftablesFastPath, call: Call) -> None:
    flow = call.flow()
    fast.install(flow)
    call.phone_a.sendto(b"to-old", flow.a_local)
    assert recv(call.phone_b) == (b"to-old", flow.b_local)

    new_b = udp()  # phone B moved (a re-INVITE with a new address)
    try:
        moved = call.flow(b_remote=new_b.getsockname())
        fast.install(moved)
        fast.install(moved)  # the same flow again (a retried command) changes nothing
        call.phone_a.sendto(b"to-new", flow.a_local)
        assert recv(new_b) == (b"to-new", flow.b_local)
        new_b.sendto(b"from-new", flow.b_local)
        assert recv(call.phone_a) == (b"from-new", flow.a_local)
        # The old remote is now a stranger to the relay.
        call.phone_b.sendto(b"from-old", flow.b_local)
        assert recv(call.relay_b) == (b"from-old", flow.b_remote)
        assert nothing_queued(call.phone_b)
        assert fast.counters(flow.key) == FlowCounters(1, 28 + 6, 1, 28 + 8)
        assert [f.b_remote for f in fast.flows() if f.key == flow.key] == [new_b.getsockname()]
    finally:
        new_b.close()
        fast.remove(flow.key)


def test_many_flows_are_independent(fast: NftablesFastPath) -> None:
    calls = [Call() for _ in range(20)]
    try:
        for c in calls:
            fast.install(c.flow())
        for i, c in enumerate(calls):
            c.phone_a.sendto(b"%d" % i, c.relay_a.getsockname())
            assert recv(c.phone_b) == (b"%d" % i, c.relay_b.getsockname())
        for c in calls[::2]:
            fast.remove(c.key)
        for i, c in enumerate(calls):
            c.phone_b.sendto(b"r%d" % i, c.relay_b.getsockname())
            if i % 2:
                assert recv(c.phone_a) == (b"r%d" % i, c.relay_a.getsockname())
            else:
                assert recv(c.relay_b) == (b"r%d" % i, c.phone_b.getsockname())
    finally:
        for c in calls:
            fast.remove(c.key)
            c.close()


def test_ipv6_flow_on_loopback(fast: NftablesFastPath) -> None:
    socks = []
    try:
        for _ in range(4):
            s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            socks.append(s)
            s.bind(("::1", 0))
            s.settimeout(RECV_TIMEOUT)
        phone_a, relay_a, relay_b, phone_b = socks
        addr = [s.getsockname()[:2] for s in socks]
        flow = Flow("v6", addr[1], addr[0], addr[2], addr[3])
        phone_a.sendto(b"early", flow.a_local)
        assert relay_a.recvfrom(64)[0] == b"early"
        fast.install(flow)
        phone_a.sendto(b"six", flow.a_local)
        data, source = phone_b.recvfrom(64)
        assert (data, source[:2]) == (b"six", flow.b_local)
        phone_b.sendto(b"xis", flow.b_local)
        data, source = phone_a.recvfrom(64)
        assert (data, source[:2]) == (b"xis", flow.a_local)
        # IPv6 header 40 + UDP 8 + payload 3
        assert fast.remove("v6") == FlowCounters(1, 51, 1, 51)
    finally:
        for s in socks:
            s.close()


def test_bad_flows_are_refused_with_a_clear_error(fast: NftablesFastPath) -> None:
    with pytest.raises(ValueError, match="mixes IPv4 and IPv6"):
        fast.install(Flow("x", ("127.0.0.1", 1000), ("::1", 1001), ("127.0.0.1", 1002), ("127.0.0.1", 1003)))
    with pytest.raises(ValueError, match="out of range"):
        fast.install(Flow("x", ("127.0.0.1", 0), ("127.0.0.1", 1001), ("127.0.0.1", 1002), ("127.0.0.1", 1003)))
    with pytest.raises(ValueError, match="same remote"):
        fast.install(Flow("x", ("127.0.0.1", 1000), ("127.0.0.1", 1001), ("127.0.0.1", 1002), ("127.0.0.1", 1001)))
    with pytest.raises(ValueError):
        fast.install(Flow("x", ("not-an-ip", 1000), ("127.0.0.1", 1001), ("127.0.0.1", 1002), ("127.0.0.1", 1003)))
    assert fast.counters("x") == FlowCounters()


def test_a_second_flow_claiming_the_same_5_tuple_is_refused(fast: NftablesFastPath, call: Call) -> None:
    flow = call.flow()
    fast.install(flow)
    try:
        clash = Flow("other", flow.a_local, flow.a_remote, ("127.0.0.1", 1), ("127.0.0.1", 2))
        with pytest.raises(KernelError, match="not installed"):
            fast.install(clash)
        call.phone_a.sendto(b"still", flow.a_local)
        assert recv(call.phone_b) == (b"still", flow.b_local)
    finally:
        fast.remove(flow.key)


def test_remote_to_remote_needs_forwarding_on(fast: NftablesFastPath) -> None:
    # TEST-NET addresses: neither is this host's, so the kernel would route between them.
    flow = Flow("routed", ("127.0.0.1", 40002), ("192.0.2.10", 5004), ("127.0.0.1", 40004), ("198.51.100.7", 5006))
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        forwarding = f.read().strip() == "1"
    if forwarding:
        fast.install(flow)
        assert [f.key for f in fast.flows()].count("routed") == 1
        fast.remove("routed")
    else:
        with pytest.raises(KernelError, match="ip_forward"):
            fast.install(flow)
        assert "routed" not in [f.key for f in fast.flows()]


def test_libnftables_reports_nfts_own_error() -> None:
    nft = Libnftables()
    try:
        with pytest.raises(NftError, match="No such file or directory"):
            nft.run("add element inet no_such_table_here s { bogus }\n")
    finally:
        nft.close()
    with pytest.raises(NftError, match="closed"):
        nft.run("list tables\n")


def test_probe_names_its_table_by_pid_and_sweeps_tables_of_dead_relays() -> None:
    child = subprocess.Popen(["sleep", "0"])
    child.wait()
    orphan = f"softswitch_relay_{child.pid}"
    subprocess.run(["nft", "add", "table", "inet", orphan], check=True)
    path, reason = probe()
    try:
        assert reason is None and isinstance(path, NftablesFastPath)
        assert path.table == f"softswitch_relay_{os.getpid()}"
        listed = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=True).stdout
        assert f"table inet {path.table}" in listed
        assert orphan not in listed
    finally:
        path.close()
        subprocess.run(["nft", "delete", "table", "inet", orphan], capture_output=True)
    listed = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=True).stdout
    assert f"softswitch_relay_{os.getpid()}" not in listed


def test_probe_refuses_a_bad_table_name() -> None:
    with pytest.raises(ValueError):
        probe(table="bad name; flush ruleset")


# -- a phone behind a veth, in its own network namespace -------------------------


@pytest.fixture
def namespace() -> Iterator[tuple[str, str, str]]:
    """(netns name, host address, phone address): a veth pair with phone A's end in a fresh netns."""
    from pyroute2 import IPRoute, NetNS, netns

    tag = uuid.uuid4().hex[:6]
    name, host_if, ns_if = f"ssrk-{tag}", f"ssrk{tag}h", f"ssrk{tag}n"
    octet = int(tag[:2], 16) % 250 + 2
    host_ip, ns_ip = f"10.213.{octet}.1", f"10.213.{octet}.2"
    netns.create(name)
    try:
        with IPRoute() as ipr:
            ipr.link("add", ifname=host_if, kind="veth", peer=ns_if)
            try:
                (peer,) = ipr.link_lookup(ifname=ns_if)
                ipr.link("set", index=peer, net_ns_fd=name)
                (host,) = ipr.link_lookup(ifname=host_if)
                ipr.addr("add", index=host, address=host_ip, prefixlen=30)
                ipr.link("set", index=host, state="up")
                with NetNS(name) as ns:
                    (inner,) = ns.link_lookup(ifname=ns_if)
                    ns.addr("add", index=inner, address=ns_ip, prefixlen=30)
                    ns.link("set", index=inner, state="up")
                    (lo,) = ns.link_lookup(ifname="lo")
                    ns.link("set", index=lo, state="up")
                yield name, host_ip, ns_ip
            finally:
                with suppress(Exception):
                    idx = ipr.link_lookup(ifname=host_if)
                    if idx:
                        ipr.link("del", index=idx[0])
    finally:
        netns.remove(name)


def test_phone_in_a_namespace_reaches_the_relay_over_veth(
        fast: NftablesFastPath, namespace: tuple[str, str, str]) -> None:
    from pyroute2 import netns

    name, host_ip, ns_ip = namespace
    phone_a = udp(ns_ip, netns.create_socket(name, socket.AF_INET, socket.SOCK_DGRAM))
    relay_a, relay_b, phone_b = udp(host_ip), udp(host_ip), udp(host_ip)
    try:
        flow = Flow("ns-call", relay_a.getsockname(), phone_a.getsockname(),
                    relay_b.getsockname(), phone_b.getsockname())
        # The veth may need a moment before its first packet passes (link up,
        # neighbour resolution): the first packet to the relay proves the path.
        phone_a.sendto(b"hello", flow.a_local)
        assert recv(relay_a) == (b"hello", flow.a_remote)

        fast.install(flow)
        for i in range(3):
            phone_a.sendto(b"ns%d" % i, flow.a_local)
            assert recv(phone_b) == (b"ns%d" % i, flow.b_local)
            phone_b.sendto(b"host%d" % i, flow.b_local)
            assert recv(phone_a) == (b"host%d" % i, flow.a_local)
        counts = fast.remove(flow.key)
        assert (counts.a_to_b_packets, counts.b_to_a_packets) == (3, 3)
        assert nothing_queued(relay_a) and nothing_queued(relay_b)
        phone_a.sendto(b"back", flow.a_local)
        assert recv(relay_a) == (b"back", flow.a_remote)
    finally:
        for s in (phone_a, relay_a, relay_b, phone_b):
            s.close()


def test_nft_sees_the_table_while_open(fast: NftablesFastPath) -> None:
    listed = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=True).stdout
    assert f"table inet {fast.table}" in listed
