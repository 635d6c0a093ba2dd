"""`softswitch users` through click's CliRunner, on a copy of the shipped directory."""

from __future__ import annotations

import json
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
    # The file is changed, but no server runs on the data dir: a distinct status.
    assert code == 3, out
    assert "added 1005@pbx.example.com" in out
    assert "no running server" in out and "nothing was reloaded" in out
    assert "s3cret" not in out
    account = load_directory(files[0]).find("1005")
    assert account is not None and account.display_name == "Dave"
    assert "# Old phones and test tools" in files[0].read_text()


def test_add_prompts_for_password_and_hashes(files: tuple[Path, Path]) -> None:
    code, out = invoke(files, "add", "1006", "--ha1-only", "--no-reload", input="pw6\npw6\n")
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
    code, out = invoke(files, "remove", "1002", "--no-reload")
    assert code == 0, out
    assert load_directory(files[0]).find("1002") is None
    code, out = invoke(files, "remove", "1002")
    assert code == 1 and "no user 1002" in out


def test_passwd(files: tuple[Path, Path]) -> None:
    code, out = invoke(files, "passwd", "1001", "--no-reload", input="changed\nchanged\n")
    assert code == 0, out
    account = load_directory(files[0]).find("1001")
    assert account is not None
    assert account.ha1(Algorithm.MD5) == ha1(Algorithm.MD5, "1001", "pbx.example.com", "changed")
    assert "changed" not in out.replace("password changed", "")
    code, out = invoke(files, "passwd", "4242", "--password", "x")
    assert code == 1 and "no user 4242" in out


def test_a_pid_file_without_the_lock_is_never_signalled(files: tuple[Path, Path],
                                                         hup_count: list[int]) -> None:
    # A pid file left by a crash, whose pid now belongs to another process
    # (here: this one). No server holds the data dir's lock, so no signal.
    (files[1] / "softswitch.pid").write_text(f"{os.getpid()}\n")
    (files[1] / "softswitch.lock").touch()
    code, out = invoke(files, "remove", "1004")
    assert code == 3, out
    assert "no running server (a stale pid file was ignored)" in out
    assert hup_count == []


def test_add_with_context_and_groups(files: tuple[Path, Path]) -> None:
    code, out = invoke(files, "add", "1005", "--password", "long-enough-5", "--context",
                       "internal", "--groups", "sales, international", "--no-reload")
    assert code == 0, out
    assert "added 1005@pbx.example.com (context internal, groups sales, international)" in out
    account = load_directory(files[0]).find("1005")
    assert account is not None and account.groups == ("sales", "international")
    assert "groups: [sales, international]" in files[0].read_text()
    code, out = invoke(files, "add", "1006", "--password", "long-enough-6", "--groups",
                       "bad group", "--no-reload")
    assert code == 1 and "bad" in out and load_directory(files[0]).find("1006") is None


@pytest.mark.parametrize(("password", "why"), [
    ("x9", "shorter than 8"), ("1005", "same as the user name"),
    ("password", "scanners try"), ("123456", "shorter than 8"),
])
def test_weak_passwords_are_warned_about(files: tuple[Path, Path], password: str,
                                         why: str) -> None:
    code, out = invoke(files, "add", "1005", "--password", password, "--no-reload")
    assert code == 0, out
    assert "warning: weak password for 1005" in out and why in out


def test_a_strong_password_gets_no_warning(files: tuple[Path, Path]) -> None:
    code, out = invoke(files, "add", "1004x", "--password", "c0rrect-horse", "--no-reload")
    assert code == 0 and "weak" not in out


def test_unreachable_user_is_warned_about(files: tuple[Path, Path]) -> None:
    # The shipped plan dials _100[1-4]: 1005 is unreachable, 1003 (removed, then
    # added back) is not.
    code, out = invoke(files, "add", "1005", "--password", "long-enough-5", "--no-reload")
    assert code == 0 and "warning: no rule of" in out and "user/1005" in out
    invoke(files, "remove", "1003", "--no-reload")
    code, out = invoke(files, "add", "1003", "--password", "long-enough-3", "--no-reload")
    assert code == 0 and "no rule" not in out


def test_list_shows_groups_and_contexts_one_record_per_line(files: tuple[Path, Path]) -> None:
    code, out = invoke(files, "list")
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0].split("\t") == ["user", "domain", "display name", "context", "groups",
                                     "auth", "algorithms"]
    assert "1002\tpbx.example.com\tBob Example\tinternal\tsales,support\tpassword" in out
    assert len(lines) == 5


def test_list_json(files: tuple[Path, Path]) -> None:
    code, out = invoke(files, "list", "--json")
    assert code == 0, out
    users = {u["user"]: u for u in json.loads(out)}
    assert users["1002"]["groups"] == ["sales", "support"]
    assert users["1001"]["context"] == "internal" and users["1003"]["auth"] == "ha1"
    assert not any(s in out for s in SECRETS)


def test_invalid_directory_reports_positions(files: tuple[Path, Path]) -> None:
    files[0].write_text("domains:\n  - name: a.example\n    users: 3\n")
    code, out = invoke(files, "list")
    assert code == 1
    assert f"{files[0]}:3:12: users must be a list" in out
