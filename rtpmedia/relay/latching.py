"""NAT latching: which source of packets a party's stream is bound to, decided per packet.

Symmetric RTP (RFC 4961): a party behind a NAT sends from the address the
relay must send back to, which its SDP cannot know. So each party's end
latches to the source of its first valid RTP and the relay sends to that.

- A *trusted* end (its SDP address is believed: trust-address, or the SIP
  source agrees with the SDP) latches only to packets from the SDP's IP
  address, whatever the port (a NAT may rewrite the port).
- An untrusted end (the SDP names a private address behind a NAT) latches
  to the first packet from anyone: the only information there is.
- Once latched, another source never takes the stream over at once: it may
  re-latch only after the latched source fell silent for RELATCH_AFTER
  seconds, only under the same rule (for an untrusted end: the same IP as
  the latch, which is how a NAT rebinding looks), and never with
  port-latching.
- strict-source drops what does not come from the latched source (or,
  before latching, from the expected IP of a trusted end); without it those
  packets are forwarded but change nothing.
- asymmetric ends never latch: packets go to the SDP's address.
"""

from __future__ import annotations

import enum

from rtpmedia.relay.calls import Address, MediaEnd

RELATCH_AFTER = 2.0


class Verdict(enum.Enum):
    FORWARD = "forward"  # forward it, change nothing
    LATCH = "latch"  # latch to its source, then forward it
    DROP = "drop"


def rtp_verdict(end: MediaEnd, source: Address, now: float) -> Verdict:
    """What to do with RTP from `source` at `end`'s port, when `source` is not its latch."""
    if end.asymmetric:
        return Verdict.FORWARD
    if end.latched is None:
        if _may_latch(end, source, end.expected):
            return Verdict.LATCH
        return Verdict.DROP if end.strict else Verdict.FORWARD
    if not end.port_latching and now - end.last_packet >= RELATCH_AFTER:
        anchor = end.expected if end.trusted else end.latched
        if anchor is not None and source[0] == anchor[0]:
            return Verdict.LATCH
    return Verdict.DROP if end.strict else Verdict.FORWARD


def rtcp_verdict(end: MediaEnd, source: Address) -> Verdict:
    """The same for RTCP on the RTCP port: it follows the RTP latch's IP address."""
    if end.asymmetric or source == end.latched_rtcp:
        return Verdict.FORWARD
    anchor = end.latched or (end.expected if end.trusted else None)
    if anchor is None or source[0] == anchor[0]:
        if end.latched_rtcp is None or not end.port_latching:
            return Verdict.LATCH
        return Verdict.FORWARD
    return Verdict.DROP if end.strict else Verdict.FORWARD


def _may_latch(end: MediaEnd, source: Address, expected: Address | None) -> bool:
    if not end.trusted or expected is None:
        return True
    return source[0] == expected[0]
