"""Durable file operations shared by the relay and the signalling process: a folder's fsync.

A file written to a temporary name, fsynced and renamed into place is not
yet durable: the rename is an entry of its folder, which survives a crash
only once the folder itself is fsynced (POSIX leaves it to the file
system; ext4 and XFS need it). Standard library only: `softswitch`
(voicemail) imports this module, and `rtpmedia` never imports numpy at
this level.
"""

from __future__ import annotations

import os
from pathlib import Path


def fsync_dir(directory: Path) -> None:
    """Make `directory`'s entries (a rename, a new file) durable; OSError if it cannot."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def try_fsync_dir(directory: Path) -> bool:
    """`fsync_dir` where durability is worth trying but not worth failing for (a recording
    that is kept whatever happens): False if the folder could not be opened or synced."""
    try:
        fsync_dir(directory)
    except OSError:
        return False
    return True
