"""`softswitch trunks` and `softswitch relays`: what the running server says of them.

Trunks come with their registration at the provider (state, last status,
when the binding lapses); credentials never leave the server. Relays are
the media relays with their health and load, once a relay is configured.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from softswitch.cli.api_client import ApiError
from softswitch.cli.calls_cmd import client_for, dash, fail, when
from softswitch.cli.listing import print_listing
from softswitch.cli.server_files import config_option, data_dir_option


@click.command()
@config_option
@data_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list, for scripts.")
def trunks(config_path: Path | None, data_dir: Path | None, as_json: bool) -> None:
    """Show the trunks of the running server and their registration state."""
    client = client_for(config_path, data_dir)
    try:
        found = client.get("/api/trunks")
    except ApiError as exc:
        fail(exc)
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    if not found:
        click.echo("no trunks configured")
        return
    rows = []
    for t in found:
        reg = t["registration"]
        rows.append([t["name"], f"{t['transport']}:{t['host']}:{t['port']}", t["context"],
                     reg["state"] if reg else ("not registering" if not t["register"]
                                               else "skipped (see the log)"),
                     dash(reg and reg["last_status"]), when(reg and reg["expires_at"]),
                     str(reg["failures"]) if reg else "-"])
    print_listing(f"{len(found)} trunk{'s' if len(found) != 1 else ''}",
                  ["name", "address", "context", "registration", "last status", "expires",
                   "failures"], rows, no_wrap=frozenset({"last status", "failures"}))


@click.command()
@config_option
@data_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON document, for scripts.")
def relays(config_path: Path | None, data_dir: Path | None, as_json: bool) -> None:
    """Show the media relays of the running server, their health and load."""
    client = client_for(config_path, data_dir)
    try:
        found = client.get("/api/relays")
    except ApiError as exc:
        fail(exc)
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    if not found["configured"]:
        click.echo("no relay configured: media goes directly between the parties")
        return
    rows = [[str(r.get("name", "")), str(r.get("address", "")), str(r.get("health", "")),
             dash(r.get("streams")), dash(r.get("load"))] for r in found["relays"]]
    print_listing(f"{len(rows)} relay{'s' if len(rows) != 1 else ''}",
                  ["name", "address", "health", "streams", "load"], rows)
