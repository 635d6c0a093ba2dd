"""The SIP core: from framed bytes to the transaction layer to a handler.

`SipCore` is the transaction user of RFC 3261 section 17: it parses what the
transports deliver, answers what cannot be parsed (400/505/513, when the
sender's Via can be read), passes requests and responses through the
transaction layer, applies the checks every request gets (RFC 3261 8.2:
method, Require, Max-Forwards), and hands the request to the handler routed
for its method (`route`), inside or outside a dialog: OPTIONS here; REGISTER
in the registrar; INVITE and dialogs in the B2BUA. ACKs and responses no
transaction took go along chains of handlers; observers (`add_observer`)
see every message received and sent, retransmissions included.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from twisted.internet.defer import Deferred

from softswitch.logs import get_logger, message_fields
from softswitch.overload_gate import OverloadGate
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
AckHandler = Callable[[Request, Peer], bool]
StrayResponseHandler = Callable[[Response, Peer], bool]

ACCEPT = "application/sdp"


class MessageObserver(Protocol):
    """Sees every message the core receives (parsed) and sends, e.g. a ladder recorder.

    Called on the wire side of the transaction layer, so retransmissions are
    seen too. An observer must not change the message; one that raises is
    logged once and otherwise ignored.
    """

    def message_received(self, message: Request | Response, peer: Peer, now: float) -> None: ...

    def message_sent(self, message: Request | Response, peer: Peer, now: float) -> None: ...


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
        # method -> {in_dialog: handler}, as routed, and the handler to use
        # for requests without and with a To tag, derived from it.
        self._routes: dict[str, dict[bool | None, Handler]] = {}
        self._dispatch: dict[str, tuple[Handler | None, Handler | None]] = {}
        self.supported: list[str] = []
        self._ack_handlers: list[AckHandler] = []
        self._stray_response_handlers: list[StrayResponseHandler] = []
        self._observers: list[MessageObserver] = []
        self._failed_observers: set[int] = set()  # id() of those already logged
        self.draining = False
        self._log_messages: bool | None = None
        self._capabilities_cache: tuple[object, list[tuple[str, str]]] | None = None
        self.stats = {"received": 0, "sent": 0, "malformed": 0}
        # Set by the overload monitor; consulted only while it sheds load.
        self.overload: OverloadGate | None = None
        self.route("OPTIONS", self._options)

    # -- what the other parts register ---------------------------------------------

    def route(self, method: str, handler: Handler, *, in_dialog: bool | None = None) -> None:
        """Hand requests of `method` to `handler`.

        `in_dialog=True` takes only requests with a To tag (RFC 3261 12.2),
        False only those without, None both; a route for True or False wins
        over the None route of the same method. Routing a method again for
        the same `in_dialog` replaces the handler. Every routed method is
        listed in Allow. A routed method with no handler for the request's
        side is answered 481 (no such dialog). CANCEL is matched to its
        INVITE here and the CANCEL route, if any, gets the INVITE transaction.
        """
        routes = self._routes.setdefault(method, {})
        routes[in_dialog] = handler
        default = routes.get(None)
        self._dispatch[method] = (routes.get(False, default), routes.get(True, default))

    def add_ack_handler(self, handler: AckHandler) -> None:
        """Offer ACKs no transaction consumed (for a 2xx, RFC 6026 8.7) to `handler`.

        Handlers are tried in the order added until one returns True.
        """
        self._ack_handlers.append(handler)

    def add_stray_response_handler(self, handler: StrayResponseHandler) -> None:
        """Offer responses no client transaction matched to `handler`.

        E.g. a 2xx retransmitted after Timer M; tried in order until one
        returns True.
        """
        self._stray_response_handlers.append(handler)

    def add_observer(self, observer: MessageObserver) -> None:
        """Show `observer` every parsed message received and every message sent."""
        self._observers.append(observer)

    # -- what the transports call ------------------------------------------------

    def receive(self, data: bytes, peer: Peer, datagram: bool = True) -> None:
        self.stats["received"] += 1
        gate = self.overload
        parsed: Request | None = None
        if gate is not None and gate.shedding:
            handled, parsed = gate.screen(data, peer, datagram)
            if handled:
                return
        try:
            message = parsed or parse_message(data, self.limits, datagram=datagram)
        except MessageError as exc:
            self._malformed(data, peer, exc)
            return
        if self.log_messages:
            self.log.debug("sip_in", **message_fields(message, peer))
        if self._observers:
            # Before the transaction layer, so that a ladder shows the
            # request ahead of the responses its handler sends at once.
            self._notify(message, peer, received=True)
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
        if self.overload is not None and isinstance(message, Response):
            self.overload.annotate(message)  # RFC 7339 oc, for clients that ask
        if self.log_messages:
            self.log.debug("sip_out", **message_fields(message, peer))
        if self._observers:
            self._notify(message, peer, received=False)
        self._send(message, peer)

    def _notify(self, message: Request | Response, peer: Peer, *, received: bool) -> None:
        now = self.clock.seconds()
        for observer in self._observers:
            try:
                if received:
                    observer.message_received(message, peer, now)
                else:
                    observer.message_sent(message, peer, now)
            except Exception:  # noqa: BLE001 - an observer must not stop signalling
                # Logged once per observer: a broken recorder under load
                # would otherwise flood the log with one trace per message.
                if id(observer) not in self._failed_observers:
                    self._failed_observers.add(id(observer))
                    self.log.exception("sip_observer_failed", observer=repr(observer))

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
        dispatch = self._dispatch.get(method)
        if dispatch is None and method != "CANCEL":
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
        assert dispatch is not None
        handler = _pick(dispatch, request)
        if handler is None:
            # Routed, but not on this side of a dialog: e.g. a BYE without
            # a To tag, or with one when only new requests are taken.
            tx.respond(make_response(request, 481, to_tag=new_tag()))
            return
        try:
            handler(tx, request)
        except MessageError as exc:
            tx.respond(make_response(request, exc.status, exc.reason, to_tag=new_tag()))

    def on_ack(self, request: Request, source: Peer) -> None:
        for handler in self._ack_handlers:
            if handler(request, source):
                return

    def on_stray_response(self, response: Response, source: Peer) -> None:
        for handler in self._stray_response_handlers:
            if handler(response, source):
                return

    # -- checks and built-in methods ------------------------------------------------

    @property
    def allow(self) -> str:
        return ", ".join(sorted({*self._routes, "ACK", "CANCEL"}))

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
        """The headers of a 200 to OPTIONS, rebuilt only when routes change."""
        key = (tuple(self._routes), tuple(self.supported))
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
        dispatch = self._dispatch.get("CANCEL")
        cancel = _pick(dispatch, request) if dispatch is not None else None
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


def _pick(dispatch: tuple[Handler | None, Handler | None], request: Request) -> Handler | None:
    """The handler for `request` from its method's (outside, inside a dialog) pair."""
    outside, inside = dispatch
    # Only look at the To tag when the two sides differ: parsing To is work
    # the common case (one route for both) does not need.
    if outside is inside:
        return outside
    return inside if request.to_tag is not None else outside


def invite_tx_to_tag(tx: ServerTransaction) -> str:
    """The To tag the INVITE's responses carry, so the CANCEL's 200 matches it."""
    last = tx.last_response
    if last is not None and last.to_tag:
        return last.to_tag
    return new_tag()
