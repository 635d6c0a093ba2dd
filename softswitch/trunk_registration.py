"""Outbound registration of SIP trunks: the PBX registering to its provider.

RFC 3261 section 10.2 as a UAC: one `TrunkRegistration` per trunk keeps a
binding of `sip:<username>@<domain>` to our address at the provider's
registrar, so that the provider sends inbound calls to us. Same Call-ID and
increasing CSeq for all its REGISTERs (10.2.4), refresh before the granted
expiry runs out (10.2.4, 10.3 step 8: the Contact matching ours carries it),
423 answered with Min-Expires (10.2.8), digest challenges answered with the
trunk's credentials (22.2, RFC 7616) and cached for the next REGISTERs
(22.3), a backoff after failures, and Expires: 0 for our Contact on stop
(10.2.2).

`TrunkRegistration` does no I/O: it is given a clock, a send-request function
(`TransactionLayer.send_request`) and a local-address function.
`TrunkRegistrationService` is the thin Twisted part that runs one per trunk
configured with `register: true`.
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred

from softswitch.config import TrunkSettings
from softswitch.core import SipCore
from softswitch.logs import get_logger
from softswitch.sip.digest import Challenge, authorization, first_challenge
from softswitch.sip.errors import MessageError
from softswitch.sip.headers import Via
from softswitch.sip.locate import is_numeric
from softswitch.sip.message import Request, Response, new_branch, new_tag
from softswitch.sip.peer import DEFAULT_PORTS, Peer
from softswitch.sip.transaction import Clock, DelayedCall
from softswitch.sip.uri import SipURI, parse_host_port, parse_sip_uri

OnResponse = Callable[[Response], None]
OnEvent = Callable[[], None]
# TransactionLayer.send_request: request, peer, on_response, on_timeout, on_transport_error.
SendRequest = Callable[[Request, Peer, OnResponse, OnEvent, OnEvent], object]
# The address and port a peer reaches us at (Via sent-by, Contact).
LocalAddress = Callable[[Peer], tuple[str, int]]

# Answers to challenges within one registration attempt: a stale nonce may
# come back once more after our answer (RFC 7616 3.3), never without end.
MAX_CHALLENGE_ANSWERS = 3


class RegistrationState(enum.Enum):
    UNREGISTERED = "unregistered"  # nothing sent, or unregistered after stop
    REGISTERING = "registering"  # a REGISTER in flight, no binding held
    REGISTERED = "registered"  # bound at the provider; a refresh is due
    REFRESHING = "refreshing"  # bound, and the refreshing REGISTER in flight
    FAILED = "failed"  # the last attempt failed; backing off until the retry
    UNREGISTERING = "unregistering"  # Expires: 0 in flight (stop)


_S = RegistrationState
_TRANSITIONS: dict[RegistrationState, frozenset[RegistrationState]] = {
    _S.UNREGISTERED: frozenset({_S.REGISTERING}),
    _S.REGISTERING: frozenset({_S.REGISTERED, _S.FAILED, _S.UNREGISTERING}),
    _S.REGISTERED: frozenset({_S.REFRESHING, _S.UNREGISTERING}),
    _S.REFRESHING: frozenset({_S.REGISTERED, _S.FAILED, _S.UNREGISTERING}),
    _S.FAILED: frozenset({_S.REGISTERING, _S.UNREGISTERED}),
    _S.UNREGISTERING: frozenset({_S.UNREGISTERED}),
}


class RegistrationStateError(Exception):
    """A transition the table does not allow (a bug, not bad input)."""


@dataclass(slots=True)
class _Attempt:
    """One REGISTER in flight and what its challenge handling needs to know."""

    request: Request
    expires: int
    # The request answers a challenge that just arrived (not cached
    # credentials): a new challenge then means the credentials are wrong,
    # unless it says stale=true.
    answers_challenge: bool
    challenge_answers: int


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def registrar_peer(settings: TrunkSettings) -> Peer:
    """Where the REGISTERs go: `registrar` (host[:port]) if set, else host:port."""
    if settings.registrar:
        host, port = parse_host_port(settings.registrar)
        return Peer(settings.transport, host.strip("[]"),
                    port or DEFAULT_PORTS.get(settings.transport, 5060))
    return Peer(settings.transport, settings.host.strip("[]"), settings.port)


class TrunkRegistration:
    """The registration of one trunk at its provider, as an explicit state machine.

    `start()` registers; the binding is then refreshed at half the granted
    expiry; a failure (a final error, a timeout, a transport error) retries
    after `retry_min` seconds, doubling up to `retry_max` (a Retry-After is
    honoured if longer). `stop()` removes our binding (Expires: 0) and calls
    back once the registrar answered.
    """

    def __init__(self, settings: TrunkSettings, clock: Clock, send: SendRequest,
                 local: LocalAddress) -> None:
        if not settings.username:
            raise ValueError(f"trunk {settings.name}: registration needs a username")
        self.settings = settings
        self.clock = clock
        self.send = send
        self.local = local
        self.log = get_logger("softswitch.trunk_registration")
        self.peer = registrar_peer(settings)
        # RFC 3261 10.2: the Request-URI names the domain of the registrar,
        # To and From the address of record registered there.
        self.domain = settings.from_domain or _host(settings.host)
        self.request_uri: SipURI = parse_sip_uri(f"sip:{self.domain}")
        self.aor = f"sip:{settings.username}@{self.domain}"
        # 10.2.4: one Call-ID for every REGISTER of this UA to this registrar.
        self.call_id = secrets.token_hex(12)
        self.from_tag = new_tag()
        self.cseq = 0
        self.state = _S.UNREGISTERED
        self.expires_at: float | None = None  # when the provider's binding lapses
        self.last_status: int | None = None
        self.failures = 0  # in a row, for the backoff
        self._expires = settings.register_expires  # raised by a 423's Min-Expires
        self._attempt: _Attempt | None = None
        self._timer: DelayedCall | None = None
        self._challenge: tuple[Challenge, bool] | None = None  # and whether for a proxy
        self._nonce_count = 0
        self._on_stopped: list[Callable[[], None]] = []

    # -- what the owner calls ------------------------------------------------------

    def start(self) -> None:
        if self.state is not _S.UNREGISTERED:
            return
        self.failures = 0
        self._transition(_S.REGISTERING)
        self._send(self._expires, challenge_answers=0)

    def stop(self, on_done: Callable[[], None] | None = None) -> None:
        """Remove our binding (RFC 3261 10.2.2); `on_done` once that is over."""
        if on_done is not None:
            self._on_stopped.append(on_done)
        self._cancel_timer()
        state = self.state
        if state in (_S.REGISTERING, _S.REGISTERED, _S.REFRESHING):
            # Also while REGISTERING: the REGISTER in flight may have bound us.
            self._transition(_S.UNREGISTERING)
            self._send(0, challenge_answers=0)
        elif state is _S.FAILED:
            self._transition(_S.UNREGISTERED)
            self._stopped()
        elif state is _S.UNREGISTERED:
            self._stopped()
        # UNREGISTERING: on_done runs with the others when the answer comes.

    @property
    def contact_uri(self) -> str:
        host, port = self.local(self.peer)
        transport = self.peer.transport
        params = f";transport={transport}" if transport != "udp" else ""
        return f"sip:{self.settings.username}@{_host(host)}:{port}{params}"

    # -- the one place where the state changes ---------------------------------------

    def _transition(self, new: RegistrationState, **fields: Any) -> None:
        old = self.state
        if new not in _TRANSITIONS[old]:
            raise RegistrationStateError(f"{old.value} -> {new.value}")
        self.state = new
        if new is not _S.REGISTERED and new is not _S.REFRESHING:
            self.expires_at = None
        log = self.log.warning if new is _S.FAILED else self.log.info
        log("trunk_registration", trunk=self.settings.name, state=new.value,
            previous=old.value, registrar=str(self.peer), **fields)

    # -- sending ---------------------------------------------------------------------

    def _build(self, expires: int) -> Request:
        host, port = self.local(self.peer)
        self.cseq += 1
        via = Via(self.peer.transport.upper(), _host(host), port,
                  {"branch": new_branch(), "rport": None})
        headers = [
            ["Via", str(via)],
            ["Max-Forwards", "70"],
            ["From", f"<{self.aor}>;tag={self.from_tag}"],
            ["To", f"<{self.aor}>"],
            ["Call-ID", self.call_id],
            ["CSeq", f"{self.cseq} REGISTER"],
            ["Contact", f"<{self.contact_uri}>"],
            ["Expires", str(expires)],
            ["Content-Length", "0"],
        ]
        return Request("REGISTER", self.request_uri.copy(), headers)

    def _send(self, expires: int, *, challenge_answers: int,
              answers_challenge: bool = False) -> None:
        request = self._build(expires)
        if self._challenge is not None and self.settings.password is not None:
            # RFC 3261 22.3: the credentials of the last challenge go with the
            # following REGISTERs, with the nonce count raised (RFC 7616 3.4).
            challenge, proxy = self._challenge
            self._nonce_count += 1
            request.add("Proxy-Authorization" if proxy else "Authorization",
                        authorization(challenge, "REGISTER", str(request.uri),
                                      self.settings.username or "", self.settings.password,
                                      cnonce=new_tag(), nc=self._nonce_count))
        attempt = _Attempt(request, expires, answers_challenge, challenge_answers)
        self._attempt = attempt
        self.send(request, self.peer,
                  lambda response: self._on_response(attempt, response),
                  lambda: self._on_no_answer(attempt, 408, "timeout"),
                  lambda: self._on_no_answer(attempt, 503, "transport error"))

    # -- what comes back -------------------------------------------------------------

    def _on_response(self, attempt: _Attempt, response: Response) -> None:
        if attempt is not self._attempt or response.status < 200:
            return  # a provisional, or the answer to a REGISTER we gave up on
        self._attempt = None
        status = response.status
        self.last_status = status
        if status in (401, 407) and self._answer(attempt, response):
            return
        if status == 423 and self._raise_expires(attempt, response):
            return
        if self.state is _S.UNREGISTERING:
            self._transition(_S.UNREGISTERED, code=status)
            self._stopped()
        elif 200 <= status < 300:
            self._registered(attempt, response)
        else:
            self._fail(status, response.reason, _retry_after(response))

    def _on_no_answer(self, attempt: _Attempt, status: int, reason: str) -> None:
        if attempt is not self._attempt:
            return
        self._attempt = None
        self.last_status = status
        if self.state is _S.UNREGISTERING:
            self._transition(_S.UNREGISTERED, code=status, reason=reason)
            self._stopped()
        else:
            self._fail(status, reason, None)

    def _answer(self, attempt: _Attempt, response: Response) -> bool:
        """Send the REGISTER again with credentials (RFC 3261 22.2); False if we cannot."""
        if self.settings.password is None or attempt.challenge_answers >= MAX_CHALLENGE_ANSWERS:
            return False
        found = first_challenge(response)
        if found is None:
            return False
        challenge, proxy = found
        if attempt.answers_challenge and not challenge.stale:
            return False  # our answer was refused: the credentials are wrong
        self._challenge = (challenge, proxy)
        self._nonce_count = 0
        self.log.info("trunk_challenge_answered", trunk=self.settings.name, code=response.status,
                      realm=challenge.realm, algorithm=challenge.algorithm.value,
                      stale=challenge.stale)
        self._send(attempt.expires, challenge_answers=attempt.challenge_answers + 1,
                   answers_challenge=True)
        return True

    def _raise_expires(self, attempt: _Attempt, response: Response) -> bool:
        """423 Interval Too Brief: ask again for Min-Expires (RFC 3261 10.2.8)."""
        text = (response.get("min-expires") or "").strip()
        if attempt.expires == 0 or not text.isdigit() or int(text) <= attempt.expires:
            return False
        self._expires = int(text)
        self.log.info("trunk_registration_interval_raised", trunk=self.settings.name,
                      code=423, expires=self._expires)
        self._send(self._expires, challenge_answers=attempt.challenge_answers)
        return True

    def _registered(self, attempt: _Attempt, response: Response) -> None:
        granted = self._granted(attempt, response)
        if granted <= 0:
            # A 200 that does not keep our binding: the registrar dropped it.
            self._fail(response.status, "binding not kept", None)
            return
        self.failures = 0
        self._transition(_S.REGISTERED, code=response.status, expires=granted)
        self.expires_at = self.clock.seconds() + granted
        # Refresh at half the granted time: the other half leaves room for
        # a retry or two should the refresh fail.
        self._timer = self.clock.callLater(granted / 2, self._refresh)

    def _granted(self, attempt: _Attempt, response: Response) -> int:
        """The expiry of our binding: our Contact's `expires`, else Expires (10.2.4)."""
        ours = parse_sip_uri(self.contact_uri)
        try:
            contacts = response.contacts
        except MessageError:
            contacts = []
        for contact in contacts:
            if contact.uri == ours:
                value = contact.params.get("expires")
                if value is not None and value.strip().isdigit():
                    return int(value)
        header = (response.get("expires") or "").strip()
        if header.isdigit():
            return int(header)
        return attempt.expires

    def _refresh(self) -> None:
        self._timer = None
        self._transition(_S.REFRESHING)
        self._send(self._expires, challenge_answers=0)

    def _fail(self, status: int, reason: str, retry_after: int | None) -> None:
        self.failures += 1
        s = self.settings
        delay = min(s.retry_min * 2 ** (self.failures - 1), s.retry_max)
        if retry_after is not None:
            delay = max(delay, float(retry_after))  # RFC 3261 21.5.4 and 20.33
        self._transition(_S.FAILED, code=status, reason=reason, retry_in=delay)
        self._timer = self.clock.callLater(delay, self._retry)

    def _retry(self) -> None:
        self._timer = None
        self._transition(_S.REGISTERING)
        self._send(self._expires, challenge_answers=0)

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _stopped(self) -> None:
        callbacks, self._on_stopped = self._on_stopped, []
        for callback in callbacks:
            callback()


def _retry_after(response: Response) -> int | None:
    text = (response.get("retry-after") or "").split(";")[0].split("(")[0].strip()
    return int(text) if text.isdigit() else None


class TrunkRegistrationService(Service):
    """Registers every trunk configured with `register: true` while running.

    Trunk hosts must be IP addresses (as for calls to trunks, RFC 3263
    resolution is not there yet); a trunk that cannot register is logged and
    skipped. `unregister_all` removes the bindings and waits, bounded, for
    the registrars' answers: it must run while the listeners are still open.
    """

    def __init__(self, trunks: Sequence[TrunkSettings], core: SipCore, local: LocalAddress,
                 clock: Clock, *, stop_timeout: float = 3.0) -> None:
        self.trunks = list(trunks)
        self.core = core
        self.local = local
        self.clock = clock
        self.stop_timeout = stop_timeout
        self.log = get_logger("softswitch.trunk_registration")
        self.registrations: dict[str, TrunkRegistration] = {}

    def startService(self) -> None:  # noqa: N802
        for trunk in self.trunks:
            if not trunk.register_:
                continue
            peer = registrar_peer(trunk)
            if not is_numeric(peer.host):
                self.log.error("trunk_registration_skipped", trunk=trunk.name,
                               reason="the registrar must be an IP address")
                continue
            if not trunk.username:
                self.log.error("trunk_registration_skipped", trunk=trunk.name,
                               reason="no username")
                continue
            registration = TrunkRegistration(trunk, self.clock,
                                             self.core.transactions.send_request, self.local)
            self.registrations[trunk.name] = registration
            registration.start()
        super().startService()

    def unregister_all(self, timeout: float | None = None) -> Deferred[None]:
        """Unregister every trunk; fires once all are answered, or after `timeout`."""
        done: Deferred[None] = Deferred()
        pending = {name for name, r in self.registrations.items()
                   if r.state is not RegistrationState.UNREGISTERED}

        def finish() -> None:
            if timer is not None and timer.active():
                timer.cancel()
            if not done.called:
                done.callback(None)

        def one_done(name: str) -> None:
            pending.discard(name)
            if not pending:
                finish()

        timer: DelayedCall | None = None
        if not pending:
            finish()
            return done
        timer = self.clock.callLater(self.stop_timeout if timeout is None else timeout, finish)
        for name in sorted(pending):
            self.registrations[name].stop(partial(one_done, name))
        return done

    def stopService(self) -> None:  # noqa: N802
        # After unregister_all this finds nothing left to do. Without it the
        # Expires: 0 still goes out, but its answer (a challenge, say) finds
        # the listeners closed: they stop along with us.
        super().stopService()
        for registration in self.registrations.values():
            registration.stop()
