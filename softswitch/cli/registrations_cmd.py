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

from softswitch.cli import exitcodes
from softswitch.cli.listing import print_listing
from softswitch.cli.server_files import config_option, data_dir_option, server_files
from softswitch.location import Binding, LocationStoreError
from softswitch.location.sqlite import read_bindings

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
@config_option
@data_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list, for scripts.")
def registrations(aor: str | None, config_path: Path | None, data_dir: Path | None,
                  as_json: bool) -> None:
    """Show the current registrations, all or those of AOR (user@domain, or user).

    A table on a terminal, one registration per line on a pipe, or JSON.
    Exit status: 0 when something is listed (or, without AOR, when nothing
    is registered), 1 when AOR has no current registration, or on an error.
    """
    files = server_files(config_path, data_dir)
    database = files.data_dir / DATABASE
    if not database.exists():
        click.echo(f"error: no registrations database {DATABASE} in data dir {files.where()}: "
                   "the server creates it when it first starts with this data dir (see "
                   "--config, --data-dir)", err=True)
        sys.exit(exitcodes.FAILED)
    now = time.time()
    try:
        bindings = current_bindings(files.data_dir, aor, now)
    except LocationStoreError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exitcodes.FAILED)
    if as_json:
        click.echo(json.dumps([_as_json(b, now) for b in bindings], indent=2))
    elif not bindings:
        click.echo(f"no current registrations for {aor}" if aor else "no current registrations",
                   err=aor is not None)
    else:
        print_listing(
            f"{len(bindings)} registration{'s' if len(bindings) != 1 else ''}",
            ["AOR", "contact", "received from", "transport", "expires in", "user agent", "q",
             "instance"],
            [[b.aor, b.contact, b.received, b.transport, f"{b.expires_in(now)} s",
              b.user_agent or "", f"{b.q:g}", b.instance or ""] for b in bindings],
            no_wrap=frozenset({"transport", "expires in", "q"}),
        )
    if aor is not None and not bindings:
        sys.exit(exitcodes.FAILED)
