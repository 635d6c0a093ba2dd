"""`softswitch top`: a live full-screen view of the running server (see `top_app`)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from softswitch.cli import exitcodes
from softswitch.cli.calls_cmd import client_for
from softswitch.cli.server_files import config_option, data_dir_option


@click.command()
@config_option
@data_dir_option
def top(config_path: Path | None, data_dir: Path | None) -> None:
    """A live view of calls, call rate, registrations, errors and relays.

    Refreshes every second. Keys: Enter a call's detail and SIP ladder,
    h hang it up, r refresh, q quit (Escape leaves the detail). Needs a
    terminal; exit status 3 when no server runs.
    """
    if not sys.stdout.isatty():
        click.echo("error: softswitch top needs a terminal; for scripts use "
                   "`softswitch calls --json`", err=True)
        sys.exit(exitcodes.USAGE)
    client = client_for(config_path, data_dir)
    from softswitch.cli.top_app import TopApp

    TopApp(client).run()
