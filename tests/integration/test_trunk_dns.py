"""A trunk given by domain name is found through DNS SRV (RFC 3263)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cdrs import wait_for_cdrs
from tests.support.phone import Phone
from tests.support.server import ROOT, ServerProcess, free_port
from tests.support.sipp import SCENARIOS, require_sipp

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("first_edge_down", [False, True])
def test_outbound_call_to_a_trunk_found_by_srv(own_server: ServerProcess, tmp_path: Path,
                                               first_edge_down: bool) -> None:
    uas_port, dns_port, down_port = free_port(), free_port(), free_port()
    srv = [[10, 1, uas_port, "edge1.provider.test"]]
    if first_edge_down:
        # RFC 3263 4.3: a 503 from the preferred edge sends the INVITE to the next.
        srv = [[5, 1, down_port, "edge1.provider.test"], [10, 1, uas_port, "edge1.provider.test"]]
    zone = {
        # No NAPTR: RFC 3263 4.1 probes SRV, and only _sip._udp exists.
        "_sip._udp.provider.test": {"SRV": srv},
        "edge1.provider.test": {"A": ["127.0.0.1"]},
    }
    (tmp_path / "zone.json").write_text(json.dumps(zone))
    dns_server = subprocess.Popen(
        [sys.executable, "-m", "tests.support.dns_server", str(tmp_path / "zone.json"),
         str(dns_port)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert dns_server.stdout is not None and dns_server.stdout.readline().strip() == "ready"
    down = subprocess.Popen(
        [require_sipp(), "-sf", str(SCENARIOS / "uas_503.xml"), "-i", "127.0.0.1",
         "-p", str(down_port), "-m", "1", "-nostdin", "-timeout", "30s"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) \
        if first_edge_down else None
    messages = tmp_path / "uas_messages.log"
    uas = subprocess.Popen(
        [require_sipp(), "-sn", "uas", "-i", "127.0.0.1", "-p", str(uas_port), "-m", "1",
         "-nostdin", "-trace_msg", "-message_file", str(messages), "-timeout", "30s"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    own_server.extra_config = (
        f"dns_servers: ['127.0.0.1:{dns_port}']\n"
        "trunks:\n"
        "  - {name: provider, host: provider.test, context: from-provider,"
        " acl: ['127.0.0.1:1']}\n")
    try:
        own_server.start()
        with Phone.start("1001", "1001pass", own_server.udp_port, log_dir=tmp_path) as phone:
            assert phone.register() == 200
            call = phone.call(f"sip:2125551234@127.0.0.1:{own_server.udp_port}")
            phone.wait_call_state(call, "CONFIRMED", 15)
            phone.hangup(call)
            phone.wait_call_state(call, "DISCONNECTED", 10)
        assert uas.wait(20) == 0
        if down is not None:
            assert down.wait(20) == 0  # it got the INVITE first, and its ACK
    finally:
        for process in (uas, dns_server, down):
            if process is not None and process.poll() is None:
                process.kill()
    text = messages.read_text(errors="replace")
    assert "INVITE sip:+12125551234@provider.test SIP/2.0" in text, text[:2000]
    [record] = wait_for_cdrs(own_server.data_dir)
    assert record.trunk == "provider" and record.callee == "trunk/provider/+12125551234"
