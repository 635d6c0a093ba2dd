"""`softswitch registrations`: the current bindings of the location service.

Reads DATA_DIR/location.sqlite read-only (`read_bindings`), so it can run
beside a live server, which keeps the file open in WAL mode, and never
changes it. Shows what a lookup would return now (RFC 3261 10.3): expired
bindings are left out even if the server has not swept them yet.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import click

from softswitch.location import Binding, LocationStoreError
from softswitch.location.sqlite import read_bindings

DEFAULT_DATA_DIR = Path("data")
DATABASE = "location.sqlite"


def _matches(binding: Binding, wanted: str) -> bool:
    """`user@domain` names one AOR (domain case-insensitive); `user` any domain's."""
    user, at, domain = binding.aor.rpartition("@")
    if not at:
        user, domain = binding.aor, ""
    want_user, want_at, want_domain = wanted.rpartition("@")
    if not want_at:
        return user == wanted
    return user == want_user and domain.lower() == want_domain.lower()


def current_bindings(data_dir: Path, aor: str | None, now: float) -> list[Binding]:
    """The unexpired bindings in `data_dir`, for `aor` if given; LocationStoreError if none kept."""
    bindings = read_bindings(data_dir / DATABASE)
    return [b for b in bindings
            if not b.is_expired(now) and (aor is None or _matches(b, aor))]


def _as_json(binding: Binding, now: float) -> dict[str, object]:
    record: dict[str, object] = asdict(binding)
    record["expires_in"] = binding.expires_in(now)
    return record


@click.command()
@click.argument("aor", required=False)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_DATA_DIR,
    show_default=True,
    help="The server's data folder (holds location.sqlite).",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list, for scripts.")
def registrations(aor: str | None, data_dir: Path, as_json: bool) -> None:
    """Show the current registrations, all or those of AOR (user@domain, or user)."""
    database = data_dir / DATABASE
    if not database.exists():
        click.echo(f"no registrations database at {database}: the server creates it when it "
                   "first starts with this data dir (see --data-dir)", err=True)
        sys.exit(1)
    now = time.time()
    try:
        bindings = current_bindings(data_dir, aor, now)
    except LocationStoreError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    if as_json:
        click.echo(json.dumps([_as_json(b, now) for b in bindings], indent=2))
        return
    if not bindings:
        click.echo(f"no current registrations for {aor}" if aor else "no current registrations")
        return

    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(bindings)} registration{'s' if len(bindings) != 1 else ''}")
    # Numbers stay on one line; text folds, the contact never below a readable width.
    table.add_column("AOR", overflow="fold")
    table.add_column("contact", overflow="fold", min_width=16)
    table.add_column("received from", overflow="fold")
    table.add_column("transport", no_wrap=True)
    table.add_column("expires in", justify="right", no_wrap=True)
    table.add_column("user agent", overflow="fold")
    table.add_column("q", justify="right", no_wrap=True)
    table.add_column("instance", overflow="fold")
    for b in bindings:
        table.add_row(
            b.aor,
            b.contact,
            b.received,
            b.transport,
            f"{b.expires_in(now)} s",
            b.user_agent or "",
            f"{b.q:g}",
            b.instance or "",
        )
    Console().print(table)
