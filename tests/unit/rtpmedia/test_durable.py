"""A folder's fsync, shared by the voicemail store and the relay's recordings."""

from __future__ import annotations

from pathlib import Path

import pytest

from rtpmedia.durable import fsync_dir, try_fsync_dir


def test_a_folder_is_synced_and_a_missing_one_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x")
    fsync_dir(tmp_path)  # no error on a real folder
    with pytest.raises(OSError):
        fsync_dir(tmp_path / "gone")


def test_the_best_effort_form_says_whether_it_synced(tmp_path: Path) -> None:
    assert try_fsync_dir(tmp_path) is True
    assert try_fsync_dir(tmp_path / "gone") is False
