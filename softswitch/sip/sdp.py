"""SDP session descriptions: parse, inspect, rewrite, serialise.

RFC 8866 (which replaced RFC 4566) section 5 for the grammar, RFC 3264 for
what offer/answer reads in it (direction 5.1/6.1, hold 8.4, rejected streams
with port 0 6), RFC 3551 for the static payload types and RFC 3605 for
`a=rtcp`.

Only what a B2BUA and a media relay act on is structured: origin,
connection, timing, the m= line and attributes. Every other line is kept
verbatim (`Line`) and written back in its place in the grammar, so that a
well-formed description comes back byte for byte. Parse failures raise
`MessageError(reason, 400)`; an offer that parses but cannot be accepted is
the B2BUA's 488, not ours.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from softswitch.sip.errors import MessageError

_CRLF = "\r\n"
# The order of the line types in a section (RFC 8866 5); types we do not
# structure fall in their slot, unknown types go last.
_SESSION_SLOTS = "vosiuepcbtrzka"
_MEDIA_SLOTS = "micbka"
# Lines we keep as text, in their slot: before c=, between c= and t=/a=,
# after the timing.
_SESSION_BEFORE_C = frozenset("iuep")
_SESSION_BEFORE_T = frozenset("b")
_SESSION_AFTER_T = frozenset("zk")
_MEDIA_BEFORE_C = frozenset("i")
_MEDIA_AFTER_C = frozenset("bk")
_TYPES = frozenset("abcdefghijklmnopqrstuvwxyz")
# RFC 3264 8.4: the RFC 2543 way of putting a call on hold.
HOLD_ADDRESS = "0.0.0.0"


class Direction(enum.Enum):
    """The direction attributes of RFC 8866 6.7 / RFC 3264 5.1."""

    SENDRECV = "sendrecv"
    SENDONLY = "sendonly"
    RECVONLY = "recvonly"
    INACTIVE = "inactive"

    def reverse(self) -> Direction:
        """The direction an answer takes to this offer (RFC 3264 6.1)."""
        if self is Direction.SENDONLY:
            return Direction.RECVONLY
        if self is Direction.RECVONLY:
            return Direction.SENDONLY
        return self


_DIRECTIONS = {d.value: d for d in Direction}


def _fields(value: str, count: int, what: str) -> list[str]:
    parts = value.split()
    if len(parts) != count:
        raise MessageError(f"bad SDP {what} line {value[:60]!r}")
    return parts


def _digits(text: str, what: str, max_len: int = 20) -> str:
    # The length cap keeps int() away from its 4300-digit limit and a
    # hostile peer from making us do big-number arithmetic.
    if not text.isascii() or not text.isdigit() or len(text) > max_len:
        raise MessageError(f"bad SDP {what} {text[:30]!r}")
    return text


def _port(text: str) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > 5 or int(text) > 65535:
        raise MessageError(f"bad SDP port {text[:30]!r}")
    return int(text)


def _addrtype(address: str) -> str:
    return "IP6" if ":" in address else "IP4"


@dataclass(slots=True)
class Line:
    """A line kept as text: `type=value`."""

    type: str
    value: str

    def __str__(self) -> str:
        return f"{self.type}={self.value}"


@dataclass(slots=True)
class Origin:
    """`o=<username> <sess-id> <sess-version> <nettype> <addrtype> <address>` (RFC 8866 5.2).

    The id and version stay text: they are digits of any length, and a
    leading zero must come back as it came.
    """

    username: str
    session_id: str
    version: str
    nettype: str
    addrtype: str
    address: str

    @classmethod
    def parse(cls, value: str) -> Origin:
        user, sid, version, nettype, addrtype, address = _fields(value, 6, "o=")
        return cls(user, _digits(sid, "session id", 64), _digits(version, "session version", 64),
                   nettype, addrtype, address)

    def next_version(self) -> Origin:
        """The origin of a changed description (RFC 3264 8: version goes up by one)."""
        return Origin(self.username, self.session_id, str(int(self.version) + 1),
                      self.nettype, self.addrtype, self.address)

    def __str__(self) -> str:
        return (f"{self.username} {self.session_id} {self.version} {self.nettype} "
                f"{self.addrtype} {self.address}")


@dataclass(slots=True)
class Connection:
    """`c=<nettype> <addrtype> <address>[/ttl][/count]` (RFC 8866 5.7).

    `suffix` is the multicast `/ttl/count` part, kept as written.
    """

    nettype: str
    addrtype: str
    address: str
    suffix: str = ""

    @classmethod
    def parse(cls, value: str) -> Connection:
        nettype, addrtype, address = _fields(value, 3, "c=")
        host, slash, rest = address.partition("/")
        if not host:
            raise MessageError(f"bad SDP c= line {value[:60]!r}")
        return cls(nettype, addrtype, host, slash + rest)

    @classmethod
    def for_address(cls, address: str) -> Connection:
        return cls("IN", _addrtype(address), address)

    def __str__(self) -> str:
        return f"{self.nettype} {self.addrtype} {self.address}{self.suffix}"


@dataclass(slots=True)
class Timing:
    """`t=<start> <stop>` and the `r=` lines under it (RFC 8866 5.9, 5.10)."""

    start: int
    stop: int
    repeats: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, value: str) -> Timing:
        start, stop = _fields(value, 2, "t=")
        return cls(int(_digits(start, "time")), int(_digits(stop, "time")))

    def lines(self) -> list[str]:
        return [f"t={self.start} {self.stop}", *(f"r={r}" for r in self.repeats)]


@dataclass(slots=True)
class Attribute:
    """`a=<name>` or `a=<name>:<value>` (RFC 8866 5.13); `value` None for a flag."""

    name: str
    value: str | None = None

    @classmethod
    def parse(cls, text: str) -> Attribute:
        name, colon, value = text.partition(":")
        if not name:
            raise MessageError(f"bad SDP attribute {text[:60]!r}")
        return cls(name, value if colon else None)

    def __str__(self) -> str:
        return self.name if self.value is None else f"{self.name}:{self.value}"


@dataclass(slots=True, frozen=True)
class RtpMap:
    """`a=rtpmap:<pt> <encoding>/<clock rate>[/<channels>]` (RFC 8866 6.6)."""

    payload_type: int
    encoding: str
    clock_rate: int
    channels: int | None = None

    @classmethod
    def parse(cls, value: str) -> RtpMap | None:
        """The rtpmap in `value`, or None when it is malformed (it is then ignored)."""
        pt, _, spec = value.strip().partition(" ")
        parts = spec.strip().split("/")
        if not _is_payload_type(pt) or len(parts) not in (2, 3) or not parts[0] \
                or not all(p.isascii() and p.isdigit() and len(p) <= 10 for p in parts[1:]):
            return None
        channels = int(parts[2]) if len(parts) == 3 else None
        return cls(int(pt), parts[0], int(parts[1]), channels)


@dataclass(slots=True, frozen=True)
class Codec:
    """One payload type of an m= line with what the description says of it."""

    payload_type: int
    name: str | None
    clock_rate: int | None
    channels: int | None = None
    fmtp: str | None = None


# RFC 3551 table 4 and 5: static payload types, valid without an rtpmap.
STATIC_PAYLOAD_TYPES: dict[int, tuple[str, int, int | None]] = {
    0: ("PCMU", 8000, 1), 3: ("GSM", 8000, 1), 4: ("G723", 8000, 1),
    5: ("DVI4", 8000, 1), 6: ("DVI4", 16000, 1), 7: ("LPC", 8000, 1),
    8: ("PCMA", 8000, 1), 9: ("G722", 8000, 1), 10: ("L16", 44100, 2),
    11: ("L16", 44100, 1), 12: ("QCELP", 8000, 1), 13: ("CN", 8000, 1),
    14: ("MPA", 90000, None), 15: ("G728", 8000, 1), 16: ("DVI4", 11025, 1),
    17: ("DVI4", 22050, 1), 18: ("G729", 8000, 1), 25: ("CelB", 90000, None),
    26: ("JPEG", 90000, None), 28: ("nv", 90000, None), 31: ("H261", 90000, None),
    32: ("MPV", 90000, None), 33: ("MP2T", 90000, None), 34: ("H263", 90000, None),
}


def _is_payload_type(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= 3 and int(text) <= 127


def _find(attributes: list[Attribute], name: str) -> Attribute | None:
    for attribute in attributes:
        if attribute.name == name:
            return attribute
    return None


def _direction_of(attributes: list[Attribute]) -> Direction | None:
    for attribute in attributes:
        if attribute.value is None and attribute.name in _DIRECTIONS:
            return _DIRECTIONS[attribute.name]
    return None


def _set_direction(attributes: list[Attribute], direction: Direction) -> None:
    # Replace the first in place (so the line keeps its position) and drop
    # any others: two directions in one section would contradict each other.
    new = Attribute(direction.value)
    out: list[Attribute] = []
    placed = False
    for attribute in attributes:
        if attribute.value is None and attribute.name in _DIRECTIONS:
            if not placed:
                out.append(new)
                placed = True
        else:
            out.append(attribute)
    if not placed:
        out.append(new)
    attributes[:] = out


@dataclass(slots=True)
class MediaDescription:
    """One media section: the m= line and what follows it (RFC 8866 5.14)."""

    media: str
    port: int
    proto: str
    formats: list[str] = field(default_factory=list)
    port_count: int | None = None
    connections: list[Connection] = field(default_factory=list)
    attributes: list[Attribute] = field(default_factory=list)
    extra: list[Line] = field(default_factory=list)

    @classmethod
    def parse_m_line(cls, value: str) -> MediaDescription:
        parts = value.split()
        if len(parts) < 3:
            raise MessageError(f"bad SDP m= line {value[:60]!r}")
        media, port_text, proto, *formats = parts
        port, slash, count = port_text.partition("/")
        port_count = int(_digits(count, "port count", 5)) if slash else None
        return cls(media, _port(port), proto, formats, port_count)

    def m_line(self) -> str:
        port = self.port if self.port_count is None else f"{self.port}/{self.port_count}"
        return " ".join([self.media, str(port), self.proto, *self.formats])

    def lines(self) -> list[str]:
        out = [f"m={self.m_line()}"]
        out += [str(x) for x in self.extra if x.type in _MEDIA_BEFORE_C]
        out += [f"c={c}" for c in self.connections]
        out += [str(x) for x in self.extra if x.type in _MEDIA_AFTER_C]
        out += [f"a={a}" for a in self.attributes]
        out += [str(x) for x in self.extra if x.type not in _MEDIA_SLOTS]
        return out

    def copy(self) -> MediaDescription:
        return MediaDescription(
            self.media, self.port, self.proto, list(self.formats), self.port_count,
            [Connection(c.nettype, c.addrtype, c.address, c.suffix) for c in self.connections],
            [Attribute(a.name, a.value) for a in self.attributes],
            [Line(x.type, x.value) for x in self.extra])

    # -- attributes -------------------------------------------------------------

    def attribute(self, name: str) -> Attribute | None:
        """The first attribute called `name` (names are case-sensitive, RFC 8866 5.13)."""
        return _find(self.attributes, name)

    def attribute_values(self, name: str) -> list[str]:
        return [a.value for a in self.attributes if a.name == name and a.value is not None]

    @property
    def direction(self) -> Direction | None:
        """This section's own direction attribute, if it has one."""
        return _direction_of(self.attributes)

    def set_direction(self, direction: Direction) -> None:
        _set_direction(self.attributes, direction)

    @property
    def rejected(self) -> bool:
        """Port 0: a stream refused or removed (RFC 3264 6, 8.2)."""
        return self.port == 0

    @property
    def rtpmaps(self) -> dict[int, RtpMap]:
        out: dict[int, RtpMap] = {}
        for value in self.attribute_values("rtpmap"):
            rtpmap = RtpMap.parse(value)
            if rtpmap is not None:
                out.setdefault(rtpmap.payload_type, rtpmap)
        return out

    @property
    def fmtps(self) -> dict[int, str]:
        out: dict[int, str] = {}
        for value in self.attribute_values("fmtp"):
            pt, _, params = value.partition(" ")
            if _is_payload_type(pt):
                out.setdefault(int(pt), params.strip())
        return out

    @property
    def codecs(self) -> list[Codec]:
        """The payload types of the m= line in order of preference (RFC 3264 5.1).

        Named by rtpmap, else by the static table; formats that are not
        payload types (a non-RTP protocol) are left out.
        """
        rtpmaps = self.rtpmaps
        fmtps = self.fmtps
        out: list[Codec] = []
        for fmt in self.formats:
            if not _is_payload_type(fmt):
                continue
            pt = int(fmt)
            rtpmap = rtpmaps.get(pt)
            if rtpmap is not None:
                name: str | None = rtpmap.encoding
                rate: int | None = rtpmap.clock_rate
                channels = rtpmap.channels
            elif pt in STATIC_PAYLOAD_TYPES:
                name, rate, channels = STATIC_PAYLOAD_TYPES[pt]
            else:
                name = rate = channels = None
            out.append(Codec(pt, name, rate, channels, fmtps.get(pt)))
        return out

    @property
    def ptime(self) -> int | None:
        """`a=ptime` in milliseconds, or None when absent or malformed."""
        value = (self.attribute_values("ptime") or [""])[0].strip()
        return int(value) if value.isascii() and value.isdigit() and len(value) <= 6 else None

    @property
    def rtcp(self) -> tuple[int, str | None] | None:
        """`a=rtcp` (RFC 3605): the RTCP port and, if given, address."""
        values = self.attribute_values("rtcp")
        if not values:
            return None
        parts = values[0].split()
        if not parts or not parts[0].isascii() or not parts[0].isdigit() \
                or len(parts[0]) > 5 or int(parts[0]) > 65535:
            return None
        return int(parts[0]), (parts[3] if len(parts) == 4 else None)

    def with_connection(self, address: str, port: int) -> MediaDescription:
        """A copy sending to `address`:`port`: one c= line and the m= port.

        `a=rtcp` names the old endpoint, so it goes: RTCP then defaults to
        the next port (RFC 3605 2.1), which is what a relay allocates.
        """
        media = self.copy()
        media.port = port
        media.connections = [Connection.for_address(address)]
        media.attributes = [a for a in media.attributes if a.name != "rtcp"]
        return media


@dataclass(slots=True)
class SessionDescription:
    """A whole SDP body (RFC 8866 5).

    `extra` holds the session lines kept as text (i=, u=, e=, p=, b=, z=,
    k=, and unknown types), each written back in its grammar slot.
    """

    origin: Origin
    name: str = "-"
    connection: Connection | None = None
    timing: list[Timing] = field(default_factory=list)
    attributes: list[Attribute] = field(default_factory=list)
    media: list[MediaDescription] = field(default_factory=list)
    extra: list[Line] = field(default_factory=list)
    version: int = 0

    @classmethod
    def parse(cls, data: bytes) -> SessionDescription:
        """Parse an SDP body; CRLF or LF line ends. MessageError(…, 400) if malformed."""
        # surrogateescape keeps free text that is not UTF-8 (s=, i= in another
        # charset, RFC 8866 6.10) as it came, for the write back.
        text = data.decode("utf-8", "surrogateescape")
        lines = [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]
        # Blank lines (a trailing CRLF too many) carry nothing; skip them.
        lines = [line for line in lines if line]
        if not lines:
            raise MessageError("empty SDP")
        if lines[0] != "v=0":
            raise MessageError("SDP must start with v=0")
        origin: Origin | None = None
        name: str | None = None
        connection: Connection | None = None
        timing: list[Timing] = []
        attributes: list[Attribute] = []
        extra: list[Line] = []
        media: list[MediaDescription] = []
        current: MediaDescription | None = None
        for line in lines[1:]:
            if len(line) < 2 or line[1] != "=" or line[0] not in _TYPES:
                raise MessageError(f"bad SDP line {line[:40]!r}")
            if "\r" in line or "\x00" in line:
                raise MessageError("control character in SDP")
            kind, value = line[0], line[2:]
            if kind == "m":
                current = MediaDescription.parse_m_line(value)
                media.append(current)
            elif current is not None:
                if kind == "c":
                    current.connections.append(Connection.parse(value))
                elif kind == "a":
                    current.attributes.append(Attribute.parse(value))
                else:
                    current.extra.append(Line(kind, value))
            elif kind == "o":
                if origin is not None:
                    raise MessageError("two SDP o= lines")
                origin = Origin.parse(value)
            elif kind == "s":
                if name is not None:
                    raise MessageError("two SDP s= lines")
                name = value
            elif kind == "c":
                if connection is not None:
                    raise MessageError("two session-level SDP c= lines")
                connection = Connection.parse(value)
            elif kind == "t":
                timing.append(Timing.parse(value))
            elif kind == "r":
                if not timing:
                    raise MessageError("SDP r= line without t=")
                timing[-1].repeats.append(value)
            elif kind == "a":
                attributes.append(Attribute.parse(value))
            elif kind == "v":
                raise MessageError("two SDP v= lines")
            else:
                extra.append(Line(kind, value))
        if origin is None or name is None:
            raise MessageError("SDP without o= or s= line")
        return cls(origin, name, connection, timing, attributes, media, extra)

    def lines(self) -> list[str]:
        out = [f"v={self.version}", f"o={self.origin}", f"s={self.name}"]
        out += [str(x) for x in self.extra if x.type in _SESSION_BEFORE_C]
        if self.connection is not None:
            out.append(f"c={self.connection}")
        out += [str(x) for x in self.extra if x.type in _SESSION_BEFORE_T]
        for timing in self.timing:
            out += timing.lines()
        out += [str(x) for x in self.extra if x.type in _SESSION_AFTER_T]
        out += [f"a={a}" for a in self.attributes]
        out += [str(x) for x in self.extra if x.type not in _SESSION_SLOTS]
        for media in self.media:
            out += media.lines()
        return out

    def to_bytes(self) -> bytes:
        return (_CRLF.join(self.lines()) + _CRLF).encode("utf-8", "surrogateescape")

    def __bytes__(self) -> bytes:
        return self.to_bytes()

    def copy(self) -> SessionDescription:
        o = self.origin
        c = self.connection
        return SessionDescription(
            Origin(o.username, o.session_id, o.version, o.nettype, o.addrtype, o.address),
            self.name,
            None if c is None else Connection(c.nettype, c.addrtype, c.address, c.suffix),
            [Timing(t.start, t.stop, list(t.repeats)) for t in self.timing],
            [Attribute(a.name, a.value) for a in self.attributes],
            [m.copy() for m in self.media],
            [Line(x.type, x.value) for x in self.extra],
            self.version)

    # -- what offer/answer reads ----------------------------------------------------

    def attribute(self, name: str) -> Attribute | None:
        return _find(self.attributes, name)

    @property
    def direction(self) -> Direction | None:
        """The session-level direction attribute, if any."""
        return _direction_of(self.attributes)

    def media_direction(self, media: MediaDescription) -> Direction:
        """The direction in force for `media`: its own, the session's, else sendrecv (RFC 8866 6.7)."""
        return media.direction or self.direction or Direction.SENDRECV

    def set_direction(self, direction: Direction) -> None:
        """Give every media section `direction` and drop the session-level one.

        A session-level attribute would only be overridden anyway, and
        leaving it would read as a contradiction to a careless parser.
        """
        self.attributes = [a for a in self.attributes
                           if not (a.value is None and a.name in _DIRECTIONS)]
        for media in self.media:
            media.set_direction(direction)

    def connection_of(self, media: MediaDescription) -> Connection | None:
        """The c= in force for `media`: its own first, else the session's (RFC 8866 5.7)."""
        return media.connections[0] if media.connections else self.connection

    def endpoint(self, media: MediaDescription) -> tuple[str, int] | None:
        """Where the author of this description receives `media`: (address, port)."""
        connection = self.connection_of(media)
        return None if connection is None else (connection.address, media.port)

    def media_on_hold(self, media: MediaDescription) -> bool:
        """True if `media` is held (RFC 3264 8.4): sendonly, inactive, or c=0.0.0.0."""
        if self.media_direction(media) in (Direction.SENDONLY, Direction.INACTIVE):
            return True
        connection = self.connection_of(media)
        return connection is not None and connection.address == HOLD_ADDRESS

    @property
    def on_hold(self) -> bool:
        """True if every stream still in use (port not 0) is held, and there is one."""
        active = [m for m in self.media if not m.rejected]
        return bool(active) and all(self.media_on_hold(m) for m in active)

    def with_connection(self, address: str, ports: list[int]) -> SessionDescription:
        """A copy whose media go to `address`, at one port per media section.

        What a media relay writes into the description it forwards. The
        session c= names the relay and each media section's own c= is
        dropped in favour of it; rejected streams keep port 0 (RFC 3264 6).
        """
        if len(ports) != len(self.media):
            raise ValueError(f"{len(ports)} ports for {len(self.media)} media sections")
        sdp = self.copy()
        sdp.connection = Connection.for_address(address)
        for i, (media, port) in enumerate(zip(sdp.media, ports, strict=True)):
            rewritten = media.with_connection(address, 0 if media.rejected else port)
            rewritten.connections = []
            sdp.media[i] = rewritten
        return sdp
