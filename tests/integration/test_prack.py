"""Reliable provisional responses (RFC 3262) and 422 (RFC 4028) towards a callee."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.phone import Phone
from tests.support.server import ServerProcess, free_port
from tests.support.sipp import SCENARIOS, require_sipp

pytestmark = pytest.mark.integration


def test_reliable_ringing_from_the_callee_is_pracked(own_server: ServerProcess,
                                                     tmp_path: Path) -> None:
    uas_port = free_port()
    own_server.extra_config = (
        "trunks:\n"
        f"  - {{name: provider, host: 127.0.0.1, port: {uas_port}, context: from-provider,"
        " acl: ['127.0.0.1:1']}\n")
    own_server.start()
    log = tmp_path / "uas.log"
    uas = subprocess.Popen(
        [require_sipp(), "-sf", str(SCENARIOS / "uas_100rel.xml"), "-i", "127.0.0.1",
         "-p", str(uas_port), "-m", "1", "-nostdin", "-trace_logs", "-log_file", str(log),
         "-trace_err", "-error_file", str(tmp_path / "uas_err.log"), "-timeout", "30s"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with Phone.start("1001", "1001pass", own_server.udp_port, log_dir=tmp_path) as phone:
            assert phone.register() == 200
            call = phone.call(f"sip:2125551234@127.0.0.1:{own_server.udp_port}")
            # The caller supports 100rel too (pjsua does): its ringing is
            # reliable and PRACKed on its own leg.
            phone.wait_call_state(call, "EARLY", 10)
            phone.wait_call_state(call, "CONFIRMED", 10)
            phone.hangup(call)
            phone.wait_call_state(call, "DISCONNECTED", 10)
        assert uas.wait(20) == 0, (tmp_path / "uas_err.log").read_text(errors="replace")
    finally:
        if uas.poll() is None:
            uas.kill()
    assert "4711 1 INVITE" in log.read_text()
    pjsua_log = next(tmp_path.glob("phone-1001-*.pjsua.log")).read_text(errors="replace")
    assert "Require: 100rel" in pjsua_log and "PRACK sip:" in pjsua_log


def test_a_callee_asking_for_a_longer_session_interval_gets_it(own_server: ServerProcess,
                                                                tmp_path: Path) -> None:
    uas_port = free_port()
    own_server.extra_config = (
        "trunks:\n"
        f"  - {{name: provider, host: 127.0.0.1, port: {uas_port}, context: from-provider,"
        " acl: ['127.0.0.1:1']}\n")
    own_server.start()
    log = tmp_path / "uas.log"
    uas = subprocess.Popen(
        [require_sipp(), "-sf", str(SCENARIOS / "uas_422.xml"), "-i", "127.0.0.1",
         "-p", str(uas_port), "-m", "1", "-nostdin", "-trace_logs", "-log_file", str(log),
         "-trace_err", "-error_file", str(tmp_path / "uas_err.log"), "-timeout", "30s"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with Phone.start("1001", "1001pass", own_server.udp_port, log_dir=tmp_path) as phone:
            assert phone.register() == 200
            call = phone.call(f"sip:2125551234@127.0.0.1:{own_server.udp_port}")
            phone.wait_call_state(call, "CONFIRMED", 10)
            phone.hangup(call)
            phone.wait_call_state(call, "DISCONNECTED", 10)
        assert uas.wait(20) == 0, (tmp_path / "uas_err.log").read_text(errors="replace")
    finally:
        if uas.poll() is None:
            uas.kill()
    assert "1800;refresher=uac" in log.read_text()
