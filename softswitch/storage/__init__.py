"""Durable storage shared by the stores (location, call state, CDRs).

`sqlite_writer.py` holds the group-commit writer every SQLite store writes
through, and the read-only open the CLIs use beside a running server. The
stores themselves (their rows, their memory) live with what they store.
"""

from softswitch.storage.sqlite_writer import (
    MAX_BATCH,
    GroupCommitWriter,
    StorageError,
    ThreadCaller,
    WriteOp,
    connect_readonly,
)

__all__ = [
    "MAX_BATCH",
    "GroupCommitWriter",
    "StorageError",
    "ThreadCaller",
    "WriteOp",
    "connect_readonly",
]
