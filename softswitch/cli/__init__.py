"""The `softswitch` command line: one click group, one module per sub-command.

Only `run` starts a reactor; the other commands work on files or talk to the
running server, so they stay quick to start.
"""

from __future__ import annotations

import click

from softswitch import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="softswitch")
def main() -> None:
    """A SIP softswitch: registrar, B2BUA and dialplan."""


def _register_commands() -> None:
    from softswitch.cli.cdr_cmd import cdr
    from softswitch.cli.dialplan_cmd import dialplan
    from softswitch.cli.media_cmd import media
    from softswitch.cli.registrations_cmd import registrations
    from softswitch.cli.reload_cmd import reload
    from softswitch.cli.run_cmd import run
    from softswitch.cli.tls_cmd import tls
    from softswitch.cli.users_cmd import users

    main.add_command(run)
    main.add_command(dialplan)
    main.add_command(users)
    main.add_command(registrations)
    main.add_command(reload)
    main.add_command(cdr)
    main.add_command(media)
    main.add_command(tls)


_register_commands()
