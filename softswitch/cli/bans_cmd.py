"""`softswitch bans`: the sources the running server bans, and lifting a ban.

Reads `DATA_DIR/bans.json`, which the server rewrites whenever its bans
change; `bans lift ADDR` leaves a request in the data dir that the server
carries out within a second (see `softswitch.guard.exchange`), then checks
`bans.json` again and says what happened.
"""

from __future__ import annotations

import ipaddress
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import click

from softswitch.cli import exitcodes
from softswitch.cli.listing import print_listing
from softswitch.cli.server_files import config_option, data_dir_option, server_files
from softswitch.datadir import running_server
from softswitch.guard.exchange import BansState, read_bans, request_lift
from softswitch.guard.sources import Ban

WAIT = 5.0  # seconds for the server to take a lift request (it polls twice a second)


def _when(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, UTC).isoformat(timespec="seconds")


def _current(state: BansState | None, now: float) -> list[Ban]:
    return [b for b in (state.bans if state is not None else ()) if b.until > now]


@click.group(invoke_without_command=True)
@config_option
@data_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list, for scripts.")
@click.pass_context
def bans(ctx: click.Context, config_path: Path | None, data_dir: Path | None,
         as_json: bool) -> None:
    """List the sources the server bans (failed authentications, see docs/hardening.md).

    A table on a terminal, one ban per line on a pipe, or JSON. Exit
    status: 0, or 1 when the server never wrote its bans file.
    """
    ctx.ensure_object(dict)
    ctx.obj["files"] = server_files(config_path, data_dir)
    if ctx.invoked_subcommand is not None:
        return
    files = ctx.obj["files"]
    state = read_bans(files.data_dir)
    if state is None:
        click.echo(f"error: no bans file in data dir {files.where()}: the server writes it "
                   "when it starts", err=True)
        sys.exit(exitcodes.FAILED)
    now = time.time()
    current = _current(state, now)
    if as_json:
        click.echo(json.dumps([{**b.as_dict(), "remaining": round(b.until - now)}
                               for b in current], indent=2))
        return
    if not current:
        click.echo(f"no banned sources (dropped in {state.drop})")
        return
    print_listing(
        f"{len(current)} banned source{'s' if len(current) != 1 else ''} "
        f"(dropped in {state.drop})",
        ["address", "since", "until", "remaining", "reason"],
        [[b.address, _when(b.since), _when(b.until), f"{round(b.until - now)} s", b.reason]
         for b in current],
        no_wrap=frozenset({"address", "remaining"}))


@bans.command()
@click.argument("address")
@click.pass_context
def lift(ctx: click.Context, address: str) -> None:
    """Lift the ban of ADDRESS now (the kernel's drop too).

    Exit status: 0 lifted, 1 not banned or no answer, 3 no server runs.
    """
    files = ctx.obj["files"]
    try:
        address = str(ipaddress.ip_address(address.strip("[]")))
    except ValueError:
        click.echo(f"error: {address!r} is not an IP address", err=True)
        sys.exit(exitcodes.USAGE)
    if running_server(files.data_dir) is None:
        click.echo(f"error: no server runs on data dir {files.where()}", err=True)
        sys.exit(exitcodes.NO_SERVER)
    if not any(b.address == address for b in _current(read_bans(files.data_dir), time.time())):
        click.echo(f"refused: {address} is not banned", err=True)
        sys.exit(exitcodes.FAILED)
    request = request_lift(files.data_dir, address)
    deadline = time.monotonic() + WAIT
    while request.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    if request.exists():
        request.unlink(missing_ok=True)
        click.echo(f"error: the server did not take the request within {WAIT:g} s", err=True)
        sys.exit(exitcodes.FAILED)
    if any(b.address == address for b in _current(read_bans(files.data_dir), time.time())):
        click.echo(f"refused: the server still bans {address}", err=True)
        sys.exit(exitcodes.FAILED)
    click.echo(f"lifted: {address}")
