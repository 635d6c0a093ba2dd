"""Where the SIP core sheds load: new work refused or dropped before it costs much.

Consulted by `SipCore.receive` only while the `OverloadController` is above
NORMAL, so a server within its capacity pays one attribute test per message.
While shedding, the gate glances at the request line and the To header
(`sip/prefilter.py`) and lets everything through except new INVITEs and
initial REGISTERs, which the controller decides on. A registration is two
transactions (RFC 3261 22: the REGISTER, its 401, the REGISTER with
credentials): only the first is refusable. The one carrying credentials
answers a challenge we spent work on; refusing it would waste that work and
make the phone start over, which is how REGISTER load collapsed (at twice
the clean rate a tenth of it completed, bench/overload.py). A flood of
made-up credentials is the brute-force guard's to ban, not this gate's.

- REFUSE (a share of them, the controller's loss): a 503 with Retry-After
  (RFC 3261 21.5.4), sent statelessly, with no transaction, no store and no
  B2BUA involved. For an INVITE it is built from the raw header lines
  (`prefilter.stateless_response`), without parsing the request: a parse
  costs about as much as everything else a refusal does; an initial
  REGISTER likewise (only its To address is parsed, for the refresh
  check). Its To tag starts
  with `OVERLOAD_TAG`, so the ACK the caller sends for it (RFC 3261
  17.1.1.3) is recognised from its bytes and dropped unparsed. Stateless
  503s go straight to the transport: message observers do not see them.
- DROP: nothing at all; the client's retransmissions and its own timeout
  do the rest (RFC 3261 17.1.1.2), and an unparsed drop is the cheapest
  thing the process can do with a datagram.

An INVITE whose server transaction already exists (a retransmission of one
admitted before the overload) is admitted while refusing: a 503 would break
a call we accepted. While dropping it is dropped unparsed, which loses
nothing: its transaction carries on.

A client that asks for RFC 7339 overload control (`oc` in its Via, e.g. a
trunk) is told the current loss in the Via of every response we send it,
the stateless 503s included (`sip/oc.py`), so that it sheds before sending.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from softswitch.overload import Action, Level, OverloadController, RequestKind
from softswitch.sip.errors import MessageError
from softswitch.sip.headers import NameAddr, Via
from softswitch.sip.message import (
    DEFAULT_LIMITS,
    ParserLimits,
    Request,
    Response,
    make_response,
    new_tag,
    parse_message,
)
from softswitch.sip.oc import stamp_oc
from softswitch.sip.peer import Peer, response_peer, stamp_via
from softswitch.sip.prefilter import (
    has_credentials,
    request_method,
    stateless_response,
    to_tag,
    to_value,
)
from softswitch.sip.uri import URI

# The To tag prefix of our stateless 503s: their ACKs are dropped by it.
OVERLOAD_TAG = "ovl"
_OVERLOAD_TAG_BYTES = OVERLOAD_TAG.encode()
# How long a loss told to an RFC 7339 client holds (its oc-validity): every
# response renews it while the overload lasts.
OC_VALIDITY_MS = 500
# An `oc` parameter in a Via's text (not "localhost" or a branch holding "oc").
_OC_PARAM = re.compile(r";[ \t]*oc[ \t]*(?:[;=,]|$)", re.IGNORECASE)

Send = Callable[[Any, Peer], None]
SendBytes = Callable[[bytes, Peer], None]


class OverloadGate:
    """Screens requests while the controller sheds load."""

    def __init__(self, controller: OverloadController, send: Send, send_bytes: SendBytes, *,
                 retry_after: int = 5, limits: ParserLimits = DEFAULT_LIMITS,
                 has_transaction: Callable[[Request], bool] | None = None,
                 has_transaction_at: Callable[[Via, str], bool | None] | None = None,
                 is_refresh: Callable[[URI | None], bool] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.controller = controller
        self.clock = clock  # oc-seq: a timestamp, growing with each value
        self.send = send
        self.send_bytes = send_bytes
        self.retry_after = retry_after
        self.limits = limits
        # Set by the parts that know: the transaction layer, the registrar
        # (is_refresh: whether a REGISTER to this To URI refreshes live bindings).
        self.has_transaction = has_transaction
        self.has_transaction_at = has_transaction_at
        self.is_refresh = is_refresh
        self.acks_dropped = 0

    @property
    def shedding(self) -> bool:
        return self.controller.level is not Level.NORMAL

    def screen(self, data: bytes, peer: Peer, datagram: bool) -> tuple[bool, Request | None]:
        """(handled, parsed): handled means refused or dropped here; else the
        request as parsed (None if not parsed yet) goes on to the core."""
        method = request_method(data)
        if method is None or method not in (b"INVITE", b"REGISTER", b"ACK"):
            return False, None  # responses, BYE, CANCEL...: finishing accepted work
        if method == b"ACK":
            tag = to_tag(data)
            if tag is not None and tag.startswith(_OVERLOAD_TAG_BYTES):
                self.acks_dropped += 1
                return True, None
            return False, None
        if method == b"INVITE":
            if to_tag(data) is not None:
                return False, None  # a re-INVITE: in a dialog
            if has_credentials(data):
                return False, None  # answers our 401/407: work already begun
            if self.controller.level is Level.DROP:
                # Unparsed: a retransmission of an INVITE admitted earlier
                # loses nothing here, its transaction carries on.
                self.controller.decide(RequestKind.NEW_INVITE)
                return True, None
            decided = self._invite_fast(data, peer)
            if decided is not None:
                return decided, None
        if method == b"REGISTER":
            decided = self._register_fast(data, peer)
            if decided is not None:
                return decided, None
        try:
            message = parse_message(data, self.limits, datagram=datagram)
        except MessageError:
            return False, None  # the core answers malformed input as always
        if not isinstance(message, Request):
            return False, None
        kind = self._kind(message)
        action = self.controller.decide(kind)
        if action is Action.ADMIT:
            return False, message
        if action is Action.REFUSE:
            self._refuse(message, peer)
        return True, None

    def _invite_fast(self, data: bytes, peer: Peer) -> bool | None:
        """Decide on a new INVITE from its bytes: True if refused here, False if
        admitted, None if not plain enough for this path (then parse it)."""
        return self._refuse_new(data, peer, "INVITE", RequestKind.NEW_INVITE)

    def _register_fast(self, data: bytes, peer: Peer) -> bool | None:
        """Decide on a REGISTER from its bytes and its To address: True if refused
        or dropped here, False if admitted, None if not plain enough (parse it)."""
        if has_credentials(data):
            return False  # answers our challenge: the second half of accepted work
        raw_to = to_value(data)
        if raw_to is None:
            return None
        try:
            to_uri = NameAddr.parse(raw_to.decode("utf-8")).uri
        except (MessageError, UnicodeDecodeError):
            return None
        if self.is_refresh is not None and self.is_refresh(to_uri):
            return False
        if self.controller.level is Level.DROP:
            self.controller.decide(RequestKind.INITIAL_REGISTER)
            return True  # unparsed; an admitted retransmission's transaction carries on
        return self._refuse_new(data, peer, "REGISTER", RequestKind.INITIAL_REGISTER)

    def _refuse_new(self, data: bytes, peer: Peer, method: str, kind: RequestKind) -> bool | None:
        """A request that starts new work, from its bytes: a retransmission of one we
        already serve is admitted; else the controller decides, and a refusal is a
        stateless 503. None if the bytes are not plain enough (then parse them)."""
        reply = stateless_response(data, peer, 503, "Service Unavailable",
                                   OVERLOAD_TAG + new_tag(),
                                   [("Retry-After", str(self.retry_after))],
                                   stamp_via=self._stamp_oc)
        if reply is None or self.has_transaction_at is None:
            return None
        response, target, via = reply
        known = self.has_transaction_at(via, method)
        if known is None:
            return None  # an RFC 2543 branch: the parsing way decides
        if known or self.controller.decide(kind) is Action.ADMIT:
            return False
        self.send_bytes(response, target)
        return True

    def annotate(self, response: Response) -> None:
        """RFC 7339: tell a client that asked for it the current loss, in the
        top Via of `response` (before it is sent)."""
        text = response.get("via")
        if text is None or _OC_PARAM.search(text) is None:
            return  # the cheap common case: no client asked
        try:
            via = response.top_via
        except MessageError:
            return
        if self._stamp_oc(via):
            response.replace_top_via(via)

    def _stamp_oc(self, via: Via) -> bool:
        return stamp_oc(via, self.controller.loss, self.clock(), OC_VALIDITY_MS)

    def _kind(self, request: Request) -> RequestKind:
        try:
            if self.has_transaction is not None and self.has_transaction(request):
                return RequestKind.ONGOING  # a retransmission of admitted work
            if request.has("authorization") or request.has("proxy-authorization"):
                return RequestKind.ONGOING  # answers our challenge
            if request.method == "INVITE":
                return RequestKind.ONGOING if request.to_tag else RequestKind.NEW_INVITE
            if self.is_refresh is not None and self.is_refresh(request.to_addr.uri):
                return RequestKind.ONGOING
        except MessageError:
            return RequestKind.ONGOING  # let the core answer the bad header
        return RequestKind.INITIAL_REGISTER

    def _refuse(self, request: Request, peer: Peer) -> None:
        try:
            # Stamped first, so that the 503's Via carries received/rport.
            stamp_via(request, peer)
            target = response_peer(request.top_via, peer)
        except MessageError:
            return
        response = make_response(request, 503, to_tag=OVERLOAD_TAG + new_tag())
        response.add("Retry-After", str(self.retry_after))
        self.send(response, target)
