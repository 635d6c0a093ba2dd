"""`softswitch dialplan check` and `softswitch dialplan test`: the dialplan's tooling.

Both work on files only (no server, no network). `check` prints every problem
as file:line:column with a hint and exits 1 on errors; `test` routes one
imagined call and prints the trace and the actions, without placing it.
User and trunk names for the checker's warnings come from the directory and
the server configuration when those files exist.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

import dialplan as dp

DEFAULT_DIALPLAN = "conf/dialplan.yaml"
DEFAULT_DIRECTORY = "conf/directory.yaml"
DEFAULT_CONFIG = "conf/softswitch.yaml"
BUILTIN_VARIABLES = frozenset({"dest", "caller", "caller_name", "context", "trunk"})


@dataclass(slots=True)
class DirectoryUser:
    context: str = "internal"
    display_name: str = ""
    groups: frozenset[str] = frozenset()


@dataclass(slots=True)
class KnownNames:
    # None: the file was absent or unreadable, so names are not checked.
    users: dict[str, DirectoryUser] | None = None
    trunks: set[str] | None = None
    notes: list[str] = field(default_factory=list)


def _read_yaml(path: Path) -> tuple[Any, str | None]:
    if not path.is_file():
        return None, None
    try:
        return YAML(typ="safe").load(path.read_text(encoding="utf-8")), None
    except (OSError, UnicodeDecodeError, YAMLError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return None, f"cannot read {path} ({first})"


def read_known_names(directory: Path, config: Path) -> KnownNames:
    """User names from the directory and trunk names from the server configuration."""
    known = KnownNames()
    data, problem = _read_yaml(directory)
    if problem:
        known.notes.append(f"{problem}: user names not checked")
    elif isinstance(data, dict):
        known.users = {}
        for domain in data.get("domains") or []:
            if not isinstance(domain, dict):
                continue
            for entry in domain.get("users") or []:
                if isinstance(entry, dict) and entry.get("user") is not None:
                    groups = entry.get("groups") or []
                    known.users[str(entry["user"])] = DirectoryUser(
                        context=str(entry.get("context") or "internal"),
                        display_name=str(entry.get("display_name") or ""),
                        groups=frozenset(str(g) for g in groups if g is not None)
                        if isinstance(groups, list)
                        else frozenset(),
                    )
    data, problem = _read_yaml(config)
    if problem:
        known.notes.append(f"{problem}: trunk names not checked")
    elif isinstance(data, dict):
        # Trunks may not be configured yet; an absent list means "no trunk warnings".
        trunks = data.get("trunks")
        if isinstance(trunks, list):
            known.trunks = {
                str(t["name"]) for t in trunks if isinstance(t, dict) and t.get("name") is not None
            }
    return known


@click.group("dialplan")
def dialplan() -> None:
    """Check the dialplan and try calls against it."""


_directory_option = click.option(
    "--directory",
    "directory",
    default=DEFAULT_DIRECTORY,
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Directory of users (for user names, contexts and groups).",
)
_config_option = click.option(
    "--config",
    "config",
    default=DEFAULT_CONFIG,
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Server configuration (for trunk names).",
)


@dialplan.command("check")
@click.argument("file", default=DEFAULT_DIALPLAN, type=click.Path(dir_okay=False, path_type=Path))
@_directory_option
@_config_option
def check(file: Path, directory: Path, config: Path) -> None:
    """Check FILE and report every error and warning at once."""
    known = read_known_names(directory, config)
    for note in known.notes:
        click.echo(f"note: {note}", err=True)
    result = dp.load_file(
        file,
        known_users=set(known.users) if known.users is not None else None,
        known_trunks=known.trunks,
    )
    for diagnostic in result.diagnostics:
        click.echo(diagnostic.format())
    errors, warnings = len(result.errors), len(result.warnings)
    if result.plan is None:
        click.echo(f"{file}: {_count(errors, 'error')}, {_count(warnings, 'warning')}; refused")
        sys.exit(1)
    plan = result.plan
    click.echo(
        f"{file}: ok, {_count(len(plan.contexts), 'context')}, "
        f"{_count(plan.rule_count, 'rule')}, {_count(warnings, 'warning')}"
    )


def _count(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _pairs(values: tuple[str, ...], option: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for value in values:
        name, sep, text = value.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"expected NAME=VALUE, got {value!r}", param_hint=option)
        out[name.strip()] = text
    return out


@dialplan.command("test")
@click.option(
    "--file",
    "file",
    default=DEFAULT_DIALPLAN,
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Dialplan file.",
)
@click.option("--context", help="Context the call enters [default: the user's, else internal].")
@click.option("--from", "caller", default="", help="Caller: a user or a number.")
@click.option("--to", "dest", required=True, help="The dialled number.")
@click.option("--name", "caller_name", default=None, help="Caller display name.")
@click.option("--trunk", default=None, help="Source trunk, for a call from a trunk.")
@click.option(
    "--group", "groups", multiple=True, help="Caller group (repeatable) [default: the user's]."
)
@click.option("--header", "headers", multiple=True, help="SIP header NAME=VALUE (repeatable).")
@click.option("--var", "variables", multiple=True, help="Variable NAME=VALUE (repeatable).")
@click.option(
    "--at",
    "at",
    default=None,
    help="Time of the call, ISO 8601 (2026-12-24T19:00); without an offset it is "
    "read in the dialplan's time zone [default: now].",
)
@_directory_option
@_config_option
def test(
    file: Path,
    context: str | None,
    caller: str,
    dest: str,
    caller_name: str | None,
    trunk: str | None,
    groups: tuple[str, ...],
    headers: tuple[str, ...],
    variables: tuple[str, ...],
    at: str | None,
    directory: Path,
    config: Path,
) -> None:
    """Show how a call would be routed, without placing it."""
    known = read_known_names(directory, config)
    result = dp.load_file(
        file,
        known_users=set(known.users) if known.users is not None else None,
        known_trunks=known.trunks,
    )
    for diagnostic in result.diagnostics:
        click.echo(diagnostic.format(), err=True)
    if result.plan is None:
        click.echo(f"{file}: has errors; run `softswitch dialplan check {file}`", err=True)
        sys.exit(1)
    plan = result.plan
    user = (known.users or {}).get(caller) if trunk is None else None
    when = _parse_time(at, plan)
    facts = dp.CallFacts(
        context=context or (user.context if user else "internal"),
        dest=dest,
        caller=caller,
        caller_name=caller_name if caller_name is not None else (user.display_name if user else ""),
        trunk=trunk,
        groups=frozenset(groups) if groups else (user.groups if user else frozenset()),
        headers=_pairs(headers, "--header"),
        time=when,
        variables=_pairs(variables, "--var"),
    )
    decision = plan.route(facts)
    _print_decision(facts, decision, when)


def _parse_time(at: str | None, plan: dp.Plan) -> datetime:
    if at is None:
        return datetime.now(plan.timezone)
    try:
        when = datetime.fromisoformat(at)
    except ValueError:
        raise click.BadParameter(f"not an ISO 8601 time: {at!r}", param_hint="--at") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=plan.timezone)
    return when


def _print_decision(facts: dp.CallFacts, decision: dp.Decision, when: datetime) -> None:
    local = when.astimezone(when.tzinfo)
    groups = ",".join(sorted(facts.groups)) or "-"
    click.echo(
        f"Call from {facts.caller or '-'} to {facts.dest} in context {facts.context}"
        f" at {local:%a %Y-%m-%d %H:%M %Z} (trunk: {facts.trunk or '-'}, groups: {groups})"
    )
    click.echo("")
    click.echo("Trace:")
    for step in decision.trace:
        click.echo(f"  {step.format()}")
    click.echo("")
    click.echo("Actions:")
    for number, action in enumerate(decision.actions, 1):
        click.echo(f"  {number}. {dp.describe_action(action)}")
        if isinstance(action, dp.Dial):
            for label, handler in (
                ("on busy", action.on_busy),
                ("on no answer", action.on_no_answer),
                ("on failure", action.on_failure),
            ):
                if handler is not None:
                    shown = "; ".join(dp.describe_action(a) for a in handler)
                    click.echo(f"       {label}: {shown}")
    extra = {
        k: v
        for k, v in decision.variables.items()
        if k not in BUILTIN_VARIABLES and not k.startswith("header.")
    }
    if extra:
        click.echo("")
        click.echo("Variables:")
        for name in sorted(extra):
            click.echo(f"  {name}={extra[name]}")
