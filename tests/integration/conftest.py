"""Shared servers for integration tests: one `softswitch run` per test worker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server import ServerProcess


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server shared by the tests that do not stop or restart it."""
    proc = ServerProcess(Path(tmp_path_factory.mktemp("server")))
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A server for one test, which may stop, kill or restart it."""
    proc = ServerProcess(tmp_path / "server")
    yield proc
    if proc.process is not None:
        proc.stop()
