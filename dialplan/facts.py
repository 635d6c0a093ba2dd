"""The router's input and output: `CallFacts` in, `Decision` (actions and trace) out."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from dialplan.actions import Action


@dataclass(frozen=True, slots=True)
class CallFacts:
    """What the softswitch knows about a new call when it asks where it goes.

    `headers` names are case-insensitive (RFC 3261 section 7.3.5): they are
    stored lower-cased. `time` must be timezone-aware; None means now in UTC.
    """

    context: str
    dest: str
    caller: str = ""
    caller_name: str = ""
    trunk: str | None = None
    groups: frozenset[str] = frozenset()
    headers: Mapping[str, str] = field(default_factory=dict)
    time: datetime | None = None
    variables: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # frozen: normalise through object.__setattr__, once, at construction.
        object.__setattr__(self, "headers", {k.lower(): v for k, v in self.headers.items()})
        object.__setattr__(self, "groups", frozenset(self.groups))
        if self.time is None:
            object.__setattr__(self, "time", datetime.now(UTC))
        elif self.time.tzinfo is None or self.time.utcoffset() is None:
            raise ValueError("CallFacts.time must be timezone-aware")

    @property
    def when(self) -> datetime:
        assert self.time is not None  # set in __post_init__
        return self.time


@dataclass(slots=True)
class TraceStep:
    """One line of the trace: a rule considered (or an event such as a goto) and why.

    Not frozen, unlike the rest: a routing writes several, and a frozen dataclass
    costs four times as much to build. Nothing modifies one after routing.
    """

    context: str
    rule: str
    line: int
    # "match", "no-match", "else" (conditions failed, anti-actions ran), "goto", "note".
    outcome: str
    reason: str

    def format(self) -> str:
        where = f"{self.context}/{self.rule}" if self.rule else self.context
        at = f" (line {self.line})" if self.line else ""
        return f"{self.outcome:<8} {where}{at}: {self.reason}"


@dataclass(frozen=True, slots=True)
class Decision:
    actions: tuple[Action, ...]
    variables: Mapping[str, str]
    trace: tuple[TraceStep, ...]
    # False when no rule matched and the router fell back to a 404.
    matched: bool = True
