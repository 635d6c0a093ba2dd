"""The server registers its trunk to the provider (RFC 3261 10.2 as a UAC).

sipp plays the provider's registrar (`sipp/registrar_auth.xml`): it
challenges, checks the digest answer, grants 2 s so that the refresh comes
at once, and then takes the unregister that the server sends when stopped.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.server import ServerProcess, free_port
from tests.support.sipp import SCENARIOS, require_sipp
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


def registration_events(server: ServerProcess) -> list[dict[str, Any]]:
    events = []
    for line in server.log_path.read_text(errors="replace").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("event") == "trunk_registration":
            events.append(event)
    return events




def test_trunk_registers_refreshes_and_unregisters(own_server: ServerProcess,
                                                   tmp_path: Path) -> None:
    registrar_port = free_port()
    log = tmp_path / "registrar.log"
    errors = tmp_path / "registrar_err.log"
    registrar = subprocess.Popen(
        [require_sipp(), "-sf", str(SCENARIOS / "registrar_auth.xml"), "-i", "127.0.0.1",
         "-p", str(registrar_port), "-m", "1", "-nostdin", "-trace_logs", "-log_file", str(log),
         "-trace_err", "-error_file", str(errors), "-timeout", "30s"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    own_server.extra_config = (
        "trunks:\n"
        f"  - {{name: provider, host: 127.0.0.1, port: {registrar_port},\n"
        "      username: trunkuser, password: trunkpass, from_domain: provider.test,\n"
        "      register: true, register_expires: 600, retry_min: 1, retry_max: 2}\n")
    try:
        own_server.start()
        # Registered, then registered again by the refresh at 1 s (half of 2 s).
        wait_for(lambda: [e["state"] for e in registration_events(own_server)].count(
            "registered") >= 2, 15, f"two registrations:\n{own_server.log()}")
        assert own_server.stop() == 0
        assert registrar.wait(15) == 0, errors.read_text(errors="replace") if errors.exists() \
            else "sipp failed"
    finally:
        if registrar.poll() is None:
            registrar.kill()
    text = log.read_text()
    port = own_server.udp_port
    assert (f"register ruri=REGISTER sip:provider.test "
            f"contact=sip:trunkuser@127.0.0.1:{port} expires=600") in text
    assert "verified register" in text and "verified refresh" in text
    assert "verified unregister expires=0" in text
    assert "credentials refused" not in text
    states = [(e["state"], e.get("code"), e["trunk"]) for e in registration_events(own_server)]
    assert states == [
        ("registering", None, "provider"), ("registered", 200, "provider"),
        ("refreshing", None, "provider"), ("registered", 200, "provider"),
        ("unregistering", None, "provider"), ("unregistered", 200, "provider")]
    granted = [e.get("expires") for e in registration_events(own_server)
               if e["state"] == "registered"]
    assert granted == [2, 600]  # from our Contact, not the other binding nor Expires
