"""Where the management API listens: DATA_DIR/management.json, written by the server.

Its own small module so that the CLI reads it without importing Twisted.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

API_FILE = "management.json"


def write_api_address(data_dir: Path, url: str, token_required: bool) -> None:
    """Replace the file atomically: a reader sees the old one or the new one."""
    path = data_dir / API_FILE
    temp = path.with_name(path.name + ".tmp")
    temp.write_text(json.dumps({"url": url, "pid": os.getpid(),
                                "token_required": token_required}) + "\n")
    os.replace(temp, path)


def remove_api_address(data_dir: Path) -> None:
    try:
        (data_dir / API_FILE).unlink()
    except OSError:
        pass


def read_api_address(data_dir: Path) -> dict[str, Any] | None:
    """What the running server wrote about its API (url, pid), or None."""
    try:
        data = json.loads((data_dir / API_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "url" in data else None
