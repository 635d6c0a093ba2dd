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
    from softswitch.cli.bans_cmd import bans
    from softswitch.cli.calls_cmd import calls
    from softswitch.cli.cdr_cmd import cdr
    from softswitch.cli.dialplan_cmd import dialplan
    from softswitch.cli.media_cmd import media
    from softswitch.cli.prompts_cmd import prompts
    from softswitch.cli.registrations_cmd import registrations
    from softswitch.cli.relay_cmd import relay
    from softswitch.cli.reload_cmd import reload
    from softswitch.cli.run_cmd import run
    from softswitch.cli.tls_cmd import tls
    from softswitch.cli.top_cmd import top
    from softswitch.cli.trunks_cmd import relays, trunks
    from softswitch.cli.users_cmd import users
    from softswitch.cli.voicemail_cmd import voicemail

    main.add_command(run)
    main.add_command(dialplan)
    main.add_command(users)
    main.add_command(registrations)
    main.add_command(reload)
    main.add_command(cdr)
    main.add_command(media)
    main.add_command(tls)
    media.add_command(prompts)
    main.add_command(voicemail)
    main.add_command(calls)
    main.add_command(trunks)
    main.add_command(relays)
    main.add_command(top)
    main.add_command(relay)
    main.add_command(bans)


_register_commands()
