"""How `softswitch bans` talks to the running server: files in the data dir.

The server writes `DATA_DIR/bans.json` (atomically) whenever its bans
change: where they are dropped and every ban with its times. `softswitch
bans lift ADDR` drops a request file in `DATA_DIR/bans-requests/`, which
the server polls (twice a second), carries out and deletes; the CLI waits
for the file to go and reads `bans.json` again. Kept apart so that it can
move to the management API later without touching the guard.
"""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from softswitch.guard.sources import Ban

BANS_FILE = "bans.json"
REQUESTS_DIR = "bans-requests"


@dataclass(frozen=True, slots=True)
class BansState:
    drop: str  # "kernel" or "userspace"
    written: float
    bans: tuple[Ban, ...]

    def to_json(self) -> str:
        return json.dumps({"drop": self.drop, "written": self.written,
                           "bans": [b.as_dict() for b in self.bans]}, indent=1)

    @classmethod
    def from_json(cls, text: str) -> BansState:
        data = json.loads(text)
        bans = tuple(Ban(str(b["address"]), float(b["since"]), float(b["until"]),
                         str(b.get("reason", ""))) for b in data.get("bans", []))
        return cls(str(data.get("drop", "")), float(data.get("written", 0.0)), bans)


def write_bans(data_dir: Path, state: BansState) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".bans.", dir=data_dir)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(state.to_json())
        os.replace(tmp, data_dir / BANS_FILE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_bans(data_dir: Path) -> BansState | None:
    """The server's last word on its bans; None if it never wrote one (or it is unreadable)."""
    try:
        return BansState.from_json((data_dir / BANS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def request_lift(data_dir: Path, address: str) -> Path:
    """Ask the server to lift the ban of `address`; the file goes when it is done."""
    folder = data_dir / REQUESTS_DIR
    folder.mkdir(exist_ok=True)
    path = folder / f"lift-{uuid.uuid4().hex}.json"
    tmp = folder / f".{path.name}"
    tmp.write_text(json.dumps({"lift": address}), encoding="utf-8")
    os.replace(tmp, path)  # never a half-written request
    return path


def pending_lifts(data_dir: Path) -> list[tuple[Path, str | None]]:
    """Requests waiting: (file, address), the address None if the file is unreadable."""
    folder = data_dir / REQUESTS_DIR
    try:
        names = sorted(p for p in folder.iterdir() if p.name.startswith("lift-"))
    except OSError:
        return []
    out: list[tuple[Path, str | None]] = []
    for path in names:
        try:
            address = json.loads(path.read_text(encoding="utf-8")).get("lift")
        except (OSError, ValueError, AttributeError):
            address = None
        out.append((path, address if isinstance(address, str) else None))
    return out
