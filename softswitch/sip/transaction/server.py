"""Server transactions: RFC 3261 17.2 with the Accepted state of RFC 6026.

INVITE (17.2.1, figure 7; RFC 6026 7.1 and 8.5-8.7):

    Proceeding --1xx from TU--> Proceeding (resent on each request retransmission)
    Proceeding --2xx from TU--> Accepted   (Timer L; retransmissions absorbed,
                                            ACKs passed to the TU)
    Proceeding --300-699----->  Completed  (Timer G over UDP, Timer H)
    Completed  --ACK--> Confirmed (Timer I) --Timer I--> Terminated
    Completed  --Timer H--> Terminated (on_timeout)
    Accepted   --Timer L--> Terminated

Non-INVITE (17.2.2, figure 8):

    Trying --1xx--> Proceeding --final--> Completed --Timer J--> Terminated

A transport error ends the transaction (17.2.4), except in Accepted where it
stays to keep absorbing INVITE retransmissions: the dialog layer still owns
the 2xx and may retry it.
"""

from __future__ import annotations

from collections.abc import Callable

from softswitch.sip.message import PackedResponse, Request, Response, make_response, new_tag
from softswitch.sip.peer import Peer, response_peer
from softswitch.sip.transaction.base import Transaction, TransactionContext
from softswitch.sip.transaction.state import (
    INVITE_SERVER,
    NON_INVITE_SERVER,
    TransactionState,
)

_S = TransactionState

ServerKey = tuple[str, ...]
MergeKey = tuple[str, str, int, str]


class ServerTransaction(Transaction):
    """One request received and the responses the TU gives to it.

    The layer creates it and hands it to `TransactionUser.on_request`; the TU
    answers with `respond` (or `reply`). `on_timeout` (Timer H: the ACK never
    came) and `on_transport_error` may be set by the TU to hear about the end.
    """

    __slots__ = ("source", "key", "merge_key", "last_provisional", "final_response",
                 "on_timeout", "on_transport_error")

    def __init__(self, ctx: TransactionContext, request: Request, source: Peer,
                 key: ServerKey, merge_key: MergeKey | None = None) -> None:
        invite = request.method == "INVITE"
        # RFC 3261 18.2.2: computed once from the (stamped) top Via, so that
        # every response and retransmission goes to the same place.
        super().__init__(ctx, request, response_peer(request.top_via, source),
                         _S.PROCEEDING if invite else _S.TRYING,
                         INVITE_SERVER if invite else NON_INVITE_SERVER)
        self.source = source
        self.key = key
        self.merge_key = merge_key
        self.last_provisional: Response | None = None
        self.final_response: Response | None = None
        self.on_timeout: Callable[[], None] | None = None
        self.on_transport_error: Callable[[], None] | None = None
        delay = ctx.timers.trying_delay
        if invite and delay is not None:
            # RFC 3261 17.2.1: answer 100 Trying ourselves unless the TU
            # answers within 200 ms, to quench the client's Timer A.
            self._arm_timer(delay, self._on_trying_timer)

    @property
    def is_pending(self) -> bool:
        """True until a final response has been sent (the TU still owes one)."""
        return self.state is _S.TRYING or self.state is _S.PROCEEDING

    @property
    def last_response(self) -> Response | None:
        """The last response sent: the final one, else the last provisional."""
        return self.final_response if self.final_response is not None else self.last_provisional

    # -- what the TU calls ------------------------------------------------------

    def respond(self, response: Response) -> bool:
        """Send `response` to the request (RFC 3261 17.2.1, 17.2.2, RFC 6026 8.5).

        Returns False when the response was not sent: a response the state
        does not take (a second final, anything but a 2xx in Accepted; the RFC
        says to discard it) or a transport error (which ends the transaction).
        """
        status = response.status
        state = self.state
        if state is _S.TRYING or state is _S.PROCEEDING:
            if status < 200:
                if state is _S.PROCEEDING and self.is_invite:
                    self._cancel_timer()  # the TU answered: no automatic 100
                if not self._send_or_fail(response):
                    return False
                self.last_provisional = response
                if state is _S.TRYING:
                    self._transition(_S.PROCEEDING)
                return True
            if not self._send_or_fail(response):
                return False
            self.final_response = response
            if self.is_invite and status < 300:
                self._transition(_S.ACCEPTED)
            else:
                self._transition(_S.COMPLETED)
            return True
        if state is _S.ACCEPTED and 200 <= status < 300:
            # RFC 6026 8.5: the TU retransmits the 2xx (or sends one for
            # another early dialog) through us; we never do it on our own.
            return self._send_or_fail(response)
        return False

    def reply(self, status: int, reason: str | None = None, *,
              to_tag: str | None = None) -> Response:
        """Build a response with `make_response` and `respond` with it.

        A response other than 100 to a request without a To tag gets `to_tag`,
        or a fresh one (RFC 3261 8.2.6.2).
        """
        if to_tag is None and status > 100 and self.request.to_tag is None:
            to_tag = new_tag()
        response = make_response(self.request, status, reason, to_tag=to_tag)
        self.respond(response)
        return response

    def terminate(self) -> None:
        """End the transaction now (shutdown); no callback is made."""
        if self.state is not _S.TERMINATED:
            self._transition(_S.TERMINATED)

    # -- what the layer calls ---------------------------------------------------

    def _receive_retransmission(self) -> None:
        """The request came again (RFC 3261 17.2.1, 17.2.2): resend our last answer."""
        state = self.state
        if state is _S.COMPLETED:
            assert self.final_response is not None
            self._send_or_fail(self.final_response)
        elif state is _S.PROCEEDING:
            if self.last_provisional is not None:
                self._send_or_fail(self.last_provisional)
            elif self.is_invite and self._ctx.timers.trying_delay is not None:
                # The client's Timer A fired before our 100: send it now.
                self._send_trying()
        # Trying (non-INVITE, 17.2.2: discard), Accepted (RFC 6026 8.7: absorb,
        # the TU must not see it again) and Confirmed: nothing to send.

    def _receive_ack(self) -> bool:
        """An ACK matched this INVITE transaction; True when it is consumed here.

        In Accepted the ACK belongs to the 2xx, hence to the dialog (RFC 6026 8.7).
        """
        state = self.state
        if state is _S.COMPLETED:
            self._transition(_S.CONFIRMED)
            return True
        # Confirmed absorbs ACK retransmissions; an ACK in Proceeding
        # acknowledges nothing we sent and is dropped.
        return state is not _S.ACCEPTED

    # -- timers -------------------------------------------------------------------

    def _on_trying_timer(self) -> None:
        self._timer = None
        if self.state is _S.PROCEEDING and self.last_provisional is None:
            self._send_trying()

    def _send_trying(self) -> None:
        self._cancel_timer()
        trying = make_response(self.request, 100)
        if self._send_or_fail(trying):
            self.last_provisional = trying

    def _on_timer_g(self) -> None:
        # RFC 3261 17.2.1: resend the non-2xx final, doubling up to T2.
        self._retransmit = None
        if self.state is not _S.COMPLETED:
            return
        assert self.final_response is not None
        delay = self._next_retransmit_delay()
        if delay is None:
            return  # 64*T1 is over: Timer H ends the transaction
        self._ctx.counts.retransmitted += 1
        if self._send_or_fail(self.final_response):
            self._arm_retransmit(delay, self._on_timer_g)

    def _on_timer_h(self) -> None:
        # The ACK never came: the client is gone (RFC 3261 17.2.1).
        self._timer = None
        if self.state is _S.COMPLETED:
            self._transition(_S.TERMINATED)
            if self.on_timeout is not None:
                self.on_timeout()

    def _on_wait_over(self) -> None:
        # Timers I, J and L: the absorbing states end quietly.
        self._timer = None
        if self.state is not _S.TERMINATED:
            self._transition(_S.TERMINATED)

    # -- the one place where the state changes ------------------------------------

    def _transition(self, new: TransactionState) -> None:
        self._check(new)
        self.state = new
        self._cancel_timers()
        timers = self._ctx.timers
        reliable = self.peer.reliable
        if new is _S.COMPLETED:
            if self.is_invite:
                if not reliable:
                    self._start_retransmit(self._on_timer_g)
                self._arm_timer(timers.h, self._on_timer_h)
            else:
                self._pack()
                self._wait(timers.j(reliable))
        elif new is _S.CONFIRMED:
            self._wait(timers.i(reliable))
        elif new is _S.ACCEPTED:
            self._wait(timers.l)
        elif new is _S.TERMINATED:
            self._ctx.release(self)
        # Proceeding (non-INVITE, from Trying) arms nothing.

    def _pack(self) -> None:
        """Keep only what answering retransmissions needs (see PackedResponse)."""
        if self.final_response is not None:
            self.final_response = PackedResponse(self.final_response)
        self.last_provisional = None
        request = self.request
        self.request = Request(request.method, request.uri, [["Call-ID", request.call_id]])

    def _wait(self, delay: float) -> None:
        # Over a reliable transport I and J are zero: end at once rather than
        # after a trip through the reactor.
        if delay > 0:
            self._arm_timer(delay, self._on_wait_over)
        else:
            self._transition(_S.TERMINATED)

    def _send_or_fail(self, response: Response) -> bool:
        if self._transmit(response):
            return True
        if self.state is not _S.ACCEPTED:
            self._transition(_S.TERMINATED)
        if self.on_transport_error is not None:
            self.on_transport_error()
        return False
