"""Client transactions: RFC 3261 17.1 with the Accepted state of RFC 6026.

INVITE (17.1.1, figure 5; RFC 6026 7.2):

    Calling    --Timer A (UDP only, doubling)--> resend the INVITE
    Calling    --1xx--> Proceeding   (no more retransmissions, no Timer B)
    Calling/Proceeding --2xx--> Accepted (Timer M; every 2xx goes to the TU,
                                          which ACKs it through the dialog)
    Calling/Proceeding --300-699--> Completed (we send the ACK; Timer D;
                                               retransmitted finals re-ACKed)
    Calling    --Timer B--> Terminated (on_timeout)

Non-INVITE (17.1.2, figure 6):

    Trying --1xx--> Proceeding --final--> Completed --Timer K--> Terminated
    Timer E resends the request (doubling up to T2, then every T2 once a
    provisional came); Timer F ends it with on_timeout.

A transport error before the final response ends the transaction with
on_transport_error (RFC 3261 17.1.4); after it, the TU already has its answer
and the transaction ends quietly.
"""

from __future__ import annotations

from collections.abc import Callable

from softswitch.sip.headers import header_key
from softswitch.sip.message import Request, Response, make_response
from softswitch.sip.peer import Peer
from softswitch.sip.transaction.base import Transaction, TransactionContext
from softswitch.sip.transaction.state import (
    INVITE_CLIENT,
    NON_INVITE_CLIENT,
    TransactionState,
)
from softswitch.sip.uri import SipURI

_S = TransactionState

ClientKey = tuple[str, str]
OnResponse = Callable[[Response], None]
OnEvent = Callable[[], None]


def _derived_request(request: Request, method: str) -> Request:
    """A request to the same Request-URI with Call-ID, From, the single top Via,
    Route and Max-Forwards of `request`, and CSeq number with `method`."""
    uri = request.uri.copy() if isinstance(request.uri, SipURI) else request.uri
    headers: list[list[str]] = [["Via", request.values("via")[0]]]
    for name, value in request.headers:
        key = header_key(name)
        if key in ("from", "call-id", "route", "max-forwards"):
            headers.append([name, value])
    if not any(header_key(name) == "max-forwards" for name, _ in headers):
        headers.append(["Max-Forwards", "70"])
    headers.append(["CSeq", f"{request.cseq.seq} {method}"])
    return Request(method, uri, headers)


def make_ack(invite: Request, response: Response) -> Request:
    """The ACK for a 300-699 response to `invite` (RFC 3261 17.1.1.3).

    Same Request-URI, Call-ID, From, CSeq number, top Via and Route headers
    as the INVITE; To from the response, so it carries the tag of the UAS.
    """
    ack = _derived_request(invite, "ACK")
    ack.headers.append(["To", response.get("to") or invite.get("to") or ""])
    ack.headers.append(["Content-Length", "0"])
    return ack


def make_cancel(invite: Request) -> Request:
    """The CANCEL of `invite` (RFC 3261 9.1).

    Same Request-URI, Call-ID, From, To, CSeq number, the single top Via
    (hence the same branch, by which the server matches it, 17.2.3) and
    Route headers as the INVITE.
    """
    cancel = _derived_request(invite, "CANCEL")
    cancel.headers.append(["To", invite.get("to") or ""])
    cancel.headers.append(["Content-Length", "0"])
    return cancel


class ClientTransaction(Transaction):
    """One request sent and the responses that come back to it.

    `on_timeout` defaults to handing the TU a local 408 (RFC 3261 8.1.3.1)
    and `on_transport_error` a local 503 (8.1.3.1, 17.1.4), both through
    `on_response`, so a TU that only cares about responses still hears of it.
    """

    __slots__ = ("key", "on_response", "on_timeout", "on_transport_error", "ack",
                 "final_response")

    def __init__(self, ctx: TransactionContext, request: Request, peer: Peer,
                 key: ClientKey, on_response: OnResponse,
                 on_timeout: OnEvent | None = None,
                 on_transport_error: OnEvent | None = None) -> None:
        invite = request.method == "INVITE"
        super().__init__(ctx, request, peer,
                         _S.CALLING if invite else _S.TRYING,
                         INVITE_CLIENT if invite else NON_INVITE_CLIENT)
        self.key = key
        self.on_response = on_response
        self.on_timeout = on_timeout
        self.on_transport_error = on_transport_error
        self.ack: Request | None = None  # the ACK we sent for a non-2xx final
        self.final_response: Response | None = None

    def _start(self) -> None:
        """Send the request and arm A/B or E/F (RFC 3261 17.1.1.2, 17.1.2.2)."""
        timers = self._ctx.timers
        if not self.peer.reliable:
            # Timer A doubles without a cap (17.1.1.2), Timer E up to T2 (17.1.2.2).
            self._start_retransmit(self._on_retransmit_timer, capped=not self.is_invite)
        self._arm_timer(timers.b if self.is_invite else timers.f, self._on_timeout_timer)
        if not self._transmit(self.request):
            self._transition(_S.TERMINATED)
            # Reported on the next turn of the clock: the caller of
            # send_request has not even got the transaction back yet.
            self._ctx.clock.callLater(0, self._report_transport_error)

    # -- what the TU calls --------------------------------------------------------

    def cancel_sent(self) -> None:
        """Note that the TU sent a CANCEL for this INVITE (RFC 3261 9.1).

        In Proceeding no timer runs; if no final response comes within 64*T1
        from now, the transaction ends and reports a timeout.
        """
        if self.state is _S.PROCEEDING and self.is_invite:
            self._arm_timer(self._ctx.timers.b, self._on_timeout_timer)

    def terminate(self) -> None:
        """End the transaction now (shutdown); no callback is made."""
        if self.state is not _S.TERMINATED:
            self._transition(_S.TERMINATED)

    # -- what the layer calls -----------------------------------------------------

    def _receive_response(self, response: Response) -> None:
        status = response.status
        state = self.state
        if state is _S.CALLING or state is _S.TRYING or state is _S.PROCEEDING:
            if status < 200:
                if state is not _S.PROCEEDING:
                    self._transition(_S.PROCEEDING)
            elif not self.is_invite:
                self.final_response = response
                self._transition(_S.COMPLETED)
            elif status < 300:
                self.final_response = response
                self._transition(_S.ACCEPTED)
            else:
                self.final_response = response
                self.ack = make_ack(self.request, response)
                # Without the ACK the server keeps resending; the TU has its
                # answer either way, so a failed ACK just ends us quietly.
                self._transition(_S.COMPLETED if self._transmit(self.ack) else _S.TERMINATED)
            self.on_response(response)
        elif state is _S.COMPLETED:
            # 17.1.1.2: a retransmitted non-2xx final is ACKed again and not
            # passed up; non-INVITE retransmissions are just absorbed.
            if self.ack is not None and status >= 300 and not self._transmit(self.ack):
                self._transition(_S.TERMINATED)
        elif state is _S.ACCEPTED and 200 <= status < 300:
            # RFC 6026 7.2: each 2xx, retransmitted or from another fork,
            # goes to the TU, whose dialog ACKs it.
            self.on_response(response)

    # -- timers -------------------------------------------------------------------

    def _on_retransmit_timer(self) -> None:
        # Timers A (17.1.1.2: doubling, no cap) and E (17.1.2.2: doubling up
        # to T2, then T2 once a provisional arrived).
        self._retransmit = None
        state = self.state
        interval: float | None
        if state is _S.CALLING or state is _S.TRYING:
            interval = self._next_retransmit_delay()
            if interval is None:
                return  # 64*T1 is over: Timer B or F ends the transaction
        elif state is _S.PROCEEDING and not self.is_invite:
            interval = self._ctx.timers.t2
        else:
            return
        self._ctx.counts.retransmitted += 1
        if self._transmit(self.request):
            self._arm_retransmit(interval, self._on_retransmit_timer)
        else:
            self._transport_failed()

    def _on_timeout_timer(self) -> None:
        # Timers B and F, and the 64*T1 after a CANCEL (9.1).
        self._timer = None
        if self.state in (_S.CALLING, _S.TRYING, _S.PROCEEDING):
            self._transition(_S.TERMINATED)
            if self.on_timeout is not None:
                self.on_timeout()
            else:
                self.on_response(make_response(self.request, 408))

    def _on_wait_over(self) -> None:
        # Timers D, K and M.
        self._timer = None
        if self.state is not _S.TERMINATED:
            self._transition(_S.TERMINATED)

    def _transport_failed(self) -> None:
        """The transport lost the request (RFC 3261 17.1.4): end and tell the TU.

        Only while the TU still waits for a final response; Completed and
        Accepted only absorb what comes back and carry on.
        """
        if self.state in (_S.CALLING, _S.TRYING, _S.PROCEEDING):
            self._transition(_S.TERMINATED)
            self._report_transport_error()

    def _report_transport_error(self) -> None:
        if self.on_transport_error is not None:
            self.on_transport_error()
        else:
            self.on_response(make_response(self.request, 503))

    # -- the one place where the state changes ------------------------------------

    def _transition(self, new: TransactionState) -> None:
        self._check(new)
        self.state = new
        timers = self._ctx.timers
        reliable = self.peer.reliable
        if new is _S.PROCEEDING:
            if self.is_invite:
                # 17.1.1.2: stop resending, and Timer B no longer applies:
                # how long to ring is the TU's call (CANCEL, Timer C).
                self._cancel_timers()
            # Non-INVITE: Timers E and F keep running.
            return
        self._cancel_timers()
        if new is _S.COMPLETED:
            self._wait(timers.d(reliable) if self.is_invite else timers.k(reliable))
        elif new is _S.ACCEPTED:
            self._wait(timers.m)
        elif new is _S.TERMINATED:
            self._ctx.release(self)

    def _wait(self, delay: float) -> None:
        # Over a reliable transport D and K are zero: end at once.
        if delay > 0:
            self._arm_timer(delay, self._on_wait_over)
        else:
            self._transition(_S.TERMINATED)
