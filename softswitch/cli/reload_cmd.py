"""`softswitch reload`: ask the running server to re-read its directory and dialplan."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from softswitch.cli.pidfile import notify_server


@click.command()
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("data"),
              show_default=True, help="The running server's data dir (holds softswitch.pid).")
def reload(data_dir: Path) -> None:
    """Reload the directory and the dialplan of the running server (SIGHUP).

    A file with errors is refused by the server, which logs them and keeps
    what it had; check a dialplan first with `softswitch dialplan check`.
    """
    outcome = notify_server(data_dir)
    click.echo(outcome)
    if outcome != "reloaded running server":
        sys.exit(1)
