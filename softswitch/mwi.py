"""Message-waiting indication: the `message-summary` event package, sans-IO.

Owns the body of RFC 3842 (`application/simple-message-summary`: render and
parse, section 5.2's grammar) and the notifier side of RFC 6665 for it: what
a SUBSCRIBE asks for (Event, Expires, Accept; `plan_subscribe`), the table
of subscriptions as an explicit state machine (`Subscriptions`: subscribe,
refresh, unsubscribe with Expires: 0, expiry, a failed NOTIFY), and the
NOTIFY requests themselves, in a subscription's dialog (`build_notify`) or
unsolicited towards a registered contact (`build_unsolicited_notify`).

Nothing here sends or reads a clock: the glue (`mwi_service.py`) passes the
time in, carries out the effects (`SendNotify`, `Save`, `Forget`) and
answers the SUBSCRIBE with the `SubscribeAccepted` it was given.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from softswitch.sip.dialog import Dialog, DialogRole, DialogState
from softswitch.sip.errors import MessageError
from softswitch.sip.headers import NameAddr, Via, parse_params
from softswitch.sip.message import Request, new_branch, new_tag
from softswitch.sip.peer import Peer
from softswitch.sip.uri import SipURI, parse_sip_uri, parse_uri

EVENT = "message-summary"
CONTENT_TYPE = "application/simple-message-summary"


class SummaryError(ValueError):
    """A message-summary body that does not follow RFC 3842 section 5.2."""


# -- the body (RFC 3842 5.2) -------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class MessageCounts:
    """One msg-summary-line: new/old messages, and of those the urgent ones."""

    new: int = 0
    old: int = 0
    new_urgent: int = 0
    old_urgent: int = 0

    def __post_init__(self) -> None:
        for value in (self.new, self.old, self.new_urgent, self.old_urgent):
            if value < 0:
                raise ValueError("message counts are never negative")


@dataclass(frozen=True, slots=True)
class MessageSummary:
    """A whole body: the status line, the account, the lines per message class.

    `counts` maps a message-context-class (RFC 3458: voice-message,
    fax-message, ...) to its counts, in the order written.
    """

    waiting: bool
    account: str | None = None
    counts: tuple[tuple[str, MessageCounts], ...] = ()

    @classmethod
    def for_voice(cls, counts: MessageCounts, account: str | None) -> MessageSummary:
        """The summary of a voice mailbox: waiting while a new message is in it."""
        return cls(waiting=counts.new > 0, account=account,
                   counts=(("Voice-Message", counts),))

    def render(self) -> bytes:
        lines = [f"Messages-Waiting: {'yes' if self.waiting else 'no'}"]
        if self.account is not None:
            lines.append(f"Message-Account: {self.account}")
        for name, c in self.counts:
            line = f"{name}: {c.new}/{c.old}"
            if c.new_urgent or c.old_urgent:
                line += f" ({c.new_urgent}/{c.old_urgent})"
            lines.append(line)
        return ("\r\n".join(lines) + "\r\n").encode("ascii")

    @classmethod
    def parse(cls, body: bytes) -> MessageSummary:
        """Read a body; SummaryError for anything the grammar does not allow.

        Optional message headers after the summary lines (5.2
        `opt-msg-headers`) are skipped: they describe single messages.
        """
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise SummaryError("body is not UTF-8") from None
        lines = text.replace("\r\n", "\n").split("\n")
        while lines and lines[-1] == "":
            lines.pop()
        if not lines:
            raise SummaryError("empty body")
        name, value = _header_line(lines[0])
        if name.lower() != "messages-waiting":
            raise SummaryError("the first line must be Messages-Waiting")
        if value.lower() not in ("yes", "no"):
            raise SummaryError(f"Messages-Waiting must be yes or no, not {value!r}")
        waiting = value.lower() == "yes"
        account: str | None = None
        counts: list[tuple[str, MessageCounts]] = []
        rest = lines[1:]
        if rest and rest[0] and _header_line(rest[0])[0].lower() == "message-account":
            account = _header_line(rest[0])[1]
            try:
                parse_uri(account)
            except MessageError:
                raise SummaryError(f"Message-Account is not a URI: {account!r}") from None
            rest = rest[1:]
        for line in rest:
            if line == "":
                break  # the optional message headers follow a blank line
            name, value = _header_line(line)
            match = _SUMMARY.fullmatch(value)
            if match is None:
                raise SummaryError(f"bad summary line {line!r}")
            new, old, new_urgent, old_urgent = (int(g) if g is not None else 0
                                                for g in match.groups())
            counts.append((name, MessageCounts(new, old, new_urgent, old_urgent)))
        return cls(waiting, account, tuple(counts))


_TOKEN = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
# newmsgs SLASH oldmsgs [ LPAREN new-urgentmsgs SLASH old-urgentmsgs RPAREN ],
# with the SWS that SLASH/LPAREN/RPAREN allow (RFC 3261 25.1).
_SUMMARY = re.compile(r"(\d{1,9})[ \t]*/[ \t]*(\d{1,9})"
                      r"(?:[ \t]*\([ \t]*(\d{1,9})[ \t]*/[ \t]*(\d{1,9})[ \t]*\))?[ \t]*")


def _header_line(line: str) -> tuple[str, str]:
    name, colon, value = line.partition(":")
    name = name.rstrip(" \t")
    if not colon or not _TOKEN.fullmatch(name):
        raise SummaryError(f"not a header line: {line!r}")
    return name, value.strip(" \t")


# -- what a SUBSCRIBE asks (RFC 6665 4.1, 4.2.1) ------------------------------------------

# An account's phones: bounds what one password can hold open.
MAX_PER_MAILBOX = 20


@dataclass(frozen=True, slots=True)
class SubscribePolicy:
    min_expires: int = 60
    default_expires: int = 3600
    max_expires: int = 7200
    max_per_mailbox: int = MAX_PER_MAILBOX


class SubscribeRefused(Exception):
    """A SUBSCRIBE to answer with `status` (and `headers`)."""

    def __init__(self, status: int, reason: str | None = None,
                 headers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(reason or str(status))
        self.status = status
        self.reason = reason
        self.headers = headers


@dataclass(frozen=True, slots=True)
class SubscribeRequest:
    """The parts of a SUBSCRIBE that the notifier decides on."""

    expires: int  # granted: 0 for an unsubscribe
    event_id: str | None  # the Event header's id parameter (RFC 6665 8.2.1)
    max_per_mailbox: int = MAX_PER_MAILBOX


def event_package(request: Request) -> tuple[str, str | None]:
    """The event package and id of a request's Event header; 400 if absent or broken.

    RFC 6665 8.2.1: the compact form `o` is expanded by the parser.
    """
    value = request.get("event")
    if value is None or not value.strip():
        raise SubscribeRefused(400, "Missing Event header")
    package, _, params = value.strip().partition(";")
    package = package.strip()
    if not _TOKEN.fullmatch(package):
        raise SubscribeRefused(400, "Bad Event header")
    try:
        parsed = parse_params(";" + params) if params else {}
    except MessageError:
        raise SubscribeRefused(400, "Bad Event header") from None
    return package, parsed.get("id")


def plan_subscribe(request: Request, policy: SubscribePolicy) -> SubscribeRequest:
    """Check a SUBSCRIBE for message-summary; SubscribeRefused says how to refuse it.

    489 for another event package (RFC 6665 4.2.1.1, with Allow-Events),
    406 when Accept excludes our body type (4.1.2.2), 400 for a bad Expires,
    423 with Min-Expires for too short a one (4.2.1.1). A longer Expires than
    we allow is shortened, as 4.2.1.1 lets the notifier do.
    """
    package, event_id = event_package(request)
    if package != EVENT:
        raise SubscribeRefused(489, None, (("Allow-Events", EVENT),))
    accept = request.values("accept")
    if accept and not any(_media_type(a) in (CONTENT_TYPE, "application/*", "*/*")
                          for a in accept):
        raise SubscribeRefused(406, None, (("Accept", CONTENT_TYPE),))
    text = request.get("expires")
    if text is None:
        expires = policy.default_expires
    elif text.strip().isdigit() and len(text.strip()) <= 10:
        expires = int(text.strip())
    else:
        raise SubscribeRefused(400, "Bad Expires header")
    if 0 < expires < policy.min_expires:
        raise SubscribeRefused(423, None, (("Min-Expires", str(policy.min_expires)),))
    return SubscribeRequest(min(expires, policy.max_expires), event_id, policy.max_per_mailbox)


def _media_type(value: str) -> str:
    return value.split(";", 1)[0].strip().lower()


# -- subscriptions (RFC 6665 4.2, 4.4) -------------------------------------------------

class SubscriptionState(enum.Enum):
    ACTIVE = "active"
    TERMINATED = "terminated"


_TRANSITIONS: dict[SubscriptionState, frozenset[SubscriptionState]] = {
    SubscriptionState.ACTIVE: frozenset({SubscriptionState.ACTIVE,
                                         SubscriptionState.TERMINATED}),
    SubscriptionState.TERMINATED: frozenset(),
}


class SubscriptionStateError(Exception):
    """A transition the table does not allow (a bug, not bad input)."""


SubscriptionId = tuple[str, str, str]  # (Call-ID, our tag, their tag)


@dataclass(frozen=True, slots=True)
class Subscription:
    """One subscription to a mailbox: its dialog as plain data, so it can be stored.

    The dialog fields are what a NOTIFY in the dialog needs (RFC 3261
    12.2.1.1): the From/To name-addrs without tags, the subscriber's
    Contact, the route set, our last CSeq; `transport`, `host`, `port` are
    where the SUBSCRIBE came from (the phone behind NAT answers there).
    """

    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: str
    remote_uri: str
    remote_target: str
    route_set: tuple[str, ...]
    transport: str
    host: str
    port: int
    mailbox: str  # the owner's aor, user@domain
    event_id: str | None
    expires_at: float
    local_cseq: int
    remote_cseq: int
    state: SubscriptionState = SubscriptionState.ACTIVE

    @property
    def id(self) -> SubscriptionId:
        return (self.call_id, self.local_tag, self.remote_tag)

    def as_dict(self) -> dict[str, Any]:
        return {"call_id": self.call_id, "local_tag": self.local_tag,
                "remote_tag": self.remote_tag, "local_uri": self.local_uri,
                "remote_uri": self.remote_uri, "remote_target": self.remote_target,
                "route_set": list(self.route_set), "transport": self.transport,
                "host": self.host, "port": self.port, "mailbox": self.mailbox,
                "event_id": self.event_id, "expires_at": self.expires_at,
                "local_cseq": self.local_cseq, "remote_cseq": self.remote_cseq,
                "state": self.state.value}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Subscription:
        """Read a stored subscription; KeyError, TypeError or ValueError if it is not one."""
        return cls(
            call_id=str(data["call_id"]), local_tag=str(data["local_tag"]),
            remote_tag=str(data["remote_tag"]), local_uri=str(data["local_uri"]),
            remote_uri=str(data["remote_uri"]), remote_target=str(data["remote_target"]),
            route_set=tuple(str(r) for r in data["route_set"]),
            transport=str(data["transport"]), host=str(data["host"]), port=int(data["port"]),
            mailbox=str(data["mailbox"]),
            event_id=None if data["event_id"] is None else str(data["event_id"]),
            expires_at=float(data["expires_at"]), local_cseq=int(data["local_cseq"]),
            remote_cseq=int(data["remote_cseq"]),
            state=SubscriptionState(data["state"]))

    @classmethod
    def from_request(cls, request: Request, source: Peer, mailbox: str, local_tag: str,
                     event_id: str | None, expires_at: float) -> Subscription:
        """The subscription a new SUBSCRIBE creates (RFC 6665 4.1.2, RFC 3261 12.1.1)."""
        contact = "<sip:mwi@invalid>"  # only the dialog's remote side is kept
        dialog = Dialog.from_uas(request, local_tag, contact, peer=source)
        return cls(
            call_id=dialog.call_id, local_tag=local_tag, remote_tag=dialog.remote_tag,
            local_uri=str(dialog.local_uri), remote_uri=str(dialog.remote_uri),
            remote_target=str(dialog.remote_target),
            route_set=tuple(str(r) for r in dialog.route_set),
            transport=source.transport, host=source.host, port=source.port,
            mailbox=mailbox, event_id=event_id, expires_at=expires_at,
            local_cseq=0, remote_cseq=request.cseq.seq)

    def peer(self) -> Peer:
        return Peer(self.transport, self.host, self.port)

    def expires_in(self, now: float) -> int:
        return max(0, round(self.expires_at - now))


@dataclass(frozen=True, slots=True)
class SendNotify:
    """Send a NOTIFY in `subscription`'s dialog with CSeq `subscription.local_cseq`."""

    subscription: Subscription
    subscription_state: str  # the Subscription-State header value
    body: bytes


@dataclass(frozen=True, slots=True)
class Save:
    subscription: Subscription


@dataclass(frozen=True, slots=True)
class Forget:
    id: SubscriptionId


Effect = SendNotify | Save | Forget


@dataclass(frozen=True, slots=True)
class SubscribeAccepted:
    """Answer the SUBSCRIBE 200 with this Expires, then carry out `effects`."""

    expires: int
    to_tag: str
    effects: tuple[Effect, ...]


@dataclass(slots=True)
class Subscriptions:
    """Every message-summary subscription, as an explicit state machine per subscription.

    Each method takes the time and returns the effects to carry out in
    order: a NOTIFY follows every accepted SUBSCRIBE (RFC 6665 4.2.1.2), a
    change of the mailbox, and the end of a subscription (Expires: 0, or
    the expiry, with `terminated;reason=timeout`, 4.2.2); a NOTIFY answered
    481 or not at all ends the subscription without one (4.2.2).
    """

    _by_id: dict[SubscriptionId, Subscription] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self._by_id)

    def get(self, sub_id: SubscriptionId) -> Subscription | None:
        return self._by_id.get(sub_id)

    def all(self) -> list[Subscription]:
        return list(self._by_id.values())

    def of_mailbox(self, mailbox: str) -> list[Subscription]:
        return [s for s in self._by_id.values() if s.mailbox == mailbox]

    def next_deadline(self) -> float | None:
        return min((s.expires_at for s in self._by_id.values()), default=None)

    # -- the one place where a subscription's state changes ---------------------------

    def _put(self, old: Subscription | None, new: Subscription) -> None:
        if old is not None and new.state not in _TRANSITIONS[old.state]:
            raise SubscriptionStateError(f"{old.state.value} -> {new.state.value}")
        if new.state is SubscriptionState.TERMINATED:
            self._by_id.pop(new.id, None)
        else:
            self._by_id[new.id] = new

    def _notify(self, sub: Subscription, now: float, summary: MessageSummary,
                state: SubscriptionState) -> list[Effect]:
        sent = replace(sub, local_cseq=sub.local_cseq + 1, state=state)
        self._put(sub, sent)
        if state is SubscriptionState.TERMINATED:
            return [SendNotify(sent, "terminated;reason=timeout", summary.render()),
                    Forget(sent.id)]
        return [SendNotify(sent, f"active;expires={sent.expires_in(now)}", summary.render()),
                Save(sent)]

    # -- events -------------------------------------------------------------------------

    def restore(self, subscriptions: Iterable[Subscription], now: float) -> list[Effect]:
        """Take back the stored subscriptions at start; those expired meanwhile are dropped."""
        effects: list[Effect] = []
        for sub in subscriptions:
            if sub.state is not SubscriptionState.ACTIVE or sub.expires_at <= now:
                effects.append(Forget(sub.id))
            else:
                self._by_id[sub.id] = sub
        return effects

    def subscribe(self, request: Request, source: Peer, mailbox: str, asked: SubscribeRequest,
                  summary: MessageSummary, now: float) -> SubscribeAccepted:
        """A SUBSCRIBE outside a dialog: a new subscription (or a one-off fetch, Expires: 0).

        RFC 6665 4.4.3: a SUBSCRIBE with Expires: 0 outside a dialog still
        gets one NOTIFY with the state, then the subscription ends.
        """
        if asked.expires and len(self.of_mailbox(mailbox)) >= asked.max_per_mailbox:
            raise SubscribeRefused(403, "Too many subscriptions")
        tag = new_tag()
        sub = Subscription.from_request(request, source, mailbox, tag, asked.event_id,
                                        now + asked.expires)
        if asked.expires == 0:
            return SubscribeAccepted(0, tag, tuple(self._notify(
                sub, now, summary, SubscriptionState.TERMINATED)))
        self._by_id[sub.id] = sub
        return SubscribeAccepted(asked.expires, tag, tuple(self._notify(
            sub, now, summary, SubscriptionState.ACTIVE)))

    def refresh(self, request: Request, asked: SubscribeRequest, summary: MessageSummary,
                now: float) -> SubscribeAccepted:
        """A SUBSCRIBE in a dialog: refresh, or unsubscribe with Expires: 0 (RFC 6665 4.1.2).

        481 for a subscription we do not know (expired, never ours), 500
        for a CSeq that does not grow (RFC 3261 12.2.2).
        """
        sub_id = (request.call_id, request.to_tag or "", request.from_tag or "")
        sub = self._by_id.get(sub_id)
        if sub is None or sub.event_id != asked.event_id:
            raise SubscribeRefused(481, "Subscription does not exist")
        if request.cseq.seq <= sub.remote_cseq:
            raise SubscribeRefused(500, "CSeq out of order")
        refreshed = replace(sub, remote_cseq=request.cseq.seq, expires_at=now + asked.expires)
        contact = _single_contact(request)
        if contact is not None:  # a refresh may move the subscriber (target refresh)
            refreshed = replace(refreshed, remote_target=contact)
        self._put(sub, refreshed)
        state = SubscriptionState.TERMINATED if asked.expires == 0 else SubscriptionState.ACTIVE
        return SubscribeAccepted(asked.expires, sub.local_tag,
                                 tuple(self._notify(refreshed, now, summary, state)))

    def mailbox_changed(self, mailbox: str, summary: MessageSummary,
                        now: float) -> list[Effect]:
        effects: list[Effect] = []
        for sub in self.of_mailbox(mailbox):
            effects += self._notify(sub, now, summary, SubscriptionState.ACTIVE)
        return effects

    def expire(self, now: float, summary_of: Mapping[str, MessageSummary]) -> list[Effect]:
        """End the subscriptions whose time is up with a last NOTIFY (RFC 6665 4.2.2)."""
        effects: list[Effect] = []
        for sub in [s for s in self._by_id.values() if s.expires_at <= now]:
            summary = summary_of.get(sub.mailbox) or MessageSummary(False)
            effects += self._notify(sub, now, summary, SubscriptionState.TERMINATED)
        return effects

    def notify_failed(self, sub_id: SubscriptionId, status: int) -> list[Effect]:
        """A NOTIFY was refused or not answered: 481 and 408 (or no answer) end it (4.2.2)."""
        sub = self._by_id.get(sub_id)
        if sub is None or status not in (404, 408, 410, 416, 480, 481, 482, 483, 484, 485,
                                          489, 501, 503, 604):
            return []
        self._put(sub, replace(sub, state=SubscriptionState.TERMINATED))
        return [Forget(sub_id)]


def _single_contact(request: Request) -> str | None:
    try:
        contacts = request.contacts
    except MessageError:
        return None
    if len(contacts) != 1 or contacts[0].uri is None:
        return None
    return str(contacts[0].uri)


# -- the NOTIFY requests -----------------------------------------------------------------

def _host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def build_notify(sent: SendNotify, *, via_host: str, via_port: int) -> Request:
    """The NOTIFY of `sent` in its subscription's dialog (RFC 6665 4.2.2, RFC 3842 4)."""
    sub = sent.subscription
    transport = sub.transport
    contact_params = f";transport={transport}" if transport != "udp" else ""
    dialog = Dialog(
        role=DialogRole.UAS, call_id=sub.call_id, local_tag=sub.local_tag,
        remote_tag=sub.remote_tag, local_uri=NameAddr.parse(sub.local_uri),
        remote_uri=NameAddr.parse(sub.remote_uri), remote_target=parse_uri(sub.remote_target),
        local_contact=NameAddr.parse(
            f"<sip:mwi@{_host(via_host)}:{via_port}{contact_params}>"),
        route_set=[NameAddr.parse(r) for r in sub.route_set],
        local_cseq=sub.local_cseq - 1, remote_cseq=sub.remote_cseq,
        peer=sub.peer(), state=DialogState.CONFIRMED)
    event = EVENT if sub.event_id is None else f"{EVENT};id={sub.event_id}"
    return dialog.create_request(
        "NOTIFY", via_host=_host(via_host), via_port=via_port, body=sent.body,
        content_type=CONTENT_TYPE,
        extra_headers=[("Event", event), ("Subscription-State", sent.subscription_state)])


def build_unsolicited_notify(contact: str, aor: str, summary: MessageSummary, *,
                             transport: str, via_host: str, via_port: int,
                             route: Iterable[str] = ()) -> Request:
    """An out-of-dialog NOTIFY to a registered contact that did not subscribe.

    Not part of RFC 3842, but what phones expect from Asterisk and others
    for "unsolicited MWI": Event message-summary, sent to the contact of
    the registration, To the mailbox owner. Raises MessageError for a
    contact that is not a SIP URI.
    """
    uri: SipURI = parse_sip_uri(contact)
    via = Via(transport.upper(), _host(via_host), via_port,
              {"branch": new_branch(), "rport": None})
    contact_params = f";transport={transport}" if transport != "udp" else ""
    headers: list[list[str]] = [["Via", str(via)], ["Max-Forwards", "70"]]
    routes = list(route)
    if routes:
        headers.append(["Route", ", ".join(routes)])
    headers += [
        ["From", f"<sip:{aor}>;tag={new_tag()}"],
        ["To", f"<sip:{aor}>"],
        ["Call-ID", f"{new_tag()}{new_tag()}@{_host(via_host)}"],
        ["CSeq", "1 NOTIFY"],
        ["Contact", f"<sip:mwi@{_host(via_host)}:{via_port}{contact_params}>"],
        ["Event", EVENT],
        ["Subscription-State", "active"],
    ]
    request = Request("NOTIFY", uri, headers)
    request.set_body(summary.render(), CONTENT_TYPE)
    return request
