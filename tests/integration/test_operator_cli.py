"""The CLI against a real server, as an operator uses it (issue 18, points 2, 3, 4, 6, 8).

The servers here have their own copies of the directory and dialplan, and
`data_dir` in their configuration, so that commands find them with
`--config` alone, from any folder. One server is shared by the tests that
leave it running (they edit its directory, so they count accounts from the
file); a test that kills its server has its own.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from softswitch.cli import main
from softswitch.directory import load_directory
from softswitch.location.sqlite import read_bindings
from tests.support.phone import registered_phones
from tests.support.server import ROOT, ServerProcess, free_port
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


def _office(server: ServerProcess, folder: Path) -> ServerProcess:
    """`server` on copies of the shipped directory and dialplan, data_dir in its config."""
    for name in ("dialplan.yaml", "directory.yaml"):
        shutil.copy(ROOT / "conf" / name, folder / name)
    server.directory = folder / "directory.yaml"
    server.dialplan = folder / "dialplan.yaml"
    server.extra_config = f"data_dir: {server.data_dir}\n"
    server.start()
    return server


@pytest.fixture(scope="module")
def office(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("office")
    server = _office(ServerProcess(folder / "server"), folder)
    yield server
    server.stop()


@pytest.fixture
def own_office(own_server: ServerProcess, tmp_path: Path) -> ServerProcess:
    return _office(own_server, tmp_path)


def accounts(server: ServerProcess) -> int:
    assert server.directory is not None
    return sum(1 for _ in load_directory(server.directory).accounts())


def reloaded(output: str) -> int:
    """The account count of a successful reload report."""
    found = re.search(r"server reloaded: directory \((\d+) accounts\), dialplan "
                      r"\(generation \d+\)", output)
    assert found is not None, output
    return int(found.group(1))


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def events(server: ServerProcess, name: str) -> list[dict]:
    out = []
    for line in server.log_path.read_text(errors="replace").splitlines():
        if line.startswith("{") and f'"{name}"' in line:
            event = json.loads(line)
            if event.get("event") == name:
                out.append(event)
    return out


def test_commands_find_the_server_from_any_folder_with_config(
        office: ServerProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = str(office.config_path)
    result = cli("reload", "--config", config)
    assert result.exit_code == 0, result.output
    assert reloaded(result.output) == accounts(office)
    result = cli("registrations", "--config", config, "--json")
    assert result.exit_code == 0 and isinstance(json.loads(result.stdout), list)
    result = cli("users", "list", "--config", config, "--json")
    assert result.exit_code == 0 and len(json.loads(result.stdout)) == accounts(office)
    result = cli("cdr", "--config", config, "--json")
    assert result.exit_code == 0 and json.loads(result.stdout) == []
    result = cli("dialplan", "check", "--config", config)
    assert result.exit_code == 0 and str(office.dialplan) in result.stdout

    # Without a configuration, they say where they looked.
    result = cli("reload")
    assert result.exit_code == 3
    assert f"{elsewhere / 'data'}" in result.output and "no --config" in result.output
    result = cli("registrations")
    assert result.exit_code == 1 and f"{elsewhere / 'data'}" in result.output


def test_second_server_on_the_same_data_dir_is_refused(office: ServerProcess) -> None:
    pid_file = office.data_dir / "softswitch.pid"
    assert office.process is not None
    assert pid_file.read_text().strip() == str(office.process.pid)
    # Other ports, so that only the data dir is shared.
    port = free_port()
    second = subprocess.run(
        office.command("--listen", f"udp:127.0.0.1:{port}"), cwd=ROOT,
        capture_output=True, text=True, timeout=30)
    assert second.returncode == 4, second.stderr
    assert f"already running on data dir {office.data_dir}" in second.stderr
    assert f"pid {office.process.pid}" in second.stderr
    # The first one's pid file is intact, and the CLI still reaches it.
    assert pid_file.read_text().strip() == str(office.process.pid)
    assert cli("reload", "--config", str(office.config_path)).exit_code == 0


def test_stale_pid_file_never_signals_a_process_that_reused_the_pid(
        own_office: ServerProcess) -> None:
    office = own_office
    office.kill9()  # a crash: the pid file stays, the lock goes with the process
    assert (office.data_dir / "softswitch.pid").exists()
    # An unrelated process now has a pid the file could name; SIGHUP would kill it.
    bystander = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                                 stdin=subprocess.PIPE)
    try:
        (office.data_dir / "softswitch.pid").write_text(f"{bystander.pid}\n")
        result = cli("reload", "--config", str(office.config_path))
        assert result.exit_code == 3
        assert "no running server (a stale pid file was ignored)" in result.output
        assert bystander.poll() is None, "the unrelated process was signalled"
    finally:
        bystander.kill()
        bystander.wait()


def test_hand_edits_of_the_directory_are_picked_up(office: ServerProcess) -> None:
    assert office.directory is not None
    before = len(events(office, "directory_changed_on_disk"))
    text = office.directory.read_text()
    # Appended to the last domain's users list, as an operator would type it.
    office.directory.write_text(text + '\n      - user: "1009"\n        password: "long-pass-1009"\n')
    wait_for(lambda: len(events(office, "directory_changed_on_disk")) > before, 10,
             "the server to notice the edit")
    event = wait_for(lambda: [e for e in events(office, "directory_reloaded")
                              if e["accounts"] == accounts(office)], 10,
                     "the directory reloaded after a hand edit")[-1]
    assert event["accounts"] == accounts(office)
    assert load_directory(office.directory).find("1009") is not None


def test_users_remove_drops_the_users_registrations(office: ServerProcess,
                                                   tmp_path: Path) -> None:
    phones = registered_phones(office.udp_port, ["1001", "1002"], tmp_path)
    try:
        location = office.data_dir / "location.sqlite"
        assert {b.aor.split("@")[0] for b in read_bindings(location)} == {"1001", "1002"}
        result = cli("users", "remove", "1002", "--config", str(office.config_path))
        assert result.exit_code == 0, result.output
        assert reloaded(result.output) == accounts(office)
        # Removed durably, through the store: the file says so, not only memory.
        wait_for(lambda: {b.aor.split("@")[0] for b in read_bindings(location)} == {"1001"},
                 10, "1002's binding removed from the store")
        assert cli("registrations", "1002", "--config", str(office.config_path)).exit_code == 1
    finally:
        for phone in phones:
            phone.close()


def test_users_add_reports_the_reload_and_warns(office: ServerProcess, tmp_path: Path) -> None:
    result = cli("users", "add", "1005", "--password", "1005", "--groups", "sales",
                 "--config", str(office.config_path))
    assert result.exit_code == 0, result.output
    assert "weak password" in result.output and "no rule of" in result.output
    assert reloaded(result.output) == accounts(office)
    # The same with no server on the data dir: the file is edited, and the
    # command says nothing was reloaded, with its own exit status.
    result = cli("users", "add", "1006", "--password", "long-pass-1006",
                 "--config", str(office.config_path), "--data-dir", str(tmp_path))
    assert result.exit_code == 3
    assert "added 1006" in result.output and "nothing was reloaded" in result.output
