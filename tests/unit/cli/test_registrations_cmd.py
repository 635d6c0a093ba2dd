"""`softswitch registrations` through click's CliRunner.

The database is written by the real `SQLiteLocationStore` (its writer thread,
with `callFromThread` queued and run here), and read both while the store
still holds it open in WAL mode, as beside a running server, and after close.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from softswitch.cli import main
from softswitch.cli.registrations_cmd import registrations
from softswitch.location import Binding
from softswitch.location.sqlite import SQLiteLocationStore
from tests.support.thread_reactor import ThreadReactor

INSTANCE = "<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>"


def bindings(now: float) -> list[Binding]:
    return [
        Binding(aor="1001@pbx.example.com", contact="sip:1001@10.0.0.5:5060", q=1.0,
                expires_at=now + 3600, received="203.0.113.7:40123", transport="udp",
                user_agent="Yealink SIP-T46S", instance=INSTANCE, reg_id=1,
                call_id="a@phone", cseq=7, registered_at=now - 10),
        Binding(aor="1001@pbx.example.com", contact="sip:1001@10.0.0.6:5062;transport=tcp",
                q=0.5, expires_at=now + 120, received="203.0.113.8:5062", transport="tcp",
                path=["<sip:edge.example.net;lr>"], registered_at=now - 5),
        Binding(aor="1001@other.example.org", contact="sip:1001@192.0.2.44",
                expires_at=now + 600, received="192.0.2.44:5060", user_agent="Linphone"),
        Binding(aor="1002@pbx.example.com", contact="sip:1002@192.0.2.45",
                expires_at=now + 900, received="192.0.2.45:5060"),
        # Expired, and not yet swept by the server: never shown.
        Binding(aor="1003@pbx.example.com", contact="sip:1003@192.0.2.46",
                expires_at=now - 1, received="192.0.2.46:5060"),
    ]


def write_store(data_dir: Path, now: float) -> tuple[SQLiteLocationStore, ThreadReactor]:
    reactor = ThreadReactor()
    store = SQLiteLocationStore(str(data_dir / "location.sqlite"), reactor)
    store.load(now - 60)  # as if loaded a minute ago, so the expired row is kept
    done: list[object] = []
    by_aor: dict[str, list[Binding]] = {}
    for b in bindings(now):
        by_aor.setdefault(b.aor, []).append(b)
    for aor, group in by_aor.items():
        store.save(aor, group).addBoth(done.append)
    reactor.wait_for(lambda: len(done) == len(by_aor))
    assert done == [None] * len(by_aor)
    return store, reactor


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    """A data dir whose store is still open, as beside a running server."""
    store, _ = write_store(tmp_path, time.time())
    yield tmp_path
    store.close()


def invoke(*args: str) -> tuple[int, str, str]:
    # A wide terminal, so that rich does not fold the cells the tests look for.
    result = CliRunner().invoke(registrations, list(args), env={"COLUMNS": "250"})
    return result.exit_code, result.stdout, result.stderr


def test_table_lists_current_bindings_while_the_server_has_the_file_open(
        data_dir: Path) -> None:
    assert (data_dir / "location.sqlite-wal").exists()  # WAL mode, held open
    before = {p.name: p.stat().st_mtime_ns for p in data_dir.iterdir()}
    code, out, err = invoke("--data-dir", str(data_dir))
    assert code == 0, out + err
    # On a pipe: a header, then one whole registration per line.
    assert len(out.splitlines()) == 1 + 4
    for text in ("1001@pbx.example.com", "sip:1001@10.0.0.5:5060", "203.0.113.7:40123",
                 "Yealink SIP-T46S", INSTANCE, "sip:1001@10.0.0.6:5062;transport=tcp", "tcp",
                 "0.5", "1001@other.example.org", "1002@pbx.example.com"):
        assert text in out
    assert "1003" not in out  # expired
    row = next(line for line in out.splitlines() if "10.0.0.5" in line)
    seconds = int(row.split("\t")[4].removesuffix(" s"))
    assert 3590 <= seconds <= 3600
    # Read-only: nothing in the data dir was written.
    assert {p.name: p.stat().st_mtime_ns for p in data_dir.iterdir()} == before


def test_works_after_the_server_stopped_and_leaves_no_files(tmp_path: Path) -> None:
    store, _ = write_store(tmp_path, time.time())
    store.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    code, out, err = invoke("--data-dir", str(tmp_path))
    assert code == 0, out + err
    assert len(out.splitlines()) == 1 + 4
    # No -wal/-shm left behind, owned by whoever ran the command.
    assert sorted(p.name for p in tmp_path.iterdir()) == names


@pytest.mark.parametrize("aor, expected", [
    ("1001@pbx.example.com", {"sip:1001@10.0.0.5:5060", "sip:1001@10.0.0.6:5062;transport=tcp"}),
    ("1001@PBX.Example.com", {"sip:1001@10.0.0.5:5060", "sip:1001@10.0.0.6:5062;transport=tcp"}),
    ("1001", {"sip:1001@10.0.0.5:5060", "sip:1001@10.0.0.6:5062;transport=tcp",
              "sip:1001@192.0.2.44"}),
    ("1002", {"sip:1002@192.0.2.45"}),
    ("100", set()),  # a user, not a prefix
    ("1003", set()),  # only expired bindings
    ("1001@nowhere.example", set()),
])
def test_aor_argument_filters(data_dir: Path, aor: str, expected: set[str]) -> None:
    code, out, err = invoke(aor, "--data-dir", str(data_dir), "--json")
    # Like grep: 1 when the AOR asked for has no current registration.
    assert code == (0 if expected else 1), out + err
    assert {r["contact"] for r in json.loads(out)} == expected


def test_no_match_says_so(data_dir: Path) -> None:
    code, out, err = invoke("4242", "--data-dir", str(data_dir))
    assert code == 1 and out == ""
    assert "no current registrations for 4242" in err


def test_json_for_scripts(data_dir: Path) -> None:
    code, out, err = invoke("--data-dir", str(data_dir), "--json")
    assert code == 0, err
    records = json.loads(out)
    assert len(records) == 4
    first = next(r for r in records if r["contact"] == "sip:1001@10.0.0.5:5060")
    assert first["aor"] == "1001@pbx.example.com"
    assert first["received"] == "203.0.113.7:40123"
    assert first["transport"] == "udp"
    assert first["user_agent"] == "Yealink SIP-T46S"
    assert first["instance"] == INSTANCE and first["reg_id"] == 1
    assert first["q"] == 1.0
    assert 3590 <= first["expires_in"] <= 3600
    assert first["expires_at"] > time.time()
    second = next(r for r in records if r["transport"] == "tcp")
    assert second["path"] == ["<sip:edge.example.net;lr>"] and second["q"] == 0.5
    # Highest q first within an AOR, as a lookup returns them.
    pbx = [r["contact"] for r in records if r["aor"] == "1001@pbx.example.com"]
    assert pbx == ["sip:1001@10.0.0.5:5060", "sip:1001@10.0.0.6:5062;transport=tcp"]


def test_empty_database(tmp_path: Path) -> None:
    store = SQLiteLocationStore(str(tmp_path / "location.sqlite"), ThreadReactor())
    store.load(time.time())
    store.close()
    code, out, _ = invoke("--data-dir", str(tmp_path))
    assert code == 0 and "no current registrations" in out
    code, out, _ = invoke("--data-dir", str(tmp_path), "--json")
    assert code == 0 and json.loads(out) == []


def test_no_database_yet(tmp_path: Path) -> None:
    for args in ((), ("--json",)):
        code, out, err = invoke("--data-dir", str(tmp_path / "data"), *args)
        assert code == 1
        assert out == ""
        assert "no registrations database" in err and "location.sqlite" in err
    assert not (tmp_path / "data").exists()  # nothing created


def test_not_a_location_database(tmp_path: Path) -> None:
    (tmp_path / "location.sqlite").write_bytes(b"not sqlite at all" * 100)
    code, _, err = invoke("--data-dir", str(tmp_path))
    assert code == 1 and err.startswith("error: ")


def test_registered_on_the_main_command() -> None:
    result = CliRunner().invoke(main, ["registrations", "--help"])
    assert result.exit_code == 0
    assert "--json" in result.output and "--data-dir" in result.output
