"""Which server a command works on: its configuration, data dir, directory and dialplan.

Every command takes `--config` like `softswitch run` (default
`conf/softswitch.yaml` when the current folder has one, or
$SOFTSWITCH_CONFIG) and takes from it `data_dir`, `directory` and
`dialplan`, so that it finds the server from any folder. `--data-dir` and
`--directory` still override. `data_dir` is read as `run` reads it: a
relative one from the current folder, so an install outside a project
folder gives an absolute one. When something is missing, commands say
where they looked (`ServerFiles.where`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from softswitch.cli import exitcodes
from softswitch.config import Config, ConfigError, load_config

DEFAULT_CONFIG = Path("conf/softswitch.yaml")
ENV_CONFIG = "SOFTSWITCH_CONFIG"

F = TypeVar("F", bound=Callable[..., Any])


def config_option(f: F) -> F:
    return click.option(
        "--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
        default=None, envvar=ENV_CONFIG, show_envvar=True,
        help="The server configuration, for data_dir, directory and dialplan "
        f"[default: {DEFAULT_CONFIG} if it exists here].",
    )(f)


def data_dir_option(f: F) -> F:
    return click.option(
        "--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
        help="The server's data folder [default: data_dir of the configuration].",
    )(f)


@dataclass(frozen=True, slots=True)
class ServerFiles:
    config: Config
    data_dir: Path
    data_dir_from: str  # how data_dir was chosen, for messages
    directory: Path
    dialplan: Path

    def where(self) -> str:
        """Where the data dir was looked for, and why there."""
        return f"{self.data_dir.absolute()} ({self.data_dir_from})"


def find_config(config_path: Path | None) -> Path | None:
    """The configuration to read: the one given, else ./conf/softswitch.yaml if present."""
    if config_path is not None:
        return config_path
    return DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None


def server_files(config_path: Path | None, data_dir: Path | None = None,
                 directory: Path | None = None) -> ServerFiles:
    """Read the configuration; on an error print every problem and exit 2."""
    path = find_config(config_path)
    if path is not None and not path.is_file():
        click.echo(f"error: no configuration file {path.absolute()}", err=True)
        sys.exit(exitcodes.USAGE)
    try:
        config = load_config(path)
    except ConfigError as exc:
        for line in exc.errors:
            click.echo(line, err=True)
        sys.exit(exitcodes.USAGE)
    if data_dir is not None:
        source = "--data-dir"
    else:
        data_dir = Path(config.settings.data_dir)
        if path is not None:
            source = f"data_dir of {path}, from the current folder {Path.cwd()}" \
                if not data_dir.is_absolute() else f"data_dir of {path}"
        else:
            source = (f"the default: no --config, ${ENV_CONFIG} unset and no {DEFAULT_CONFIG} "
                      f"in {Path.cwd()}")
    return ServerFiles(
        config=config,
        data_dir=data_dir,
        data_dir_from=source,
        directory=directory if directory is not None
        else config.resolve(config.settings.directory),
        dialplan=config.resolve(config.settings.dialplan),
    )
