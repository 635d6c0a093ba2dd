"""Reloading the dialplan and the directory of a running server."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from softswitch.cli import main
from tests.support.server import ROOT, ServerProcess
from tests.support.sip_client import SipClient, options_request

pytestmark = pytest.mark.integration


def _events(server: ServerProcess) -> list[dict]:
    out = []
    for line in server.log_path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def _wait_for(server: ServerProcess, match: Callable[[dict], bool], timeout: float = 10) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in _events(server):
            if match(event):
                return event
        time.sleep(0.05)
    raise AssertionError(f"no matching log line in {timeout}s:\n{server.log()}")


@pytest.fixture
def reloadable(own_server: ServerProcess, tmp_path: Path) -> ServerProcess:
    plan = tmp_path / "dialplan.yaml"
    directory = tmp_path / "directory.yaml"
    shutil.copy(ROOT / "conf" / "dialplan.yaml", plan)
    shutil.copy(ROOT / "conf" / "directory.yaml", directory)
    own_server.write_config()
    text = own_server.config_path.read_text()
    text = text.replace(str(ROOT / "conf" / "dialplan.yaml"), str(plan))
    text = text.replace(str(ROOT / "conf" / "directory.yaml"), str(directory))
    own_server.config_path.write_text(text)
    own_server.start()
    return own_server


def _answers(server: ServerProcess) -> bool:
    with SipClient("udp", ("127.0.0.1", server.udp_port)) as client:
        response = client.request(options_request(client))
    return response is not None and response.status == 200


def test_broken_dialplan_is_refused_and_the_old_one_stays(reloadable: ServerProcess,
                                                          tmp_path: Path) -> None:
    _wait_for(reloadable, lambda e: e.get("event") == "dialplan_loaded")
    plan = tmp_path / "dialplan.yaml"
    good = plan.read_text()
    plan.write_text(good + "\n  broken-context:\n    rules:\n      - match: _X.\n        actions: [frobnicate: 1]\n")
    result = CliRunner().invoke(main, ["reload", "--data-dir", str(reloadable.data_dir)])
    # The command reports the server's refusal, with the position, and fails.
    assert result.exit_code == 1, result.output
    assert "refused" in result.output and "dialplan: refused (generation 1 kept)" in result.output
    assert f"{plan}:" in result.output and "frobnicate" in result.output
    assert "directory: reloaded (4 accounts)" in result.output
    refused = _wait_for(reloadable, lambda e: e.get("event") == "dialplan_refused")
    assert f"{plan}:" in refused["error"] and "frobnicate" in refused["error"]
    _wait_for(reloadable, lambda e: e.get("event") == "dialplan_kept" and e.get("generation") == 1)
    assert _answers(reloadable)

    # A good file replaces the plan when it changes on disk, without a signal.
    plan.write_text(good.replace("9196", "9197"))
    _wait_for(reloadable, lambda e: e.get("event") == "dialplan_reloaded" and e.get("generation") == 2)


def test_directory_edit_reaches_the_running_server(reloadable: ServerProcess,
                                                   tmp_path: Path) -> None:
    directory = tmp_path / "directory.yaml"
    result = CliRunner().invoke(main, ["users", "add", "1005", "--password", "secret5",
                                       "--directory", str(directory),
                                       "--data-dir", str(reloadable.data_dir)])
    assert result.exit_code == 0, result.output
    assert "server reloaded: directory (5 accounts), dialplan (generation 2)" in result.output
    event = _wait_for(reloadable, lambda e: e.get("event") == "directory_reloaded")
    assert event["accounts"] == 5
    # A broken directory is refused and the accounts stay.
    directory.write_text(directory.read_text() + "\n  - oops: [\n")
    result = CliRunner().invoke(main, ["reload", "--data-dir", str(reloadable.data_dir)])
    assert result.exit_code == 1 and "directory: refused" in result.output
    assert f"{directory}:" in result.output
    _wait_for(reloadable, lambda e: e.get("event") == "directory_refused")
    assert _answers(reloadable)
