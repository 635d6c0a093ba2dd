"""The transaction layer: matching messages to transactions (RFC 3261 17).

Requests are matched to server transactions by RFC 3261 17.2.3 (branch with
the magic cookie, sent-by, method; ACK to its INVITE; CANCEL on its own),
with the RFC 2543 fallback for branches without the cookie; responses to
client transactions by 17.1.3 (branch and CSeq method). Requests merged on
their way to us (8.2.2.2) get 482 here. What no transaction takes goes to
the `TransactionUser`.

Transactions live in two dicts keyed by tuples, and leave them when they
reach Terminated.
"""

from __future__ import annotations

from typing import Protocol

from softswitch.sip.message import Request, Response, make_response, new_branch, new_tag
from softswitch.sip.peer import Peer, stamp_via
from softswitch.sip.transaction.base import (
    Send,
    Transaction,
    TransactionContext,
    TransactionCounts,
)
from softswitch.sip.transaction.client import ClientKey, ClientTransaction, OnEvent, OnResponse
from softswitch.sip.transaction.server import MergeKey, ServerKey, ServerTransaction
from softswitch.sip.transaction.timers import DEFAULT_TIMERS, Clock, TimerSettings

MAGIC_COOKIE = "z9hG4bK"


class TransactionUser(Protocol):
    """The TU above the layer: the server core, the dialog layer, the B2BUA."""

    def on_request(self, tx: ServerTransaction, request: Request) -> None:
        """A new request (never an ACK) with its server transaction, to be answered."""

    def on_ack(self, request: Request, source: Peer) -> None:
        """An ACK no transaction consumed: for a 2xx (RFC 6026 8.7), or stray."""

    def on_stray_response(self, response: Response, source: Peer) -> None:
        """A response no client transaction matched (e.g. a 2xx after Timer M)."""


def server_key(request: Request, method: str) -> ServerKey:
    """The key of the server transaction `request` belongs to (RFC 3261 17.2.3).

    `method` is the request's own, except INVITE for an ACK or for finding
    the INVITE a CANCEL cancels.
    """
    via = request.top_via
    branch = via.branch or ""
    host = via.host.lower()
    sent_by = host if via.port is None else f"{host}:{via.port}"
    if branch.startswith(MAGIC_COOKIE):
        return (branch, sent_by, method)
    # RFC 2543 peers: Request-URI, From tag, Call-ID, CSeq and top Via,
    # loosely: the To tag is left out, since the ACK's carries our tag and
    # the INVITE's none. The leading "" keeps these apart from cookie keys.
    return ("", str(request.uri), request.from_tag or "", request.call_id,
            str(request.cseq.seq), method, sent_by, branch)


def ensure_branch(request: Request) -> str:
    """The branch of the top Via of `request`, after adding a fresh one if it had none."""
    via = request.top_via
    branch = via.branch
    if branch:
        return branch
    branch = new_branch()
    via.params["branch"] = branch
    request.pop_first_value("via")
    request.add("Via", str(via), first=True)
    return branch


class TransactionLayer:
    """All client and server transactions of one SIP element.

    `send(message, peer)` hands a message to the transport and may raise
    `TransportError`; `clock` is the reactor (or a `task.Clock` in tests).
    """

    __slots__ = ("user", "_ctx", "_servers", "_clients", "_merge")

    def __init__(self, clock: Clock, send: Send, timers: TimerSettings = DEFAULT_TIMERS,
                 user: TransactionUser | None = None) -> None:
        # `user` may be set after construction: the TU usually needs the
        # layer to be built first.
        self.user: TransactionUser | None = user
        self._ctx = TransactionContext(clock, send, timers, self._release)
        self._servers: dict[ServerKey, ServerTransaction] = {}
        self._clients: dict[ClientKey, ClientTransaction] = {}
        # 8.2.2.2: ongoing transactions of requests without a To tag, by
        # From tag, Call-ID and CSeq.
        self._merge: dict[MergeKey, ServerTransaction] = {}

    @property
    def timers(self) -> TimerSettings:
        return self._ctx.timers

    def _tu(self) -> TransactionUser:
        if self.user is None:
            raise RuntimeError("TransactionLayer.user is not set")
        return self.user

    # -- incoming ---------------------------------------------------------------

    def receive_request(self, request: Request, source: Peer) -> None:
        """Take a request from the transport (RFC 3261 17.2.3, 8.2.2.2)."""
        user = self._tu()
        stamp_via(request, source)
        method = request.method
        if method == "ACK":
            invite_tx = self._servers.get(server_key(request, "INVITE"))
            if invite_tx is None or not invite_tx._receive_ack():
                user.on_ack(request, source)
            return
        key = server_key(request, method)
        tx = self._servers.get(key)
        if tx is not None:
            self._ctx.counts.absorbed += 1
            tx._receive_retransmission()
            return
        merge_key: MergeKey | None = None
        from_tag = request.from_tag
        if from_tag is not None and request.to_tag is None:
            cseq = request.cseq
            merge_key = (from_tag, request.call_id, cseq.seq, cseq.method)
            if merge_key in self._merge:
                # The same request reached us by two paths: answer the copy
                # 482 ourselves, through a transaction of its own so that its
                # retransmissions are absorbed.
                loop_tx = ServerTransaction(self._ctx, request, source, key)
                self._servers[key] = loop_tx
                loop_tx.respond(make_response(request, 482, to_tag=new_tag()))
                return
        tx = ServerTransaction(self._ctx, request, source, key, merge_key)
        self._ctx.counts.server += 1
        self._servers[key] = tx
        if merge_key is not None:
            self._merge[merge_key] = tx
        user.on_request(tx, request)

    def receive_response(self, response: Response, source: Peer) -> None:
        """Take a response from the transport (RFC 3261 17.1.3)."""
        branch = response.top_via.branch
        tx = self._clients.get((branch, response.cseq.method)) if branch else None
        if tx is None:
            self._tu().on_stray_response(response, source)
        else:
            tx._receive_response(response)

    def find_invite_for_cancel(self, cancel: Request) -> ServerTransaction | None:
        """The INVITE server transaction a received CANCEL targets (RFC 3261 9.2, 17.2.3)."""
        return self._servers.get(server_key(cancel, "INVITE"))

    # -- outgoing -----------------------------------------------------------------

    def send_request(self, request: Request, peer: Peer, on_response: OnResponse,
                     on_timeout: OnEvent | None = None,
                     on_transport_error: OnEvent | None = None) -> ClientTransaction:
        """Send `request` to `peer` in a new client transaction (RFC 3261 17.1).

        The caller builds the top Via (its sent-by is the transport's); a
        missing branch is added here. ACKs never use a transaction: an ACK for
        a 2xx goes straight to `send`, one for a non-2xx is ours to send.
        """
        if request.method == "ACK":
            raise ValueError("an ACK is sent without a client transaction")
        key = (ensure_branch(request), request.method)
        if key in self._clients:
            raise ValueError(f"branch {key[0]} is already in use for {key[1]}")
        tx = ClientTransaction(self._ctx, request, peer, key, on_response, on_timeout,
                               on_transport_error)
        self._clients[key] = tx
        self._ctx.counts.client += 1
        tx._start()
        return tx

    def connection_failed(self, peer: Peer) -> None:
        """A connection to `peer` failed after `send` returned (RFC 3261 17.1.4).

        Twisted connects in the background, so a refused TCP connection shows
        up later than `send`: the transport calls this, and every client
        transaction to that address still waiting for its final response ends
        with a transport error, rather than at Timer B/F 32 s later. Rare
        enough for a scan of the table.
        """
        target = (peer.transport, peer.host, peer.port)
        for tx in list(self._clients.values()):
            if (tx.peer.transport, tx.peer.host, tx.peer.port) == target:
                tx._transport_failed()

    # -- bookkeeping --------------------------------------------------------------

    @property
    def counts(self) -> TransactionCounts:
        """Transactions made and retransmissions, since start (for metrics)."""
        return self._ctx.counts

    def active_server_count(self) -> int:
        return len(self._servers)

    def pending_server_count(self) -> int:
        """Server transactions still owed a final response (what a drain waits for)."""
        return sum(1 for tx in self._servers.values() if tx.is_pending)

    def active_client_count(self) -> int:
        return len(self._clients)

    def terminate_all(self) -> None:
        """End every transaction at once, without callbacks (shutdown)."""
        for server in list(self._servers.values()):
            server.terminate()
        for client in list(self._clients.values()):
            client.terminate()

    def _release(self, tx: Transaction) -> None:
        if isinstance(tx, ServerTransaction):
            if self._servers.get(tx.key) is tx:
                del self._servers[tx.key]
            if tx.merge_key is not None and self._merge.get(tx.merge_key) is tx:
                del self._merge[tx.merge_key]
        elif isinstance(tx, ClientTransaction):
            if self._clients.get(tx.key) is tx:
                del self._clients[tx.key]
