"""The relay's durable store: one row per call in a small SQLite file.

Written before an answer goes out (the glue applies a command's Save and
Forget effects in one transaction first), so a relay killed with -9 comes
back with every call it had answered: the same ports, expected and latched
addresses and flags. WAL with synchronous=NORMAL: a commit survives the
process dying (not the machine losing power, which ends the calls anyway).
Counters are not stored: they start again at zero after a restart.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path

from rtpmedia.relay.calls import Call

SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    call_id TEXT PRIMARY KEY,
    record TEXT NOT NULL
)
"""


class StoreError(Exception):
    """The store cannot be used (another relay holds it)."""


class CallStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        # Two relays on one store would hand out the same ports: the second
        # refuses to start. flock is released by the kernel when a relay dies.
        self._lock = os.open(str(path) + ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._lock)
            raise StoreError(f"another relay uses {path}") from None
        self._db = sqlite3.connect(str(path), isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(SCHEMA)

    def apply(self, saves: Iterable[Call], forgets: Iterable[str]) -> None:
        """Store `saves` and remove `forgets`, in one transaction."""
        rows = [(c.call_id, json.dumps(c.record(), separators=(",", ":"))) for c in saves]
        gone = [(call_id,) for call_id in forgets]
        if not rows and not gone:
            return
        with self._db:
            self._db.execute("BEGIN")
            if rows:
                self._db.executemany(
                    "INSERT INTO calls(call_id, record) VALUES (?, ?) "
                    "ON CONFLICT(call_id) DO UPDATE SET record = excluded.record", rows)
            if gone:
                self._db.executemany("DELETE FROM calls WHERE call_id = ?", gone)

    def load(self) -> tuple[list[Call], list[str]]:
        """Every stored call, and the ids of rows that could not be read (kept out, reported)."""
        calls: list[Call] = []
        bad: list[str] = []
        for call_id, record in self._db.execute("SELECT call_id, record FROM calls"):
            try:
                calls.append(Call.from_record(json.loads(record)))
            except (ValueError, KeyError, TypeError, IndexError):
                bad.append(str(call_id))
        return calls, bad

    def close(self) -> None:
        self._db.close()
        os.close(self._lock)
