"""`softswitch calls`: the calls in progress, one call in detail with its SIP ladder, hang-up.

Asks the running server's management API (see `api_client`). A call is
named by its id (a unique prefix is enough), or by its Call-ID. Calls that
ended in the last minutes can still be shown (the server keeps the last
ones with their messages), so a failed call can be examined after the fact.
Media figures (loss, jitter, MOS) come from the relay; "-" when there are none.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

import click

from softswitch.cli.api_client import ApiClient, ApiError
from softswitch.cli.listing import print_listing
from softswitch.cli.server_files import config_option, data_dir_option, server_files
from softswitch.management import ladder

SHORT_ID = 12  # enough to be unique among live calls, short enough to type


def fail(error: ApiError) -> NoReturn:
    click.echo(f"error: {error}", err=True)
    sys.exit(error.exit_code)


def client_for(config_path: Path | None, data_dir: Path | None) -> ApiClient:
    files = server_files(config_path, data_dir)
    try:
        return ApiClient.for_server(files)
    except ApiError as exc:
        fail(exc)


def dash(value: Any, fmt: Callable[[Any], str] = str) -> str:
    """A figure, or "-" when it is not known (no relay, not answered yet)."""
    return "-" if value is None else fmt(value)


def clock(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    total = int(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def when(epoch: float | None) -> str:
    """An ISO time with its zone (the local one), to the millisecond."""
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch).astimezone().isoformat(timespec="milliseconds")


def percent(fraction: float) -> str:
    return f"{fraction * 100:.1f}%"


def summary_row(call: dict[str, Any]) -> list[str]:
    return [call["id"][:SHORT_ID], call["caller"], call["callee"] or "", call["state"],
            clock(call["duration"]), " ".join(call["codecs"]) or "-",
            dash(call["loss"], percent), dash(call["jitter_ms"], lambda v: f"{v:.1f} ms"),
            dash(call["mos"], lambda v: f"{v:.2f}")]


SUMMARY_COLUMNS = ["id", "caller", "callee", "state", "duration", "codecs", "loss", "jitter",
                   "MOS"]


@click.group(invoke_without_command=True)
@config_option
@data_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list, for scripts.")
@click.pass_context
def calls(ctx: click.Context, config_path: Path | None, data_dir: Path | None,
          as_json: bool) -> None:
    """List the calls in progress (or, with a sub-command, show or hang up one).

    A table on a terminal, one call per line on a pipe, or JSON. Exit
    status: 0, 3 when no server runs on the data dir, 1 on another error.
    """
    ctx.ensure_object(dict)
    ctx.obj.update(config_path=config_path, data_dir=data_dir)
    if ctx.invoked_subcommand is not None:
        return
    client = client_for(config_path, data_dir)
    try:
        found = client.get("/api/calls")
    except ApiError as exc:
        fail(exc)
    if as_json:
        click.echo(json.dumps(found, indent=2))
    elif not found:
        click.echo("no calls in progress")
    else:
        print_listing(f"{len(found)} call{'s' if len(found) != 1 else ''} in progress",
                      SUMMARY_COLUMNS, [summary_row(c) for c in found],
                      no_wrap=frozenset({"id", "state", "duration", "loss", "jitter", "MOS"}))


def _client(ctx: click.Context, config_path: Path | None, data_dir: Path | None) -> ApiClient:
    return client_for(config_path or ctx.obj.get("config_path"),
                      data_dir or ctx.obj.get("data_dir"))


@calls.command()
@click.argument("call_id", metavar="ID")
@config_option
@data_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print the call as JSON, for scripts.")
@click.option("--messages", "full", is_flag=True, help="Also print every SIP message in full.")
@click.pass_context
def show(ctx: click.Context, call_id: str, config_path: Path | None, data_dir: Path | None,
         as_json: bool, full: bool) -> None:
    """Show call ID: its legs, timings, media streams and SIP ladder.

    ID is the call's id (a unique prefix will do) or its Call-ID; calls that
    ended recently are kept for this. Exit status: 0, 1 if there is no such
    call, 3 when no server runs.
    """
    client = _client(ctx, config_path, data_dir)
    try:
        call = client.get(f"/api/calls/{_quote(call_id)}")
    except ApiError as exc:
        fail(exc)
    if as_json:
        click.echo(json.dumps(call, indent=2))
        return
    for line in describe(call, full):
        click.echo(line)


def describe(call: dict[str, Any], full: bool = False) -> list[str]:
    """The detail of a call as text (also what `softswitch top` shows)."""
    t = call["timings"]
    ended = " (ended)" if call.get("finished") else ""
    lines = [
        f"call {call['id']}{ended}",
        f"  Call-ID   {call['call_id']}",
        f"  from      {call['caller']}" + (f" ({call['caller_name']})" if call.get("caller_name")
                                           else ""),
        f"  to        {call['dialled']} -> {call['callee']}",
        f"  state     {call['state']}" + (f", {call['hangup_cause']}"
                                          if call.get("hangup_cause") else ""),
        f"  routed    context {call['context']}, rule {dash(call['rule'])}"
        + (f", trunk {call['trunk']}" if call.get("trunk") else ""),
        f"  started   {when(t['started'])}",
        f"  ringing   {when(t['ringing'])}",
        f"  answered  {when(t['answered'])}",
        f"  ended     {when(t['ended'])}",
        f"  setup {dash(t['setup'], lambda v: f'{v:.3f} s')}, answer after "
        f"{dash(t['answer_delay'], lambda v: f'{v:.3f} s')}, duration {clock(t['duration'])}",
        "",
        "legs:",
    ]
    for leg in call["legs"]:
        lines.append(f"  {leg['name']:<4} {leg['state']:<10} {leg['target']}  "
                     f"{leg['transport']}:{leg['remote']}")
        lines.append(f"       Call-ID {leg['call_id']}  tags {leg['local_tag']} / "
                     f"{leg['remote_tag'] or '-'}")
        lines.append(f"       user agent {dash(leg['user_agent'])}  codecs "
                     f"{' '.join(leg['codecs']) or '-'}")
    lines += ["", "streams:"]
    if not call["streams"]:
        lines.append("  - (no media figures: media goes directly between the phones, or the "
                     "relay reported none)")
    for s in call["streams"]:
        lines.append(
            f"  {s['leg']:<4} packets {dash(s['packets'])}  lost {dash(s['lost'])} "
            f"({dash(s['loss'], percent)})  jitter {dash(s['jitter_ms'], lambda v: f'{v:.1f} ms')}"
            f"  RTT {dash(s['rtt_ms'], lambda v: f'{v:.1f} ms')}  MOS "
            f"{dash(s['mos'], lambda v: f'{v:.2f}')}  kernel "
            f"{dash(s['kernel'], lambda v: 'yes' if v else 'no')}")
    lines += ["", f"SIP messages ({len(call['messages'])}):"]
    lines += ladder.render(call["messages"])
    if full:
        for m in call["messages"]:
            arrow = "<-" if m["direction"] == "in" else "->"
            lines += ["", f"{when(m['time'])} {arrow} {m['transport']}:{m['peer']}",
                      m["text"].rstrip()]
    return lines


@calls.command()
@click.argument("call_id", metavar="ID")
@config_option
@data_dir_option
@click.pass_context
def hangup(ctx: click.Context, call_id: str, config_path: Path | None,
           data_dir: Path | None) -> None:
    """End call ID now: BYE to both parties, or 503 to a caller still ringing.

    Exit status: 0 when the server ended it, 1 when there is no such call
    or it has already ended, 3 when no server runs.
    """
    client = _client(ctx, config_path, data_dir)
    try:
        done = client.post(f"/api/calls/{_quote(call_id)}/hangup")
    except ApiError as exc:
        fail(exc)
    click.echo(f"call {done['id']} hung up (Call-ID {done['call_id']})")


def _quote(text: str) -> str:
    from urllib.parse import quote
    return quote(text, safe="")


