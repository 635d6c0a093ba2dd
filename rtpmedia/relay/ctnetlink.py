"""Deleting conntrack entries by 5-tuple over ctnetlink.

One job: the kernel fast path must forget the conntrack entries a stream
made while it was forwarded in userspace (netfilter decides NAT on an
entry's first packet only). The attributes are those of
linux/netfilter/nfnetlink_conntrack.h; all of a flow's deletes go in one
datagram. The kernel looks a tuple up in the hash of both directions, so a
delete finds an entry whether the tuple is its original or its reply
direction.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct

from rtpmedia.relay.netlink import NetfilterSocket, Request, attr, nested

NFNL_SUBSYS_CTNETLINK = 1
IPCTNL_MSG_CT_NEW = 0
IPCTNL_MSG_CT_DELETE = 2
CTA_TUPLE_ORIG = 1
CTA_TUPLE_REPLY = 2
CTA_TUPLE_IP = 1
CTA_TUPLE_PROTO = 2
CTA_IP_V4_SRC, CTA_IP_V4_DST, CTA_IP_V6_SRC, CTA_IP_V6_DST = 1, 2, 3, 4
CTA_PROTO_NUM, CTA_PROTO_SRC_PORT, CTA_PROTO_DST_PORT = 1, 2, 3

Address = tuple[str, int]


class ConntrackError(OSError):
    """ctnetlink refused a request for another reason than 'no such entry'."""


def tuple_attr(kind: int, source: Address, destination: Address,
               proto: int = socket.IPPROTO_UDP) -> tuple[int, bytes]:
    """The address family and the nested CTA_TUPLE_* attribute `kind` for source -> destination."""
    src, dst = ipaddress.ip_address(source[0]), ipaddress.ip_address(destination[0])
    if src.version != dst.version:
        raise ValueError(f"{source} and {destination} are not of one address family")
    if src.version == 4:
        family, s_kind, d_kind = socket.AF_INET, CTA_IP_V4_SRC, CTA_IP_V4_DST
    else:
        family, s_kind, d_kind = socket.AF_INET6, CTA_IP_V6_SRC, CTA_IP_V6_DST
    body = nested(kind,
                  nested(CTA_TUPLE_IP, attr(s_kind, src.packed), attr(d_kind, dst.packed)),
                  nested(CTA_TUPLE_PROTO, attr(CTA_PROTO_NUM, bytes([proto])),
                         attr(CTA_PROTO_SRC_PORT, struct.pack("!H", source[1])),
                         attr(CTA_PROTO_DST_PORT, struct.pack("!H", destination[1]))))
    return family, body


class Conntrack:
    """A ctnetlink socket that deletes entries by tuple."""

    def __init__(self) -> None:
        self._nl = NetfilterSocket()

    def delete(self, tuples: list[tuple[Address, Address]], proto: int = socket.IPPROTO_UDP) -> int:
        """Delete the entries holding each (source, destination) tuple; how many existed."""
        requests = []
        for source, destination in tuples:
            family, body = tuple_attr(CTA_TUPLE_ORIG, source, destination, proto)
            requests.append(Request(NFNL_SUBSYS_CTNETLINK, IPCTNL_MSG_CT_DELETE, family, body))
        deleted = 0
        for (source, destination), reply in zip(tuples, self._nl.transact(requests), strict=True):
            if reply.error == 0:
                deleted += 1
            elif reply.error != errno.ENOENT:
                raise ConntrackError(reply.error, f"conntrack delete of {source} -> {destination}:"
                                                  f" {os.strerror(reply.error)}")
        return deleted

    def close(self) -> None:
        self._nl.close()
