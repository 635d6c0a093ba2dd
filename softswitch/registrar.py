"""The registrar: REGISTER processing per RFC 3261 section 10.3.

`plan_update` is pure: given the live bindings of an address-of-record, the
REGISTER and its source, it decides what to insert, refresh and remove, or
refuses the request (400, 423, 500). `Registrar.handle` wraps it: it
authenticates the request (digest, `softswitch.auth`), writes the change to
the location store, and sends the 200 listing every current binding only once
the store says the change is durable.

Also kept per binding: the source address and transport (the NAT binding a
request to the phone must use), Path (RFC 3327), +sip.instance and reg-id
(RFC 5626) and the User-Agent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any

from softswitch.auth import Authenticator, Outcome
from softswitch.directory import Directory, Domain
from softswitch.identity import domain_for
from softswitch.location.binding import Binding
from softswitch.location.store import LocationStore
from softswitch.logs import get_logger
from softswitch.sip.errors import MessageError
from softswitch.sip.headers import NameAddr, unquote_param
from softswitch.sip.message import Request, Response, make_response, new_tag
from softswitch.sip.peer import Peer
from softswitch.sip.transaction import ServerTransaction
from softswitch.sip.uri import URI, SipURI, parse_sip_uri


@dataclass(slots=True, frozen=True)
class RegistrarPolicy:
    min_expires: int = 60
    default_expires: int = 3600
    max_expires: int = 7200
    max_contacts: int = 10  # per address-of-record


class RegisterRefused(Exception):
    """A REGISTER that must be answered with `status` (and extra headers)."""

    def __init__(self, status: int, reason: str | None = None,
                 headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(reason or str(status))
        self.status = status
        self.reason = reason
        self.headers = headers or []


@dataclass(slots=True)
class Update:
    """What one REGISTER changes for one address-of-record."""

    upserts: list[Binding] = field(default_factory=list)
    removes: list[str] = field(default_factory=list)  # contact strings
    remove_all: bool = False
    query: bool = False  # no Contact: just list the bindings


def _expires_param(contact: NameAddr) -> int | None:
    value = contact.params.get("expires")
    if value is None:
        return None
    if not value.isdigit():
        raise RegisterRefused(400, "Bad expires parameter")
    return int(value)


def _q_param(contact: NameAddr) -> float:
    value = contact.params.get("q")
    if value is None:
        return 1.0
    try:
        q = float(value)
    except ValueError:
        raise RegisterRefused(400, "Bad q parameter") from None
    if not 0.0 <= q <= 1.0:
        raise RegisterRefused(400, "Bad q parameter")
    return q


# Stored contacts parsed once: every REGISTER compares its Contact with each
# binding of the AOR (RFC 3261 19.1.4 equality), and phones re-register
# the same few contacts all day. Bounded, since contacts come from outside.
_PARSED_CONTACTS: dict[str, SipURI | None] = {}
_PARSED_CONTACTS_MAX = 65536


def _parsed_contact(stored: str) -> SipURI | None:
    if stored in _PARSED_CONTACTS:
        return _PARSED_CONTACTS[stored]
    uri: SipURI | None
    try:
        uri = parse_sip_uri(stored)
    except MessageError:
        uri = None
    if len(_PARSED_CONTACTS) >= _PARSED_CONTACTS_MAX:
        _PARSED_CONTACTS.clear()
    _PARSED_CONTACTS[stored] = uri
    return uri


def _same_contact(stored: str, uri: SipURI) -> bool:
    parsed = _parsed_contact(stored)
    return parsed == uri if parsed is not None else stored == str(uri)


def plan_update(aor: str, existing: list[Binding], request: Request, source: Peer,
                now: float, policy: RegistrarPolicy) -> Update:
    """Apply RFC 3261 10.3 steps 6 and 7 to `existing`; raise RegisterRefused."""
    expires_header = request.get("expires")
    default = policy.default_expires
    if expires_header is not None:
        if not expires_header.strip().isdigit():
            raise RegisterRefused(400, "Bad Expires header")
        default = int(expires_header.strip())
    try:
        contacts = request.contacts
    except MessageError as exc:
        raise RegisterRefused(400, exc.reason) from None
    if not contacts:
        return Update(query=True)
    call_id = request.call_id
    cseq = request.cseq.seq

    if any(c.wildcard for c in contacts):
        # Step 6: "*" only alone and only with Expires: 0.
        if len(contacts) != 1 or expires_header is None or default != 0:
            raise RegisterRefused(400, "Contact * needs Expires: 0 and no other contact")
        for b in existing:
            if b.call_id == call_id and cseq <= b.cseq:
                raise RegisterRefused(500, "Out of order CSeq")
        return Update(remove_all=True)

    update = Update()
    path = request.values("path")
    user_agent = request.get("user-agent")
    remaining = {b.contact: b for b in existing}
    for contact in contacts:
        uri = contact.uri
        if not isinstance(uri, SipURI):
            raise RegisterRefused(400, "Contact must be a SIP URI")
        expires = _expires_param(contact)
        expires = default if expires is None else expires
        expires = min(expires, policy.max_expires)
        if 0 < expires < policy.min_expires:
            raise RegisterRefused(423, None, [("Min-Expires", str(policy.min_expires))])
        instance = unquote_param(contact.params.get("+sip.instance"))
        reg_id_text = contact.params.get("reg-id")
        reg_id = int(reg_id_text) if reg_id_text and reg_id_text.isdigit() else None
        match = next((b for b in existing if _same_contact(b.contact, uri)), None)
        if match is not None and match.call_id == call_id and cseq <= match.cseq:
            # Step 7: an old or repeated REGISTER from the same client.
            raise RegisterRefused(500, "Out of order CSeq")
        # RFC 5626 6: the same instance and reg-id is the same flow, whatever
        # the Contact says now; the new one replaces it.
        if instance is not None:
            for b in existing:
                if b.instance == instance and b.reg_id == reg_id and b is not match:
                    update.removes.append(b.contact)
                    remaining.pop(b.contact, None)
        stored_contact = match.contact if match is not None else str(uri)
        if expires == 0:
            if match is not None:
                update.removes.append(match.contact)
                remaining.pop(match.contact, None)
            continue
        remaining.pop(stored_contact, None)
        update.upserts.append(Binding(
            aor=aor, contact=stored_contact, q=_q_param(contact), expires_at=now + expires,
            call_id=call_id, cseq=cseq, received=_host_port(source), transport=source.transport,
            path=list(path), instance=instance, reg_id=reg_id, user_agent=user_agent,
            registered_at=match.registered_at if match is not None else now))
    if len(remaining) + len(update.upserts) > policy.max_contacts:
        raise RegisterRefused(403, "Too many contacts")
    return update


def _host_port(peer: Peer) -> str:
    host = f"[{peer.host}]" if ":" in peer.host else peer.host
    return f"{host}:{peer.port}"


class Registrar:
    """The REGISTER handler the SIP core calls."""

    def __init__(self, directory: Directory, store: LocationStore, authenticator: Authenticator,
                 clock: Any, policy: RegistrarPolicy | None = None,
                 local_names: Callable[[], set[str]] | None = None) -> None:
        self.directory = directory
        self.store = store
        self.auth = authenticator
        self.clock = clock
        self.policy = policy or RegistrarPolicy()
        self.local_names = local_names or (lambda: {"localhost"})
        self.log = get_logger("softswitch.registrar")

    def domain_for(self, host: str) -> Domain | None:
        """The directory domain a request for `host` belongs to.

        A phone configured with the server's address instead of the domain
        name registers into the default domain (the rule calls use too).
        """
        return domain_for(self.directory, host, self.local_names)

    def bindings(self, aor: str, now: float) -> list[Binding]:
        return [b for b in self.store.lookup(aor) if not b.is_expired(now)]

    def is_refresh(self, to_uri: URI | None) -> bool:
        """Whether a REGISTER to `to_uri` (its To) is for an address-of-record
        holding live bindings.

        The overload gate admits those even when it refuses new work: a
        refresh keeps a phone reachable, and refusing it would make the
        phone register from scratch later (more work, not less).
        """
        if not isinstance(to_uri, SipURI) or to_uri.user is None:
            return False
        domain = self.domain_for(to_uri.host)
        if domain is None:
            return False
        account = domain.accounts.get(to_uri.aor.partition("@")[0])
        return account is not None and bool(self.bindings(account.aor, self.clock.seconds()))

    def handle(self, tx: ServerTransaction, request: Request) -> None:
        now = self.clock.seconds()
        if not isinstance(request.uri, SipURI):
            tx.respond(make_response(request, 416, to_tag=new_tag()))
            return
        to_uri = request.to_addr.uri
        if not isinstance(to_uri, SipURI) or to_uri.user is None:
            tx.respond(make_response(request, 400, "To must be a SIP URI with a user",
                                     to_tag=new_tag()))
            return
        domain = self.domain_for(to_uri.host)
        if domain is None:
            tx.respond(make_response(request, 404, "Domain not served here", to_tag=new_tag()))
            return
        user = to_uri.aor.partition("@")[0]
        account = domain.accounts.get(user)
        result = self.auth.check(request, account, domain, now)
        if result.outcome is not Outcome.OK:
            assert result.response is not None
            if result.outcome is Outcome.CHALLENGE:
                # Every phone's first REGISTER is challenged: routine, debug.
                self.log.debug("register_auth", outcome=result.outcome.value,
                               reason=result.reason, user=user, call_id=request.call_id,
                               peer=str(tx.source))
            else:
                # Wrong password or unknown user: what fail2ban-style tools watch for.
                self.log.warning("auth_failed", method="REGISTER", outcome=result.outcome.value,
                                 reason=result.reason, user=user, call_id=request.call_id,
                                 source=tx.source.host, peer=str(tx.source))
            tx.respond(result.response)
            return
        assert account is not None
        aor = account.aor
        try:
            update = plan_update(aor, self.bindings(aor, now), request, tx.source, now, self.policy)
        except RegisterRefused as refused:
            response = make_response(request, refused.status, refused.reason, to_tag=new_tag())
            for name, value in refused.headers:
                response.add(name, value)
            tx.respond(response)
            return
        if update.query:
            tx.respond(self._ok(request, aor))
            return
        if update.remove_all:
            done = self.store.remove(aor)
        else:
            done = self.store.save(aor, update.upserts, update.removes)

        def durable(_: object) -> None:
            self.log.info("registered", aor=aor, contacts=len(update.upserts),
                          removed=len(update.removes) or ("all" if update.remove_all else 0),
                          call_id=request.call_id, peer=str(tx.source))
            tx.respond(self._ok(request, aor))

        def failed(failure: Any) -> None:
            self.log.error("register_store_failed", aor=aor, error=str(failure.value))
            tx.respond(make_response(request, 500, "Location store unavailable", to_tag=new_tag()))

        done.addCallbacks(durable, failed)

    def _ok(self, request: Request, aor: str) -> Response:
        now = self.clock.seconds()
        # Rounded, not truncated: a REGISTER for 300 s reads back 300 although
        # the commit took a few milliseconds.
        response = make_response(request, 200, to_tag=new_tag())
        for b in self.bindings(aor, now):
            params = f";expires={max(0, round(b.expires_at - now))}"
            if b.q != 1.0:
                params += f";q={b.q:g}"
            if b.instance is not None:
                params += f';+sip.instance="{b.instance}"'
            if b.reg_id is not None:
                params += f";reg-id={b.reg_id}"
            response.add("Contact", f"<{b.contact}>{params}")
        if "path" in (option.lower() for option in request.values("supported")):
            # RFC 3327 5.3: the Path stored goes back to a UA that supports it.
            for value in request.get_all("path"):
                response.add("Path", value)
        response.add("Date", formatdate(usegmt=True))
        return response
