"""Finding and signalling the running server through DATA_DIR/softswitch.pid."""

from __future__ import annotations

import os
import signal
from pathlib import Path

PID_FILE = "softswitch.pid"


def notify_server(data_dir: Path) -> str:
    """SIGHUP the server whose pid is in DATA_DIR/softswitch.pid; say what happened."""
    try:
        pid = int((data_dir / PID_FILE).read_text().strip())
    except (OSError, ValueError):
        return "no running server"
    if pid <= 0:
        return "no running server"
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        return "no running server"  # a pid file left by a crash
    except PermissionError:
        return f"could not signal the server (pid {pid}): permission denied; reload it by hand"
    return "reloaded running server"
