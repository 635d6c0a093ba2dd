"""softswitch.datadir: the lock, the pid file and the reload status."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from softswitch.datadir import (
    DataDirBusy,
    DataDirLock,
    ReloadPart,
    ReloadStatus,
    read_reload_status,
    running_server,
    write_reload_status,
)


def test_one_lock_per_data_dir_and_the_pid_only_while_held(tmp_path: Path) -> None:
    assert running_server(tmp_path) is None
    first = DataDirLock(tmp_path)
    first.acquire()
    assert running_server(tmp_path) == os.getpid()
    with pytest.raises(DataDirBusy, match=f"pid {os.getpid()}"):
        DataDirLock(tmp_path).acquire()
    assert (tmp_path / "softswitch.pid").read_text().strip() == str(os.getpid())
    first.release()
    assert running_server(tmp_path) is None
    assert not (tmp_path / "softswitch.pid").exists()


def test_a_pid_file_without_the_lock_names_no_server(tmp_path: Path) -> None:
    (tmp_path / "softswitch.pid").write_text(f"{os.getpid()}\n")
    (tmp_path / "softswitch.lock").touch()
    assert running_server(tmp_path) is None


def test_reload_status_round_trip(tmp_path: Path) -> None:
    assert read_reload_status(tmp_path) is None
    status = ReloadStatus(42, 3, 1_790_000_000.5, (
        ReloadPart("directory", True, "4 accounts"),
        ReloadPart("dialplan", False, "generation 2 kept", ("d.yaml:3:5: error: x",))))
    write_reload_status(tmp_path, status)
    assert read_reload_status(tmp_path) == status
    assert not status.ok
    (tmp_path / "reload-status.json").write_text("{not json")
    assert read_reload_status(tmp_path) is None
