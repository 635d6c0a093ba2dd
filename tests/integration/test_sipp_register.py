"""sipp registers many users with digest auth against the real server.

The server gets its own directory of USERS accounts offering MD5 only (sipp
3.6 answers no other challenge, see /work/shared/notes/sipp.md); sipp reads
each user's name, domain and credentials from an injection file, one REGISTER
call per user.
Every user must then have a binding in the server's location file.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server import ServerProcess, free_port
from tests.support.sipp import SCENARIOS, run_sipp

pytestmark = pytest.mark.integration

DOMAIN = "pbx.example.com"
USERS = 200
EXPIRES = 3600  # what register_auth.xml asks for


def users() -> list[tuple[str, str]]:
    return [(str(3000 + i), f"pw-{3000 + i}-secret") for i in range(USERS)]


def write_directory(path: Path) -> None:
    lines = ["domains:", f"  - name: {DOMAIN}", "    algorithms: [MD5]", "    users:"]
    for user, password in users():
        lines += [f'      - user: "{user}"', f'        password: "{password}"']
    path.write_text("\n".join(lines) + "\n")


def write_injection(path: Path) -> None:
    # SEQUENTIAL: call N takes line N, so each user registers exactly once.
    # The fourth field is the whole [authentication] keyword: see register_auth.xml.
    path.write_text("SEQUENTIAL\n" + "".join(
        f"{u};{DOMAIN};[authentication username={u} password={p}]\n" for u, p in users()))


@pytest.fixture(scope="module")
def bulk_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    workdir = Path(tmp_path_factory.mktemp("bulk_server"))
    directory = workdir / "directory.yaml"
    write_directory(directory)
    proc = ServerProcess(workdir / "server", directory=directory)
    proc.start()
    yield proc
    proc.stop()


def stored_bindings(server: ServerProcess) -> list[tuple[str, str, float, str]]:
    path = server.data_dir / "location.sqlite"
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return db.execute("SELECT aor, contact, expires_at, transport FROM bindings").fetchall()
    finally:
        db.close()


@pytest.mark.parametrize("transport", ["u1", "t1"])
def test_sipp_registers_every_user_with_digest_auth(bulk_server: ServerProcess, tmp_path: Path,
                                                    transport: str) -> None:
    injection = tmp_path / "users.csv"
    write_injection(injection)
    before = time.time()
    result = run_sipp(["-sf", str(SCENARIOS / "register_auth.xml"), "-inf", str(injection),
                       "-t", transport, "-i", "127.0.0.1", "-p", str(free_port()),
                       "-m", str(USERS), "-r", "200", "-timeout", "60s",
                       f"127.0.0.1:{bulk_server.udp_port}"], tmp_path)
    assert result.returncode == 0, result.output
    assert result.successful == USERS and result.failed == 0, result.output

    # A 200 is only sent once the binding is committed: no waiting needed.
    name = {"u1": "udp", "t1": "tcp"}[transport]
    rows = [r for r in stored_bindings(bulk_server) if r[3] == name]
    by_aor: dict[str, list[tuple[str, str, float, str]]] = {}
    for row in rows:
        by_aor.setdefault(row[0], []).append(row)
    assert set(by_aor) == {f"{u}@{DOMAIN}" for u, _ in users()}
    for aor, bindings in by_aor.items():
        assert len(bindings) == 1, bindings
        _, contact, expires_at, _ = bindings[0]
        assert contact.startswith(f"sip:{aor.partition('@')[0]}@127.0.0.1:")
        assert before + EXPIRES - 1 <= expires_at <= time.time() + EXPIRES + 1
