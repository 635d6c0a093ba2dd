"""One registered contact of an address-of-record (RFC 3261 section 10.3).

Also carries what later RFCs add to a binding: the Path of the REGISTER
(RFC 3327 section 5.3) and the outbound identity +sip.instance/reg-id
(RFC 5626 section 6).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True, frozen=True, kw_only=True)
class Binding:
    """A binding: where requests for `aor` go until `expires_at`.

    A binding is identified by (aor, contact); the registrar compares Contact
    URIs by RFC 3261 19.1.4 before it gets here and stores the form it chose.
    `received` is the host:port the REGISTER came from, used to reach a phone
    behind NAT when its Contact is private. Frozen: the store hands the same
    objects to every reader, so replace with `dataclasses.replace`, never mutate.
    """

    aor: str  # canonical user@domain
    contact: str  # the Contact URI, without the header's display name and params
    q: float = 1.0
    expires_at: float  # absolute unix time
    call_id: str = ""
    cseq: int = 0
    received: str = ""
    transport: str = "udp"  # udp, tcp, tls, ws, wss
    path: list[str] = field(default_factory=list)  # RFC 3327, topmost first
    instance: str | None = None  # +sip.instance, RFC 5626 4.1
    reg_id: int | None = None  # RFC 5626 4.2
    user_agent: str | None = None
    registered_at: float = 0.0

    def expires_in(self, now: float) -> int:
        """Seconds left, as the Contact expires parameter of a 200 (RFC 3261 10.3 step 8)."""
        return max(0, int(self.expires_at - now))

    def is_expired(self, now: float) -> bool:
        return self.expires_at <= now
