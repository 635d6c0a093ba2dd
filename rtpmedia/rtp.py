"""RTP data packets (RFC 3550 section 5.1), parsed and serialised.

`RtpPacket` is the whole packet as a dataclass, for the places that build or
inspect packets (telephone-events, tests, the jitter buffer's input).
`peek_header` and `payload_bounds` read the fixed header and find the payload
in place, without building an object: the relay calls them once per packet.
`RtpSource` is a stream the relay sends as its own (media it makes, or
repairs): its SSRC, sequence number and timestamp.
Every malformed input raises `RtpError` (a ValueError), nothing else.
"""

from __future__ import annotations

import secrets
import struct
from dataclasses import dataclass, field

RTP_VERSION = 2
HEADER_SIZE = 12

_HEADER = struct.Struct("!BBHII")
_EXTENSION = struct.Struct("!HH")

Buffer = bytes | bytearray | memoryview


class RtpError(ValueError):
    """The bytes are not an RTP packet of version 2 (RFC 3550 5.1)."""


@dataclass(slots=True)
class RtpPacket:
    """One RTP packet; `csrc` at most 15 entries, `extension` a multiple of 4 bytes.

    `extension_profile` None means no header extension (the X bit clear).
    `padding_size` counts the padding octets including the final count
    octet (0: no padding); the padding is written as zeros and its count.
    """

    payload_type: int = 0
    sequence_number: int = 0
    timestamp: int = 0
    ssrc: int = 0
    payload: bytes = b""
    marker: bool = False
    csrc: list[int] = field(default_factory=list)
    extension_profile: int | None = None
    extension: bytes = b""
    padding_size: int = 0

    @classmethod
    def parse(cls, data: Buffer) -> RtpPacket:
        """The packet in `data`; raises RtpError when it is not one."""
        start, end, first, second, seq, ts, ssrc = _locate(data)
        view = memoryview(data)
        count = first & 0x0F
        csrc = list(struct.unpack_from(f"!{count}I", view, HEADER_SIZE)) if count else []
        profile: int | None = None
        extension = b""
        if first & 0x10:
            offset = HEADER_SIZE + 4 * count
            profile, words = _EXTENSION.unpack_from(view, offset)
            extension = bytes(view[offset + 4:offset + 4 + 4 * words])
        return cls(
            payload_type=second & 0x7F,
            sequence_number=seq,
            timestamp=ts,
            ssrc=ssrc,
            payload=bytes(view[start:end]),
            marker=bool(second & 0x80),
            csrc=csrc,
            extension_profile=profile,
            extension=extension,
            padding_size=len(view) - end,
        )

    def serialize(self) -> bytes:
        """The packet on the wire; raises RtpError when a field is out of range."""
        if not 0 <= self.payload_type <= 0x7F:
            raise RtpError(f"payload type {self.payload_type} is not 0-127")
        if len(self.csrc) > 15:
            raise RtpError(f"{len(self.csrc)} CSRCs, at most 15 fit")
        if len(self.extension) % 4 or len(self.extension) > 4 * 0xFFFF:
            raise RtpError("header extension must be a multiple of 4 bytes, at most 262140")
        if self.extension and self.extension_profile is None:
            raise RtpError("header extension bytes without an extension profile")
        if not 0 <= self.padding_size <= 255:
            raise RtpError(f"padding of {self.padding_size} octets is not 0-255")
        first = RTP_VERSION << 6 | len(self.csrc)
        if self.padding_size:
            first |= 0x20
        if self.extension_profile is not None:
            first |= 0x10
        second = self.payload_type | (0x80 if self.marker else 0)
        try:
            parts = [_HEADER.pack(first, second, self.sequence_number, self.timestamp, self.ssrc)]
            if self.csrc:
                parts.append(struct.pack(f"!{len(self.csrc)}I", *self.csrc))
            if self.extension_profile is not None:
                parts.append(_EXTENSION.pack(self.extension_profile, len(self.extension) // 4))
                parts.append(self.extension)
        except struct.error as exc:
            raise RtpError(f"field out of range: {exc}") from None
        parts.append(self.payload)
        if self.padding_size:
            parts.append(bytes(self.padding_size - 1) + bytes((self.padding_size,)))
        return b"".join(parts)


def peek_header(data: Buffer) -> tuple[int, bool, int, int, int]:
    """`(payload_type, marker, sequence_number, timestamp, ssrc)` of the packet in `data`.

    Reads the 12-byte fixed header in place (a memoryview is not copied) and
    checks only the version and the length: the per-packet path of the relay.
    Use `payload_bounds` or `RtpPacket.parse` to validate the rest.
    """
    if len(data) < HEADER_SIZE:
        raise RtpError(f"{len(data)} bytes is shorter than the RTP header")
    first, second, seq, ts, ssrc = _HEADER.unpack_from(data)
    if first >> 6 != RTP_VERSION:
        raise RtpError(f"RTP version {first >> 6}, not 2")
    return second & 0x7F, bool(second & 0x80), seq, ts, ssrc


def payload_bounds(data: Buffer) -> tuple[int, int]:
    """`(start, end)` of the payload in `data`, past CSRCs and extension, before padding."""
    start, end, *_ = _locate(data)
    return start, end


def _locate(data: Buffer) -> tuple[int, int, int, int, int, int, int]:
    size = len(data)
    if size < HEADER_SIZE:
        raise RtpError(f"{size} bytes is shorter than the RTP header")
    first, second, seq, ts, ssrc = _HEADER.unpack_from(data)
    if first >> 6 != RTP_VERSION:
        raise RtpError(f"RTP version {first >> 6}, not 2")
    start = HEADER_SIZE + 4 * (first & 0x0F)
    if first & 0x10:
        if start + 4 > size:
            raise RtpError("header extension announced but truncated")
        _, words = _EXTENSION.unpack_from(data, start)
        start += 4 + 4 * words
    if start > size:
        raise RtpError("packet shorter than its CSRC list and header extension")
    end = size
    if first & 0x20:
        # RFC 3550 5.1: the last octet counts the padding, itself included.
        padding = data[size - 1]
        if padding == 0 or padding > size - start:
            raise RtpError(f"padding count {padding} does not fit the packet")
        end = size - padding
    return start, end, first, second, seq, ts, ssrc


class RtpSource:
    """A stream the relay sends as its own source (RFC 3550 5.1): random initial sequence
    number and timestamp (RFC 3550 5.1 asks for them), its own SSRC."""

    __slots__ = ("ssrc", "seq", "timestamp")

    def __init__(self, ssrc: int | None = None) -> None:
        self.ssrc = secrets.randbits(32) if ssrc is None else ssrc
        self.seq = secrets.randbits(16)
        self.timestamp = secrets.randbits(32)

    def packet(self, payload_type: int, payload: bytes, *, marker: bool = False,
               samples: int = 160, timestamp: int | None = None) -> bytes:
        """The next packet: `payload` at the stream's timestamp, which then moves on by
        `samples`; or at `timestamp` (an RFC 4733 event's), which leaves the stream's alone."""
        header = _HEADER.pack(0x80, (0x80 if marker else 0) | payload_type, self.seq,
                              self.timestamp if timestamp is None else timestamp, self.ssrc)
        self.seq = (self.seq + 1) & 0xFFFF
        if timestamp is None:
            self.timestamp = (self.timestamp + samples) & 0xFFFFFFFF
        return header + payload

    def skip(self, samples: int) -> None:
        """Samples that are not sent (a late tick's frames): the timeline moves on regardless."""
        self.timestamp = (self.timestamp + samples) & 0xFFFFFFFF
