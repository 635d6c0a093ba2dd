"""Running sipp scenarios against the server and reading its statistics."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

SCENARIOS = Path(__file__).resolve().parents[1] / "integration" / "sipp"


@dataclass
class SippResult:
    returncode: int
    successful: int
    failed: int
    output: str


def require_sipp() -> str:
    path = shutil.which("sipp")
    if path is None:
        pytest.fail("sipp is not installed (apt-get install sip-tester; .ci/run does it)")
    return path


def run_sipp(args: list[str], workdir: Path, timeout: float = 120) -> SippResult:
    """Run sipp in the foreground until its calls are done; parse its counters."""
    sipp = require_sipp()
    screen = workdir / "sipp_screen.log"
    errors = workdir / "sipp_errors.log"
    cmd = [sipp, *args, "-nostdin", "-trace_screen", "-screen_file", str(screen),
           "-trace_err", "-error_file", str(errors)]
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, timeout=timeout, check=False)
    text = screen.read_text(errors="replace") if screen.exists() else ""
    if errors.exists():
        text += "\n--- errors ---\n" + errors.read_text(errors="replace")[-3000:]
    return SippResult(proc.returncode, _counter(text, "Successful call"),
                      _counter(text, "Failed call"), text + proc.stdout.decode(errors="replace"))


def _counter(text: str, name: str) -> int:
    # The final statistics screen: "Successful call | <periodic> | <cumulative>"
    values = re.findall(rf"{name}\s*\|\s*\d+\s*\|\s*(\d+)", text)
    return int(values[-1]) if values else 0
