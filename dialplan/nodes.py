"""Reading checked values out of YAML nodes, reporting what is wrong where.

Owns the small vocabulary the compiler uses to say "expected a list here"
with the node's position and a hint, and the "did you mean" suggestions for
misspelt keys.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from dialplan.diagnostics import Reporter
from dialplan.source import YMap, YNode, YScalar, YSeq, describe


def suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else ""


def check_keys(
    node: YMap, allowed: Iterable[str], report: Reporter, what: str, code: str = "unknown-option"
) -> None:
    allowed = tuple(allowed)
    for key, _ in node.items:
        if key.text not in allowed:
            hint = suggest(key.text, allowed) or "allowed: " + ", ".join(allowed)
            report.error(key.line, key.column, f"unknown {what} {key.text!r}", hint, code)


def expect_map(node: YNode, report: Reporter, what: str, hint: str = "") -> YMap | None:
    if isinstance(node, YMap):
        return node
    report.error(
        node.line, node.column, f"{what} must be a mapping, not {describe(node)}", hint, "bad-type"
    )
    return None


def expect_text(node: YNode, report: Reporter, what: str, hint: str = "") -> YScalar | None:
    """A non-empty scalar whose text is used as typed (numbers included)."""
    if isinstance(node, YScalar) and not node.is_null and node.text != "":
        return node
    report.error(
        node.line, node.column, f"{what} must be text, not {describe(node)}", hint, "bad-type"
    )
    return None


def expect_int(node: YNode, report: Reporter, what: str, low: int, high: int) -> int | None:
    value = node.as_int() if isinstance(node, YScalar) else None
    if value is None:
        report.error(
            node.line,
            node.column,
            f"{what} must be a whole number, not {describe(node)}",
            "",
            "bad-type",
        )
        return None
    if not low <= value <= high:
        report.error(
            node.line,
            node.column,
            f"{what} {value} is out of range",
            f"use {low} to {high}",
            "bad-value",
        )
        return None
    return value


def expect_bool(node: YNode, report: Reporter, what: str) -> bool | None:
    value = node.as_bool() if isinstance(node, YScalar) else None
    if value is None:
        report.error(
            node.line,
            node.column,
            f"{what} must be true or false, not {describe(node)}",
            "",
            "bad-type",
        )
    return value


def as_list(node: YNode) -> tuple[YNode, ...]:
    """A scalar or a list, as a list: `include: features` and `include: [a, b]` both work."""
    if isinstance(node, YSeq):
        return node.items
    return (node,)
