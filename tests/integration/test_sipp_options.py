"""sipp against the real server: OPTIONS over UDP and TCP."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.server import ServerProcess, free_port
from tests.support.sipp import SCENARIOS, run_sipp

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("transport", ["u1", "t1"])
def test_sipp_options(server: ServerProcess, tmp_path: Path,
                                          transport: str) -> None:
    result = run_sipp(["-sf", str(SCENARIOS / "options.xml"), "-t", transport,
                       "-i", "127.0.0.1", "-p", str(free_port()), "-m", "200", "-r", "100",
                       "-timeout", "60s", f"127.0.0.1:{server.udp_port}"], tmp_path)
    assert result.returncode == 0, result.output
    assert result.successful == 200 and result.failed == 0, result.output
