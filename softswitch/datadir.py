"""The data dir's control files: the instance lock, the pid file, the reload status.

These are how the CLI finds and talks to the running server:

- `softswitch.lock` is held with `flock(LOCK_EX)` for the server's whole
  life. Two servers on one data dir would share the SQLite stores and
  delete each other's pid file, so the second refuses to start. The kernel
  drops the lock when the process dies, even on SIGKILL, so a held lock is
  the proof that a server runs: a pid file left by a crash, whose pid may
  since belong to an unrelated process, is never signalled.
- `softswitch.pid` names the process to send SIGHUP to.
- `reload-status.json` is what the server did about its last reload: after
  each SIGHUP it writes (atomically) the attempt number and, per part
  (directory, dialplan), whether the new file is in force or was refused,
  with the errors and their positions. The CLI notes the attempt number,
  signals, and waits for it to move. A file rather than a control socket:
  nothing to listen on or secure, it works with a plain `kill -HUP`, and an
  operator can read it.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

LOCK_FILE = "softswitch.lock"
PID_FILE = "softswitch.pid"
RELOAD_STATUS = "reload-status.json"


class DataDirBusy(Exception):
    """Another server holds the data dir's lock."""

    def __init__(self, data_dir: Path, pid: int | None) -> None:
        self.data_dir = data_dir
        self.pid = pid
        owner = f"pid {pid}" if pid is not None else "another process"
        super().__init__(f"another softswitch ({owner}) is already running on data dir "
                         f"{data_dir.resolve()}")


def _read_pid(data_dir: Path) -> int | None:
    try:
        pid = int((data_dir / PID_FILE).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid > 0 else None


class DataDirLock:
    """The exclusive lock of one server on its data dir, with the pid file."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock and write the pid file; DataDirBusy if a server holds it."""
        fd = os.open(self.data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DataDirBusy(self.data_dir, _read_pid(self.data_dir)) from None
        self._fd = fd
        (self.data_dir / PID_FILE).write_text(f"{os.getpid()}\n")

    def release(self) -> None:
        """Remove the pid file (ours: we hold the lock) and drop the lock."""
        if self._fd is None:
            return
        try:
            (self.data_dir / PID_FILE).unlink()
        except OSError:
            pass
        os.close(self._fd)  # closing the descriptor releases the flock
        self._fd = None


def running_server(data_dir: Path) -> int | None:
    """The pid of the server running on `data_dir`, or None when none holds the lock."""
    try:
        fd = os.open(data_dir / LOCK_FILE, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _read_pid(data_dir)
    finally:
        os.close(fd)  # also drops our shared lock if we got it
    return None


@dataclass(frozen=True, slots=True)
class ReloadPart:
    """What one reload hook did: `name` in force again (ok) or its new file refused."""

    name: str
    ok: bool
    detail: str = ""  # "5 accounts", "generation 3"
    errors: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ReloadStatus:
    pid: int
    attempt: int  # 0 at start, +1 per reload
    at: float  # Unix time
    parts: tuple[ReloadPart, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return all(part.ok for part in self.parts)

    def to_json(self) -> str:
        return json.dumps({
            "pid": self.pid, "attempt": self.attempt, "at": self.at, "ok": self.ok,
            "parts": [{"name": p.name, "ok": p.ok, "detail": p.detail, "errors": list(p.errors)}
                      for p in self.parts]}, indent=2)

    @classmethod
    def from_json(cls, text: str) -> ReloadStatus:
        """Parse the file; ValueError (or KeyError, TypeError) if it is not one of ours."""
        data = json.loads(text)
        parts = tuple(ReloadPart(str(p["name"]), bool(p["ok"]), str(p.get("detail", "")),
                                 tuple(str(e) for e in p.get("errors", [])))
                      for p in data["parts"])
        return cls(int(data["pid"]), int(data["attempt"]), float(data["at"]), parts)


def write_reload_status(data_dir: Path, status: ReloadStatus) -> None:
    """Replace the status file atomically: a reader sees the old one or the new one."""
    path = data_dir / RELOAD_STATUS
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(status.to_json() + "\n")
    os.replace(tmp, path)


def read_reload_status(data_dir: Path) -> ReloadStatus | None:
    try:
        return ReloadStatus.from_json((data_dir / RELOAD_STATUS).read_text())
    except (OSError, ValueError, KeyError, TypeError):
        return None
