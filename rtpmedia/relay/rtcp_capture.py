"""RTCP reports passing through the relay, to a Homer collector over HEP v3.

As rtpengine and heplify do it: each RTCP compound packet the relay
forwards goes to the collector as HEP payload type 5 (RTCP as JSON, the
shape heplify-server and Homer read: `type` 200 for an SR or 201 for an
RR, the sender's `ssrc`, `sender_information` of an SR, and
`report_blocks` with `fraction_lost`, `packets_lost`, `ia_jitter`,
`lsr`, `dlsr`), with the packet's addresses as received and, as the
correlation id, the SIP Call-ID of the call's caller leg, so Homer shows
the reports next to the call's SIP messages.

`rtcp_json` is pure; `RtcpCapture` is the forwarder's injected capture: it
parses with `quality.parse_rtcp` (the relay's one RTCP parser) and hands
each datagram to `send`.
"""

from __future__ import annotations

import json
import socket
import struct
from collections.abc import Callable, Sequence
from typing import Any

from rtpmedia.hep import RTCP_JSON, HepPacket, encode
from rtpmedia.relay.calls import Address, MediaEnd
from rtpmedia.relay.quality import RTCP_RR, RTCP_SR, ReportBlock, RtcpReport, parse_rtcp


def _block(block: ReportBlock) -> dict[str, int]:
    return {
        "source_ssrc": block.ssrc,
        "fraction_lost": block.fraction_lost,
        # heplify reads the 24-bit field unsigned: a negative count (duplicates,
        # RFC 3550 A.3) would make it refuse the whole report, and means no loss.
        "packets_lost": max(0, block.cumulative_lost),
        "highest_seq_no": block.highest_seq,
        "ia_jitter": block.jitter,
        "lsr": block.lsr,
        "dlsr": block.dlsr,
    }


def rtcp_json(reports: Sequence[RtcpReport]) -> str | None:
    """Homer's JSON of one compound packet's SRs and RRs; None if it has neither.

    A compound packet carries one SR or RR first (RFC 3550 6.1) and rarely
    more: the first names the sender and its kind; the blocks of all are
    listed, as heplify does.
    """
    if not reports:
        return None
    first = reports[0]
    blocks = [_block(b) for report in reports for b in report.blocks]
    out: dict[str, Any] = {"type": RTCP_SR if first.is_sender_report else RTCP_RR,
                           "ssrc": first.ssrc, "report_count": len(blocks),
                           "report_blocks": blocks}
    if first.ntp is not None:
        out["sender_information"] = {
            "ntp_timestamp_sec": first.ntp >> 32,
            "ntp_timestamp_usec": first.ntp & 0xFFFFFFFF,
            "rtp_timestamp": first.rtp_timestamp or 0,
            "packets": first.packet_count or 0,
            "octets": first.octet_count or 0,
        }
    return json.dumps(out, separators=(",", ":"))


class RtcpCapture:
    """Sends a HEP v3 copy of each RTCP report the forwarder passes on.

    `correlation(call_id)` is the SIP Call-ID of the relay's call `call_id`
    (the ng call-id when no SIP Call-ID is known: Kamailio's ng call-id is
    the SIP one already). `local_host` replaces the relay's own address when
    it listens on a wildcard, which Homer could not place. Packets with no
    SR or RR (SDES or BYE alone) and addresses that cannot be encoded are
    counted in `skipped`: capture never disturbs the media.
    """

    def __init__(self, send: Callable[[bytes], None], correlation: Callable[[str], str], *,
                 agent_id: int = 0, auth_key: str = "", local_host: str | None = None) -> None:
        self.send = send
        self.correlation = correlation
        self.agent_id = agent_id
        self.auth_key = auth_key
        self.local_host = local_host
        self.sent = 0
        self.skipped = 0

    def __call__(self, end: MediaEnd, data: bytes, source: Address, local: Address,
                 now: float) -> None:
        """`end`'s party sent `data` from `source`; it arrived at the relay's `local` at `now`."""
        report = rtcp_json(parse_rtcp(data))
        if report is None:
            self.skipped += 1
            return
        if self.local_host is not None:
            local = (self.local_host, local[1])
        try:
            datagram = encode(HepPacket(
                protocol=socket.IPPROTO_UDP, source=source, destination=local, time=now,
                payload=report.encode(), payload_type=RTCP_JSON,
                correlation_id=self.correlation(end.call_id), agent_id=self.agent_id,
                auth_key=self.auth_key))
        except (ValueError, struct.error):
            self.skipped += 1
            return
        self.send(datagram)
        self.sent += 1
