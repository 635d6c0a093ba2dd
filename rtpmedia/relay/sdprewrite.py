"""What the relay reads in an SDP body and how it rewrites it to name itself.

Reading: per m= section, where its author receives RTP and RTCP (c= of
the section or of the session, the m= port, `a=rtcp` of RFC 3605), whether
it multiplexes RTCP on the RTP port (`a=rtcp-mux`, RFC 5761), its direction
(RFC 3264 5.1) and codecs.

Rewriting: every c= to the relay's advertised address, each m= port to the
relay's port for that section (rejected sections keep port 0, RFC 3264 6),
`a=rtcp` to the relay's RTCP port, and on request the o= address
(replace-origin), ICE attributes removed (ICE=remove, RFC 8839), rtcp-mux
added or removed, codecs stripped, the transport protocol changed. Every
other line is kept verbatim (softswitch.sip.sdp keeps unknown lines).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from softswitch.sip.errors import MessageError
from softswitch.sip.sdp import (
    HOLD_ADDRESS,
    Attribute,
    Connection,
    MediaDescription,
    SessionDescription,
)

Address = tuple[str, int]

# RFC 8839 5 (and the older RFC 5245 names): attributes that only make sense
# with candidates, which name the phone rather than the relay.
ICE_ATTRIBUTES = frozenset({"candidate", "ice-ufrag", "ice-pwd", "ice-options", "ice-lite",
                            "ice-mismatch", "remote-candidates", "end-of-candidates",
                            "ice-pacing"})


class SdpError(ValueError):
    """An SDP body the relay cannot use; the text is the ng error-reason."""


@dataclass(frozen=True, slots=True)
class MediaLine:
    """One m= section as the relay sees it."""

    index: int
    media: str
    proto: str
    rtp: Address | None  # None: port 0 (rejected) or c=0.0.0.0 (RFC 2543 hold)
    rtcp: Address | None
    mux: bool
    direction: str
    codecs: tuple[str, ...]  # encoding names, upper case
    clock_rate: int = 8000  # of the first codec (RTP timestamps, for jitter)
    crypto: tuple[str, ...] = ()  # its a=crypto values (SDES-SRTP, RFC 4568), in order

    @property
    def relayed(self) -> bool:
        """UDP-based media are relayed; TCP-based (MSRP, BFCP over TCP) pass untouched."""
        return "TCP" not in self.proto.upper()

    @property
    def on_hold(self) -> bool:
        return self.direction in ("sendonly", "inactive")


@dataclass(frozen=True, slots=True)
class Rewrite:
    """How to rewrite one description for the party that will receive it."""

    address: str
    ports: tuple[int, ...]  # the relay's RTP port per m= section (0 for a rejected one)
    mux: tuple[bool, ...]  # offer/answer rtcp-mux to that party, per section
    replace_origin: bool = False
    ice_remove: bool = False
    strip: frozenset[str] = field(default_factory=frozenset)  # codec names, upper case; "ALL"
    transport: str | None = None


def parse(body: str | bytes) -> SessionDescription:
    data = body.encode("utf-8", "surrogateescape") if isinstance(body, str) else body
    try:
        return SessionDescription.parse(data)
    except (MessageError, ValueError) as exc:
        raise SdpError(f"Failed to parse SDP: {exc}") from None


def read(sdp: SessionDescription) -> list[MediaLine]:
    """The relay's view of each m= section of `sdp`."""
    out: list[MediaLine] = []
    for index, media in enumerate(sdp.media):
        connection = sdp.connection_of(media)
        if connection is None:
            raise SdpError(f"Failed to parse SDP: no c= line for media {index}")
        address = connection.address
        usable = media.port != 0 and address != HOLD_ADDRESS
        rtp = (address, media.port) if usable else None
        rtcp: Address | None = None
        if rtp is not None:
            given = media.rtcp
            if given is None:
                rtcp = (address, media.port + 1)  # RFC 3550 11
            else:
                rtcp = (given[1] or address, given[0])
        out.append(MediaLine(
            index=index, media=media.media, proto=media.proto, rtp=rtp, rtcp=rtcp,
            mux=media.attribute("rtcp-mux") is not None,
            direction=sdp.media_direction(media).value,
            codecs=tuple((c.name or "").upper() for c in media.codecs),
            clock_rate=next((c.clock_rate for c in media.codecs if c.clock_rate), 8000),
            crypto=tuple(a.value for a in media.attributes
                         if a.name == "crypto" and a.value is not None)))
    return out


def rewrite(sdp: SessionDescription, how: Rewrite) -> bytes:
    """`sdp` naming the relay instead of its author, as `how` says."""
    if len(how.ports) != len(sdp.media) or len(how.mux) != len(sdp.media):
        raise ValueError("one port and one mux choice per media section")
    out = sdp.copy()
    if out.connection is not None:
        out.connection = Connection.for_address(how.address)
    if how.replace_origin:
        relay = Connection.for_address(how.address)
        out.origin.addrtype = relay.addrtype
        out.origin.address = relay.address
    if how.ice_remove:
        out.attributes = [a for a in out.attributes if a.name not in ICE_ATTRIBUTES]
    for media, port, mux in zip(out.media, how.ports, how.mux, strict=True):
        if "TCP" in media.proto.upper():
            continue
        if media.connections:
            media.connections = [Connection.for_address(how.address)]
        elif out.connection is None:  # read() refused this before; be safe
            media.connections = [Connection.for_address(how.address)]
        media.port = 0 if media.port == 0 else port
        attributes = [a for a in media.attributes if a.name not in ("rtcp", "rtcp-mux")]
        if how.ice_remove:
            attributes = [a for a in attributes if a.name not in ICE_ATTRIBUTES]
        if media.port != 0:
            # rtpengine writes a=rtcp always: explicit is safer than RFC 3605's default.
            rtcp = Attribute("rtcp", str(port if mux else port + 1))
            attributes.insert(_after_rtpmaps(attributes), rtcp)
            if mux:
                attributes.insert(_after_rtpmaps(attributes), Attribute("rtcp-mux"))
        media.attributes = attributes
        if how.strip:
            _strip(media, how.strip)
        if how.transport and media.proto.upper() in ("RTP/AVP", "RTP/AVPF"):
            media.proto = how.transport
    return out.to_bytes()


def _after_rtpmaps(attributes: list[Attribute]) -> int:
    """Where a=rtcp goes: after the codec attributes, as phones write it."""
    position = 0
    for i, a in enumerate(attributes):
        if a.name in ("rtpmap", "fmtp", "ptime", "maxptime", "rtcp", "rtcp-mux"):
            position = i + 1
    return position


def _strip(media: MediaDescription, names: frozenset[str]) -> None:
    drop = {str(c.payload_type) for c in media.codecs
            if "ALL" in names or (c.name or "").upper() in names}
    kept = [f for f in media.formats if f not in drop]
    if not kept:  # an m= line needs a format: stripping every codec is not ours to do
        return
    media.formats = kept
    media.attributes = [a for a in media.attributes
                        if not (a.name in ("rtpmap", "fmtp", "rtcp-fb")
                                and (a.value or "").split(" ", 1)[0] in drop)]
