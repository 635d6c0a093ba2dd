"""`softswitch reload`: ask the running server to re-read its directory and dialplan."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from softswitch.cli.pidfile import reload_server, report
from softswitch.cli.server_files import config_option, data_dir_option, server_files


@click.command()
@config_option
@data_dir_option
def reload(config_path: Path | None, data_dir: Path | None) -> None:
    """Reload the directory and the dialplan of the running server (SIGHUP).

    Prints what the server did: reloaded (with the dialplan's generation),
    or refused with every error and its file:line:column, in which case the
    server keeps what it had. Exit status: 0 reloaded, 1 refused (or no
    answer), 3 no server runs on the data dir.
    """
    files = server_files(config_path, data_dir)
    sys.exit(report(reload_server(files.data_dir), files.where()))
