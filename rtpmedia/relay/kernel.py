"""The kernel fast path: latched RTP flows forwarded by the stock Linux kernel.

A flow becomes four map elements in a dedicated nftables table: `dnat`
rewrites the destination of a packet arriving from a latched remote at the
relay's port to the other side's remote, `snat` rewrites its source to the
relay's port on that side. NAT in netfilter runs on the first packet of a
conntrack entry only; every later packet of the stream, in both directions,
is forwarded by conntrack's NAT binding without leaving the kernel
(MediaProxy's approach, with nftables maps instead of hand-made conntrack
entries). The keys are exact 5-tuples, so strict source comes for free: a
stranger's packets match nothing and reach the relay's socket.

Locally generated packets (every party on 127.0.0.1, as in the tests) pass
the nat *output* hook, a phone reaching the relay over an interface passes
*prerouting*; the table hooks both, and `snat` sits in *postrouting* (sent
on) and *input* (delivered to a local phone). Per-direction counters are a
counter set keyed on the arriving 5-tuple, seen once per packet before NAT,
read one element at a time over netlink (`rtpmedia.relay.nftsets`).

Conntrack entries made while the stream was in userspace would keep packets
going to the relay's socket (NAT is only decided for new entries), so
install and remove delete the entries holding either side's 5-tuple,
through ctnetlink (`rtpmedia.relay.ctnetlink`).

Each relay process has its own table (`softswitch_relay_<pid>`); `probe`
deletes the tables of relay processes that died without closing theirs.
"""

from __future__ import annotations

import ipaddress
import os
import re
import select
import socket
import time
from contextlib import suppress
from dataclasses import dataclass

from rtpmedia.relay.ctnetlink import Conntrack, ConntrackError
from rtpmedia.relay.fastpath import Address, FastPath, Flow, FlowCounters, NoFastPath
from rtpmedia.relay.libnftables import Libnftables, NftError
from rtpmedia.relay.nftsets import SetCounters, key_bytes

DEFAULT_TABLE = "softswitch_relay"
_CAP_NET_ADMIN = 12

_TABLE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,31}$")


class KernelError(RuntimeError):
    """The kernel refused a flow; the caller keeps the stream in userspace."""


@dataclass(frozen=True, slots=True)
class _Family:
    ip: str  # nft's payload protocol: ip or ip6
    addr_type: str
    suffix: str  # of the map and set names
    af: int


_V4 = _Family("ip", "ipv4_addr", "4", socket.AF_INET)
_V6 = _Family("ip6", "ipv6_addr", "6", socket.AF_INET6)


def _ruleset(table: str) -> str:
    lines = [f"table inet {table} {{"]
    for fam in (_V4, _V6):
        key = f"{fam.addr_type} . inet_service . {fam.addr_type} . inet_service"
        tuple5 = f"{fam.ip} saddr . udp sport . {fam.ip} daddr . udp dport"
        s = fam.suffix
        lines += [
            f"  map dnat{s} {{ type {key} : {fam.addr_type} . inet_service; }}",
            f"  map snat{s} {{ type {key} : {fam.addr_type} . inet_service; }}",
            f"  set count{s} {{ type {key}; counter; }}",
        ]
        for hook in ("prerouting", "output"):
            lines.append(f"  chain count_{hook}{s} {{ type filter hook {hook} priority -300; {tuple5} @count{s}; }}")
            lines.append(f"  chain dnat_{hook}{s} {{ type nat hook {hook} priority -100;"
                         f" dnat {fam.ip} to {tuple5} map @dnat{s}; }}")
        for hook in ("postrouting", "input"):
            lines.append(f"  chain snat_{hook}{s} {{ type nat hook {hook} priority 100;"
                         f" snat {fam.ip} to {tuple5} map @snat{s}; }}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _family(flow: Flow) -> _Family:
    try:
        versions = {ipaddress.ip_address(host).version
                    for host, _ in (flow.a_local, flow.a_remote, flow.b_local, flow.b_remote)}
    except ValueError as exc:
        raise ValueError(f"flow {flow.key!r}: {exc}") from None
    if len(versions) != 1:
        raise ValueError(f"flow {flow.key!r} mixes IPv4 and IPv6 addresses")
    for host, port in (flow.a_local, flow.a_remote, flow.b_local, flow.b_remote):
        if not 0 < port < 65536:
            raise ValueError(f"flow {flow.key!r}: port {port} of {host} out of range")
    if flow.a_remote == flow.b_remote:
        # Both directions would share one snat key: a hairpin to itself.
        raise ValueError(f"flow {flow.key!r}: both sides are the same remote {flow.a_remote}")
    return _V4 if versions == {4} else _V6


_FORWARDING: dict[int, str] = {socket.AF_INET: "/proc/sys/net/ipv4/ip_forward",
                          socket.AF_INET6: "/proc/sys/net/ipv6/conf/all/forwarding"}
_local: dict[str, bool] = {}


def _is_local(host: str, af: int) -> bool:
    """Whether `host` is one of this host's addresses (in the relay's network namespace)."""
    known = _local.get(host)
    if known is None:
        with socket.socket(af, socket.SOCK_DGRAM) as s:
            try:
                s.bind((host, 0))
                known = True
            except OSError:
                known = False
        if len(_local) > 4096:
            _local.clear()
        _local[host] = known
    return known


def _elem(*addresses: Address) -> str:
    return " . ".join(f"{host} . {port}" for host, port in addresses)


class NftablesFastPath:
    """`FastPath` on nftables NAT maps; made by `probe`, which checks that it works."""

    name = "kernel"

    def __init__(self, nft: Libnftables, conntrack: Conntrack, counters: SetCounters, table: str) -> None:
        self._nft = nft
        self._conntrack = conntrack
        self._counters = counters
        self._table = table
        self._flows: dict[str, Flow] = {}

    # -- FastPath -------------------------------------------------------------

    def install(self, flow: Flow) -> None:
        fam = _family(flow)
        self._check_forwarding(flow, fam)
        old = self._flows.get(flow.key)
        commands = self._delete_commands(old) if old is not None else []
        commands += self._add_commands(flow, fam)
        try:
            self._nft.run("\n".join(commands) + "\n")
        except NftError as exc:
            raise KernelError(f"flow {flow.key!r} not installed: {exc}") from None
        self._flows[flow.key] = flow
        # After the maps, so that a packet arriving in between either keeps the
        # old entry or makes a new one through the new maps.
        if old is not None:
            self._forget_conntrack(old)
        self._forget_conntrack(flow)

    def remove(self, key: str) -> FlowCounters:
        flow = self._flows.pop(key, None)
        if flow is None:
            return FlowCounters()
        counts = self._read_counters(flow)
        try:
            self._nft.run("\n".join(self._delete_commands(flow)) + "\n")
        except NftError as exc:
            raise KernelError(f"flow {key!r} not removed: {exc}") from None
        self._forget_conntrack(flow)
        return counts

    def counters(self, key: str) -> FlowCounters:
        flow = self._flows.get(key)
        return FlowCounters() if flow is None else self._read_counters(flow)

    def resync(self, key: str) -> None:
        # Only the entries of the relay's own sends: the NATed entries the
        # kernel made for the flow must stay, or every packet would go
        # through the maps again.
        flow = self._flows.get(key)
        if flow is None:
            return
        try:
            self._conntrack.delete([(flow.a_local, flow.a_remote), (flow.b_local, flow.b_remote)])
        except (ConntrackError, OSError) as exc:
            raise KernelError(f"flow {flow.key!r}: {exc}") from None

    def close(self) -> None:
        flows = list(self._flows.values())
        self._flows.clear()
        try:
            self._nft.run(f"delete table inet {self._table}\n")
        except NftError:
            pass  # already gone (someone deleted it by hand)
        for flow in flows:
            with suppress(KernelError):
                self._forget_conntrack(flow)
        self._conntrack.close()
        self._counters.close()
        self._nft.close()

    # -- inspection -------------------------------------------------------------

    @property
    def table(self) -> str:
        return self._table

    def flows(self) -> list[Flow]:
        return list(self._flows.values())

    def _check_forwarding(self, flow: Flow, fam: _Family) -> None:
        """Refuse a flow the kernel would drop: between two remote hosts with forwarding off.

        A packet from a local phone leaves through the output path and one
        to a local phone is delivered locally; only remote-to-remote needs
        the forward path, and the kernel drops it silently when the
        forwarding sysctl is 0. We do not change the host's sysctls.
        """
        loopback = [ipaddress.ip_address(r[0]).is_loopback for r in (flow.a_remote, flow.b_remote)]
        if loopback[0] != loopback[1]:
            # A packet that came in on a real interface, rewritten to 127.0.0.1
            # (or the reverse), is a martian to the routing code: dropped.
            raise KernelError(f"flow {flow.key!r} joins a loopback and a non-loopback end:"
                              " the kernel would drop it (the stream stays in userspace)")
        if _is_local(flow.a_remote[0], fam.af) or _is_local(flow.b_remote[0], fam.af):
            return
        sysctl = _FORWARDING[fam.af]
        try:
            with open(sysctl) as f:
                on = f.read().strip() == "1"
        except OSError:
            on = False
        if not on:
            raise KernelError(f"flow {flow.key!r} joins two remote hosts but {sysctl} is not 1:"
                              " the kernel would drop it (set the sysctl, or the stream stays in userspace)")

    # -- the batches ------------------------------------------------------------

    def _add_commands(self, flow: Flow, fam: _Family) -> list[str]:
        t, s = self._table, fam.suffix
        a_in = _elem(flow.a_remote, flow.a_local)
        b_in = _elem(flow.b_remote, flow.b_local)
        return [
            f"add element inet {t} dnat{s} {{ {a_in} : {_elem(flow.b_remote)},"
            f" {b_in} : {_elem(flow.a_remote)} }}",
            # snat sees the packet after dnat: from the sending remote to the other remote.
            f"add element inet {t} snat{s} {{ {_elem(flow.a_remote, flow.b_remote)} : {_elem(flow.b_local)},"
            f" {_elem(flow.b_remote, flow.a_remote)} : {_elem(flow.a_local)} }}",
            f"add element inet {t} count{s} {{ {a_in}, {b_in} }}",
        ]

    def _delete_commands(self, flow: Flow) -> list[str]:
        t, s = self._table, _family(flow).suffix
        a_in = _elem(flow.a_remote, flow.a_local)
        b_in = _elem(flow.b_remote, flow.b_local)
        return [
            f"delete element inet {t} dnat{s} {{ {a_in}, {b_in} }}",
            f"delete element inet {t} snat{s} {{ {_elem(flow.a_remote, flow.b_remote)},"
            f" {_elem(flow.b_remote, flow.a_remote)} }}",
            f"delete element inet {t} count{s} {{ {a_in}, {b_in} }}",
        ]

    def _read_counters(self, flow: Flow) -> FlowCounters:
        fam = _family(flow)
        try:
            a, b = self._counters.get(f"count{fam.suffix}", [key_bytes(flow.a_remote, flow.a_local),
                                                             key_bytes(flow.b_remote, flow.b_local)])
        except OSError as exc:
            raise KernelError(f"counters of {flow.key!r}: {exc}") from None
        a, b = a or (0, 0), b or (0, 0)
        return FlowCounters(a_to_b_packets=a[0], a_to_b_bytes=a[1], b_to_a_packets=b[0], b_to_a_bytes=b[1])

    # -- conntrack --------------------------------------------------------------

    def _forget_conntrack(self, flow: Flow) -> None:
        """Delete the conntrack entries of the flow's 5-tuples, arriving and leaving.

        The relay's own userspace sends (local -> remote) made entries too:
        left in place, their reply tuple is the other side's arriving 5-tuple,
        so that side's packets would match them un-NATed and go to the relay's
        socket, and the NATed flow would clash with them (EPERM at the sender).
        """
        try:
            self._conntrack.delete([(flow.a_remote, flow.a_local), (flow.b_remote, flow.b_local),
                                    (flow.a_local, flow.a_remote), (flow.b_local, flow.b_remote)])
        except (ConntrackError, OSError) as exc:
            raise KernelError(f"flow {flow.key!r}: {exc}") from None


# -- probe ------------------------------------------------------------------------


_PER_PID_TABLE = re.compile(rf"^table inet ({DEFAULT_TABLE}_(\d+))$", re.M)


def _orphaned_tables(listing: str) -> list[str]:
    """Per-process relay tables whose process is gone."""
    return [m[1] for m in _PER_PID_TABLE.finditer(listing) if not os.path.exists(f"/proc/{m[2]}")]


def _has_cap_net_admin() -> bool:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> _CAP_NET_ADMIN & 1)
    except OSError:
        pass
    return os.geteuid() == 0


def probe(table: str | None = None, self_test: bool = True) -> tuple[FastPath, str | None]:
    """The working kernel fast path, or `NoFastPath()` and why the kernel path is unavailable.

    The table is `softswitch_relay_<pid>` unless named: relays on one host
    (tests run several at once) never touch each other's flows, and the
    tables of relays that died without `close` (kill -9) are deleted here,
    so their stale flows do not outlive them. A named table replaces any
    table of that name.

    `self_test` forwards one packet between throwaway loopback sockets, so
    that a kernel that accepts the rules but does not forward (a missing NAT
    module, a sandbox) is found at start and not on the first call.
    """
    if table is None:
        table = f"{DEFAULT_TABLE}_{os.getpid()}"
    if not _TABLE_NAME.match(table):
        raise ValueError(f"bad nftables table name {table!r}")
    if not os.path.exists("/proc/net/netfilter") and not os.path.exists("/proc/sys/net/netfilter"):
        return NoFastPath(), "no netfilter in this kernel (or /proc is not mounted)"
    if not _has_cap_net_admin():
        return NoFastPath(), "no CAP_NET_ADMIN: run the relay as root or grant it cap_net_admin"
    try:
        nft = Libnftables()
    except NftError as exc:
        return NoFastPath(), str(exc)
    try:
        stale = [table] + _orphaned_tables(nft.run("list tables\n"))
        # `table` first makes the delete of our own name valid whether it existed or not.
        nft.run("".join(f"table inet {t}\ndelete table inet {t}\n" for t in dict.fromkeys(stale)))
        nft.run(_ruleset(table))
    except NftError as exc:
        nft.close()
        return NoFastPath(), f"nftables refused the relay's table (a container without NAT?): {exc}"
    try:
        conntrack = Conntrack()
        counters = SetCounters(table)
    except OSError as exc:
        nft.run(f"delete table inet {table}\n")
        nft.close()
        return NoFastPath(), f"netfilter netlink unavailable: {exc}"
    fast = NftablesFastPath(nft, conntrack, counters, table)
    if self_test:
        reason = _self_test(fast)
        if reason is not None:
            fast.close()
            return NoFastPath(), reason
    return fast, None


def _self_test(fast: NftablesFastPath, timeout: float = 1.0) -> str | None:
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(4)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        phone_a, relay_a, relay_b, phone_b = socks
        flow = Flow("softswitch-self-test", relay_a.getsockname(), phone_a.getsockname(),
                    relay_b.getsockname(), phone_b.getsockname())
        try:
            fast.install(flow)
        except (KernelError, ValueError) as exc:
            return f"self-test flow refused: {exc}"
        try:
            phone_a.sendto(b"self-test", flow.a_local)
            deadline = time.monotonic() + timeout
            while (left := deadline - time.monotonic()) > 0:
                ready, _, _ = select.select([phone_b, relay_a], [], [], left)
                if phone_b in ready:
                    data, source = phone_b.recvfrom(64)
                    if data == b"self-test" and source == flow.b_local:
                        return None
                    return f"self-test packet arrived from {source}, not {flow.b_local}"
                if relay_a in ready:
                    return "the kernel did not forward the self-test packet (it reached the relay's socket)"
            return "the kernel did not forward the self-test packet (nothing arrived)"
        finally:
            fast.remove(flow.key)
    finally:
        for s in socks:
            s.close()
