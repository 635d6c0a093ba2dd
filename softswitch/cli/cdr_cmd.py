"""`softswitch cdr`: the call detail records, as a table, CSV or JSON.

Reads DATA_DIR/cdr.sqlite read-only (`read_cdrs`), so it can run beside a
live server and never changes the file. Times given and shown are local
time unless they carry an offset; CSV carries ISO 8601 times with their
offset, JSON Unix seconds.
"""

from __future__ import annotations

import csv
import io
import json
import re
import sys
import time
from datetime import datetime
from pathlib import Path

import click

from softswitch.cdr import DATABASE, CdrRecord, CdrStoreError, read_cdrs

DEFAULT_DATA_DIR = Path("data")

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_RELATIVE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")

CSV_FIELDS = (
    "start", "answer", "end", "caller", "caller_name", "dialled", "callee", "context",
    "trunk", "disposition", "duration", "billsec", "hangup_cause", "hangup_side",
    "sip_code", "b_leg_codes", "call_id", "uuid",
)


def parse_time(text: str, now: float) -> float:
    """`2026-11-25T10:00` (local unless an offset is given) or `90m`, `1h`, `2d` ago."""
    relative = _RELATIVE.fullmatch(text.strip().lower())
    if relative:
        return now - float(relative.group(1)) * _UNITS[relative.group(2)]
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is neither a time like 2026-11-25T10:00 "
                         "nor a duration like 30m, 1h, 2d") from None
    # A naive datetime's timestamp() is taken in local time, as the operator means it.
    return when.timestamp()


class _When(click.ParamType):
    name = "TIME"

    def convert(self, value: object, param: click.Parameter | None,
                ctx: click.Context | None) -> float:
        if isinstance(value, float):
            return value
        try:
            return parse_time(str(value), time.time())
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def _local(t: float) -> str:
    return datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")


def _iso(t: float | None) -> str:
    if t is None:
        return ""
    return datetime.fromtimestamp(t).astimezone().isoformat(timespec="milliseconds")


def _clock(seconds: float) -> str:
    """0:42, 12:05, 1:02:05."""
    whole = int(seconds + 0.5)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _csv_row(r: CdrRecord) -> dict[str, object]:
    row = r.as_dict()
    row.update(start=_iso(r.start), answer=_iso(r.answer), end=_iso(r.end),
               callee=r.callee or "", trunk=r.trunk or "",
               b_leg_codes=" ".join(str(c) for c in r.b_leg_codes))
    return {name: row[name] for name in CSV_FIELDS}


def _print_table(records: list[CdrRecord]) -> None:
    from rich.console import Console
    from rich.table import Table

    # Like `registrations`: times and numbers stay on one line, text folds.
    table = Table(title=f"{len(records)} call{'s' if len(records) != 1 else ''}")
    table.add_column("start", no_wrap=True)
    table.add_column("caller", overflow="fold")
    table.add_column("dialled", overflow="fold")
    table.add_column("callee", overflow="fold")
    table.add_column("disposition", no_wrap=True)
    table.add_column("duration", justify="right", no_wrap=True)
    table.add_column("billsec", justify="right", no_wrap=True)
    table.add_column("cause", overflow="fold")
    for r in records:
        caller = f"{r.caller_name} <{r.caller}>" if r.caller_name else r.caller
        table.add_row(_local(r.start), caller, r.dialled, r.callee or "",
                      r.disposition.value, _clock(r.duration), _clock(r.billsec),
                      f"{r.hangup_cause} ({r.hangup_side.value})")
    Console().print(table)


@click.command()
@click.option("--since", type=_When(), help="From this time: 2026-11-25T10:00, or 1h, 2d ago.")
@click.option("--until", type=_When(), help="Before this time (same forms as --since).")
@click.option("--limit", type=click.IntRange(min=1), help="Only the latest N calls.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV with a header row, every field.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list, for scripts.")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_DATA_DIR,
    show_default=True,
    help=f"The server's data folder (holds {DATABASE}).",
)
def cdr(since: float | None, until: float | None, limit: int | None, as_csv: bool,
        as_json: bool, data_dir: Path) -> None:
    """Show the call detail records, oldest first, by the time the call started."""
    if as_csv and as_json:
        raise click.UsageError("--csv and --json are exclusive")
    database = data_dir / DATABASE
    if not database.exists():
        click.echo(f"no CDR database at {database}: the server creates it when it "
                   "first starts with this data dir (see --data-dir)", err=True)
        sys.exit(1)
    try:
        records = read_cdrs(database, since=since, until=until, limit=limit)
    except CdrStoreError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    if as_json:
        click.echo(json.dumps([r.as_dict() for r in records], indent=2))
    elif as_csv:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(_csv_row(r) for r in records)
        click.echo(out.getvalue(), nl=False)
    elif not records:
        click.echo("no calls")
    else:
        _print_table(records)
