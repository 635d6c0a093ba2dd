"""Netfilter netlink requests, packed by hand: attributes, one datagram per batch, acks by sequence.

The kernel fast path makes two kinds of requests in its hot spots (a flow's
install, remove and counters): ctnetlink deletes and nf_tables set element
gets. Both are a header, a `nfgenmsg` and a few attributes, so they are
written here with `struct` rather than through a general netlink library
(pyroute2's requests cost ~1-2 ms each here, in its asyncio machinery).
"""

from __future__ import annotations

import itertools
import socket
import struct
import threading
from dataclasses import dataclass, field

NETLINK_NETFILTER = 12
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLMSG_ERROR = 0x2
NLA_F_NESTED = 1 << 15
_NLA_TYPE_MASK = 0x3FFF

_NLMSGHDR = struct.Struct("=IHHII")
_NFGENMSG = struct.Struct("=BBH")
_NLATTR = struct.Struct("=HH")
_ERRNO = struct.Struct("=i")


def attr(kind: int, payload: bytes) -> bytes:
    length = _NLATTR.size + len(payload)
    return _NLATTR.pack(length, kind) + payload + b"\0" * (-length % 4)


def nested(kind: int, *children: bytes) -> bytes:
    return attr(kind | NLA_F_NESTED, b"".join(children))


def strz(kind: int, value: str) -> bytes:
    return attr(kind, value.encode() + b"\0")


def attrs(data: bytes) -> dict[int, bytes]:
    """The attributes of `data` by type (the last of a repeated type wins); stops at a malformed one."""
    found: dict[int, bytes] = {}
    offset = 0
    while offset + _NLATTR.size <= len(data):
        length, kind = _NLATTR.unpack_from(data, offset)
        if length < _NLATTR.size or offset + length > len(data):
            break
        found[kind & _NLA_TYPE_MASK] = data[offset + _NLATTR.size:offset + length]
        offset += (length + 3) & ~3
    return found


def attr_list(data: bytes) -> list[tuple[int, bytes]]:
    """All attributes of `data` in order, repeated types kept."""
    found = []
    offset = 0
    while offset + _NLATTR.size <= len(data):
        length, kind = _NLATTR.unpack_from(data, offset)
        if length < _NLATTR.size or offset + length > len(data):
            break
        found.append((kind & _NLA_TYPE_MASK, data[offset + _NLATTR.size:offset + length]))
        offset += (length + 3) & ~3
    return found


@dataclass
class Reply:
    """What came back for one request: its data messages' attribute bytes, then the ack's errno (0 = ok)."""

    error: int = 0
    messages: list[bytes] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Request:
    subsystem: int
    message: int
    family: int
    body: bytes  # the attributes after the nfgenmsg
    flags: int = 0  # beyond NLM_F_REQUEST | NLM_F_ACK (NLM_F_CREATE for a new entry, say)


class NetfilterSocket:
    """One NETLINK_NETFILTER socket; `transact` sends requests in one datagram and waits for each ack."""

    def __init__(self, timeout: float = 2.0) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        self._sock.bind((0, 0))
        self._sock.settimeout(timeout)
        self._seq = itertools.count(1)
        # One request/ack exchange at a time: replies are matched by sequence
        # number, and a second thread reading the socket would steal them.
        self._lock = threading.Lock()

    def transact(self, requests: list[Request]) -> list[Reply]:
        """One reply per request, in order; OSError (TimeoutError included) if the kernel does not answer."""
        if not requests:
            return []
        with self._lock:
            return self._transact(requests)

    def _transact(self, requests: list[Request]) -> list[Reply]:
        replies: dict[int, Reply] = {}
        order = []
        datagram = bytearray()
        for r in requests:
            seq = next(self._seq) & 0xFFFFFFFF
            order.append(seq)
            replies[seq] = Reply()
            body = _NFGENMSG.pack(r.family, 0, 0) + r.body
            datagram += _NLMSGHDR.pack(_NLMSGHDR.size + len(body), r.subsystem << 8 | r.message,
                                       NLM_F_REQUEST | NLM_F_ACK | r.flags, seq, 0) + body
        self._sock.send(datagram)
        waiting = set(order)
        while waiting:
            data = self._sock.recv(1 << 16)
            offset = 0
            while offset + _NLMSGHDR.size <= len(data):
                length, kind, _, seq, _ = _NLMSGHDR.unpack_from(data, offset)
                if length < _NLMSGHDR.size:
                    break
                reply = replies.get(seq)
                if reply is not None and seq in waiting:
                    if kind == NLMSG_ERROR:
                        (code,) = _ERRNO.unpack_from(data, offset + _NLMSGHDR.size)
                        reply.error = -code
                        waiting.discard(seq)
                    else:
                        start = offset + _NLMSGHDR.size + _NFGENMSG.size
                        reply.messages.append(bytes(data[start:offset + length]))
                offset += (length + 3) & ~3
        return [replies[seq] for seq in order]

    def close(self) -> None:
        self._sock.close()
