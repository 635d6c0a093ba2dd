"""Reading a test server's CDRs, which are written just after a call ends."""

from __future__ import annotations

import time
from pathlib import Path

from softswitch.cdr import CdrRecord, read_cdrs


def wait_for_cdrs(data_dir: Path, count: int = 1, timeout: float = 10.0) -> list[CdrRecord]:
    """The CDRs once there are at least `count` (the store commits in batches)."""
    path = data_dir / "cdr.sqlite"
    deadline = time.monotonic() + timeout
    while True:
        records = read_cdrs(path) if path.exists() else []
        if len(records) >= count or time.monotonic() >= deadline:
            return records
        time.sleep(0.05)
