"""The signalling process stays free of numpy (CONVENTIONS 1: PyPy/mypyc stay possible)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

PROBE = """
import importlib, pkgutil, sys
import softswitch
for module in pkgutil.walk_packages(softswitch.__path__, "softswitch."):
    if not module.name.endswith("__main__"):  # runs the CLI
        importlib.import_module(module.name)
# The ng and HEP wire formats are the parts of rtpmedia the signalling side shares
# (it speaks ng to its relays, HEP to Homer), and the folder fsync of the voicemail
# store and the recordings; they are pure and numpy-free.
shared = {"rtpmedia", "rtpmedia.ng", "rtpmedia.hep", "rtpmedia.durable"}
print("numpy" in sys.modules, any(m.startswith("rtpmedia") and m not in shared
                                  for m in sys.modules))
"""


def test_importing_every_signalling_module_imports_no_numpy() -> None:
    result = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True,
                            text=True, timeout=120, check=True)
    assert result.stdout.split() == ["False", "False"], result.stderr
