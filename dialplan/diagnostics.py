"""Diagnostics: what the checker tells an operator about a dialplan file.

Owns the `Diagnostic` value (file, line, column, severity, message, hint) and
`CheckResult`, the outcome of loading a file: a plan only when there are no
errors. Positions are 1-based, as editors show them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dialplan.plan import Plan


class Severity(enum.Enum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Diagnostic:
    file: str
    line: int
    column: int
    severity: Severity
    message: str
    hint: str = ""
    # A stable short name ("unknown-action", "shadowed-rule", ...) for tools and tests.
    code: str = ""

    def format(self) -> str:
        text = f"{self.file}:{self.line}:{self.column}: {self.severity.value}: {self.message}"
        if self.hint:
            text += f" (hint: {self.hint})"
        return text

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR


@dataclass(frozen=True, slots=True)
class CheckResult:
    plan: Plan | None
    diagnostics: tuple[Diagnostic, ...] = field(default=())

    @property
    def errors(self) -> tuple[Diagnostic, ...]:
        return tuple(d for d in self.diagnostics if d.is_error)

    @property
    def warnings(self) -> tuple[Diagnostic, ...]:
        return tuple(d for d in self.diagnostics if not d.is_error)

    @property
    def ok(self) -> bool:
        return self.plan is not None


class Reporter:
    """Collects diagnostics while a file is compiled, so every error is reported at once."""

    __slots__ = ("file", "items")

    def __init__(self, file: str) -> None:
        self.file = file
        self.items: list[Diagnostic] = []

    def error(self, line: int, column: int, message: str, hint: str = "", code: str = "") -> None:
        self.items.append(Diagnostic(self.file, line, column, Severity.ERROR, message, hint, code))

    def warning(self, line: int, column: int, message: str, hint: str = "", code: str = "") -> None:
        self.items.append(
            Diagnostic(self.file, line, column, Severity.WARNING, message, hint, code)
        )

    @property
    def has_errors(self) -> bool:
        return any(d.is_error for d in self.items)

    def sorted(self) -> tuple[Diagnostic, ...]:
        return tuple(sorted(self.items, key=lambda d: (d.line, d.column, d.severity.value)))
