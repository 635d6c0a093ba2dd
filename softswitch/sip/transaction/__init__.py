"""The SIP transaction layer: RFC 3261 section 17 with RFC 6026's Accepted state.

Sans-IO: messages come in through `TransactionLayer.receive_request` and
`receive_response`, go out through the `send` callable it was given, and time
comes from an injected clock (the Twisted reactor, or `task.Clock` in tests).

- `timers.py`: T1/T2/T4 and the timers of RFC 3261 table 4, the clock protocol;
- `state.py`: the state enum and the transition table of each machine;
- `base.py`: what both kinds share (timers, sending), `TransportError`;
- `client.py`, `server.py`: the four machines (17.1, 17.2);
- `layer.py`: matching (17.1.3, 17.2.3), merged requests (8.2.2.2), the TU.
"""

from softswitch.sip.transaction.base import Send, TransportError
from softswitch.sip.transaction.client import ClientTransaction, make_ack, make_cancel
from softswitch.sip.transaction.layer import (
    MAGIC_COOKIE,
    TransactionLayer,
    TransactionUser,
    ensure_branch,
    server_key,
)
from softswitch.sip.transaction.server import ServerTransaction
from softswitch.sip.transaction.state import TransactionState, TransactionStateError
from softswitch.sip.transaction.timers import (
    DEFAULT_TIMERS,
    Clock,
    DelayedCall,
    TimerSettings,
)

__all__ = [
    "DEFAULT_TIMERS",
    "MAGIC_COOKIE",
    "ClientTransaction",
    "Clock",
    "DelayedCall",
    "Send",
    "ServerTransaction",
    "TimerSettings",
    "TransactionLayer",
    "TransactionState",
    "TransactionStateError",
    "TransactionUser",
    "TransportError",
    "ensure_branch",
    "make_ack",
    "make_cancel",
    "server_key",
]
