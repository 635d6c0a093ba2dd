"""`softswitch users`: list and edit the accounts of `conf/directory.yaml`.

Edits keep the file's comments (see `softswitch.directory`) and then ask a
running server to reload by sending SIGHUP to the pid in DATA_DIR/softswitch.pid.
Nothing here ever prints a password or an HA1.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from softswitch.cli.pidfile import notify_server
from softswitch.directory import (
    DirectoryError,
    add_user,
    load_directory,
    remove_user,
    set_password,
)

DEFAULT_DIRECTORY = Path("conf/directory.yaml")
DEFAULT_DATA_DIR = Path("data")

F = TypeVar("F", bound=Callable[..., Any])


def _file_options(f: F) -> F:
    f = click.option(
        "--directory",
        "directory_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=DEFAULT_DIRECTORY,
        show_default=True,
        help="The user directory file.",
    )(f)
    return f


def _reload_options(f: F) -> F:
    f = click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=DEFAULT_DATA_DIR,
        show_default=True,
        help="The running server's data folder (for softswitch.pid).",
    )(f)
    return f


def _domain_option(f: F) -> F:
    return click.option(
        "--domain", default=None, help="The SIP domain [default: the first in the file]."
    )(f)


def _fail(exc: DirectoryError) -> None:
    for line in exc.errors:
        click.echo(f"error: {line}", err=True)
    sys.exit(1)


def _password(value: str | None) -> str:
    if value is not None:
        return value
    # Prompted rather than required on the command line, where it would end up
    # in the shell history and in `ps`.
    entered: str = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    return entered


@click.group()
def users() -> None:
    """List and edit SIP accounts in the user directory."""


@users.command()
@click.argument("user")
@_domain_option
@click.option("--password", default=None, help="The SIP password [default: prompt].")
@click.option("--display-name", default=None, help="Name shown to called parties.")
@click.option(
    "--ha1-only", is_flag=True, help="Store only the digest HA1s, not the password itself."
)
@_file_options
@_reload_options
def add(
    user: str,
    domain: str | None,
    password: str | None,
    display_name: str | None,
    ha1_only: bool,
    directory_path: Path,
    data_dir: Path,
) -> None:
    """Add USER to the directory."""
    try:
        account = add_user(
            directory_path,
            domain,
            user,
            password=_password(password),
            display_name=display_name,
            store_ha1_only=ha1_only,
        )
    except DirectoryError as exc:
        _fail(exc)
        return
    click.echo(f"added {account.aor}")
    click.echo(notify_server(data_dir))


@users.command()
@click.argument("user")
@_domain_option
@_file_options
@_reload_options
def remove(user: str, domain: str | None, directory_path: Path, data_dir: Path) -> None:
    """Remove USER from the directory."""
    try:
        remove_user(directory_path, domain, user)
    except DirectoryError as exc:
        _fail(exc)
        return
    click.echo(f"removed {user}")
    click.echo(notify_server(data_dir))


@users.command()
@click.argument("user")
@_domain_option
@click.option("--password", default=None, help="The new SIP password [default: prompt].")
@click.option(
    "--ha1-only/--keep-password",
    default=None,
    help="Store only HA1s, or the password [default: as now].",
)
@_file_options
@_reload_options
def passwd(
    user: str,
    domain: str | None,
    password: str | None,
    ha1_only: bool | None,
    directory_path: Path,
    data_dir: Path,
) -> None:
    """Change the password of USER."""
    try:
        # Check the user exists before prompting for a password in vain.
        if load_directory(directory_path).find(user, domain) is None:
            raise DirectoryError([f"no user {user} in {domain or 'the default domain'}"])
        set_password(directory_path, domain, user, _password(password), store_ha1_only=ha1_only)
    except DirectoryError as exc:
        _fail(exc)
        return
    click.echo(f"password changed for {user}")
    click.echo(notify_server(data_dir))


@users.command(name="list")
@_domain_option
@_file_options
def list_users(domain: str | None, directory_path: Path) -> None:
    """Show the accounts (never their secrets)."""
    from rich.console import Console
    from rich.table import Table

    try:
        directory = load_directory(directory_path)
    except DirectoryError as exc:
        _fail(exc)
        return
    if domain is not None and directory.domain(domain) is None:
        _fail(DirectoryError([f"no domain {domain!r} in {directory_path}"]))
        return
    table = Table(title=str(directory_path))
    for column in ("user", "domain", "display name", "context", "auth", "algorithms"):
        table.add_column(column)
    for account in directory.accounts():
        if domain is not None and account.domain.lower() != domain.lower():
            continue
        table.add_row(
            account.user,
            account.domain,
            account.display_name or "",
            account.context,
            account.auth_kind,
            ", ".join(a.value for a in account.algorithms),
        )
    Console().print(table)
