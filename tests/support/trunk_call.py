"""One outbound call from a phone through a trunk played by a sipp UAS scenario."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.phone import Phone
from tests.support.server import ServerProcess, free_port
from tests.support.sipp import SCENARIOS, require_sipp

NUMBER = "2125551234"  # the shipped dialplan sends it to trunk provider as +12125551234


def start_with_trunk(server: ServerProcess, **trunk: str) -> int:
    """Start `server` with a trunk `provider` on a free port; return that port."""
    port = free_port()
    settings = {"name": "provider", "host": "127.0.0.1", "port": str(port),
                "context": "from-provider", "acl": "['127.0.0.1:1']", **trunk}
    server.extra_config = "trunks:\n  - {" + ", ".join(f"{k}: {v}" for k, v in settings.items()) \
        + "}\n"
    server.start()
    return port


def call_through_trunk(server: ServerProcess, uas_port: int, scenario: str,
                       tmp_path: Path) -> str:
    """Phone 1001 calls NUMBER, the trunk (sipp running `scenario`) answers, 1001
    hangs up; returns sipp's log (its <log> actions). Fails if sipp did not
    complete its scenario."""
    log = tmp_path / "uas.log"
    errors = tmp_path / "uas_err.log"
    uas = subprocess.Popen(
        [require_sipp(), "-sf", str(SCENARIOS / scenario), "-i", "127.0.0.1",
         "-p", str(uas_port), "-m", "1", "-nostdin", "-trace_logs", "-log_file", str(log),
         "-trace_err", "-error_file", str(errors), "-timeout", "30s"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with Phone.start("1001", "1001pass", server.udp_port, log_dir=tmp_path) as phone:
            assert phone.register() == 200
            call = phone.call(f"sip:{NUMBER}@127.0.0.1:{server.udp_port}")
            phone.wait_call_state(call, "CONFIRMED", 15)
            phone.hangup(call)
            phone.wait_call_state(call, "DISCONNECTED", 10)
        code = uas.wait(20)
        assert code == 0, errors.read_text(errors="replace") if errors.exists() else code
    finally:
        if uas.poll() is None:
            uas.kill()
    return log.read_text(errors="replace") if log.exists() else ""
