"""The legs of a call: one identity each, explicit states, one transition table.

A leg is one dialog (or would-be dialog) of the B2BUA with one party: the
caller's (we are its UAS), each fork we ring (we are UAC), a transfer
target, a party that replaced another. `LegId` names it everywhere (the
media side, CDRs, the call inspection): the Call-ID and our tag, the
remote tag once known, and for a fork the branch of its first INVITE, as
rtpengine names a leg by Call-ID, from-tag, to-tag and via-branch.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from softswitch.b2bua.session_timer import SessionTimer
from softswitch.b2bua.targets import Destination
from softswitch.sip.dialog import Dialog, Reason
from softswitch.sip.message import Request, Response
from softswitch.sip.peer import Peer


@dataclass(frozen=True, slots=True)
class LegId:
    call_id: str
    local_tag: str
    remote_tag: str = ""
    branch: str = ""

    def __str__(self) -> str:
        return f"{self.call_id};{self.local_tag}"


class LegState(enum.Enum):
    INCOMING = "incoming"  # the caller's INVITE, not answered yet
    CALLING = "calling"  # our INVITE is out (or waits for its SDP), nothing back
    EARLY = "early"  # a provisional came back (or was sent, on the caller's side)
    ANSWERED = "answered"  # 2xx sent, its ACK not yet here (caller); 2xx held (callee)
    CONFIRMED = "confirmed"
    CANCELLING = "cancelling"  # CANCEL sent or waiting for a provisional (RFC 3261 9.1)
    ENDED = "ended"


_S = LegState
TRANSITIONS: dict[LegState, frozenset[LegState]] = {
    _S.INCOMING: frozenset({_S.EARLY, _S.ANSWERED, _S.CONFIRMED, _S.ENDED}),
    _S.CALLING: frozenset({_S.EARLY, _S.ANSWERED, _S.CONFIRMED, _S.CANCELLING, _S.ENDED}),
    _S.EARLY: frozenset({_S.ANSWERED, _S.CONFIRMED, _S.CANCELLING, _S.ENDED}),
    _S.ANSWERED: frozenset({_S.CONFIRMED, _S.ENDED}),
    _S.CONFIRMED: frozenset({_S.ENDED}),
    _S.CANCELLING: frozenset({_S.ENDED}),
    _S.ENDED: frozenset(),
}


class LegStateError(RuntimeError):
    pass


@dataclass(slots=True, eq=False)
class Leg:
    """One leg. `invite` is the INVITE that made it (ours for a callee, theirs for a caller)."""

    name: str  # unique in the call: "a", "b1", "b2", "t1"... (timer names use it)
    caller_side: bool  # the party called us: we are the UAS of its dialog
    target: str  # for logs and CDRs: user/1002, trunk/provider/+1555, the caller's user
    peer: Peer
    id: LegId
    state: LegState
    invite: Request | None = None
    invite_ref: int | None = None  # our INVITE's ref (callee legs), for CANCEL
    dialog: Dialog | None = None
    early: dict[str, Dialog] = field(default_factory=dict)  # callee's early dialogs by To tag
    destination: Destination | None = None
    final_status: int | None = None
    answer_2xx: Response | None = None  # the callee's 2xx (our ACK may wait for the caller's)
    ack: Request | None = None  # our ACK to that 2xx, resent on its retransmissions
    got_provisional: bool = False
    cancel_reason: Reason | None = None
    cancel_sent: bool = False  # one CANCEL per leg, whatever provisionals follow
    auth_tries: int = 0
    session_retries: int = 0
    alternates: list[Peer] = field(default_factory=list)
    sdp_sent: bytes = b""  # the last SDP we sent this party
    session: SessionTimer | None = None
    allows: frozenset[str] = frozenset()  # methods the party allows (RFC 3261 20.5)
    attempt: int = 0  # the dial attempt it belongs to (callee legs)

    def move(self, new: LegState) -> None:
        """The one place a leg's state changes."""
        if new is self.state:
            return
        if new not in TRANSITIONS[self.state]:
            raise LegStateError(f"leg {self.name}: {self.state.value} cannot become {new.value}")
        self.state = new

    @property
    def live(self) -> bool:
        return self.state is not LegState.ENDED and self.state is not LegState.CANCELLING
