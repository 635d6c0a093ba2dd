"""The SIP core: from framed bytes to the transaction layer to a handler.

`SipCore` is the transaction user of RFC 3261 section 17: it parses what the
transports deliver, answers what cannot be parsed (400/505/513, when the
sender's Via can be read), passes requests and responses through the
transaction layer, applies the checks every request gets (RFC 3261 8.2:
method, Require, Max-Forwards), and hands the request to the handler of its
method: OPTIONS here; REGISTER in the registrar; INVITE and dialogs in the
B2BUA.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred

from softswitch.logs import get_logger, message_fields
from softswitch.sip.errors import MessageError
from softswitch.sip.headers import Via
from softswitch.sip.message import (
    DEFAULT_LIMITS,
    ParserLimits,
    Request,
    Response,
    error_response,
    make_response,
    new_tag,
    parse_message,
)
from softswitch.sip.peer import Peer, response_peer
from softswitch.sip.transaction import (
    ServerTransaction,
    TimerSettings,
    TransactionLayer,
)

Handler = Callable[[ServerTransaction, Request], None]
Send = Callable[[Any, Peer], None]

ACCEPT = "application/sdp"


class SipCore:
    """Receives every message, owns the transaction layer, dispatches requests."""

    def __init__(self, clock: Any, send: Send, *, limits: ParserLimits = DEFAULT_LIMITS,
                 timers: TimerSettings | None = None, user_agent: str = "softswitch") -> None:
        self.clock = clock
        self._send = send
        self.limits = limits
        self.user_agent = user_agent
        self.log = get_logger("softswitch.sip")
        self.timers = timers or TimerSettings()
        self.transactions = TransactionLayer(clock, self.send, self.timers, self)
        self.handlers: dict[str, Handler] = {"OPTIONS": self._options}
        self.supported: list[str] = []
        self.ack_handler: Callable[[Request, Peer], None] | None = None
        self.response_handler: Callable[[Response, Peer], None] | None = None
        self.draining = False
        self._log_messages: bool | None = None
        self._capabilities_cache: tuple[object, list[tuple[str, str]]] | None = None
        self.stats = {"received": 0, "sent": 0, "malformed": 0}

    # -- what the transports call ------------------------------------------------

    def receive(self, data: bytes, peer: Peer, datagram: bool = True) -> None:
        self.stats["received"] += 1
        try:
            message = parse_message(data, self.limits, datagram=datagram)
        except MessageError as exc:
            self._malformed(data, peer, exc)
            return
        if self.log_messages:
            self.log.debug("sip_in", **message_fields(message, peer))
        if isinstance(message, Request):
            try:
                self.transactions.receive_request(message, peer)
            except MessageError as exc:
                # A header the handler needed turned out malformed.
                self._malformed(data, peer, exc)
        else:
            self.transactions.receive_response(message, peer)

    def _malformed(self, data: bytes, peer: Peer, exc: MessageError) -> None:
        self.stats["malformed"] += 1
        response = error_response(data, exc)
        self.log.info("sip_malformed", transport=peer.transport, peer=f"{peer.host}:{peer.port}",
                      reason=exc.reason, status=exc.status, answered=response is not None)
        if response is not None:
            try:
                target = response_peer(Via.parse(response.values("via")[0]), peer)
            except (MessageError, IndexError):
                return
            self.send(response, target)

    def send(self, message: Any, peer: Peer) -> None:
        self.stats["sent"] += 1
        if self.log_messages:
            self.log.debug("sip_out", **message_fields(message, peer))
        self._send(message, peer)

    @property
    def log_messages(self) -> bool:
        # structlog's filtering logger drops debug calls cheaply, but building
        # the fields dict is not free: skip it when debug is off. Logging is
        # configured before the first message, so the answer is cached then.
        if self._log_messages is None:
            is_enabled = getattr(self.log, "is_enabled_for", None)
            self._log_messages = bool(is_enabled(10)) if is_enabled else False
        return self._log_messages

    # -- TransactionUser -----------------------------------------------------------

    def on_request(self, tx: ServerTransaction, request: Request) -> None:
        method = request.method
        if self.draining and method not in ("CANCEL", "BYE"):
            response = make_response(request, 503, to_tag=new_tag())
            response.add("Retry-After", "5")
            tx.respond(response)
            return
        handler = self.handlers.get(method)
        if handler is None and method != "CANCEL":
            response = make_response(request, 405, to_tag=new_tag())
            response.add("Allow", self.allow)
            tx.respond(response)
            return
        if method != "CANCEL":
            unsupported = self._unsupported(request)
            if unsupported:
                response = make_response(request, 420, to_tag=new_tag())
                response.add("Unsupported", ", ".join(unsupported))
                tx.respond(response)
                return
            if self._would_forward(request) and request.get("max-forwards") == "0":
                tx.respond(make_response(request, 483, to_tag=new_tag()))
                return
        if method == "CANCEL":
            self._cancel(tx, request)
            return
        assert handler is not None
        try:
            handler(tx, request)
        except MessageError as exc:
            tx.respond(make_response(request, exc.status, exc.reason, to_tag=new_tag()))

    def on_ack(self, request: Request, source: Peer) -> None:
        if self.ack_handler is not None:
            self.ack_handler(request, source)

    def on_stray_response(self, response: Response, source: Peer) -> None:
        if self.response_handler is not None:
            self.response_handler(response, source)

    # -- checks and built-in methods ------------------------------------------------

    @property
    def allow(self) -> str:
        return ", ".join(sorted({*self.handlers, "ACK", "CANCEL"}))

    def _unsupported(self, request: Request) -> list[str]:
        required = request.values("require")
        return [option for option in required if option.lower() not in self.supported]

    @staticmethod
    def _would_forward(request: Request) -> bool:
        """Whether the request is for someone else (routed on), not for us.

        REGISTER is for the registrar; an OPTIONS without a user part asks
        the server itself; anything addressed to a user is routed on.
        """
        if request.method == "REGISTER":
            return False
        user = getattr(request.uri, "user", None)
        return user is not None or not hasattr(request.uri, "user")

    def _options(self, tx: ServerTransaction, request: Request) -> None:
        response = make_response(request, 200, to_tag=new_tag())
        response.extend(self._capabilities())
        tx.respond(response)

    def _capabilities(self) -> list[tuple[str, str]]:
        """The headers of a 200 to OPTIONS, rebuilt only when handlers change."""
        key = (tuple(self.handlers), tuple(self.supported))
        if self._capabilities_cache is None or self._capabilities_cache[0] != key:
            lines = [("Allow", self.allow), ("Accept", ACCEPT),
                     ("Accept-Encoding", "identity"), ("Accept-Language", "en")]
            if self.supported:
                lines.append(("Supported", ", ".join(self.supported)))
            lines.append(("Server", self.user_agent))
            self._capabilities_cache = (key, lines)
        return self._capabilities_cache[1]

    def _cancel(self, tx: ServerTransaction, request: Request) -> None:
        invite_tx = self.transactions.find_invite_for_cancel(request)
        if invite_tx is None:
            tx.respond(make_response(request, 481, to_tag=new_tag()))
            return
        tx.respond(make_response(request, 200, to_tag=invite_tx_to_tag(invite_tx)))
        cancel = self.handlers.get("CANCEL")
        if cancel is not None:
            cancel(invite_tx, request)
        elif invite_tx.is_pending:
            # Nobody took the INVITE further: end it (RFC 3261 9.2).
            invite_tx.respond(make_response(invite_tx.request, 487, to_tag=new_tag()))

    # -- graceful stop -----------------------------------------------------------------

    def drain(self, grace: float) -> Deferred[None]:
        """Refuse new requests and fire once the server transactions are done.

        Waits at most `grace` seconds: a transaction still open after that
        (a phone that never ACKs) must not hold the shutdown.
        """
        self.draining = True
        done: Deferred[None] = Deferred()
        deadline = self.clock.seconds() + grace

        def check() -> None:
            # Completed transactions only absorb retransmissions (Timer J
            # keeps them 32 s); the drain waits for those still owed an answer.
            if self.transactions.pending_server_count() == 0 or self.clock.seconds() >= deadline:
                done.callback(None)
            else:
                self.clock.callLater(0.05, check)

        check()
        return done


def invite_tx_to_tag(tx: ServerTransaction) -> str:
    """The To tag the INVITE's responses carry, so the CANCEL's 200 matches it."""
    last = tx.last_response
    if last is not None and last.to_tag:
        return last.to_tag
    return new_tag()
