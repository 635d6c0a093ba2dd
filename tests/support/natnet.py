"""A phone's network behind a masquerading NAT, made with pyroute2 for one test module.

    host (root namespace)  HOST_IP/24 ── veth ── OUTSIDE_IP/24  NAT namespace
                                                  INNER_GW/24 ── veth ── PHONE_IP/24  phone namespace

The NAT namespace forwards and masquerades (nftables, postrouting) whatever
leaves towards the host, so the host sees the phone's packets from OUTSIDE_IP
while the phone's SIP and SDP name PHONE_IP, as behind a home router. Names
and subnets are unique per use; `close()` removes both namespaces (their
veths go with them) even when the set-up failed half way.
"""

from __future__ import annotations

import os
import random
import subprocess
from dataclasses import dataclass, field

from pyroute2 import IPRoute, NetNS, netns


@dataclass
class NatNetwork:
    tag: str = field(default_factory=lambda: f"{os.getpid() % 10000}{random.randrange(1000)}")
    octet: int = field(default_factory=lambda: random.randrange(100, 250))

    def __post_init__(self) -> None:
        self.nat_ns = f"r4nat{self.tag}"
        self.phone_ns = f"r4ph{self.tag}"
        self.host_if, self.outside_if = f"r4h{self.tag}", f"r4o{self.tag}"
        self.inner_if, self.phone_if = f"r4i{self.tag}", f"r4p{self.tag}"
        self.host_ip = f"10.{self.octet}.1.1"
        self.outside_ip = f"10.{self.octet}.1.2"
        self.inner_gw = f"10.{self.octet}.2.1"
        self.phone_ip = f"10.{self.octet}.2.2"

    def create(self) -> NatNetwork:
        try:
            self._create()
        except BaseException:
            self.close()
            raise
        return self

    def _create(self) -> None:
        netns.create(self.nat_ns)
        netns.create(self.phone_ns)
        with IPRoute() as host:
            host.link("add", ifname=self.host_if, kind="veth", peer=self.outside_if)
            host.link("set", index=host.link_lookup(ifname=self.outside_if)[0],
                      net_ns_fd=self.nat_ns)
            index = host.link_lookup(ifname=self.host_if)[0]
            host.addr("add", index=index, address=self.host_ip, prefixlen=24)
            host.link("set", index=index, state="up")
        with NetNS(self.nat_ns) as nat:
            nat.link("add", ifname=self.inner_if, kind="veth", peer=self.phone_if)
            nat.link("set", index=nat.link_lookup(ifname=self.phone_if)[0],
                     net_ns_fd=self.phone_ns)
            for name, address in ((self.outside_if, self.outside_ip),
                                  (self.inner_if, self.inner_gw)):
                index = nat.link_lookup(ifname=name)[0]
                nat.addr("add", index=index, address=address, prefixlen=24)
                nat.link("set", index=index, state="up")
            nat.link("set", index=nat.link_lookup(ifname="lo")[0], state="up")
        with NetNS(self.phone_ns) as phone:
            index = phone.link_lookup(ifname=self.phone_if)[0]
            phone.addr("add", index=index, address=self.phone_ip, prefixlen=24)
            phone.link("set", index=index, state="up")
            phone.link("set", index=phone.link_lookup(ifname="lo")[0], state="up")
            phone.route("add", dst="0.0.0.0/0", gateway=self.inner_gw)
        self._in(self.nat_ns, ["sysctl", "-qw", "net.ipv4.ip_forward=1"])
        self._in(self.nat_ns, ["nft", "-f", "-"], stdin=(
            "table ip nat {\n"
            "  chain postrouting {\n"
            "    type nat hook postrouting priority srcnat;\n"
            f"    oifname \"{self.outside_if}\" masquerade\n"
            "  }\n"
            "}\n"))

    @staticmethod
    def _in(ns: str, cmd: list[str], stdin: str | None = None) -> None:
        subprocess.run(["ip", "netns", "exec", ns, *cmd], input=stdin, text=True,
                       check=True, capture_output=True, timeout=10)

    def close(self) -> None:
        for name in (self.phone_ns, self.nat_ns):
            try:
                netns.remove(name)
            except OSError:
                pass
        # The host's end goes with its peer's namespace; this is for a set-up
        # that failed before the peer moved.
        with IPRoute() as host:
            for index in host.link_lookup(ifname=self.host_if):
                host.link("del", index=index)
