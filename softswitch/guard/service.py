"""The guard in the running server: drops before parsing, bans on failures.

`GuardService.admit` sits between the transports and the SIP core (every
datagram or framed stream message); its observer on the core sees every
response sent, and counts a 403 "Forbidden" to a request that authenticates
(REGISTER, INVITE, SUBSCRIBE, MESSAGE, PUBLISH) as a failed authentication,
and a 401/407 beyond the challenge rate as one too. A ban goes to the
kernel (nftables, `kernel.py`) when it can, and is always enforced in
userspace too; bans are kept in `DATA_DIR/bans.json` across restarts, and
lifted by `softswitch bans lift` through `exchange.py`.

Over TCP and TLS a ban also ends the source's open connections (`on_ban`,
the transport layer's): the kernel drops their packets from now on, and in
userspace dropping each message would keep a connection open that serves
nothing. New connections from a banned source are refused when accepted
(`accepts_connection`), before a TLS handshake is spent on them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from twisted.application.service import Service
from twisted.internet.task import LoopingCall

from softswitch.config import TrunkSettings
from softswitch.guard.exchange import BansState, pending_lifts, read_bans, write_bans
from softswitch.guard.kernel import KernelBanError, NftBans
from softswitch.guard.settings import GuardSettings
from softswitch.guard.sources import Ban, SourceGuard, Verdict
from softswitch.logs import get_logger
from softswitch.sip.errors import MessageError
from softswitch.sip.message import Request, Response
from softswitch.sip.peer import Peer

AUTHENTICATED_METHODS = frozenset({"REGISTER", "INVITE", "SUBSCRIBE", "MESSAGE", "PUBLISH"})
POLL = 0.5  # seconds between looks at lift requests and expired bans


def acl_networks(trunks: Sequence[TrunkSettings]) -> list[str]:
    """The networks of the trunks' ACLs (ports left out), to trust them."""
    out: list[str] = []
    for trunk in trunks:
        for entry in trunk.acl or [trunk.host]:
            text = entry.strip()
            if text.startswith("["):
                text = text[1:].partition("]")[0]
            elif text.count(":") == 1:
                text = text.partition(":")[0]
            try:
                out.append(str(ipaddress.ip_network(text, strict=False)))
            except ValueError:
                continue  # a host name: not an address to trust
    return out


class GuardService(Service):
    def __init__(self, settings: GuardSettings, data_dir: Path, core: Any, ports: Sequence[int],
                 trunks: Sequence[TrunkSettings], reactor: Any) -> None:
        self.settings = settings
        self.data_dir = data_dir
        self.core = core
        self.reactor = reactor
        self.log = get_logger("softswitch.guard")
        self.guard = SourceGuard(
            requests_per_second=settings.requests_per_second,
            request_burst=settings.request_burst, auth_failures=settings.auth_failures,
            failure_window=settings.failure_window,
            challenges_per_minute=settings.challenges_per_minute, ban_time=settings.ban_time,
            trusted=[*settings.trusted, *acl_networks(trunks)],
            scanner_agents=settings.scanner_user_agents if settings.drop_scanners else ())
        self.kernel: NftBans | None = None
        self.table = settings.nft_table or f"softswitch_bans_{min(ports, default=0)}"
        self._nft = NftBans(self.table, ports)
        self._poller: LoopingCall | None = None
        self._limited: set[str] = set()  # sources told about in the log this minute
        self._limited_cleared = 0.0
        # Told the address of each new ban: closes its stream connections.
        self.on_ban: Callable[[str], object] | None = None

    @property
    def drop(self) -> str:
        return "kernel" if self.kernel is not None else "userspace"

    def startService(self) -> None:  # noqa: N802
        if self.settings.drop != "userspace":
            try:
                self._nft.start()
                self.kernel = self._nft
            except KernelBanError as exc:
                if self.settings.drop == "kernel":
                    raise
                # Said once, at start: every ban is then dropped by us.
                self.log.warning("bans_in_userspace", reason=str(exc),
                                 hint="nftables unavailable: banned sources are dropped by the "
                                 "server itself")
        if self.kernel is not None:
            self.log.info("bans_in_kernel", table=f"inet {self.table}",
                          ports=self._nft.ports)
        self._restore()
        self.core.add_observer(self)
        self._poller = LoopingCall(self._poll)
        self._poller.clock = self.reactor
        self._poller.start(POLL, now=False)
        super().startService()

    def stopService(self) -> None:  # noqa: N802
        super().stopService()
        if self._poller is not None and self._poller.running:
            self._poller.stop()
        if self.kernel is not None:
            self.kernel.stop()  # bans.json keeps them for the next start

    def _restore(self) -> None:
        now = self.reactor.seconds()
        state = read_bans(self.data_dir)
        for ban in state.bans if state is not None else ():
            if ban.until > now:
                self.guard.ban(ban.address, ban.since, ban.until - ban.since, ban.reason)
                self._to_kernel(ban, now)
        self._save()

    # -- the transports' side -----------------------------------------------------------

    def admit(self, data: bytes, peer: Peer) -> bool:
        """Whether the SIP core may see this message from `peer`."""
        verdict = self.guard.admit(peer.host, data, self.reactor.seconds())
        if verdict is Verdict.ADMIT:
            return True
        if verdict is not Verdict.BANNED and peer.host not in self._limited:
            self._limited.add(peer.host)  # once per source a minute, not per packet
            self.log.warning("source_dropped", source=peer.host, why=verdict.value,
                             transport=peer.transport)
        return False

    def accepts_connection(self, host: str) -> bool:
        """Whether a TCP/TLS connection from `host` may be taken (not banned)."""
        return not self.guard.banned(host, self.reactor.seconds())

    # -- the core's observer: responses we send ----------------------------------------------

    def message_received(self, message: Request | Response, peer: Peer, now: float) -> None:
        return None

    def message_sent(self, message: Request | Response, peer: Peer, now: float) -> None:
        if not isinstance(message, Response):
            return
        status = message.status
        if status not in (401, 403, 407):
            return
        try:
            method = message.cseq.method
        except MessageError:
            # An answer to a request too broken to carry a CSeq (the flood
            # of tests/integration/test_malformed.py): nothing to count.
            return
        if method not in AUTHENTICATED_METHODS:
            return
        if status == 403:
            # Refusals with a reason of their own (a destination class, a
            # limit) are policy, not a guessed password.
            if message.reason != "Forbidden":
                return
            ban = self.guard.auth_failed(peer.host, now)
        else:
            ban = self.guard.challenged(peer.host, now)
        if ban is not None:
            self._banned(ban, now)

    # -- bans ------------------------------------------------------------------------------

    def _banned(self, ban: Ban, now: float) -> None:
        self.log.warning("source_banned", source=ban.address, reason=ban.reason,
                         seconds=round(ban.until - ban.since), drop=self.drop)
        self._to_kernel(ban, now)
        self._save()
        if self.on_ban is not None:
            # Later in this turn of the reactor: the 403 that caused the ban
            # is still being sent on the connection to be closed.
            self.reactor.callLater(0, self.on_ban, ban.address)

    def _to_kernel(self, ban: Ban, now: float) -> None:
        if self.kernel is None:
            return
        try:
            self.kernel.ban(ban.address, ban.until - now)
        except (KernelBanError, ValueError) as exc:
            self.log.error("kernel_ban_failed", source=ban.address, error=str(exc))

    def lift(self, address: str) -> Ban | None:
        ban = self.guard.lift(address)
        if self.kernel is not None:
            try:
                self.kernel.lift(address)
            except (KernelBanError, ValueError) as exc:
                self.log.error("kernel_lift_failed", source=address, error=str(exc))
        if ban is not None:
            self.log.info("ban_lifted", source=address)
            self._save()
        return ban

    def _poll(self) -> None:
        now = self.reactor.seconds()
        changed = False
        for ban in self.guard.expire(now):
            self.log.info("ban_expired", source=ban.address)  # the kernel's ends by itself
            changed = True
        if now - self._limited_cleared >= 60.0:
            self._limited.clear()
            self._limited_cleared = now
        for path, address in pending_lifts(self.data_dir):
            if address is not None:
                changed = self.lift(address) is not None or changed
            path.unlink(missing_ok=True)
        if changed:
            self._save()

    def _save(self) -> None:
        state = BansState(self.drop, self.reactor.seconds(),
                          tuple(self.guard.listing(self.reactor.seconds())))
        try:
            write_bans(self.data_dir, state)
        except OSError as exc:
            self.log.error("bans_save_failed", error=str(exc))
