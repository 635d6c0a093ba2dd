"""`softswitch users`: list and edit the accounts of the user directory.

The directory is the configuration's `directory` (see `server_files`).
Edits keep the file's comments (see `softswitch.directory`), then ask the
server running on the data dir to reload and report what it did (see
`pidfile.reload_server`). Nothing here ever prints a password or an HA1.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from softswitch.cli import exitcodes
from softswitch.cli.listing import print_listing
from softswitch.cli.pidfile import reload_server, report
from softswitch.cli.server_files import ServerFiles, config_option, data_dir_option, server_files
from softswitch.directory import (
    Account,
    Directory,
    DirectoryError,
    add_user,
    load_directory,
    remove_user,
    set_password,
)

F = TypeVar("F", bound=Callable[..., Any])

# The passwords SIP scanners (sipvicious and friends) try first.
COMMON_PASSWORDS = frozenset({
    "password", "passw0rd", "secret", "admin", "changeme", "letmein", "qwerty", "welcome",
    "1234", "12345", "123456", "1234567", "12345678", "123456789", "1234567890", "0000",
    "00000000", "111111", "654321", "abc123", "sip", "voip", "pbx", "phone", "test",
})
MIN_PASSWORD_LENGTH = 8

EDIT_EPILOG = (
    "The running server on the data dir is asked to reload, and what it did is printed. "
    "Exit status: 0 done and reloaded (or --no-reload); 1 error, or the server refused the "
    "file; 3 the file was changed but no server runs on the data dir, so nothing was "
    "reloaded (the server reads the file when it starts). Provisioning scripts that run "
    "before the server starts pass --no-reload."
)


def _file_options(f: F) -> F:
    f = click.option(
        "--directory", "directory_path", type=click.Path(dir_okay=False, path_type=Path),
        default=None, help="The user directory file [default: directory of the configuration].",
    )(f)
    return config_option(f)


def _reload_options(f: F) -> F:
    f = click.option("--no-reload", is_flag=True,
                     help="Only edit the file; do not ask a running server to reload.")(f)
    return data_dir_option(f)


def _domain_option(f: F) -> F:
    return click.option(
        "--domain", default=None, help="The SIP domain [default: the first in the file]."
    )(f)


def _fail(exc: DirectoryError) -> None:
    for line in exc.errors:
        click.echo(f"error: {line}", err=True)
    sys.exit(exitcodes.FAILED)


def _password(value: str | None) -> str:
    if value is not None:
        return value
    # Prompted rather than required on the command line, where it would end up
    # in the shell history and in `ps`.
    entered: str = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    return entered


def password_weaknesses(user: str, password: str) -> list[str]:
    """Why `password` is easy to guess for `user`; empty when nothing is known against it."""
    found = []
    if len(password) < MIN_PASSWORD_LENGTH:
        found.append(f"shorter than {MIN_PASSWORD_LENGTH} characters")
    if password.lower() == user.lower():
        found.append("the same as the user name")
    if password.lower() in COMMON_PASSWORDS:
        found.append("one of the first passwords scanners try")
    return found


def _warn_weak(user: str, password: str) -> None:
    weak = password_weaknesses(user, password)
    if weak:
        click.echo(f"warning: weak password for {user}: {'; '.join(weak)}. SIP servers on the "
                   "Internet are scanned for such accounts within hours.", err=True)


def _warn_unreachable(files: ServerFiles, directory: Directory, account: Account) -> None:
    """Say so when no context of the directory's users has a rule that dials the new user."""
    import dialplan as dp
    from dialplan.checks import reaches_user

    result = dp.load_file(files.dialplan)
    if result.plan is None:
        click.echo(f"note: {files.dialplan} has errors: not checked whether calls reach "
                   f"{account.user}", err=True)
        return
    plan = result.plan
    contexts = sorted({a.context for a in directory.accounts()})
    now = datetime.now(plan.timezone)
    if not any(reaches_user(plan, account.user, context, now) for context in contexts):
        click.echo(f"warning: no rule of {files.dialplan} dials user/{account.user} when "
                   f"{account.user} is called from context {', '.join(contexts)}: calls to it "
                   "will fail until a rule matches it (try `softswitch dialplan test --to "
                   f"{account.user}`)", err=True)


def _after_edit(files: ServerFiles, no_reload: bool) -> None:
    if no_reload:
        click.echo("not reloaded (--no-reload): a running server reads the file when it "
                   "changes on disk, or at start")
        return
    sys.exit(report(reload_server(files.data_dir), files.where()))


@click.group()
def users() -> None:
    """List and edit SIP accounts in the user directory."""


@users.command(epilog=EDIT_EPILOG)
@click.argument("user")
@_domain_option
@click.option("--password", default=None, help="The SIP password [default: prompt].")
@click.option("--display-name", default=None, help="Name shown to called parties.")
@click.option("--context", default=None,
              help="The dialplan context the user's calls start in [default: internal].")
@click.option("--groups", default="", metavar="G1,G2",
              help="Groups the dialplan can test (comma-separated).")
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
    context: str | None,
    groups: str,
    ha1_only: bool,
    directory_path: Path | None,
    config_path: Path | None,
    data_dir: Path | None,
    no_reload: bool,
) -> None:
    """Add USER to the directory.

    Warns about a weak password and about a user no dialplan rule reaches.
    """
    files = server_files(config_path, data_dir, directory_path)
    secret = _password(password)
    try:
        account = add_user(
            files.directory,
            domain,
            user,
            password=secret,
            display_name=display_name,
            store_ha1_only=ha1_only,
            context=context,
            groups=[g.strip() for g in groups.split(",") if g.strip()],
        )
        directory = load_directory(files.directory)
    except DirectoryError as exc:
        _fail(exc)
        return
    groups_text = ", ".join(account.groups) or "none"
    click.echo(f"added {account.aor} (context {account.context}, groups {groups_text})")
    _warn_weak(user, secret)
    _warn_unreachable(files, directory, account)
    _after_edit(files, no_reload)


@users.command(epilog=EDIT_EPILOG)
@click.argument("user")
@_domain_option
@_file_options
@_reload_options
def remove(user: str, domain: str | None, directory_path: Path | None,
           config_path: Path | None, data_dir: Path | None, no_reload: bool) -> None:
    """Remove USER from the directory; the server drops its registrations."""
    files = server_files(config_path, data_dir, directory_path)
    try:
        remove_user(files.directory, domain, user)
    except DirectoryError as exc:
        _fail(exc)
        return
    click.echo(f"removed {user}")
    _after_edit(files, no_reload)


@users.command(epilog=EDIT_EPILOG)
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
    directory_path: Path | None,
    config_path: Path | None,
    data_dir: Path | None,
    no_reload: bool,
) -> None:
    """Change the password of USER."""
    files = server_files(config_path, data_dir, directory_path)
    try:
        # Check the user exists before prompting for a password in vain.
        if load_directory(files.directory).find(user, domain) is None:
            raise DirectoryError([f"no user {user} in {domain or 'the default domain'}"])
        secret = _password(password)
        set_password(files.directory, domain, user, secret, store_ha1_only=ha1_only)
    except DirectoryError as exc:
        _fail(exc)
        return
    click.echo(f"password changed for {user}")
    _warn_weak(user, secret)
    _after_edit(files, no_reload)


def _as_json(account: Account) -> dict[str, object]:
    return {
        "user": account.user, "domain": account.domain, "aor": account.aor,
        "display_name": account.display_name or "", "context": account.context,
        "groups": list(account.groups), "auth": account.auth_kind,
        "algorithms": [a.value for a in account.algorithms],
    }


@users.command(name="list")
@_domain_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list, for scripts.")
@_file_options
def list_users(domain: str | None, as_json: bool, directory_path: Path | None,
               config_path: Path | None) -> None:
    """Show the accounts (never their secrets): a table, one per line on a pipe, or JSON."""
    files = server_files(config_path, None, directory_path)
    try:
        directory = load_directory(files.directory)
    except DirectoryError as exc:
        _fail(exc)
        return
    if domain is not None and directory.domain(domain) is None:
        _fail(DirectoryError([f"no domain {domain!r} in {files.directory}"]))
        return
    accounts = [a for a in directory.accounts()
                if domain is None or a.domain.lower() == domain.lower()]
    if as_json:
        click.echo(json.dumps([_as_json(a) for a in accounts], indent=2))
        return
    print_listing(
        str(files.directory),
        ["user", "domain", "display name", "context", "groups", "auth", "algorithms"],
        [[a.user, a.domain, a.display_name or "", a.context, ",".join(a.groups),
          a.auth_kind, ",".join(x.value for x in a.algorithms)] for a in accounts],
    )
