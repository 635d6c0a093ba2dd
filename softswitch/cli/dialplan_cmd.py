"""`softswitch dialplan check` and `softswitch dialplan test`: the dialplan's tooling.

Both work on files only (no server, no network). `check` prints every problem
as file:line:column with a hint and exits 1 on errors; `test` routes one
imagined call and prints the trace and the actions (or JSON), without
placing it. The files come from the server configuration (`--config`, as
for every command): its `dialplan`, its `directory` (user names, contexts
and groups) and its `trunks` (a dial to a trunk it does not define is a
warning). The configuration is read leniently here, for names only, so a
check still runs beside a configuration that `run` would refuse.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

import dialplan as dp
from softswitch.cli import exitcodes
from softswitch.cli.server_files import ENV_CONFIG, config_option, find_config

DEFAULT_DIALPLAN = "dialplan.yaml"  # as in the configuration, relative to its folder
DEFAULT_DIRECTORY = "directory.yaml"
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


@dataclass(slots=True)
class DialplanFiles:
    dialplan: Path
    directory: Path
    config: Path | None


def dialplan_files(config: Path | None, dialplan_file: Path | None,
                   directory: Path | None) -> DialplanFiles:
    """The files to work on: those given, else those the configuration names."""
    config = find_config(config)
    base = config.parent if config is not None else Path("conf")
    data, _ = _read_yaml(config) if config is not None else (None, None)
    names = data if isinstance(data, dict) else {}

    def named(key: str, default: str) -> Path:
        path = Path(str(names.get(key) or default))
        return path if path.is_absolute() else base / path

    return DialplanFiles(
        dialplan=dialplan_file if dialplan_file is not None
        else named("dialplan", DEFAULT_DIALPLAN),
        directory=directory if directory is not None else named("directory", DEFAULT_DIRECTORY),
        config=config,
    )


def read_known_names(directory: Path, config: Path | None) -> KnownNames:
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
    if config is None:
        known.notes.append(f"no configuration (no --config, ${ENV_CONFIG} unset, no "
                           f"conf/softswitch.yaml in {Path.cwd()}): trunk names not checked")
        return known
    data, problem = _read_yaml(config)
    if problem:
        known.notes.append(f"{problem}: trunk names not checked")
    elif data is None and not config.is_file():
        known.notes.append(f"no configuration file {config}: trunk names not checked")
    elif isinstance(data, dict) or data is None:
        # No `trunks:` is no trunk at all: a dial to trunk/provider then fails
        # with 503 on every call, which is what the warning is for.
        trunks = (data or {}).get("trunks") or []
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
    default=None,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Directory of users (for user names, contexts and groups) "
    "[default: directory of the configuration].",
)


@dialplan.command("check")
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@_directory_option
@config_option
def check(file: Path | None, directory: Path | None, config_path: Path | None) -> None:
    """Check FILE [default: dialplan of the configuration]: every error and warning at once.

    Warns about dial targets naming a user the directory lacks or a trunk the
    configuration does not define. Exits 1 on errors.
    """
    files = dialplan_files(config_path, file, directory)
    file = files.dialplan
    known = read_known_names(files.directory, files.config)
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
        sys.exit(exitcodes.FAILED)
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
    default=None,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Dialplan file [default: dialplan of the configuration].",
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
@click.option("--json", "as_json", is_flag=True, help="Print the decision as JSON, for scripts.")
@_directory_option
@config_option
def test(
    file: Path | None,
    context: str | None,
    caller: str,
    dest: str,
    caller_name: str | None,
    trunk: str | None,
    groups: tuple[str, ...],
    headers: tuple[str, ...],
    variables: tuple[str, ...],
    at: str | None,
    as_json: bool,
    directory: Path | None,
    config_path: Path | None,
) -> None:
    """Show how a call would be routed, without placing it.

    Exits 1 when the plan has errors or the context does not exist.
    """
    files = dialplan_files(config_path, file, directory)
    file = files.dialplan
    known = read_known_names(files.directory, files.config)
    result = dp.load_file(
        file,
        known_users=set(known.users) if known.users is not None else None,
        known_trunks=known.trunks,
    )
    for diagnostic in result.diagnostics:
        click.echo(diagnostic.format(), err=True)
    if result.plan is None:
        click.echo(f"{file}: has errors; run `softswitch dialplan check {file}`", err=True)
        sys.exit(exitcodes.FAILED)
    plan = result.plan
    user = (known.users or {}).get(caller) if trunk is None else None
    when = _parse_time(at, plan)
    entered = context or (user.context if user else "internal")
    if entered not in plan.contexts:
        click.echo(f"error: no context {entered!r} in {file}; its contexts: "
                   f"{', '.join(sorted(plan.contexts))}", err=True)
        sys.exit(exitcodes.FAILED)
    facts = dp.CallFacts(
        context=entered,
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
    if as_json:
        click.echo(json.dumps(_decision_json(facts, decision, when), indent=2))
    else:
        _print_decision(facts, decision, when)


def _decision_json(facts: dp.CallFacts, decision: dp.Decision,
                   when: datetime) -> dict[str, Any]:
    def handlers(action: object) -> dict[str, list[str]]:
        if not isinstance(action, dp.Dial):
            return {}
        return {label: [dp.describe_action(a) for a in handler]
                for label, handler in (("on_busy", action.on_busy),
                                       ("on_no_answer", action.on_no_answer),
                                       ("on_failure", action.on_failure))
                if handler is not None}

    return {
        "call": {"context": facts.context, "from": facts.caller, "to": facts.dest,
                 "name": facts.caller_name, "trunk": facts.trunk,
                 "groups": sorted(facts.groups), "at": when.isoformat()},
        "matched": decision.matched,
        "trace": [{"context": s.context, "rule": s.rule, "line": s.line, "outcome": s.outcome,
                   "reason": s.reason} for s in decision.trace],
        "actions": [{"action": dp.describe_action(a), **handlers(a)} for a in decision.actions],
        "variables": {k: v for k, v in decision.variables.items()
                      if k not in BUILTIN_VARIABLES and not k.startswith("header.")},
    }


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
