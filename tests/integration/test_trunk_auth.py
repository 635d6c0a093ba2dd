"""Outbound calls to a trunk that challenges our INVITEs (RFC 3261 22.2)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from softswitch.cdr import Disposition
from tests.support.cdrs import wait_for_cdrs
from tests.support.phone import Phone
from tests.support.server import ServerProcess, free_port
from tests.support.sipp import SCENARIOS, require_sipp

pytestmark = pytest.mark.integration


def test_provider_challenge_is_answered_with_the_trunk_credentials(
        own_server: ServerProcess, tmp_path: Path) -> None:
    uas_port = free_port()
    own_server.extra_config = (
        "trunks:\n"
        f"  - {{name: provider, host: 127.0.0.1, port: {uas_port}, context: from-provider,\n"
        "      acl: ['127.0.0.1:1'], username: trunkuser, password: trunkpass}\n")
    own_server.start()
    log = tmp_path / "uas.log"
    uas = subprocess.Popen(
        [require_sipp(), "-sf", str(SCENARIOS / "uas_auth.xml"), "-i", "127.0.0.1",
         "-p", str(uas_port), "-m", "1", "-nostdin", "-trace_logs", "-log_file", str(log),
         "-trace_err", "-error_file", str(tmp_path / "uas_err.log"), "-timeout", "30s"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    phone = Phone.start("1001", "1001pass", own_server.udp_port, log_dir=tmp_path)
    try:
        assert phone.register() == 200
        call = phone.call(f"sip:2125551234@127.0.0.1:{own_server.udp_port}")
        phone.wait_call_state(call, "CONFIRMED", 15)
        phone.hangup(call)
        phone.wait_call_state(call, "DISCONNECTED", 10)
        assert uas.wait(20) == 0, (tmp_path / "uas_err.log").read_text(errors="replace")
    finally:
        phone.close()
        if uas.poll() is None:
            uas.kill()
    # The dialplan normalised the number to E.164 before it went out.
    assert "dialled INVITE sip:+12125551234@" in log.read_text()
    [record] = wait_for_cdrs(own_server.data_dir)
    assert record.disposition is Disposition.ANSWERED and record.trunk == "provider"
    assert record.b_leg_codes[-1] == 200
