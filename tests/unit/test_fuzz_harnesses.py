"""A short bounded run of every fuzz target (fuzz/), as CI's share of the fuzzing.

Each target runs a few seconds from its seeds; a crash fails the test with
the input that caused it (libFuzzer's `crash-*` file), to be added to
tests/unit/test_fuzz_regressions.py and fixed. The long runs are in
docs/hardening.md.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from fuzz.targets import TARGETS

pytest.importorskip("atheris")

ROOT = Path(__file__).resolve().parents[2]
SECONDS = 3  # per target: ten targets, about a minute in all


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_fuzz_target_survives_a_short_run(target: str, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    run = subprocess.run(
        [sys.executable, "-m", "fuzz.run", target, f"-max_total_time={SECONDS}",
         f"-artifact_prefix={tmp_path}/", "-print_final_stats=1", str(corpus)],
        cwd=ROOT, capture_output=True, text=True, timeout=SECONDS + 60)
    crashes = sorted(tmp_path.glob("crash-*"))
    assert run.returncode == 0 and not crashes, (
        f"{target} crashed on {crashes[0] if crashes else '?'}:\n{run.stderr[-3000:]}")
    runs = re.search(r"stat::number_of_executed_units:\s+(\d+)", run.stderr)
    # At least one input through the target (the YAML loaders manage only a few a
    # second on a busy machine).
    assert runs is not None and int(runs.group(1)) >= 1, run.stderr[-2000:]
