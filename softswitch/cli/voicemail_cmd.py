"""`softswitch voicemail`: list the messages of the mailboxes, and delete them.

Works on DATA_DIR/voicemail directly (see `softswitch.voicemail`), beside a
running server or without one; a running server notices the change within
a second and updates the owners' message-waiting lights.

    softswitch voicemail [MAILBOX] [--json]
    softswitch voicemail delete MAILBOX (MESSAGE_ID... | --all)

MAILBOX is `user@domain`, or `user` when one mailbox has that user.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

import click

from softswitch.cli import exitcodes
from softswitch.cli.listing import print_listing
from softswitch.cli.server_files import config_option, data_dir_option, server_files
from softswitch.voicemail import VoicemailError, VoicemailStore


class _ListByDefault(click.Group):
    """A group whose first word, when not a sub-command, is the MAILBOX to list."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ("-h", "--help")):
            args = ["list", *args]
        return super().parse_args(ctx, args)


def _resolve(store: VoicemailStore, wanted: str) -> str:
    names = store.mailboxes()
    if "@" in wanted:
        user, _, domain = wanted.rpartition("@")
        found = [n for n in names if n.rpartition("@")[0] == user
                 and n.rpartition("@")[2].lower() == domain.lower()]
        return found[0] if found else wanted
    found = [n for n in names if n.rpartition("@")[0] == wanted]
    if len(found) > 1:
        raise VoicemailError(f"{wanted} has a mailbox in several domains "
                             f"({', '.join(found)}): say which one")
    if not found:
        raise VoicemailError(f"no mailbox for {wanted}")
    return found[0]


def _store(config_path: Path | None, data_dir: Path | None) -> VoicemailStore:
    return VoicemailStore(server_files(config_path, data_dir).data_dir)


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(exitcodes.FAILED)


@click.group(cls=_ListByDefault)
def voicemail() -> None:
    """Voicemail: list messages (default), or delete them."""


@voicemail.command("list")
@click.argument("mailbox", required=False)
@config_option
@data_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list, for scripts.")
def list_messages(mailbox: str | None, config_path: Path | None, data_dir: Path | None,
                  as_json: bool) -> None:
    """List the messages of every mailbox, or of MAILBOX (user@domain, or user).

    A table on a terminal, one message per line on a pipe, or JSON. Exit
    status 1 when MAILBOX does not exist.
    """
    store = _store(config_path, data_dir)
    try:
        names = [_resolve(store, mailbox)] if mailbox else store.mailboxes()
        messages = [m for name in names for m in store.messages(name)]
    except VoicemailError as exc:
        _fail(str(exc))
        return
    if as_json:
        click.echo(json.dumps([asdict(m) | {"wav": str(store.folder(m.mailbox) / f"{m.id}.wav")}
                               for m in messages], indent=2))
        return
    if not messages:
        click.echo(f"no messages in {names[0]}" if mailbox else "no messages")
        return
    new = sum(not m.heard for m in messages)
    print_listing(
        f"{len(messages)} message{'s' if len(messages) != 1 else ''}, {new} new",
        ["mailbox", "id", "received", "from", "name", "duration", "status"],
        [[m.mailbox, m.id, m.received_at, m.caller, m.caller_name, f"{m.duration:.1f} s",
          ("new" if not m.heard else "heard") + (" urgent" if m.urgent else "")]
         for m in messages],
        no_wrap=frozenset({"id", "received", "duration", "status"}))


@voicemail.command()
@click.argument("mailbox")
@click.argument("message_ids", nargs=-1)
@click.option("--all", "delete_all", is_flag=True, help="Delete every message of MAILBOX.")
@config_option
@data_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print the deleted messages as JSON.")
def delete(mailbox: str, message_ids: tuple[str, ...], delete_all: bool,
           config_path: Path | None, data_dir: Path | None, as_json: bool) -> None:
    """Delete messages of MAILBOX by id (see `softswitch voicemail MAILBOX`), or --all.

    Nothing is deleted when one of the ids does not exist (exit status 1).
    """
    if bool(message_ids) == delete_all:
        click.echo("error: give message ids or --all, not both nor neither", err=True)
        sys.exit(exitcodes.USAGE)
    store = _store(config_path, data_dir)
    try:
        name = _resolve(store, mailbox)
        ids = [m.id for m in store.messages(name)] if delete_all else list(message_ids)
        for message_id in ids:
            store.message(name, message_id)  # all exist, or nothing is deleted
        deleted = [store.delete(name, message_id) for message_id in ids]
    except (VoicemailError, OSError) as exc:
        _fail(str(exc))
        return
    if as_json:
        click.echo(json.dumps([asdict(m) for m in deleted], indent=2))
    else:
        click.echo(f"deleted {len(deleted)} message{'s' if len(deleted) != 1 else ''} "
                   f"from {name}")
