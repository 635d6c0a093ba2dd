"""HEP v3 capture: every SIP message sent and received, to a Homer collector.

The wire format (HEP v3 chunks, `encode`/`decode`) lives in `rtpmedia.hep`,
shared with the relay, which sends the RTCP reports of the same calls
(payload type 5, correlated by the caller's SIP Call-ID). Its names are
re-exported here for the callers that know them from this module.

`HepCapture` is a `MessageObserver` of the SIP core handing each datagram
to `send`.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable

from rtpmedia.hep import (
    MAGIC,
    RTCP_JSON,
    SIP,
    HepError,
    HepPacket,
    decode,
    decode_chunks,
    encode,
)
from softswitch.sip.message import Request, Response
from softswitch.sip.peer import Peer

__all__ = ["MAGIC", "RTCP_JSON", "SIP", "HepCapture", "HepError", "HepPacket", "LocalAddress",
           "decode", "decode_chunks", "encode"]

_PROTOCOLS = {"udp": socket.IPPROTO_UDP, "tcp": socket.IPPROTO_TCP, "tls": socket.IPPROTO_TCP}


LocalAddress = Callable[[Peer], tuple[str, int]]


class HepCapture:
    """Sends a HEP v3 copy of each SIP message through `send` (a UDP socket's write).

    `local(peer)` names our address on the path to `peer`. A message whose
    addresses cannot be encoded (a host name, mixed families) is counted in
    `skipped` and not sent: capture must never disturb signalling.
    """

    def __init__(self, send: Callable[[bytes], None], local: LocalAddress, *,
                 agent_id: int = 0, auth_key: str = "") -> None:
        self.send = send
        self.local = local
        self.agent_id = agent_id
        self.auth_key = auth_key
        self.sent = 0
        self.skipped = 0

    def message_received(self, message: Request | Response, peer: Peer, now: float) -> None:
        self._capture(message, peer, now, True)

    def message_sent(self, message: Request | Response, peer: Peer, now: float) -> None:
        self._capture(message, peer, now, False)

    def _capture(self, message: Request | Response, peer: Peer, now: float,
                 received: bool) -> None:
        ours = self.local(peer)
        theirs = (peer.host, peer.port)
        try:
            datagram = encode(HepPacket(
                protocol=_PROTOCOLS.get(peer.transport, socket.IPPROTO_UDP),
                source=theirs if received else ours, destination=ours if received else theirs,
                time=now, payload=message.to_bytes(), payload_type=SIP,
                correlation_id=message.get("call-id") or "", agent_id=self.agent_id,
                auth_key=self.auth_key))
        except (ValueError, struct.error):
            self.skipped += 1
            return
        self.send(datagram)
        self.sent += 1
