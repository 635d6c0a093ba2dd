"""HEP v3, the Homer Encapsulation Protocol: one captured packet in one UDP datagram.

What Homer, heplify-server and `sngrep -L` read. A datagram is the magic
"HEP3", the total length, then chunks of {vendor 16, type 16, length 16
(the chunk's, header included), value}. Vendor 0 chunk types used here: 1
IP family, 2 IP protocol, 3/4 IPv4 source/destination, 5/6 IPv6
source/destination, 7/8 ports, 9/10 timestamp seconds/microseconds, 11
payload type (1 SIP, 5 RTCP as JSON), 12 capture agent id, 14 auth key, 15
payload, 17 correlation id (the SIP Call-ID, so Homer groups a call's
messages and its RTCP reports).

Dependency-free: the signalling process (SIP capture,
`softswitch.management.hep`) and the relay (RTCP capture,
`rtpmedia.relay.rtcp_capture`) both encode with it, and neither pulls in
the other. The encoding is pure (sans-IO); `HepSender` is the one small
socket both send through.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
import struct
from dataclasses import dataclass

MAGIC = b"HEP3"
SIP = 1
RTCP_JSON = 5


class HepError(ValueError):
    """Bytes that are not a HEP v3 packet."""


@dataclass(frozen=True, slots=True)
class HepPacket:
    """One captured packet with the addresses it travelled between."""

    protocol: int  # IPPROTO_UDP or IPPROTO_TCP
    source: tuple[str, int]
    destination: tuple[str, int]
    time: float  # Unix seconds
    payload: bytes
    payload_type: int = SIP
    correlation_id: str = ""
    agent_id: int = 0
    auth_key: str = ""


def _chunk(kind: int, value: bytes) -> bytes:
    return struct.pack("!HHH", 0, kind, 6 + len(value)) + value


@functools.lru_cache(maxsize=4096)
def _packed(host: str) -> tuple[int, bytes]:
    """IP version and packed address of `host` (ValueError if not an IP); cached:
    a server talks to the same few addresses all day, and parsing one costs more
    than the rest of the packet."""
    address = ipaddress.ip_address(host)
    return address.version, address.packed


_HEAD = struct.Struct("!HHHB")  # a chunk of one byte
_PORT = struct.Struct("!HHHH")
_WORD = struct.Struct("!HHHI")


def encode(packet: HepPacket) -> bytes:
    """The HEP v3 datagram of `packet`; ValueError if the addresses are not IPs of one family."""
    src_version, src = _packed(packet.source[0])
    dst_version, dst = _packed(packet.destination[0])
    if src_version != dst_version:
        raise ValueError("source and destination are of different IP families")
    v4 = src_version == 4
    seconds = int(packet.time)
    chunks = [
        _HEAD.pack(0, 1, 7, socket.AF_INET if v4 else socket.AF_INET6),
        _HEAD.pack(0, 2, 7, packet.protocol),
        _chunk(3 if v4 else 5, src),
        _chunk(4 if v4 else 6, dst),
        _PORT.pack(0, 7, 8, packet.source[1]),
        _PORT.pack(0, 8, 8, packet.destination[1]),
        _WORD.pack(0, 9, 10, seconds),
        _WORD.pack(0, 10, 10, min(999999, int((packet.time - seconds) * 1e6))),
        _HEAD.pack(0, 11, 7, packet.payload_type),
        _WORD.pack(0, 12, 10, packet.agent_id),
    ]
    if packet.auth_key:
        chunks.append(_chunk(14, packet.auth_key.encode()))
    if packet.correlation_id:
        chunks.append(_chunk(17, packet.correlation_id.encode()))
    chunks.append(_chunk(15, packet.payload))
    body = b"".join(chunks)
    return MAGIC + struct.pack("!H", 6 + len(body)) + body


def decode_chunks(data: bytes) -> dict[int, bytes]:
    """The vendor-0 chunks of a HEP v3 datagram by type; HepError if malformed."""
    if len(data) < 6 or data[:4] != MAGIC:
        raise HepError("not a HEP3 packet")
    (total,) = struct.unpack_from("!H", data, 4)
    if total != len(data):
        raise HepError(f"length {total} but {len(data)} bytes")
    chunks: dict[int, bytes] = {}
    offset = 6
    while offset < total:
        if offset + 6 > total:
            raise HepError("truncated chunk header")
        vendor, kind, length = struct.unpack_from("!HHH", data, offset)
        if length < 6 or offset + length > total:
            raise HepError(f"bad chunk length {length}")
        if vendor == 0:
            chunks[kind] = data[offset + 6:offset + length]
        offset += length
    return chunks


def decode(data: bytes) -> HepPacket:
    """The packet of a HEP v3 datagram (for tests and tools); HepError if malformed."""
    chunks = decode_chunks(data)
    try:
        v4 = chunks[1][0] == socket.AF_INET
        src = ipaddress.ip_address(chunks[3 if v4 else 5])
        dst = ipaddress.ip_address(chunks[4 if v4 else 6])
        (sport,) = struct.unpack("!H", chunks[7])
        (dport,) = struct.unpack("!H", chunks[8])
        (seconds,) = struct.unpack("!I", chunks[9])
        (micros,) = struct.unpack("!I", chunks[10])
        (agent,) = struct.unpack("!I", chunks[12]) if 12 in chunks else (0,)
        return HepPacket(
            protocol=chunks[2][0], source=(str(src), sport), destination=(str(dst), dport),
            time=seconds + micros / 1e6, payload=chunks[15], payload_type=chunks[11][0],
            correlation_id=chunks.get(17, b"").decode("utf-8", "replace"), agent_id=agent,
            auth_key=chunks.get(14, b"").decode("utf-8", "replace"))
    except (KeyError, IndexError, ValueError, struct.error) as exc:
        raise HepError(f"missing or bad chunk: {exc}") from None


class HepSender:
    """Datagrams to a collector, from one non-blocking UDP socket.

    The collector's name is resolved once, here (a lookup per packet would
    block the caller's loop). `sendto` never waits and nothing comes back to
    read; a collector that is down, or a full buffer, loses the datagram
    rather than disturb signalling or media. Raises OSError if the name
    does not resolve.
    """

    def __init__(self, host: str, port: int) -> None:
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
        self.address = address
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.setblocking(False)

    def __call__(self, datagram: bytes) -> None:
        try:
            self.sock.sendto(datagram, self.address)
        except OSError:
            pass

    def close(self) -> None:
        self.sock.close()
