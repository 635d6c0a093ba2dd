"""Number patterns: Asterisk `_NXXNXXXXXX` patterns, literals and regular expressions.

Owns parsing a pattern into elements, compiling it to an anchored regex,
finding the literal prefix the router indexes on, and deciding whether one
pattern covers another (used to warn about shadowed rules).

Asterisk semantics: `X` is 0-9, `Z` is 1-9, `N` is 2-9, `[...]` is a set with
ranges, `.` matches one or more characters and `!` zero or more; both end the
pattern. Dashes outside brackets are ignored, as Asterisk does, so
`_1-NXX-NXX-XXXX` reads well. Matching is against the whole number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DIGITS = frozenset("0123456789")
_CLASSES = {
    "X": DIGITS,
    "Z": frozenset("123456789"),
    "N": frozenset("23456789"),
}
# Characters a dialled number or user name may hold literally in a pattern.
_LITERAL = frozenset("0123456789*#+abcdefghijklmopqrstuvwyABCDEFGHIJKLMOPQRSTUVWY@_")


class PatternError(ValueError):
    """A pattern that cannot be compiled; `offset` is the 0-based index of the culprit."""

    def __init__(self, message: str, offset: int, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset
        self.hint = hint


@dataclass(frozen=True, slots=True)
class AsteriskPattern:
    """A parsed `_...` pattern: one character set per position, then an optional tail."""

    source: str
    elements: tuple[frozenset[str], ...]
    # "" (exact length), "." (one or more more characters) or "!" (zero or more).
    tail: str
    prefix: str

    def matches(self, number: str) -> bool:
        # Matched position by position rather than with a compiled regex: compiling
        # 10,000 regexes costs seconds, and the router only tries a few rules a call.
        size = len(self.elements)
        if self.tail == "":
            if len(number) != size:
                return False
        elif self.tail == ".":
            if len(number) <= size:
                return False
        elif len(number) < size:
            return False
        for char, allowed in zip(number, self.elements, strict=False):
            if char not in allowed:
                return False
        return True

    def to_regex(self) -> str:
        """The equivalent regex, for `re.fullmatch`; shown to operators and used in tests."""
        return to_regex(self.elements, self.tail)


def parse_asterisk(source: str) -> AsteriskPattern:
    """Parse `_1NXX.`; `source` includes the leading underscore."""
    if not source.startswith("_"):
        raise PatternError("an Asterisk pattern starts with '_'", 0)
    body = source[1:]
    if not body:
        raise PatternError("empty pattern after '_'", 0, "use '_X.' for any number")
    elements: list[frozenset[str]] = []
    tail = ""
    i = 0
    while i < len(body):
        ch = body[i]
        pos = i + 1  # offset in `source`
        if tail:
            raise PatternError(
                f"{tail!r} must be the last character of a pattern",
                pos,
                "anything after '.' or '!' could never be checked",
            )
        upper = ch.upper()
        if upper in _CLASSES:
            elements.append(_CLASSES[upper])
        elif ch in ".!":
            tail = ch
        elif ch == "-":
            pass  # Asterisk ignores dashes; they only make long patterns readable
        elif ch == "[":
            end = body.find("]", i + 1)
            if end < 0:
                raise PatternError("unclosed '[' in pattern", pos, "close the set with ']'")
            elements.append(_parse_set(body[i + 1 : end], pos + 1))
            i = end
        elif ch in _LITERAL:
            elements.append(frozenset(ch))
        else:
            raise PatternError(
                f"unexpected character {ch!r} in pattern",
                pos,
                "use digits, * # +, X Z N, [ranges], '.' or '!'",
            )
        i += 1
    prefix_chars: list[str] = []
    for element in elements:
        if len(element) != 1:
            break
        prefix_chars.append(next(iter(element)))
    return AsteriskPattern(
        source=source,
        elements=tuple(elements),
        tail=tail,
        prefix="".join(prefix_chars),
    )


def _parse_set(inner: str, offset: int) -> frozenset[str]:
    if not inner:
        raise PatternError("empty set '[]' in pattern", offset - 1, "write e.g. [2-5] or [135]")
    chars: set[str] = set()
    i = 0
    while i < len(inner):
        ch = inner[i]
        if i + 2 < len(inner) and inner[i + 1] == "-":
            hi = inner[i + 2]
            if hi < ch:
                raise PatternError(
                    f"reversed range {ch}-{hi} in pattern", offset + i, f"write {hi}-{ch}"
                )
            chars.update(chr(c) for c in range(ord(ch), ord(hi) + 1))
            i += 3
            continue
        if ch not in _LITERAL:
            raise PatternError(f"unexpected character {ch!r} in set", offset + i)
        chars.add(ch)
        i += 1
    return frozenset(chars)


def to_regex(elements: tuple[frozenset[str], ...], tail: str) -> str:
    """The regex (for `fullmatch`) equivalent to a parsed pattern."""
    parts: list[str] = []
    for element in elements:
        if len(element) == 1:
            parts.append(re.escape(next(iter(element))))
        else:
            parts.append(_char_class(element))
    if tail == ".":
        parts.append(".+")
    elif tail == "!":
        parts.append(".*")
    return "".join(parts)


def _char_class(chars: frozenset[str]) -> str:
    # Collapse runs of consecutive characters into ranges so the regex stays readable.
    ordered = sorted(chars)
    out: list[str] = []
    start = prev = ordered[0]
    for ch in ordered[1:] + [""]:
        if ch and ord(ch) == ord(prev) + 1:
            prev = ch
            continue
        if start == prev:
            out.append(re.escape(start))
        else:
            out.append(f"{re.escape(start)}-{re.escape(prev)}")
        start = prev = ch
    return "[" + "".join(out) + "]"


def covers(outer: AsteriskPattern, inner: AsteriskPattern) -> bool:
    """True when every number `inner` matches is also matched by `outer`."""
    k, m = len(outer.elements), len(inner.elements)
    if outer.tail == "":
        if inner.tail or m != k:
            return False
    elif outer.tail == "!":
        if m < k:
            return False
    else:  # "." needs at least one character after the fixed part
        if m < k or (m == k and inner.tail != "."):
            return False
    return all(outer.elements[i] >= inner.elements[i] for i in range(k))


def literal_as_pattern(literal: str) -> AsteriskPattern:
    """A literal number as a pattern, so literal and pattern rules compare alike."""
    elements = tuple(frozenset(ch) for ch in literal)
    return AsteriskPattern(literal, elements, "", literal)


_REGEX_LITERAL = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ@_-")
_REGEX_ESCAPABLE = frozenset("+*#.")
_QUANTIFIERS = frozenset("?*+{")


def regex_prefix(source: str) -> str:
    """The literal text every match of an anchored regex must start with, or "".

    Conservative: any alternation, flag group or unusual construct gives "",
    which only means the rule is checked for every number.
    """
    if not source.startswith("^") or "|" in source:
        return ""
    chars: list[str] = []
    i = 1
    while i < len(source):
        ch = source[i]
        if ch == "\\" and i + 1 < len(source) and source[i + 1] in _REGEX_ESCAPABLE:
            literal, width = source[i + 1], 2
        elif ch in _REGEX_LITERAL:
            literal, width = ch, 1
        else:
            break
        following = source[i + width] if i + width < len(source) else ""
        if following in _QUANTIFIERS:
            break  # "91?" makes the 1 optional: only "9" is certain
        chars.append(literal)
        i += width
    return "".join(chars)
