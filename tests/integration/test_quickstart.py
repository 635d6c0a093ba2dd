"""The README's quick start, followed as a new user would (issue 18).

The shipped configuration as it is (`make run` serves conf/softswitch.yaml),
only on free loopback ports and a temporary data dir: two of the shipped
users register with real phones and call each other, and a script reads
the call back with `softswitch cdr --json`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.support.phone import answered_call, registered_phones
from tests.support.server import ROOT, ServerProcess, free_port
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


def softswitch(*args: str) -> subprocess.CompletedProcess[str]:
    """A command as a script runs it, from the project folder."""
    return subprocess.run([sys.executable, "-m", "softswitch", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=30)


def test_quick_start_register_call_and_read_the_cdr(tmp_path: Path) -> None:
    port = free_port()
    server = ServerProcess(tmp_path / "server", udp_port=port,
                           run_args=("--listen", f"udp:127.0.0.1:{port}",
                                     "--listen", f"tcp:127.0.0.1:{port}"))
    server.config_path = ROOT / "conf" / "softswitch.yaml"  # as shipped, untouched
    server.start()
    try:
        a, b = registered_phones(port, ["1001", "1002"], tmp_path)
        try:
            call, _ = answered_call(a, b, f"sip:1002@127.0.0.1:{port}")
            a.hangup(call)
            a.wait_call_state(call, "DISCONNECTED", 10)
        finally:
            a.close()
            b.close()
        data = str(server.data_dir)
        result = wait_for(lambda: (r := softswitch("cdr", "--json", "--data-dir", data))
                          .returncode == 0 and json.loads(r.stdout) and r, 10, "the CDR")
        [record] = json.loads(result.stdout)
        assert record["caller"] == "1001" and record["dialled"] == "1002"
        assert record["callee"] == "user/1002" and record["disposition"] == "ANSWERED"
        # Times carry their zone: the shipped dialplan's America/New_York.
        start = datetime.fromisoformat(record["start"])
        zone = ZoneInfo("America/New_York")
        assert start.utcoffset() == datetime.fromtimestamp(record["start_epoch"], zone).utcoffset()
        registrations = softswitch("registrations", "--json", "--data-dir", data)
        assert registrations.returncode == 0
        listed = softswitch("users", "list", "--json")
        assert {u["user"] for u in json.loads(listed.stdout)} == {"1001", "1002", "1003", "1004"}
        assert "trunk_not_configured" in server.log()  # the example trunk, named at start
    finally:
        server.stop()
    assert not (server.data_dir / "softswitch.pid").exists()
