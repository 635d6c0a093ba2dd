"""Compiled actions: each holds precompiled templates and renders a typed `Action`.

Owns the step between the checked YAML and the actions of a decision: at
routing time a spec substitutes variables (a dict lookup per `${...}`) and
builds the immutable action. Targets are parsed again after substitution
because `user/${dest}` is only a valid target once `${dest}` is known; a
target that comes out malformed is dropped and noted in the trace.
"""

from __future__ import annotations

from dataclasses import dataclass

from dialplan.actions import (
    Action,
    CallerId,
    Dial,
    Goto,
    Hangup,
    Playback,
    Record,
    SetVariables,
    Target,
    TargetError,
    Transfer,
    Voicemail,
    parse_target,
)
from dialplan.template import Template


def _target(template: Template, env: dict[str, str], notes: list[str]) -> Target | None:
    text = template.render(env)
    try:
        return parse_target(text)
    except TargetError as exc:
        notes.append(f"{exc.message} (from {template.source!r}); target dropped")
        return None


def render_all(
    specs: tuple[ActionSpec, ...] | None, env: dict[str, str], notes: list[str]
) -> tuple[Action, ...] | None:
    if specs is None:
        return None
    return tuple(spec.render(env, notes) for spec in specs)


@dataclass(frozen=True, slots=True)
class StaticSpec:
    """An action without variables (answer, echo, a fixed hangup): built once at compile time."""

    line: int
    action: Action

    def render(self, env: dict[str, str], notes: list[str]) -> Action:
        return self.action


@dataclass(frozen=True, slots=True)
class DialSpec:
    line: int
    targets: tuple[Template, ...]
    timeout: int | None
    caller_id_number: Template | None
    caller_id_name: Template | None
    headers: tuple[tuple[str, Template], ...]
    on_busy: tuple[ActionSpec, ...] | None
    on_no_answer: tuple[ActionSpec, ...] | None
    on_failure: tuple[ActionSpec, ...] | None

    def render(self, env: dict[str, str], notes: list[str]) -> Action:
        targets = tuple(t for t in (_target(x, env, notes) for x in self.targets) if t is not None)
        caller_id = None
        if self.caller_id_number is not None or self.caller_id_name is not None:
            caller_id = CallerId(
                self.caller_id_number.render(env) if self.caller_id_number else None,
                self.caller_id_name.render(env) if self.caller_id_name else None,
            )
        return Dial(
            targets=targets,
            timeout=self.timeout,
            caller_id=caller_id,
            headers=tuple((name, value.render(env)) for name, value in self.headers),
            on_busy=render_all(self.on_busy, env, notes),
            on_no_answer=render_all(self.on_no_answer, env, notes),
            on_failure=render_all(self.on_failure, env, notes),
        )


@dataclass(frozen=True, slots=True)
class HangupSpec:
    line: int
    code: int
    reason: Template

    def render(self, env: dict[str, str], notes: list[str]) -> Action:
        return Hangup(self.code, self.reason.render(env))


@dataclass(frozen=True, slots=True)
class PlaybackSpec:
    line: int
    file: Template

    def render(self, env: dict[str, str], notes: list[str]) -> Action:
        return Playback(self.file.render(env))


@dataclass(frozen=True, slots=True)
class RecordSpec:
    line: int
    file: Template
    max_seconds: int
    beep: bool

    def render(self, env: dict[str, str], notes: list[str]) -> Action:
        return Record(self.file.render(env), self.max_seconds, self.beep)


@dataclass(frozen=True, slots=True)
class VoicemailSpec:
    line: int
    box: Template
    menu: bool = False

    def render(self, env: dict[str, str], notes: list[str]) -> Action:
        return Voicemail(self.box.render(env), self.menu)


@dataclass(frozen=True, slots=True)
class SetSpec:
    """Sets variables in the routing environment too, so later rules and actions see them."""

    line: int
    variables: tuple[tuple[str, Template], ...]

    def render(self, env: dict[str, str], notes: list[str]) -> Action:
        values = tuple((name, value.render(env)) for name, value in self.variables)
        env.update(values)
        return SetVariables(values)


@dataclass(frozen=True, slots=True)
class GotoSpec:
    line: int
    column: int
    context: str
    number: Template | None

    def render(self, env: dict[str, str], notes: list[str]) -> Action:
        return Goto(self.context, self.number.render(env) if self.number is not None else None)


@dataclass(frozen=True, slots=True)
class TransferSpec:
    line: int
    target: Template

    def render(self, env: dict[str, str], notes: list[str]) -> Action:
        target = _target(self.target, env, notes)
        if target is None:
            return Hangup(500, "Bad Transfer Target")
        return Transfer(target)


ActionSpec = (
    StaticSpec
    | DialSpec
    | HangupSpec
    | PlaybackSpec
    | RecordSpec
    | VoicemailSpec
    | SetSpec
    | GotoSpec
    | TransferSpec
)
