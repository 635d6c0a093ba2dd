"""A trunk known by its credentials rather than its address."""

from __future__ import annotations

from pathlib import Path

import pytest

from softswitch.cdr import read_cdrs
from tests.support.cdrs import wait_for_cdrs
from tests.support.phone import Phone
from tests.support.server import ServerProcess, free_port
from tests.support.sipp import SCENARIOS, run_sipp

pytestmark = pytest.mark.integration

DID = "+15550101001"  # rings 1001 in the shipped from-provider context

DIRECTORY = """\
domains:
  - name: pbx.example.com
    algorithms: [MD5]   # sipp answers MD5 only
    users:
      - {user: "1001", password: "1001pass"}
"""


def test_inbound_call_from_a_trunk_that_authenticates(own_server: ServerProcess,
                                                      tmp_path: Path) -> None:
    own_server.directory = tmp_path / "directory.yaml"
    own_server.directory.write_text(DIRECTORY)
    own_server.extra_config = (
        "trunks:\n"
        "  - {name: provider, host: 192.0.2.1, context: from-provider,"
        " username: peering, password: s3cret}\n")
    own_server.start()
    with Phone.start("1001", "1001pass", own_server.udp_port, log_dir=tmp_path) as phone:
        assert phone.register() == 200
        import threading

        results: list = []  # type: ignore[type-arg]
        sipp = threading.Thread(target=lambda: results.append(run_sipp(
            [f"127.0.0.1:{own_server.udp_port}", "-sf", str(SCENARIOS / "provider_uac_auth.xml"),
             "-s", DID, "-au", "peering", "-ap", "s3cret", "-i", "127.0.0.1",
             # sipp puts "sip:" before -auth_uri; without it, the server address
             "-auth_uri", f"{DID}@127.0.0.1:{own_server.udp_port}",
             "-p", str(free_port()), "-mi", "127.0.0.1", "-mp", str(free_port()),
             "-m", "1", "-timeout", "30"], tmp_path)), daemon=True)
        sipp.start()
        incoming = phone.wait_event("incoming_call", 15)
        phone.answer(incoming["call"], 200)
        phone.wait_call_state(incoming["call"], "DISCONNECTED", 15)
        sipp.join(30)
    [result] = results
    assert result.successful == 1 and result.failed == 0, result.output
    [record] = wait_for_cdrs(own_server.data_dir)
    assert record.trunk == "provider" and record.context == "from-provider"
    assert record.callee == "user/1001" and record.caller == "+12125550000"


def test_wrong_trunk_password_is_refused(own_server: ServerProcess, tmp_path: Path) -> None:
    own_server.directory = tmp_path / "directory.yaml"
    own_server.directory.write_text(DIRECTORY)
    own_server.extra_config = (
        "trunks:\n"
        "  - {name: provider, host: 192.0.2.1, context: from-provider,"
        " username: peering, password: s3cret}\n")
    own_server.start()
    result = run_sipp(
        [f"127.0.0.1:{own_server.udp_port}", "-sf", str(SCENARIOS / "provider_uac_auth.xml"),
         "-s", DID, "-au", "peering", "-ap", "wrong", "-i", "127.0.0.1",
         "-auth_uri", f"{DID}@127.0.0.1:{own_server.udp_port}",
         "-p", str(free_port()), "-m", "1", "-timeout", "15"], tmp_path)
    assert result.successful == 0 and result.failed == 1
    assert "403" in result.output
    assert not (own_server.data_dir / "cdr.sqlite").exists() \
        or read_cdrs(own_server.data_dir / "cdr.sqlite") == []
