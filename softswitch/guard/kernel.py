"""Banned sources dropped by the kernel: an nftables table with timeout sets.

    table inet softswitch_bans {
        set v4 { type ipv4_addr; flags timeout; }
        set v6 { type ipv6_addr; flags timeout; }
        chain input {
            type filter hook input priority filter - 5; policy accept;
            ip saddr @v4 meta l4proto { tcp, udp } th dport { 5060, 5061 } counter drop
            ip6 saddr @v6 meta l4proto { tcp, udp } th dport { 5060, 5061 } counter drop
        }
    }

Only our SIP ports are closed to a banned source (an operator who mistyped
a password keeps SSH). Each element carries the ban's timeout, so the
kernel lifts a ban by itself even if the server is gone. The table is ours
alone: created at start, deleted at stop.

Programmed with `nft -f -` (nftables' documented interface, a few
milliseconds per ban, and bans are rare events); when it fails (no
CAP_NET_ADMIN, no nf_tables in the kernel) the caller drops in userspace.
"""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
from collections.abc import Iterable

NFT_TIMEOUT = 5.0  # seconds for one nft run


class KernelBanError(Exception):
    pass


class NftBans:
    def __init__(self, table: str, ports: Iterable[int], nft: str | None = None) -> None:
        self.table = table
        self.ports = sorted(set(ports))
        self.nft = nft or shutil.which("nft") or "/usr/sbin/nft"

    def _run(self, script: str) -> None:
        try:
            done = subprocess.run([self.nft, "-f", "-"], input=script.encode(),
                                  capture_output=True, timeout=NFT_TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise KernelBanError(f"nft: {exc}") from None
        if done.returncode != 0:
            raise KernelBanError(done.stderr.decode(errors="replace").strip()
                                 or f"nft exited {done.returncode}")

    def start(self) -> None:
        """Create our table afresh (a previous run's is replaced); KernelBanError if we cannot."""
        ports = ", ".join(str(p) for p in self.ports) or "5060"
        t = self.table
        self._run(
            f"table inet {t}\n"
            f"delete table inet {t}\n"
            f"table inet {t} {{\n"
            f"  set v4 {{ type ipv4_addr; flags timeout; }}\n"
            f"  set v6 {{ type ipv6_addr; flags timeout; }}\n"
            f"  chain input {{\n"
            f"    type filter hook input priority filter - 5; policy accept;\n"
            f"    ip saddr @v4 meta l4proto {{ tcp, udp }} th dport {{ {ports} }} counter drop\n"
            f"    ip6 saddr @v6 meta l4proto {{ tcp, udp }} th dport {{ {ports} }} counter drop\n"
            f"  }}\n"
            f"}}\n")

    def stop(self) -> None:
        try:
            self._run(f"delete table inet {self.table}\n")
        except KernelBanError:
            pass  # already gone

    @staticmethod
    def _set_of(address: str) -> tuple[str, str]:
        ip = ipaddress.ip_address(address)  # ValueError for a name: never put text in a script
        return ("v4" if ip.version == 4 else "v6"), str(ip)

    def ban(self, address: str, seconds: float) -> None:
        name, ip = self._set_of(address)
        timeout = max(1, int(seconds + 0.999))
        self._run(f"add element inet {self.table} {name} {{ {ip} timeout {timeout}s }}\n")

    def lift(self, address: str) -> None:
        name, ip = self._set_of(address)
        try:
            self._run(f"delete element inet {self.table} {name} {{ {ip} }}\n")
        except KernelBanError as exc:
            if "No such file" not in str(exc):
                raise

    def dropped_packets(self) -> int:
        """Packets the kernel dropped for banned sources so far (the rules' counters)."""
        try:
            done = subprocess.run([self.nft, "list", "chain", "inet", self.table, "input"],
                                  capture_output=True, timeout=NFT_TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return 0
        words = done.stdout.decode(errors="replace").split()
        return sum(int(words[i + 1]) for i, w in enumerate(words[:-1])
                   if w == "packets" and words[i + 1].isdigit())

    def listed(self) -> list[str]:
        """Addresses in the kernel's sets now (for tests and diagnostics)."""
        out: list[str] = []
        for name in ("v4", "v6"):
            try:
                done = subprocess.run([self.nft, "list", "set", "inet", self.table, name],
                                      capture_output=True, timeout=NFT_TIMEOUT, check=False)
            except (OSError, subprocess.TimeoutExpired):
                continue
            text = done.stdout.decode(errors="replace")
            if "elements = {" in text:
                body = text.split("elements = {", 1)[1].split("}", 1)[0]
                out += [item.split()[0] for item in body.replace("\n", " ").split(",")
                        if item.strip()]
        return out
