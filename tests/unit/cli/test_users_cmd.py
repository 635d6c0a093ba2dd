"""`softswitch users` through click's CliRunner, on a copy of the shipped directory."""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from softswitch.cli.users_cmd import users
from softswitch.directory import load_directory
from softswitch.sip.digest import Algorithm, ha1

SHIPPED = Path(__file__).resolve().parents[3] / "conf" / "directory.yaml"
SECRETS = ("1001pass", "1002pass", "1004pass", "ab88b13cea2e543d83148f837c477f7d")


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    directory = tmp_path / "directory.yaml"
    shutil.copy(SHIPPED, directory)
    data = tmp_path / "data"
    data.mkdir()
    return directory, data


def invoke(files: tuple[Path, Path], *args: str, input: str | None = None) -> tuple[int, str]:
    directory, data = files
    extra = ["--directory", str(directory)]
    if args[0] != "list":
        extra += ["--data-dir", str(data)]
    result = CliRunner().invoke(users, [*args, *extra], input=input)
    return result.exit_code, result.output


@pytest.fixture
def hup_count() -> Iterator[list[int]]:
    received: list[int] = []
    previous = signal.signal(signal.SIGHUP, lambda signum, frame: received.append(signum))
    yield received
    signal.signal(signal.SIGHUP, previous)


def test_list_shows_accounts_and_no_secret(files: tuple[Path, Path]) -> None:
    code, out = invoke(files, "list")
    assert code == 0, out
    for user in ("1001", "1002", "1003", "1004"):
        assert user in out
    assert "Alice Example" in out
    assert "password" in out and "ha1" in out
    assert not any(s in out for s in SECRETS)


def test_add_with_password_option(files: tuple[Path, Path]) -> None:
    code, out = invoke(files, "add", "1005", "--password", "s3cret", "--display-name", "Dave")
    assert code == 0, out
    assert "added 1005@pbx.example.com" in out
    assert "no running server" in out
    assert "s3cret" not in out
    account = load_directory(files[0]).find("1005")
    assert account is not None and account.display_name == "Dave"
    assert "# Old phones and test tools" in files[0].read_text()


def test_add_prompts_for_password_and_hashes(files: tuple[Path, Path]) -> None:
    code, out = invoke(files, "add", "1006", "--ha1-only", input="pw6\npw6\n")
    assert code == 0, out
    assert "pw6" not in out and "pw6" not in files[0].read_text()
    account = load_directory(files[0]).find("1006")
    assert account is not None
    assert account.ha1(Algorithm.SHA256) == ha1(Algorithm.SHA256, "1006", "pbx.example.com", "pw6")


def test_add_duplicate_fails_clearly(files: tuple[Path, Path]) -> None:
    code, out = invoke(files, "add", "1001", "--password", "x")
    assert code == 1
    assert "already exists" in out


def test_remove_and_unknown_user(files: tuple[Path, Path]) -> None:
    code, out = invoke(files, "remove", "1002")
    assert code == 0, out
    assert load_directory(files[0]).find("1002") is None
    code, out = invoke(files, "remove", "1002")
    assert code == 1 and "no user 1002" in out


def test_passwd(files: tuple[Path, Path]) -> None:
    code, out = invoke(files, "passwd", "1001", input="changed\nchanged\n")
    assert code == 0, out
    account = load_directory(files[0]).find("1001")
    assert account is not None
    assert account.ha1(Algorithm.MD5) == ha1(Algorithm.MD5, "1001", "pbx.example.com", "changed")
    assert "changed" not in out.replace("password changed", "")
    code, out = invoke(files, "passwd", "4242", "--password", "x")
    assert code == 1 and "no user 4242" in out


def test_edit_signals_running_server(files: tuple[Path, Path], hup_count: list[int]) -> None:
    (files[1] / "softswitch.pid").write_text(f"{os.getpid()}\n")
    code, out = invoke(files, "add", "1008", "--password", "x")
    assert code == 0, out
    assert "reloaded running server" in out
    assert hup_count == [signal.SIGHUP]


def test_stale_pid_file_means_no_server(files: tuple[Path, Path]) -> None:
    (files[1] / "softswitch.pid").write_text("999999999\n")
    code, out = invoke(files, "remove", "1004")
    assert code == 0, out
    assert "no running server" in out


def test_invalid_directory_reports_positions(files: tuple[Path, Path]) -> None:
    files[0].write_text("domains:\n  - name: a.example\n    users: 3\n")
    code, out = invoke(files, "list")
    assert code == 1
    assert f"{files[0]}:3:12: users must be a list" in out
