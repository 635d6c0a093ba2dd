"""The relay process with --hep: one socket, reports correlated by the stored SIP Call-ID."""

from __future__ import annotations

import json
import random
import socket
from pathlib import Path
from typing import Any

from rtpmedia.hep import decode
from rtpmedia.relay.fastpath import NoFastPath
from rtpmedia.relay.quality import ReportBlock, RtcpReport
from rtpmedia.relay.service import Relay, RelaySettings


class FakeReactor:
    def addReader(self, reader: Any) -> None:  # noqa: N802
        pass

    def removeReader(self, reader: Any) -> None:  # noqa: N802
        pass


def test_reports_go_to_the_collector_named_by_host_name_with_the_sip_call_id(
        tmp_path: Path) -> None:
    collector = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    collector.bind(("127.0.0.1", 0))
    collector.settimeout(2.0)
    low = random.randrange(40000, 48000, 2)
    settings = RelaySettings(control=("127.0.0.1", 0), ports=(low, low + 9),
                             advertise="192.0.2.5", listen="0.0.0.0", data_dir=tmp_path,
                             hep=("localhost", collector.getsockname()[1]), hep_id=3,
                             hep_auth_key="k")
    relay = Relay(settings, FakeReactor(), (NoFastPath(), None))
    try:
        assert relay.forwarder.capture is relay.hep and relay.hep is not None
        sdp = ("v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
               "m=audio 4000 RTP/AVP 0\r\n")
        answer, _ = relay.control.handle({"command": "offer", "call-id": "uuid-1",
                                          "from-tag": "A", "to-tag": "B", "sdp": sdp,
                                          "sip-call-id": "abc@192.0.2.10"}, 0)
        assert answer["result"] == "ok"
        end = relay.control.calls["uuid-1"].monologues["A"].ends[0]
        rr = RtcpReport(7, (ReportBlock(8, 0, 0, 100, 5, 0, 0),)).serialize()
        relay.hep(end, rr, ("192.0.2.10", 4001), ("0.0.0.0", end.port + 1), 100.0)
        relay.hep(end, rr, ("192.0.2.10", 4001), ("0.0.0.0", end.port + 1), 101.0)
        relay.control.calls.clear()  # a report racing the call's deletion: the uuid, not nothing
        relay.hep(end, rr, ("192.0.2.10", 4001), ("0.0.0.0", end.port + 1), 102.0)
        packets = [decode(collector.recv(65536)) for _ in range(3)]
        assert [p.correlation_id for p in packets] == ["abc@192.0.2.10"] * 2 + ["uuid-1"]
        first = packets[0]
        assert first.destination == ("192.0.2.5", end.port + 1)  # wildcard: the advertised one
        assert first.agent_id == 3 and first.auth_key == "k"
        assert json.loads(first.payload)["type"] == 201
    finally:
        relay.stopService()  # closes the HEP socket with the rest
        collector.close()


def test_a_collector_that_does_not_resolve_leaves_the_media_alone(tmp_path: Path) -> None:
    settings = RelaySettings(control=("127.0.0.1", 0), ports=(40000, 40009),
                             advertise="127.0.0.1", listen="127.0.0.1", data_dir=tmp_path,
                             hep=("homer.invalid", 9060))
    relay = Relay(settings, FakeReactor(), (NoFastPath(), None))
    try:
        assert relay.hep is None and relay.forwarder.capture is None
    finally:
        relay.stopService()
