"""Where a B-leg INVITE goes: one `Destination` per contact, trunk or URI rung.

A plain value, made by the glue's target resolver (`dialing.py`: bindings,
trunks, RFC 3263) and read by the call machine.
"""

from __future__ import annotations

from dataclasses import dataclass

from softswitch.sip.peer import Peer
from softswitch.sip.uri import SipURI


@dataclass(slots=True, frozen=True)
class Destination:
    """One place to send a B-leg INVITE."""

    request_uri: SipURI
    peer: Peer
    to_uri: str  # the To header's URI (the AOR or the dialled number)
    label: str  # for logs and CDRs: user/1002, trunk/provider/+1555...
    route: tuple[str, ...] = ()
    trunk: str | None = None
    # RFC 3263 4.3: where to try next if this peer answers 503 or nothing.
    alternates: tuple[Peer, ...] = ()
