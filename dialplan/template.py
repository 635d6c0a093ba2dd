"""Variable substitution: `${dest}`, `${1}`, `${header.X-Account}`, `${dest:1}`, `${dest:-4}`.

Owns parsing a string with `${...}` references once, at compile time, into a
`Template` that renders with a plain dict lookup per reference. The
`${name:offset[:length]}` form is Asterisk's substring (`${EXTEN:1}` strips an
access digit); a negative offset counts from the end. Unknown variables render
as the empty string, as in both Asterisk and FreeSWITCH.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9]+|header\.[A-Za-z0-9_.!%*+`'~-]+")
_REF = re.compile(r"\$\{([^}]*)\}")


class TemplateError(ValueError):
    def __init__(self, message: str, offset: int, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset
        self.hint = hint


@dataclass(frozen=True, slots=True)
class VarRef:
    # Header names are stored lower-cased under "header.<name>" for a case-insensitive lookup.
    name: str
    offset: int | None = None
    length: int | None = None

    def render(self, env: Mapping[str, str]) -> str:
        value = env.get(self.name, "")
        if self.offset is None:
            return value
        start = self.offset if self.offset >= 0 else max(len(value) + self.offset, 0)
        if self.length is None:
            return value[start:]
        if self.length < 0:
            return value[start : self.length]
        return value[start : start + self.length]


@dataclass(frozen=True, slots=True)
class Template:
    source: str
    parts: tuple[str | VarRef, ...]

    @property
    def is_literal(self) -> bool:
        return all(isinstance(p, str) for p in self.parts)

    @property
    def literal_head(self) -> str:
        """The text before the first variable (all of it for a literal)."""
        head = self.parts[0] if self.parts else ""
        return head if isinstance(head, str) else ""

    def references(self) -> tuple[VarRef, ...]:
        return tuple(p for p in self.parts if isinstance(p, VarRef))

    def render(self, env: Mapping[str, str]) -> str:
        parts = self.parts
        if len(parts) == 1:
            only = parts[0]
            return only if isinstance(only, str) else only.render(env)
        return "".join(p if isinstance(p, str) else p.render(env) for p in parts)


def compile_template(source: str) -> Template:
    parts: list[str | VarRef] = []
    pos = 0
    for m in _REF.finditer(source):
        if m.start() > pos:
            parts.append(source[pos : m.start()])
        parts.append(_parse_ref(m.group(1), m.start()))
        pos = m.end()
    rest = source[pos:]
    if "${" in rest:
        raise TemplateError("unclosed '${' in text", pos + rest.index("${"), "close it with '}'")
    if rest or not parts:
        parts.append(rest)
    return Template(source, tuple(parts))


def _parse_ref(body: str, offset: int) -> VarRef:
    name, _, slicing = body.partition(":")
    if not _NAME.fullmatch(name):
        raise TemplateError(
            f"bad variable name {name!r} in ${{{body}}}",
            offset,
            "names are letters, digits and '_'; captures are ${1}; headers are ${header.Name}",
        )
    if name.startswith("header."):
        name = name.lower()
    if not slicing:
        return VarRef(name)
    fields = slicing.split(":")
    try:
        numbers = [int(f) for f in fields]
    except ValueError:
        raise TemplateError(
            f"bad substring in ${{{body}}}", offset, "write ${dest:1} or ${dest:0:3}"
        ) from None
    if len(numbers) > 2:
        raise TemplateError(
            f"bad substring in ${{{body}}}", offset, "write ${dest:1} or ${dest:0:3}"
        )
    return VarRef(name, numbers[0], numbers[1] if len(numbers) == 2 else None)
