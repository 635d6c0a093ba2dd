"""Session timers (RFC 4028) for one leg of a call, and the dead-peer check they give.

Negotiation is per leg. On the A-leg (we are UAS) the caller's
Session-Expires is honoured (below our Min-SE it gets 422), the refresher
is the caller when it supports timers and us otherwise. On a B-leg (we are
UAC) we offer our interval with ourselves as refresher and take what the 2xx
says. When we are the refresher we send a refresh (UPDATE when the peer
allows it, else a re-INVITE with the session's last SDP) every half
interval; when the peer is, we expect its refresh and end the call if none
comes before the interval runs out (RFC 4028 10). A refresh that fails with
408 or 481, or gets no answer, means the peer is gone: the call ends.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from softswitch.sip.errors import MessageError
from softswitch.sip.headers import parse_params
from softswitch.sip.message import Message


class Refresher(enum.Enum):
    US = "us"
    PEER = "peer"


@dataclass(slots=True, frozen=True)
class SessionExpires:
    interval: int
    refresher: str | None  # "uac", "uas" or None

    @classmethod
    def parse(cls, value: str) -> SessionExpires:
        number, semi, rest = value.partition(";")
        number = number.strip()
        if not number.isdigit():
            raise MessageError("bad Session-Expires")
        params = parse_params(";" + rest) if semi else {}
        refresher = (params.get("refresher") or "").lower() or None
        if refresher not in (None, "uac", "uas"):
            raise MessageError("bad Session-Expires refresher")
        return cls(int(number), refresher)

    def __str__(self) -> str:
        return f"{self.interval};refresher={self.refresher}" if self.refresher \
            else str(self.interval)


def supports_timer(message: Message) -> bool:
    options = {o.lower() for o in message.values("supported") + message.values("require")}
    return "timer" in options


def session_expires_of(message: Message) -> SessionExpires | None:
    value = message.get("session-expires")
    return SessionExpires.parse(value) if value else None


def min_se_of(message: Message) -> int | None:
    value = message.get("min-se")
    if value is None:
        return None
    number = value.split(";")[0].strip()
    if not number.isdigit():
        raise MessageError("bad Min-SE")
    return int(number)


@dataclass(slots=True, frozen=True)
class UasNegotiation:
    """What the A-leg agreed: the header for our 2xx and who refreshes."""

    expires: SessionExpires
    refresher: Refresher
    require_timer: bool


def negotiate_as_uas(invite: Message, default: int, min_se: int) -> UasNegotiation | int:
    """RFC 4028 9: our side of the caller's INVITE; an int is the Min-SE for a 422."""
    offered = session_expires_of(invite)
    supported = supports_timer(invite)
    if offered is not None and offered.interval < min_se:
        return min_se
    interval = offered.interval if offered is not None else max(default, min_se_of(invite) or 0)
    if offered is not None and offered.refresher is not None:
        who = offered.refresher
    else:
        who = "uac" if supported else "uas"
    refresher = Refresher.PEER if who == "uac" else Refresher.US
    return UasNegotiation(SessionExpires(interval, who), refresher, supported)


def negotiate_as_uac(response: Message) -> tuple[int, Refresher] | None:
    """RFC 4028 7.2: what a B-leg's 2xx agreed; None when it has no session timer."""
    agreed = session_expires_of(response)
    if agreed is None:
        return None
    refresher = Refresher.PEER if agreed.refresher == "uas" else Refresher.US
    return agreed.interval, refresher


@dataclass(slots=True, frozen=True)
class SessionTimer:
    """The session timer of one leg, as a value: how long until it fires, and what then.

    The call machine arms a timer of `delay` seconds whenever the session is
    set up or refreshed (by either side); when it fires, `REFRESH` means we
    send a refresh, `EXPIRE` that the peer's refresh never came.
    """

    interval: int
    refresher: Refresher

    @property
    def delay(self) -> float:
        if self.refresher is Refresher.US:
            return self.interval / 2
        # RFC 4028 10: the non-refresher gives the refresher a margin.
        return self.interval - min(32, self.interval / 3)

    @property
    def on_fire(self) -> str:
        return REFRESH if self.refresher is Refresher.US else EXPIRE


REFRESH = "refresh"
EXPIRE = "expire"
