"""`softswitch cdr` through click's CliRunner, on a file written by SQLiteCdrStore."""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from softswitch.cdr import CdrRecord, Disposition, HangupSide, SQLiteCdrStore
from softswitch.cli import main
from softswitch.cli.cdr_cmd import CSV_FIELDS, cdr, parse_time
from tests.support.thread_reactor import ThreadReactor


def records(now: float) -> list[CdrRecord]:
    start = now - 7200  # two hours ago
    return [
        CdrRecord(call_id="old@192.0.2.10", uuid="u-old", caller="1001", caller_name="Alice",
                  callee="1002", dialled="1002", context="internal", start=start,
                  answer=start + 5.0, end=start + 65.0, disposition=Disposition.ANSWERED,
                  hangup_cause="BYE", hangup_side=HangupSide.CALLEE, sip_code=200,
                  b_leg_codes=[200]),
        CdrRecord(call_id="busy@trunk", uuid="u-busy", caller="+441234567890",
                  dialled="0800123456", context="from-trunk", trunk="carrier-a",
                  start=now - 1800, end=now - 1798, disposition=Disposition.BUSY,
                  hangup_cause="486 Busy Here", hangup_side=HangupSide.CALLEE, sip_code=486,
                  b_leg_codes=[486, 486]),
        CdrRecord(call_id="long@192.0.2.11", uuid="u-long", caller="1003", callee="carrier-b",
                  dialled="+15551234567", context="internal", trunk="carrier-b",
                  start=now - 600, answer=now - 590, end=now - 590 + 3725,
                  disposition=Disposition.ANSWERED, hangup_cause="BYE",
                  hangup_side=HangupSide.CALLER, sip_code=200, b_leg_codes=[200]),
    ]


def write_cdrs(data_dir: Path, now: float) -> SQLiteCdrStore:
    reactor = ThreadReactor()
    store = SQLiteCdrStore(str(data_dir / "cdr.sqlite"), reactor)
    store.open()
    done: list[object] = []
    for r in records(now):
        store.write(r).addBoth(done.append)
    reactor.wait_for(lambda: len(done) == 3)
    assert done == [None] * 3
    return store


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    """A data dir whose store is still open, as beside a running server."""
    store = write_cdrs(tmp_path, time.time())
    yield tmp_path
    store.close()


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cdr, list(args), env={"COLUMNS": "250"})
    return result.exit_code, result.stdout, result.stderr


def test_table_while_the_server_has_the_file_open(data_dir: Path) -> None:
    before = {p.name: p.stat().st_mtime_ns for p in data_dir.iterdir()}
    code, out, err = invoke("--data-dir", str(data_dir))
    assert code == 0, out + err
    assert len(out.splitlines()) == 1 + 3  # on a pipe: a header, then one call per line
    for header in ("start", "caller", "dialled", "callee", "disposition", "duration",
                   "billsec", "cause"):
        assert header in out
    old = next(line for line in out.splitlines() if "Alice <1001>" in line)
    for text in ("1002", "ANSWERED", "1:05", "1:00", "BYE (callee)"):
        assert text in old
    busy = next(line for line in out.splitlines() if "0800123456" in line)
    for text in ("+441234567890", "BUSY", "0:02", "0:00", "486 Busy Here (callee)"):
        assert text in busy
    long = next(line for line in out.splitlines() if "+15551234567" in line)
    assert "1:02:15" in long and "1:02:05" in long  # duration, billsec
    # Oldest first.
    assert out.index("Alice") < out.index("+441234567890") < out.index("+15551234567")
    assert {p.name: p.stat().st_mtime_ns for p in data_dir.iterdir()} == before  # read-only


def test_csv_has_a_header_and_every_field(data_dir: Path) -> None:
    code, out, err = invoke("--data-dir", str(data_dir), "--csv")
    assert code == 0, err
    assert out.splitlines()[0] == ",".join(CSV_FIELDS)
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["uuid"] for r in rows] == ["u-old", "u-busy", "u-long"]
    old, busy, _ = rows
    assert old["caller_name"] == "Alice" and old["disposition"] == "ANSWERED"
    assert float(old["duration"]) == 65.0 and float(old["billsec"]) == 60.0
    assert datetime.fromisoformat(old["start"]).tzinfo is not None  # unambiguous
    assert busy["answer"] == "" and busy["callee"] == "" and busy["trunk"] == "carrier-a"
    assert busy["b_leg_codes"] == "486 486" and busy["sip_code"] == "486"
    assert busy["disposition"] == "BUSY" and busy["hangup_cause"] == "486 Busy Here"


def test_csv_with_no_calls_is_just_the_header(data_dir: Path) -> None:
    code, out, _ = invoke("--data-dir", str(data_dir), "--csv", "--since", "1s")
    assert code == 0
    assert out == ",".join(CSV_FIELDS) + "\n"


def test_json_for_scripts(data_dir: Path) -> None:
    code, out, err = invoke("--data-dir", str(data_dir), "--json")
    assert code == 0, err
    rows = json.loads(out)
    assert [r["uuid"] for r in rows] == ["u-old", "u-busy", "u-long"]
    assert rows[0]["b_leg_codes"] == [200] and rows[1]["answer"] is None
    assert rows[1]["answer_epoch"] is None
    assert rows[2]["billsec"] == 3725.0 and rows[2]["hangup_side"] == "caller"


@pytest.mark.parametrize("args, expected", [
    (("--since", "1h"), ["u-busy", "u-long"]),
    (("--since", "20m"), ["u-long"]),
    (("--until", "1h"), ["u-old"]),
    (("--since", "3h", "--until", "15m"), ["u-old", "u-busy"]),
    (("--limit", "1"), ["u-long"]),
    (("--limit", "2", "--until", "5m"), ["u-busy", "u-long"]),
    (("--since", "1d", "--limit", "10"), ["u-old", "u-busy", "u-long"]),
])
def test_filters(data_dir: Path, args: tuple[str, ...], expected: list[str]) -> None:
    code, out, err = invoke("--data-dir", str(data_dir), "--json", *args)
    assert code == 0, err
    assert [r["uuid"] for r in json.loads(out)] == expected


def test_since_in_the_dialplans_time_zone(data_dir: Path) -> None:
    # The shipped configuration's dialplan runs in America/New_York.
    zone = ZoneInfo("America/New_York")
    an_hour_ago = datetime.fromtimestamp(time.time() - 3600, zone).strftime("%Y-%m-%dT%H:%M:%S")
    code, out, err = invoke("--data-dir", str(data_dir), "--json", "--since", an_hour_ago)
    assert code == 0, err
    assert [r["uuid"] for r in json.loads(out)] == ["u-busy", "u-long"]


def test_no_calls_in_range_says_so(data_dir: Path) -> None:
    code, out, _ = invoke("--data-dir", str(data_dir), "--since", "1s")
    assert code == 0 and "no calls" in out


def test_every_output_shows_the_same_times_with_the_dialplans_zone(data_dir: Path) -> None:
    zone = ZoneInfo("America/New_York")
    code, out, _ = invoke("--data-dir", str(data_dir), "--json")
    first = json.loads(out)[0]
    start = datetime.fromisoformat(first["start"])
    assert start.utcoffset() == datetime.fromtimestamp(first["start_epoch"], zone).utcoffset()
    assert start.timestamp() == int(first["start_epoch"])
    code, out, _ = invoke("--data-dir", str(data_dir), "--csv")
    assert next(csv.DictReader(io.StringIO(out)))["start"] == first["start"]
    code, out, _ = invoke("--data-dir", str(data_dir))
    assert out.splitlines()[1].split("\t")[0] == first["start"]


def test_times_are_utc_without_a_dialplan_zone(data_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "dp.yaml").write_text("contexts: {}\n")
    (tmp_path / "conf.yaml").write_text("dialplan: dp.yaml\n")
    code, out, _ = invoke("--data-dir", str(data_dir), "--json", "--config",
                          str(tmp_path / "conf.yaml"))
    assert code == 0 and json.loads(out)[0]["start"].endswith("+00:00")


def test_parse_time() -> None:
    now = 1_790_000_000.0
    assert parse_time("90m", now) == now - 5400
    assert parse_time("1h", now) == now - 3600
    assert parse_time("2d", now) == now - 172800
    assert parse_time("1.5 h", now) == now - 5400
    assert parse_time("2026-11-25T10:00+00:00", now) == 1795600800.0
    assert parse_time("2026-11-25T10:00", now) == datetime(2026, 11, 25, 10, 0).timestamp()
    assert parse_time("2026-11-25", now) == datetime(2026, 11, 25).timestamp()
    with pytest.raises(ValueError, match="neither a time"):
        parse_time("yesterday", now)


def test_bad_options_are_usage_errors(data_dir: Path) -> None:
    code, _, err = invoke("--data-dir", str(data_dir), "--since", "last tuesday")
    assert code == 2 and "neither a time" in err
    code, _, err = invoke("--data-dir", str(data_dir), "--csv", "--json")
    assert code == 2 and "exclusive" in err
    code, _, _ = invoke("--data-dir", str(data_dir), "--limit", "0")
    assert code == 2


def test_no_database_yet(tmp_path: Path) -> None:
    code, out, err = invoke("--data-dir", str(tmp_path / "data"))
    assert code == 1 and out == ""
    assert "no CDR database" in err and "cdr.sqlite" in err
    assert not (tmp_path / "data").exists()  # nothing created


def test_not_a_cdr_database(tmp_path: Path) -> None:
    (tmp_path / "cdr.sqlite").write_bytes(b"not sqlite at all" * 100)
    code, _, err = invoke("--data-dir", str(tmp_path))
    assert code == 1 and err.startswith("error: ")


def test_registered_on_the_main_command() -> None:
    result = CliRunner().invoke(main, ["cdr", "--help"])
    assert result.exit_code == 0
    for option in ("--since", "--until", "--limit", "--csv", "--json", "--data-dir"):
        assert option in result.output
