"""A call as the B2BUA keeps it: an A-leg, its B-legs, and where it stands.

The call's state is an explicit enum with one transition method; the legs
hold their dialogs and transactions. This is also what the CLI will show and
what the call store persists once a call is answered.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from typing import Any

from softswitch.cdr import Disposition
from softswitch.sip.dialog import Dialog
from softswitch.sip.message import Request, Response
from softswitch.sip.peer import Peer
from softswitch.sip.transaction import ClientTransaction, ServerTransaction


class CallState(enum.Enum):
    ROUTING = "routing"  # running the dialplan, no B-leg yet
    DIALING = "dialing"  # B-legs sent, none answered
    ANSWERED = "answered"  # 2xx sent to the caller, waiting for its ACK
    CONFIRMED = "confirmed"  # both legs up
    ENDED = "ended"


_TRANSITIONS: dict[CallState, frozenset[CallState]] = {
    CallState.ROUTING: frozenset({CallState.DIALING, CallState.ENDED}),
    CallState.DIALING: frozenset({CallState.ROUTING, CallState.ANSWERED, CallState.ENDED}),
    CallState.ANSWERED: frozenset({CallState.CONFIRMED, CallState.ENDED}),
    CallState.CONFIRMED: frozenset({CallState.ENDED}),
    CallState.ENDED: frozenset(),
}


@dataclass(slots=True, eq=False)
class ALeg:
    """The caller's side: we are the UAS.

    A call restored after a restart has its dialog but neither the INVITE nor
    its transaction: only what happens after the answer applies to it.
    """

    initial: Request | None
    server_tx: ServerTransaction | None
    source: Peer
    local_tag: str
    dialog: Dialog | None = None
    final: Response | None = None  # the final response we sent
    retransmit: Any = None  # the 2xx retransmission timer (13.3.1.4)

    @property
    def invite(self) -> Request:
        assert self.initial is not None, "a restored call has no INVITE"
        return self.initial

    @property
    def tx(self) -> ServerTransaction:
        assert self.server_tx is not None, "a restored call has no INVITE transaction"
        return self.server_tx


@dataclass(slots=True, eq=False)
class BLeg:
    """One B-leg: an INVITE we sent to one contact; we are the UAC.

    `invite` is None only for a call restored after a restart.
    """

    invite: Request | None
    peer: Peer
    target: str  # what the dialplan dialled, for the CDR: user/1002, trunk/...
    tx: ClientTransaction | None = None
    dialog: Dialog | None = None  # the confirmed dialog once it answered
    early: dict[str, Dialog] = field(default_factory=dict)  # by To tag
    final_status: int | None = None
    cancelled: bool = False
    answer_2xx: Response | None = None  # held until the caller's ACK (ACK relay)
    ack: Request | None = None  # our ACK to its 2xx, resent on 2xx retransmissions
    got_provisional: bool = False
    cancel_pending: bool = False  # RFC 3261 9.1: CANCEL waits for a provisional
    cancel_reason: Any = None
    trunk: str | None = None  # the trunk it goes out on, whose credentials answer a 401/407
    auth_tries: int = 0
    session_retries: int = 0  # INVITEs sent again after a 422 (RFC 4028 6)
    alternates: list[Peer] = field(default_factory=list)  # RFC 3263 targets left to try


@dataclass(slots=True, eq=False)
class Call:
    a: ALeg
    caller: str
    caller_name: str | None
    dialled: str
    context: str
    trunk: str | None = None
    uuid: str = field(default_factory=lambda: uuid.uuid4().hex)
    state: CallState = CallState.ROUTING
    b_legs: list[BLeg] = field(default_factory=list)
    winner: BLeg | None = None
    callee: str | None = None
    started: float = 0.0
    answered: float | None = None
    ended: float | None = None
    b_codes: list[int] = field(default_factory=list)
    hangup_cause: str = ""
    hangup_side: str = ""
    disposition: Disposition | None = None
    variables: dict[str, str] = field(default_factory=dict)
    plan: Any = None  # the dialplan in force when the call started
    facts: Any = None
    timers: list[Any] = field(default_factory=list)
    queue: Any = None  # the dialplan actions still to run
    a_session: Any = None  # the A-leg's RFC 4028 negotiation (UasNegotiation)
    session_timers: dict[str, Any] = field(default_factory=dict)  # "a"/"b" -> SessionTimer
    sdp_to: dict[str, bytes] = field(default_factory=dict)  # last SDP we sent each side
    last_failure: tuple[int, str] = (404, "Not Found")
    # How the last dial ended, for the CDR: the branch a failure runs (a
    # voicemail placeholder, a hangup) does not change that the callee was busy.
    dial_result: tuple[Disposition, str] | None = None  # (disposition, hangup side)
    transfer: Any = None  # the BlindTransfer in progress, if any
    reliable: Any = None  # ReliableProvisionals towards the caller (RFC 3262)

    @property
    def call_id(self) -> str:
        """The caller's Call-ID: what logs and the CDR name the call by."""
        if self.a.initial is not None:
            return self.a.initial.call_id
        assert self.a.dialog is not None
        return self.a.dialog.call_id

    def transition(self, new: CallState) -> None:
        if new is self.state:
            return
        if new not in _TRANSITIONS[self.state]:
            raise RuntimeError(f"call {self.uuid}: {self.state.value} cannot become {new.value}")
        self.state = new

    @property
    def live_b_legs(self) -> list[BLeg]:
        return [b for b in self.b_legs if b.final_status is None and not b.cancelled]

    def other_dialog(self, dialog: Dialog) -> Dialog | None:
        """The dialog on the other side of `dialog` in this call."""
        b = self.winner.dialog if self.winner is not None else None
        if dialog is self.a.dialog:
            return b
        if dialog is b:
            return self.a.dialog
        return None

    def side_of(self, dialog: Dialog) -> str:
        return "caller" if dialog is self.a.dialog else "callee"
