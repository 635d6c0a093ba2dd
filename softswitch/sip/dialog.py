"""SIP dialogs: the state two user agents share between INVITE and BYE.

RFC 3261 section 12 (creating dialogs as UAS 12.1.1 and UAC 12.1.2, requests
within a dialog 12.2, termination 12.3), 13.2.2.4 (the ACK for a 2xx), 14
(re-INVITE as a target refresh), 15 (who may send BYE) and the strict
routing of 12.2.1.1 / 16.12.1.2. Early dialogs are kept one per To tag, since
a forked INVITE can create several (12.1.2, 13.2.2.4).

Also the small header values a B2BUA threads through its dialogs: `Reason`
(RFC 3326) and `RAck`/`RSeq` for reliable provisional responses (RFC 3262).

Sans-IO like the rest of `softswitch.sip`: a `Dialog` builds requests and
judges the ones it receives, and the caller sends through the transaction
layer. A `DialogTable` finds the dialog of a message.
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from softswitch.sip.errors import MessageError
from softswitch.sip.headers import (
    CSeq,
    NameAddr,
    Via,
    is_token,
    parse_params,
    quote,
    unquote_param,
)
from softswitch.sip.message import Message, Request, Response, new_branch
from softswitch.sip.peer import Peer
from softswitch.sip.uri import URI, SipURI

# Requests whose Contact replaces the remote target: re-INVITE (RFC 3261
# 12.2, 14) and UPDATE (RFC 3311 5.1).
TARGET_REFRESH_METHODS = frozenset({"INVITE", "UPDATE"})
# Requests that must carry our Contact: the target refreshes, and the
# dialog-forming methods of RFC 6665 and RFC 3515.
_CONTACT_METHODS = TARGET_REFRESH_METHODS | {"SUBSCRIBE", "NOTIFY", "REFER"}
# 8.1.1.5: the first local CSeq of a UAS-made dialog is below 2**31, so that
# the peer never sees it wrap.
_MAX_INITIAL_SEQ = 2**31 - 1
_MAX_SEQ = 0xFFFFFFFF
_AUTH_HEADERS = ("Authorization", "Proxy-Authorization")

DialogId = tuple[str, str, str]  # (Call-ID, local tag, remote tag)


class DialogState(enum.Enum):
    EARLY = "Early"
    CONFIRMED = "Confirmed"
    TERMINATED = "Terminated"


class DialogRole(enum.Enum):
    """Which side of the request that created the dialog we were."""

    UAC = "UAC"
    UAS = "UAS"


class DialogStateError(Exception):
    """A move or a request the dialog state does not allow: a bug in the caller."""


_S = DialogState

# The whole machine (RFC 3261 12.1, 12.3): early becomes confirmed on a 2xx,
# either ends; nothing comes back from Terminated.
_TRANSITIONS: dict[DialogState, frozenset[DialogState]] = {
    _S.EARLY: frozenset({_S.CONFIRMED, _S.TERMINATED}),
    _S.CONFIRMED: frozenset({_S.TERMINATED}),
    _S.TERMINATED: frozenset(),
}


@dataclass(slots=True, frozen=True)
class RequestVerdict:
    """What `Dialog.receive_request` made of a request (RFC 3261 12.2.2).

    `status` is None when the request may go on to the application, else the
    status to answer it with (500 out of order, 481 no such dialog).
    """

    status: int | None = None
    reason: str | None = None
    target_refreshed: bool = False

    @property
    def accepted(self) -> bool:
        return self.status is None


class ReliableVerdict(enum.Enum):
    """What `Dialog.receive_reliable_provisional` made of a 1xx with RSeq."""

    NEW = "new"  # pass it up and PRACK it
    RETRANSMISSION = "retransmission"
    OUT_OF_ORDER = "out of order"


_ACCEPT = RequestVerdict()
_REFRESHED = RequestVerdict(target_refreshed=True)


def _single_contact(message: Message) -> URI | None:
    """The one Contact URI of a dialog-forming or target-refresh message.

    RFC 3261 12.1.1/12.1.2 and 12.2 want exactly one, never `*`.
    """
    contacts = message.contacts
    if not contacts:
        return None
    if len(contacts) > 1 or contacts[0].uri is None:
        raise MessageError("a dialog needs exactly one Contact")
    return contacts[0].uri


def _route_set(message: Message) -> list[NameAddr]:
    return [NameAddr.parse(value) for value in message.values("record-route")]


def _party(addr: NameAddr) -> NameAddr:
    """From/To without their tag, in angle brackets so URI parameters stay
    inside the URI when we write the tag back (RFC 3261 20.10)."""
    party = addr.copy()
    party.params.pop("tag", None)
    party.angle = True
    return party


def _is_secure(uri: URI, peer: Peer | None) -> bool:
    # 12.1.1/12.1.2: a SIPS Request-URI over TLS; without a peer to ask,
    # the URI alone decides.
    sips = isinstance(uri, SipURI) and uri.scheme == "sips"
    return sips and (peer is None or peer.transport == "tls")


@dataclass(slots=True, eq=False)
class Dialog:
    """One dialog as seen from our side (RFC 3261 12).

    `local_uri`/`remote_uri` are the From/To name-addrs without tags;
    `local_cseq` is None until we send a request in a dialog we accepted,
    `remote_cseq` None until the peer sends one in a dialog we started.
    `route_set` is in the order Route headers are written. `peer` is where
    the caller chose to send in-dialog requests (the source of the INVITE for
    a UAS behind NAT, where the INVITE went for a UAC); the dialog only keeps
    it.
    """

    role: DialogRole
    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: NameAddr
    remote_uri: NameAddr
    remote_target: URI
    local_contact: NameAddr
    route_set: list[NameAddr] = field(default_factory=list)
    local_cseq: int | None = None
    remote_cseq: int | None = None
    secure: bool = False
    peer: Peer | None = None
    state: DialogState = _S.EARLY
    # RFC 3262: the RSeq of our last reliable provisional (UAS), and the
    # highest in-order RSeq received (UAC).
    local_rseq: int | None = None
    remote_rseq: int | None = None

    # -- creation ---------------------------------------------------------------

    @classmethod
    def from_uas(cls, request: Request, local_tag: str, local_contact: NameAddr | str,
                 *, peer: Peer | None = None) -> Dialog:
        """The dialog a request we answer with a tagged 1xx or a 2xx creates (12.1.1).

        The dialog starts Early; `sent_response` confirms it when the 2xx
        goes out. A request without one Contact is a 400 (8.1.1.8).
        """
        if request.to_tag is not None:
            raise ValueError("a request with a To tag belongs to an existing dialog")
        target = _single_contact(request)
        if target is None:
            raise MessageError("dialog-creating request without Contact")
        contact = (NameAddr.parse(local_contact) if isinstance(local_contact, str)
                   else local_contact)
        return cls(
            role=DialogRole.UAS,
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=request.from_tag or "",
            local_uri=_party(request.to_addr),
            remote_uri=_party(request.from_addr),
            remote_target=target,
            local_contact=contact,
            route_set=_route_set(request),  # 12.1.1: in the order received
            remote_cseq=request.cseq.seq,
            secure=_is_secure(request.uri, peer),
            peer=peer,
        )

    @classmethod
    def from_uac(cls, request: Request, response: Response, *,
                 peer: Peer | None = None) -> Dialog:
        """The dialog a 1xx with a To tag or a 2xx to our `request` creates (12.1.2).

        Each To tag is its own (early) dialog: a forked INVITE can make several.
        """
        tag = response.to_tag
        if not 100 < response.status < 300 or tag is None:
            raise ValueError("only a 101-299 response with a To tag creates a dialog")
        contact = _single_contact(request)
        if contact is None:
            raise ValueError("our dialog-creating request has no Contact")
        # A peer that leaves out the Contact (12.1.1 forbids it) stays
        # reachable where the request went, until a later response says more.
        target = _single_contact(response) or request.uri
        return cls(
            role=DialogRole.UAC,
            call_id=request.call_id,
            local_tag=request.from_tag or "",
            remote_tag=tag,
            local_uri=_party(request.from_addr),
            remote_uri=_party(request.to_addr),
            remote_target=target,
            local_contact=request.contacts[0],
            route_set=_route_set(response)[::-1],  # 12.1.2: reversed
            local_cseq=request.cseq.seq,
            secure=_is_secure(request.uri, peer),
            peer=peer,
            state=_S.CONFIRMED if response.status >= 200 else _S.EARLY,
        )

    @property
    def id(self) -> DialogId:
        return (self.call_id, self.local_tag, self.remote_tag)

    @property
    def next_hop(self) -> URI:
        """The URI to resolve (RFC 3263) for the next request: the first route, else the target."""
        if self.route_set and self.route_set[0].uri is not None:
            return self.route_set[0].uri
        return self.remote_target

    # -- the one place where the state changes ------------------------------------

    def _transition(self, new: DialogState) -> None:
        if new not in _TRANSITIONS[self.state]:
            raise DialogStateError(f"dialog {self.state.value} cannot become {new.value}")
        self.state = new

    def terminate(self) -> None:
        """End the dialog (a BYE sent or received, a failure); idempotent."""
        if self.state is not _S.TERMINATED:
            self._transition(_S.TERMINATED)

    # -- requests we send ---------------------------------------------------------

    def create_request(self, method: str, *, via_host: str, via_port: int | None = None,
                       transport: str | None = None, max_forwards: int = 70,
                       contact: NameAddr | None = None, body: bytes = b"",
                       content_type: str | None = None,
                       extra_headers: Sequence[tuple[str, str]] = ()) -> Request:
        """A request within the dialog (RFC 3261 12.2.1.1).

        The caller gives the Via sent-by (the address of the transport the
        request will leave on; `transport` defaults to the peer's). The
        branch is fresh and `rport` asked for (RFC 3581). `contact` replaces
        our target for this and later requests (a target refresh, 12.2.1.1).
        ACK and CANCEL are not built here: `create_ack` and
        `transaction.make_cancel` keep the CSeq of the INVITE they follow.
        """
        if method in ("ACK", "CANCEL"):
            raise ValueError(f"build {method} with create_ack or make_cancel")
        if self.state is _S.TERMINATED:
            raise DialogStateError(f"no {method} in a terminated dialog")
        if method == "BYE" and self.state is _S.EARLY and self.role is DialogRole.UAS:
            # 15: the callee ends an early dialog with a final response instead.
            raise DialogStateError("the UAS may not send BYE in an early dialog")
        if self.local_cseq is None:
            self.local_cseq = secrets.randbelow(_MAX_INITIAL_SEQ) + 1
        elif self.local_cseq >= _MAX_SEQ:
            raise DialogStateError("local CSeq exhausted")
        else:
            self.local_cseq += 1
        if contact is not None:
            self.local_contact = contact
        request = self._build(method, self.local_cseq, via_host, via_port, transport,
                              max_forwards)
        if method in _CONTACT_METHODS:
            request.headers.append(["Contact", str(self.local_contact)])
        for name, value in extra_headers:
            request.headers.append([name, value])
        request.set_body(body, content_type)
        return request

    def create_ack(self, invite: Request, response: Response, *, via_host: str,
                   via_port: int | None = None, transport: str | None = None,
                   body: bytes = b"", content_type: str | None = None) -> Request:
        """The ACK for a 2xx to `invite` in this dialog (RFC 3261 13.2.2.4).

        Built like any request in the dialog, but with the CSeq number of the
        INVITE, a branch of its own (a 2xx ACK is a transaction of its own)
        and the INVITE's credentials. `body` is the answer when the 2xx held
        the offer. The caller keeps it, to resend for each 2xx retransmission.
        """
        if response.to_tag != self.remote_tag or response.call_id != self.call_id:
            raise ValueError("the response belongs to another dialog")
        if not 200 <= response.status < 300 or invite.method != "INVITE":
            raise ValueError("create_ack is for a 2xx to an INVITE")
        # Terminated is allowed: a 2xx that crossed our CANCEL or a decision
        # to hang up is still ACKed before the BYE (RFC 3261 15).
        if self.state is _S.EARLY:
            raise DialogStateError("pass the 2xx to receive_response first")
        ack = self._build("ACK", invite.cseq.seq, via_host, via_port, transport, 70)
        for name in _AUTH_HEADERS:
            for value in invite.get_all(name):
                ack.headers.append([name, value])
        ack.set_body(body, content_type)
        return ack

    def _build(self, method: str, seq: int, via_host: str, via_port: int | None,
               transport: str | None, max_forwards: int) -> Request:
        if transport is None:
            transport = self.peer.transport if self.peer is not None else "udp"
        via = Via(transport.upper(), via_host, via_port, {"branch": new_branch(), "rport": None})
        uri, routes = self._request_uri_and_routes()
        local = self.local_uri.copy()
        local.params["tag"] = self.local_tag
        remote = self.remote_uri.copy()
        if self.remote_tag:  # an RFC 2543 peer may have no tag to echo
            remote.params["tag"] = self.remote_tag
        headers: list[list[str]] = [["Via", str(via)], ["Max-Forwards", str(max_forwards)]]
        if routes:
            headers.append(["Route", ", ".join(routes)])
        headers += [
            ["From", str(local)],
            ["To", str(remote)],
            ["Call-ID", self.call_id],
            ["CSeq", str(CSeq(seq, method))],
        ]
        return Request(method, uri, headers)

    def _request_uri_and_routes(self) -> tuple[URI, list[str]]:
        """Request-URI and Route values by the route set (RFC 3261 12.2.1.1)."""
        target = _copy_uri(self.remote_target)
        if not self.route_set:
            return target, []
        first = self.route_set[0].uri
        if isinstance(first, SipURI) and "lr" not in first.params:
            # A strict router (RFC 2543) routes on the Request-URI: it gets
            # the first route, and the remote target goes last in Route.
            uri = first.copy()
            # 19.1.1: no `method` parameter or headers in a Request-URI.
            uri.params.pop("method", None)
            uri.headers.clear()
            routes = [str(r) for r in self.route_set[1:]]
            routes.append(f"<{target}>")
            return uri, routes
        return target, [str(r) for r in self.route_set]

    # -- requests we receive ------------------------------------------------------

    def receive_request(self, request: Request) -> RequestVerdict:
        """Judge a request the table found for this dialog (RFC 3261 12.2.2).

        Checks the remote CSeq (lower than the last one: 500) and takes the
        new remote target of a target refresh. ACK and CANCEL carry the CSeq
        of their INVITE and are not checked. Nothing is sent: the caller
        answers a rejected request with `verdict.status`.
        """
        if self.state is _S.TERMINATED or request.call_id != self.call_id \
                or (request.to_tag or "") != self.local_tag \
                or (request.from_tag or "") != self.remote_tag:
            return RequestVerdict(481, "Call/Transaction Does Not Exist")
        method = request.method
        if method == "ACK" or method == "CANCEL":
            return _ACCEPT
        seq = request.cseq.seq
        if self.remote_cseq is not None and seq < self.remote_cseq:
            return RequestVerdict(500, "Server Internal Error")
        # Read the Contact before changing anything: a bad one is a 400 and
        # must leave the dialog as it was.
        target = _single_contact(request) if method in TARGET_REFRESH_METHODS else None
        self.remote_cseq = seq
        if target is not None:
            self.remote_target = target
            return _REFRESHED
        return _ACCEPT

    def sent_response(self, response: Response) -> None:
        """Note a response we sent to a request in this dialog (12.1.1, 12.3, 15.1.2).

        A 2xx to the INVITE confirms an early dialog, a 300-699 ends it; a
        2xx to BYE ends the dialog.
        """
        if self.state is _S.TERMINATED:
            return
        method = response.cseq.method
        status = response.status
        if method == "INVITE" and self.state is _S.EARLY:
            if 200 <= status < 300:
                self._transition(_S.CONFIRMED)
            elif status >= 300:
                self._transition(_S.TERMINATED)
        elif method == "BYE" and 200 <= status < 300:
            self._transition(_S.TERMINATED)

    # -- responses to our requests --------------------------------------------------

    def receive_response(self, response: Response) -> None:
        """Apply a response to a request we sent in this dialog (12.1.2, 12.2.1.2, 13.2.2.4).

        - INVITE 2xx on an early dialog: Confirmed, with the route set
          recomputed from the 2xx and its Contact as remote target;
        - INVITE 1xx on an early dialog: its Contact as remote target;
        - INVITE 300-699 on an early dialog: Terminated (12.3);
        - 2xx to a target refresh: its Contact, if any, as remote target;
        - 481 or 408 to any request: Terminated (12.2.1.2), the peer has
          lost the dialog or cannot be reached;
        - 2xx to BYE: Terminated.

        The caller reads `state` afterwards. A malformed Contact raises
        MessageError and changes nothing.
        """
        if self.state is _S.TERMINATED or response.status == 100:
            return
        status = response.status
        method = response.cseq.method
        if status in (408, 481) and method != "CANCEL":
            # A CANCEL's 481 says the INVITE transaction is gone, not the dialog.
            self._transition(_S.TERMINATED)
            return
        if method == "INVITE" and self.state is _S.EARLY:
            if status >= 300:
                self._transition(_S.TERMINATED)
                return
            target = _single_contact(response)
            if status >= 200:
                routes = _route_set(response)[::-1]
                self.route_set = routes
                self._transition(_S.CONFIRMED)
            if target is not None:
                self.remote_target = target
        elif method in TARGET_REFRESH_METHODS and 200 <= status < 300:
            target = _single_contact(response)
            if target is not None:
                self.remote_target = target
        elif method == "BYE" and 200 <= status < 300:
            self._transition(_S.TERMINATED)

    # -- reliable provisional responses (RFC 3262) ------------------------------------

    def next_rseq(self) -> int:
        """The RSeq for our next reliable provisional response (RFC 3262 3).

        Starts at random below 2**31 and goes up by one each time.
        """
        if self.local_rseq is None:
            self.local_rseq = secrets.randbelow(_MAX_INITIAL_SEQ) + 1
        else:
            self.local_rseq += 1
        return self.local_rseq

    def receive_reliable_provisional(self, response: Response) -> ReliableVerdict:
        """Judge a 1xx with RSeq from the peer (RFC 3262 4).

        The first one is taken whatever its RSeq; after that only the next
        number in order is PRACKed, a repeat is a retransmission to discard
        and anything else out of order (discarded too: the UAS resends it).
        """
        value = response.get("RSeq")
        if value is None:
            raise MessageError("reliable provisional response without RSeq")
        rseq = parse_rseq(value)
        last = self.remote_rseq
        if last is None or rseq == last + 1:
            self.remote_rseq = rseq
            return ReliableVerdict.NEW
        if rseq <= last:
            return ReliableVerdict.RETRANSMISSION
        return ReliableVerdict.OUT_OF_ORDER


def _copy_uri(uri: URI) -> URI:
    return uri.copy() if isinstance(uri, SipURI) else uri


# -- the dialog table -----------------------------------------------------------------


class DialogTable:
    """The dialogs of one element, by dialog ID (RFC 3261 12).

    A request names our tag in To, a response in From. Early dialogs of one
    INVITE share Call-ID and our tag and differ by the remote tag, one per
    fork (12.1.2): `forks` lists them, to end the rest when one is answered.
    """

    __slots__ = ("_dialogs", "_by_local")

    def __init__(self) -> None:
        self._dialogs: dict[DialogId, Dialog] = {}
        self._by_local: dict[tuple[str, str], dict[str, Dialog]] = {}

    def add(self, dialog: Dialog) -> None:
        key = dialog.id
        if key in self._dialogs:
            raise ValueError(f"dialog {key} already exists")
        self._dialogs[key] = dialog
        self._by_local.setdefault((dialog.call_id, dialog.local_tag), {})[dialog.remote_tag] \
            = dialog

    def remove(self, dialog: Dialog) -> None:
        """Forget `dialog`; a dialog not in the table is ignored."""
        key = dialog.id
        if self._dialogs.get(key) is not dialog:
            return
        del self._dialogs[key]
        local = (dialog.call_id, dialog.local_tag)
        siblings = self._by_local[local]
        del siblings[dialog.remote_tag]
        if not siblings:
            del self._by_local[local]

    def get(self, dialog_id: DialogId) -> Dialog | None:
        return self._dialogs.get(dialog_id)

    def find(self, message: Request | Response) -> Dialog | None:
        """The dialog `message` belongs to, or None."""
        if isinstance(message, Request):
            local, remote = message.to_tag, message.from_tag
            if local is None:
                return None  # outside any dialog (12.2.2)
        else:
            local, remote = message.from_tag, message.to_tag
            if remote is None:
                return None
        return self._dialogs.get((message.call_id, local or "", remote or ""))

    def forks(self, call_id: str, local_tag: str) -> list[Dialog]:
        """Every dialog of one INVITE we sent (the forks), early or not."""
        return list(self._by_local.get((call_id, local_tag), {}).values())

    def match_response(self, request: Request, response: Response, *,
                       peer: Peer | None = None) -> Dialog | None:
        """The dialog of a response to our dialog-creating `request`.

        An existing dialog for its To tag, else a new one added here when the
        response creates one (101-299 with a To tag, 12.1.2); else None.
        """
        dialog = self.find(response)
        if dialog is None and 100 < response.status < 300 and response.to_tag is not None:
            dialog = Dialog.from_uac(request, response, peer=peer)
            self.add(dialog)
        return dialog

    def __len__(self) -> int:
        return len(self._dialogs)

    def __iter__(self) -> Iterator[Dialog]:
        return iter(list(self._dialogs.values()))


# -- Reason (RFC 3326) ------------------------------------------------------------------


@dataclass(slots=True, frozen=True)
class Reason:
    """One Reason header value: `SIP;cause=200;text="Call completed elsewhere"`.

    RFC 3326 2: the protocol is `SIP` (cause a status code) or `Q.850` (a
    cause value); a B2BUA copies it between legs and puts it on the CANCELs
    it sends to the forks that lost.
    """

    protocol: str
    cause: int | None = None
    text: str | None = None

    @classmethod
    def parse(cls, value: str) -> Reason:
        text = value.strip(" \t")
        semi = text.find(";")
        protocol = (text if semi < 0 else text[:semi]).strip(" \t")
        if not is_token(protocol):
            raise MessageError(f"bad Reason protocol {value!r}")
        params = parse_params(text, semi) if semi >= 0 else {}
        cause: int | None = None
        raw_cause = params.get("cause")
        if raw_cause is not None:
            if not raw_cause.isascii() or not raw_cause.isdigit() or len(raw_cause) > 9:
                raise MessageError(f"bad Reason cause {value!r}")
            cause = int(raw_cause)
        return cls(protocol, cause, unquote_param(params.get("text")))

    def __str__(self) -> str:
        out = self.protocol
        if self.cause is not None:
            out += f";cause={self.cause}"
        if self.text is not None:
            out += f";text={quote(self.text)}"
        return out


# The example of RFC 3326 2: on the CANCELs to the forks that lost the race.
CALL_COMPLETED_ELSEWHERE = Reason("SIP", 200, "Call completed elsewhere")


# -- RSeq and RAck (RFC 3262) -----------------------------------------------------------


def parse_rseq(value: str) -> int:
    """An RSeq value: 1 to 2**32-1 (RFC 3262 7.1)."""
    text = value.strip(" \t")
    if not text.isascii() or not text.isdigit() or len(text) > 10 \
            or not 0 < int(text) <= _MAX_SEQ:
        raise MessageError(f"bad RSeq {value!r}")
    return int(text)


@dataclass(slots=True, frozen=True)
class RAck:
    """`RAck: 1 314159 INVITE`: which reliable provisional a PRACK acknowledges.

    RFC 3262 7.2: the RSeq of the response, then the CSeq number and method
    of the request it answered. Equal values match (7.2: all three compared).
    """

    rseq: int
    cseq: int
    method: str

    @classmethod
    def parse(cls, value: str) -> RAck:
        parts = value.split()
        if len(parts) != 3:
            raise MessageError(f"bad RAck {value!r}")
        rseq = parse_rseq(parts[0])
        cseq = CSeq.parse(f"{parts[1]} {parts[2]}")
        return cls(rseq, cseq.seq, cseq.method)

    @classmethod
    def for_response(cls, response: Response) -> RAck:
        """The RAck a PRACK for reliable provisional `response` carries."""
        value = response.get("RSeq")
        if value is None:
            raise MessageError("reliable provisional response without RSeq")
        return cls(parse_rseq(value), response.cseq.seq, response.cseq.method)

    def __str__(self) -> str:
        return f"{self.rseq} {self.cseq} {self.method}"


def _option_tags(message: Message, name: str) -> set[str]:
    return {tag.lower() for tag in message.values(name)}


def requires_100rel(message: Message) -> bool:
    """True if `message` has `Require: 100rel` (RFC 3262 3, 4)."""
    return "100rel" in _option_tags(message, "require")


def supports_100rel(message: Message) -> bool:
    """True if `message` offers or demands reliable provisionals (Supported or Require)."""
    return "100rel" in _option_tags(message, "supported") or requires_100rel(message)
