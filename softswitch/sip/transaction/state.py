"""The states of the four transaction machines and the moves between them.

RFC 3261 17.1.1 (INVITE client, figure 5), 17.1.2 (non-INVITE client,
figure 6), 17.2.1 (INVITE server, figure 7) and 17.2.2 (non-INVITE server,
figure 8), with the Accepted state RFC 6026 section 7 adds to both INVITE
machines. Each transaction class makes every move through one `_transition`
method, which checks it against the table here: a move not listed is a bug
in this package, never a peer's fault, and raises `TransactionStateError`.
"""

from __future__ import annotations

import enum


class TransactionState(enum.Enum):
    CALLING = "Calling"  # INVITE client only
    TRYING = "Trying"  # non-INVITE client and server
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"  # INVITE server only
    ACCEPTED = "Accepted"  # RFC 6026, both INVITE machines
    TERMINATED = "Terminated"


class TransactionStateError(Exception):
    """A move the state tables do not allow: a bug in the transaction layer."""


_S = TransactionState

Transitions = dict[TransactionState, frozenset[TransactionState]]

INVITE_CLIENT: Transitions = {
    _S.CALLING: frozenset({_S.PROCEEDING, _S.COMPLETED, _S.ACCEPTED, _S.TERMINATED}),
    _S.PROCEEDING: frozenset({_S.COMPLETED, _S.ACCEPTED, _S.TERMINATED}),
    _S.COMPLETED: frozenset({_S.TERMINATED}),
    _S.ACCEPTED: frozenset({_S.TERMINATED}),
    _S.TERMINATED: frozenset(),
}

NON_INVITE_CLIENT: Transitions = {
    _S.TRYING: frozenset({_S.PROCEEDING, _S.COMPLETED, _S.TERMINATED}),
    _S.PROCEEDING: frozenset({_S.COMPLETED, _S.TERMINATED}),
    _S.COMPLETED: frozenset({_S.TERMINATED}),
    _S.TERMINATED: frozenset(),
}

INVITE_SERVER: Transitions = {
    _S.PROCEEDING: frozenset({_S.COMPLETED, _S.ACCEPTED, _S.TERMINATED}),
    _S.COMPLETED: frozenset({_S.CONFIRMED, _S.TERMINATED}),
    _S.CONFIRMED: frozenset({_S.TERMINATED}),
    _S.ACCEPTED: frozenset({_S.TERMINATED}),
    _S.TERMINATED: frozenset(),
}

NON_INVITE_SERVER: Transitions = {
    _S.TRYING: frozenset({_S.PROCEEDING, _S.COMPLETED, _S.TERMINATED}),
    _S.PROCEEDING: frozenset({_S.COMPLETED, _S.TERMINATED}),
    _S.COMPLETED: frozenset({_S.TERMINATED}),
    _S.TERMINATED: frozenset(),
}
