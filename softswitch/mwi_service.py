"""The glue of message-waiting indication: SUBSCRIBE in, NOTIFY out, mailboxes watched.

`MwiService` takes SUBSCRIBE from the SIP core (in and outside dialogs),
authenticates it with the registrar's digest authenticator like a REGISTER
(the subscriber must be the mailbox owner), feeds it to the pure
`mwi.Subscriptions` and carries out the effects: NOTIFYs through client
transactions, subscriptions saved to `mwi_store`. Every `poll_interval`
it files the relay's deposits (`VoicemailStore.ingest`), looks for
mailboxes whose folder changed (a message filed, heard, deleted by the
CLI), notifies their subscribers, ends expired subscriptions, and sends
unsolicited NOTIFYs to the owner's registered contacts that have no
subscription (per account, `mwi_unsolicited` in the directory), each
contact once per state and per registration.

The poll's file I/O (one stat per mailbox per second, the rare deposit)
runs on the reactor's thread pool; the reactor applies what it found.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from twisted.application.service import Service
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure

from softswitch.auth import Outcome
from softswitch.core import SipCore
from softswitch.identity import domain_for
from softswitch.logs import get_logger
from softswitch.mwi import (
    EVENT,
    Effect,
    Forget,
    MessageCounts,
    MessageSummary,
    Save,
    SendNotify,
    SubscribePolicy,
    SubscribeRefused,
    SubscriptionId,
    Subscriptions,
    build_notify,
    build_unsolicited_notify,
    plan_subscribe,
)
from softswitch.mwi_store import DATABASE, SQLiteSubscriptionStore
from softswitch.registrar import Registrar
from softswitch.sip.errors import MessageError
from softswitch.sip.message import Request, Response, make_response, new_tag
from softswitch.sip.peer import Peer
from softswitch.sip.transaction import ServerTransaction
from softswitch.sip.uri import SipURI
from softswitch.voicemail import VoicemailError, VoicemailStore, VoiceMessage

LocalAddress = Callable[[Peer], tuple[str, int]]


def _peer_from_received(received: str, transport: str) -> Peer | None:
    host, _, port = received.rpartition(":")
    if not host or not port.isdigit():
        return None
    return Peer(transport, host.strip("[]"), int(port))


@dataclass(slots=True)
class _Scan:
    """What a poll found on disk, handed from the pool thread to the reactor."""

    filed: list[VoiceMessage] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    changed: dict[str, tuple[int | None, MessageSummary]] = field(default_factory=dict)


class MwiService(Service):
    def __init__(self, data_dir: Path, core: SipCore, registrar: Callable[[], Registrar | None],
                 local: LocalAddress, reactor: Any, *, poll_interval: float = 1.0,
                 policy: SubscribePolicy | None = None) -> None:
        self.data_dir = data_dir
        self.core = core
        self._registrar = registrar
        self.local = local
        self.reactor = reactor
        self.poll_interval = poll_interval
        self.policy = policy or SubscribePolicy()
        self.log = get_logger("softswitch.mwi")
        self.mailboxes = VoicemailStore(data_dir)
        self.subscriptions = Subscriptions()
        self.store: SQLiteSubscriptionStore | None = None
        self._poller: LoopingCall | None = None
        self._stamps: dict[str, int | None] = {}
        self._summaries: dict[str, MessageSummary] = {}
        # (aor, contact, registered_at) -> the summary that contact was last sent unsolicited.
        self._told: dict[tuple[str, str, float], MessageSummary] = {}
        self._scanning = False

    # -- start and stop ----------------------------------------------------------------

    def startService(self) -> None:  # noqa: N802
        now = self.reactor.seconds()
        self.store = SQLiteSubscriptionStore(str(self.data_dir / DATABASE), self.reactor)
        restored = self.store.load(now)
        self._carry_out(self.subscriptions.restore(restored, now))
        for mailbox, stamp in self.mailboxes.stamps().items():
            self._stamps[mailbox] = stamp
            self._summaries[mailbox] = self._read_summary(mailbox)
        # The mailbox may have changed while we were down: tell the subscribers now.
        for mailbox in sorted({s.mailbox for s in self.subscriptions.all()}):
            self._carry_out(self.subscriptions.mailbox_changed(
                mailbox, self.summary(mailbox), now))
        self.core.route("SUBSCRIBE", self.handle)
        self._poller = LoopingCall(self._poll)
        self._poller.clock = self.reactor
        self._poller.start(self.poll_interval, now=False)
        self.log.info("mwi_started", subscriptions=len(self.subscriptions),
                      mailboxes=len(self._summaries), unreadable=self.store.unreadable)
        super().startService()

    def stopService(self) -> None:  # noqa: N802
        super().stopService()
        if self._poller is not None and self._poller.running:
            self._poller.stop()
        if self.store is not None:
            self.store.close()

    # -- mailboxes ------------------------------------------------------------------------

    def _read_summary(self, mailbox: str) -> MessageSummary:
        try:
            c = self.mailboxes.counts(mailbox)
        except VoicemailError:
            c = None
        counts = MessageCounts(c.new, c.old, c.new_urgent, c.old_urgent) if c else MessageCounts()
        return MessageSummary.for_voice(counts, f"sip:{mailbox}")

    def summary(self, mailbox: str) -> MessageSummary:
        found = self._summaries.get(mailbox)
        return found if found is not None else self._read_summary(mailbox)

    def _poll(self) -> None:
        # The file work (filing deposits, one stat per mailbox, reading the
        # mailboxes that changed) runs on a pool thread: about 11 µs per
        # mailbox (bench/voicemail.py), which the reactor need not carry.
        # One scan at a time; the results are applied back on the reactor.
        if self._scanning:
            return
        self._scanning = True
        d = deferToThreadPool(self.reactor, self.reactor.getThreadPool(), self._scan,
                              dict(self._stamps))
        d.addCallback(self._apply)
        d.addErrback(lambda f: self.log.error("mwi_poll_failed", error=str(f.value),
                                              traceback=f.getTraceback()))
        d.addBoth(self._scanned)

    def _scanned(self, _: object) -> None:
        self._scanning = False

    def _scan(self, known: dict[str, int | None]) -> _Scan:
        """On a pool thread: file deposits, find the mailboxes that changed, read them."""
        scan = _Scan()
        try:
            scan.filed, scan.problems = self.mailboxes.ingest()
        except OSError as exc:
            scan.problems.append(f"ingest failed: {exc}")
        stamps: dict[str, int | None] = dict(self.mailboxes.stamps())
        for gone in set(known) - set(stamps):
            stamps[gone] = None  # a mailbox folder removed by hand: its light goes out
        for mailbox, stamp in stamps.items():
            if mailbox not in known or stamp != known[mailbox]:
                scan.changed[mailbox] = (stamp, self._read_summary(mailbox))
        return scan

    def _apply(self, scan: _Scan) -> None:
        if not self.running:
            return  # stopped while the scan ran: the store is closed
        now = self.reactor.seconds()
        for problem in scan.problems:
            self.log.error("voicemail_deposit_rejected", problem=problem)
        for message in scan.filed:
            self.log.info("voicemail_filed", mailbox=message.mailbox, message=message.id,
                          caller=message.caller, duration=message.duration)
        for mailbox, (stamp, summary) in scan.changed.items():
            self._stamps[mailbox] = stamp
            if summary == self._summaries.get(mailbox):
                continue
            self._summaries[mailbox] = summary
            self.log.info("mailbox_changed", mailbox=mailbox, waiting=summary.waiting,
                          counts=summary.render().decode().strip().splitlines()[-1])
            self._carry_out(self.subscriptions.mailbox_changed(mailbox, summary, now))
        expiring = [s for s in self.subscriptions.all() if s.expires_at <= now]
        if expiring:
            self._carry_out(self.subscriptions.expire(
                now, {s.mailbox: self.summary(s.mailbox) for s in expiring}))
        self._unsolicited(now)

    def _unsolicited(self, now: float) -> None:
        """NOTIFY the registered contacts that have no subscription, once per state."""
        registrar = self._registrar()
        if registrar is None:
            return
        current: set[tuple[str, str, float]] = set()
        for mailbox, summary in self._summaries.items():
            user, _, domain = mailbox.rpartition("@")
            account = registrar.directory.find(user, domain)
            if account is None or not account.mwi_unsolicited:
                continue
            subscribed = {(s.host, s.port) for s in self.subscriptions.of_mailbox(mailbox)}
            for binding in registrar.bindings(account.aor, now):
                peer = _peer_from_received(binding.received, binding.transport)
                if peer is None or (peer.host, peer.port) in subscribed:
                    continue
                key = (account.aor, binding.contact, binding.registered_at)
                current.add(key)
                if self._told.get(key) == summary:
                    continue
                self._told[key] = summary
                self._send_unsolicited(binding.contact, account.aor, summary, peer,
                                       binding.path)
        for key in set(self._told) - current:
            del self._told[key]

    def _send_unsolicited(self, contact: str, aor: str, summary: MessageSummary, peer: Peer,
                          path: Iterable[str]) -> None:
        host, port = self.local(peer)
        try:
            request = build_unsolicited_notify(contact, aor, summary, transport=peer.transport,
                                               via_host=host, via_port=port, route=path)
        except MessageError as exc:
            self.log.warning("mwi_unsolicited_skipped", aor=aor, contact=contact,
                             error=exc.reason)
            return

        def answered(response: Response) -> None:
            if response.status >= 200:
                (self.log.info if response.status < 300 else self.log.warning)(
                    "mwi_unsolicited_notify", aor=aor, contact=contact, code=response.status)

        def unanswered() -> None:
            self.log.warning("mwi_unsolicited_notify", aor=aor, contact=contact, code=408)

        self.core.transactions.send_request(request, peer, answered, unanswered, unanswered)

    # -- SUBSCRIBE --------------------------------------------------------------------------

    def handle(self, tx: ServerTransaction, request: Request) -> None:
        now = self.reactor.seconds()
        try:
            asked = plan_subscribe(request, self.policy)
        except SubscribeRefused as refused:
            self._refuse(tx, request, refused)
            return
        registrar = self._registrar()
        if registrar is None:
            tx.respond(make_response(request, 503, to_tag=new_tag()))
            return
        from_uri = request.from_addr.uri
        if not isinstance(from_uri, SipURI) or from_uri.user is None:
            tx.respond(make_response(request, 403, to_tag=new_tag()))
            return
        directory = registrar.directory
        domain = domain_for(directory, from_uri.host, registrar.local_names) \
            or directory.default_domain
        if domain is None:
            tx.respond(make_response(request, 403, to_tag=new_tag()))
            return
        account = domain.accounts.get(unquote(from_uri.user))
        result = registrar.auth.check(request, account, domain, now)
        if result.outcome is not Outcome.OK:
            assert result.response is not None
            failed = result.outcome is not Outcome.CHALLENGE
            (self.log.warning if failed else self.log.debug)(
                "auth_failed" if failed else "subscribe_auth", method="SUBSCRIBE",
                outcome=result.outcome.value, reason=result.reason, user=from_uri.user,
                call_id=request.call_id, source=tx.source.host, peer=str(tx.source))
            tx.respond(result.response)
            return
        assert account is not None
        uri = request.uri
        if isinstance(uri, SipURI) and uri.user is not None \
                and unquote(uri.user) != account.user:
            # Only the owner watches a mailbox (RFC 3842 7: the summary is private).
            tx.respond(make_response(request, 403, "Not your mailbox", to_tag=new_tag()))
            return
        mailbox = account.aor
        try:
            if request.to_tag is not None:
                accepted = self.subscriptions.refresh(request, asked, self.summary(mailbox), now)
            else:
                accepted = self.subscriptions.subscribe(request, tx.source, mailbox, asked,
                                                        self.summary(mailbox), now)
        except SubscribeRefused as refused:
            self._refuse(tx, request, refused)
            return
        except MessageError as exc:
            tx.respond(make_response(request, exc.status, exc.reason, to_tag=new_tag()))
            return
        host, port = self.local(tx.source)
        response = make_response(request, 200, to_tag=accepted.to_tag)
        response.add("Expires", str(accepted.expires))
        params = f";transport={tx.source.transport}" if tx.source.transport != "udp" else ""
        bracketed = f"[{host}]" if ":" in host else host
        response.add("Contact", f"<sip:mwi@{bracketed}:{port}{params}>")
        tx.respond(response)
        self.log.info("mwi_subscribed" if accepted.expires else "mwi_unsubscribed",
                      mailbox=mailbox, expires=accepted.expires, call_id=request.call_id,
                      peer=str(tx.source))
        self._carry_out(accepted.effects)

    def _refuse(self, tx: ServerTransaction, request: Request, refused: SubscribeRefused) -> None:
        response = make_response(request, refused.status, refused.reason, to_tag=new_tag())
        for name, value in refused.headers:
            response.add(name, value)
        tx.respond(response)

    # -- effects ----------------------------------------------------------------------------

    def _carry_out(self, effects: Iterable[Effect]) -> None:
        assert self.store is not None
        for effect in effects:
            if isinstance(effect, SendNotify):
                self._send_notify(effect)
            elif isinstance(effect, Save):
                self.store.save(effect.subscription).addErrback(self._store_failed)
            elif isinstance(effect, Forget):
                self.store.remove(effect.id).addErrback(self._store_failed)

    def _store_failed(self, failure: Failure) -> None:
        self.log.error("mwi_store_failed", error=str(failure.value))

    def _send_notify(self, effect: SendNotify) -> None:
        sub = effect.subscription
        peer = sub.peer()
        host, port = self.local(peer)
        try:
            request = build_notify(effect, via_host=host, via_port=port)
        except MessageError as exc:
            self.log.error("mwi_notify_unbuildable", mailbox=sub.mailbox, error=exc.reason)
            self._failed(sub.id, 481)
            return
        sub_id = sub.id

        def answered(response: Response) -> None:
            if response.status >= 300:
                self.log.warning("mwi_notify_refused", mailbox=sub.mailbox,
                                 code=response.status, call_id=sub.call_id)
                self._failed(sub_id, response.status)

        self.core.transactions.send_request(request, peer, answered,
                                            lambda: self._failed(sub_id, 408),
                                            lambda: self._failed(sub_id, 503))
        self.log.debug("mwi_notify", mailbox=sub.mailbox, package=EVENT,
                       state=effect.subscription_state, peer=str(peer))

    def _failed(self, sub_id: SubscriptionId, status: int) -> None:
        self._carry_out(self.subscriptions.notify_failed(sub_id, status))
