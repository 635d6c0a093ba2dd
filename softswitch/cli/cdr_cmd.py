"""`softswitch cdr`: the call detail records, as a table, CSV or JSON.

Reads DATA_DIR/cdr.sqlite read-only (`read_cdrs`), so it can run beside a
live server and never changes the file. Times are shown in the dialplan's
time zone (`settings.timezone`, the zone the office hours are written in;
UTC without one), always as ISO 8601 with the offset, in the table, the CSV
and the JSON alike; the JSON adds Unix seconds (`start_epoch`...) for
arithmetic. `--since`/`--until` without an offset are read in that zone.
"""

from __future__ import annotations

import csv
import io
import json
import re
import sys
import time
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from softswitch.cdr import DATABASE, CdrRecord, CdrStoreError, read_cdrs
from softswitch.cli import exitcodes
from softswitch.cli.listing import print_listing
from softswitch.cli.server_files import config_option, data_dir_option, server_files

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_RELATIVE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")

CSV_FIELDS = (
    "start", "answer", "end", "caller", "caller_name", "dialled", "callee", "context",
    "trunk", "disposition", "duration", "billsec", "hangup_cause", "hangup_side",
    "sip_code", "b_leg_codes", "call_id", "uuid",
    "a_loss", "a_jitter", "a_mos", "b_loss", "b_jitter", "b_mos", "recording",
)


def parse_time(text: str, now: float, zone: tzinfo | None = None) -> float:
    """`2026-11-25T10:00` (in `zone`, else local, unless an offset is given) or `90m` ago."""
    relative = _RELATIVE.fullmatch(text.strip().lower())
    if relative:
        return now - float(relative.group(1)) * _UNITS[relative.group(2)]
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is neither a time like 2026-11-25T10:00 "
                         "nor a duration like 30m, 1h, 2d") from None
    if when.tzinfo is None and zone is not None:
        when = when.replace(tzinfo=zone)
    # A naive datetime's timestamp() is taken in local time.
    return when.timestamp()


class _When(click.ParamType):
    """Checked when parsed; converted to seconds once the zone is known."""

    name = "TIME"

    def convert(self, value: object, param: click.Parameter | None,
                ctx: click.Context | None) -> str:
        try:
            parse_time(str(value), time.time())
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        return str(value)


def dialplan_zone(dialplan: Path) -> tzinfo:
    """The dialplan's `settings.timezone`; UTC when it has none or cannot be read."""
    try:
        data = YAML(typ="safe").load(dialplan.read_text(encoding="utf-8"))
        name = data["settings"]["timezone"]
        return ZoneInfo(str(name))
    except (OSError, UnicodeDecodeError, YAMLError, KeyError, TypeError, ValueError,
            ZoneInfoNotFoundError):
        return UTC


def iso(t: float | None, zone: tzinfo) -> str:
    """ISO 8601 with the offset, to the second: the one time format of every output."""
    if t is None:
        return ""
    return datetime.fromtimestamp(t, zone).isoformat(timespec="seconds")


def _clock(seconds: float) -> str:
    """0:42, 12:05, 1:02:05."""
    whole = int(seconds + 0.5)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _csv_row(r: CdrRecord, zone: tzinfo) -> dict[str, object]:
    row = r.as_dict()
    row.update(start=iso(r.start, zone), answer=iso(r.answer, zone), end=iso(r.end, zone),
               callee=r.callee or "", trunk=r.trunk or "",
               b_leg_codes=" ".join(str(c) for c in r.b_leg_codes))
    return {name: row[name] for name in CSV_FIELDS}


def _json_record(r: CdrRecord, zone: tzinfo) -> dict[str, object]:
    record = r.as_dict()
    for name in ("start", "answer", "end"):
        record[f"{name}_epoch"] = record[name]
        record[name] = iso(record[name], zone) or None
    return record


def _media(r: CdrRecord) -> str:
    """The relay's figures, caller then callee: `a 0.0% 2ms 4.4 / b 1.2% 5ms 4.2`."""
    parts = []
    for side in ("a", "b"):
        loss, jitter, mos = (getattr(r, f"{side}_{name}") for name in ("loss", "jitter", "mos"))
        if loss is None and jitter is None and mos is None:
            continue
        parts.append(" ".join([side, "-" if loss is None else f"{loss:.1f}%",
                               "-" if jitter is None else f"{jitter:.0f}ms",
                               "-" if mos is None else f"{mos:.1f}"]))
    return " / ".join(parts)


def _print_table(records: list[CdrRecord], zone: tzinfo) -> None:
    rows = []
    for r in records:
        caller = f"{r.caller_name} <{r.caller}>" if r.caller_name else r.caller
        rows.append([iso(r.start, zone), caller, r.dialled, r.callee or "",
                     r.disposition.value, _clock(r.duration), _clock(r.billsec),
                     f"{r.hangup_cause} ({r.hangup_side.value})", _media(r)])
    print_listing(
        f"{len(records)} call{'s' if len(records) != 1 else ''} (times in {zone})",
        ["start", "caller", "dialled", "callee", "disposition", "duration", "billsec", "cause",
         "media (loss jitter MOS)"],
        rows, no_wrap=frozenset({"start", "disposition", "duration", "billsec"}))


@click.command()
@click.option("--since", type=_When(),
              help="From this time: 2026-11-25T10:00 (in the dialplan's zone), or 1h, 2d ago.")
@click.option("--until", type=_When(), help="Before this time (same forms as --since).")
@click.option("--limit", type=click.IntRange(min=1), help="Only the latest N calls.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV with a header row, every field.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list, for scripts.")
@config_option
@data_dir_option
def cdr(since: str | None, until: str | None, limit: int | None, as_csv: bool,
        as_json: bool, config_path: Path | None, data_dir: Path | None) -> None:
    """Show the call detail records, oldest first, by the time the call started.

    Times are ISO 8601 with their offset, in the dialplan's time zone.
    """
    if as_csv and as_json:
        raise click.UsageError("--csv and --json are exclusive")
    files = server_files(config_path, data_dir)
    zone = dialplan_zone(files.dialplan)
    now = time.time()
    database = files.data_dir / DATABASE
    if not database.exists():
        click.echo(f"no CDR database {DATABASE} in data dir {files.where()}: the server "
                   "creates it when it first starts with this data dir (see --config, "
                   "--data-dir)", err=True)
        sys.exit(exitcodes.FAILED)
    try:
        records = read_cdrs(database,
                            since=parse_time(since, now, zone) if since else None,
                            until=parse_time(until, now, zone) if until else None,
                            limit=limit)
    except CdrStoreError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exitcodes.FAILED)
    if as_json:
        click.echo(json.dumps([_json_record(r, zone) for r in records], indent=2))
    elif as_csv:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(_csv_row(r, zone) for r in records)
        click.echo(out.getvalue(), nl=False)
    elif not records:
        click.echo("no calls")
    else:
        _print_table(records, zone)
