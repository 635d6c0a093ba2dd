"""Compiling a dialplan tree into a `Plan`: settings, contexts, rules and conditions.

Owns the YAML format above the actions (see docs/dialplan.md): the top-level
keys, contexts and their includes, rules with `match`/`regex`, `when`
conditions, `else` and `continue`. Every problem is reported with its position
and compilation carries on, so one run shows all of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dialplan.action_parser import ActionParser, References
from dialplan.conditions import (
    DAY_NAMES,
    Condition,
    GroupCondition,
    Matcher,
    TimeCondition,
    TimeWindow,
    ValueCondition,
)
from dialplan.diagnostics import Reporter
from dialplan.nodes import as_list, check_keys, expect_int, expect_map, expect_text
from dialplan.patterns import PatternError, parse_asterisk, regex_prefix
from dialplan.plan import DEFAULT_MAX_GOTOS, Context, Rule
from dialplan.source import YMap, YNode, YScalar, YSeq, describe
from dialplan.specs import ActionSpec

TOP_LEVEL = ("settings", "contexts")
SETTINGS = ("timezone", "max_gotos")
CONTEXT_KEYS = ("include", "rules")
RULE_KEYS = ("name", "match", "regex", "when", "actions", "else", "continue")
CONDITIONS = ("caller", "caller_name", "caller_context", "trunk", "group", "header", "var", "time")
TIME_KEYS = ("days", "from", "to", "dates", "tz")
_CONTEXT_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_HHMM = re.compile(r"([01]?[0-9]|2[0-4]):([0-5][0-9])")
_DATE = re.compile(r"(?:([0-9]{4})-)?([0-9]{2})-([0-9]{2})")
_DAY_ALIASES = {
    "weekdays": "mon-fri",
    "weekend": "sat-sun",
    "weekends": "sat-sun",
    "all": "mon-sun",
}


@dataclass(slots=True)
class Compiled:
    """Contexts as written, before includes are resolved and indexes built."""

    contexts: dict[str, Context]
    include_refs: dict[str, list[YScalar]]
    refs: References
    max_gotos: int
    timezone: ZoneInfo


class Compiler:
    __slots__ = ("report", "refs", "actions", "tz")

    def __init__(self, report: Reporter) -> None:
        self.report = report
        self.refs = References()
        self.actions = ActionParser(report, self.refs)
        self.tz = ZoneInfo("UTC")

    def compile(self, root: YNode) -> Compiled | None:
        top = expect_map(root, self.report, "the file", "start with 'contexts:'")
        if top is None:
            return None
        check_keys(top, TOP_LEVEL, self.report, "top-level key", "unknown-key")
        max_gotos = DEFAULT_MAX_GOTOS
        settings = top.get("settings")
        if settings is not None:
            max_gotos = self.settings(settings)
        contexts_node = top.get("contexts")
        if contexts_node is None:
            self.report.error(
                top.line,
                top.column,
                "no 'contexts:' in the file",
                "add contexts: {internal: {rules: [...]}}",
                "no-contexts",
            )
            return None
        contexts_map = expect_map(
            contexts_node, self.report, "contexts", "write contexts: {NAME: {rules: [...]}}"
        )
        if contexts_map is None:
            return None
        contexts: dict[str, Context] = {}
        includes: dict[str, list[YScalar]] = {}
        for key, body in contexts_map.items:
            if not _CONTEXT_NAME.fullmatch(key.text):
                self.report.error(
                    key.line,
                    key.column,
                    f"bad context name {key.text!r}",
                    "use letters, digits, '-', '_' and '.'",
                    "bad-value",
                )
                continue
            context, include_nodes = self.context(key, body)
            contexts[key.text] = context
            includes[key.text] = include_nodes
        return Compiled(contexts, includes, self.refs, max_gotos, self.tz)

    def settings(self, node: YNode) -> int:
        max_gotos = DEFAULT_MAX_GOTOS
        options = expect_map(node, self.report, "settings")
        if options is None:
            return max_gotos
        check_keys(options, SETTINGS, self.report, "setting", "unknown-key")
        if (tz := options.get("timezone")) is not None:
            zone = self.zone(tz)
            if zone is not None:
                self.tz = zone
        if (limit := options.get("max_gotos")) is not None:
            value = expect_int(limit, self.report, "max_gotos", 1, 100)
            if value is not None:
                max_gotos = value
        return max_gotos

    def zone(self, node: YNode) -> ZoneInfo | None:
        name = expect_text(node, self.report, "a time zone")
        if name is None:
            return None
        try:
            return ZoneInfo(name.text)
        except (ZoneInfoNotFoundError, ValueError):
            self.report.error(
                name.line,
                name.column,
                f"unknown time zone {name.text!r}",
                "use an IANA name such as Europe/Paris or UTC",
                "bad-timezone",
            )
            return None

    def context(self, key: YScalar, body: YNode) -> tuple[Context, list[YScalar]]:
        name = key.text
        include_nodes: list[YScalar] = []
        rules: list[Rule] = []
        options = expect_map(
            body, self.report, f"context {name!r}", "write NAME: {include: [...], rules: [...]}"
        )
        if options is not None:
            check_keys(options, CONTEXT_KEYS, self.report, "context key", "unknown-key")
            if (node := options.get("include")) is not None:
                for item in as_list(node):
                    scalar = expect_text(item, self.report, "an included context name")
                    if scalar is not None:
                        include_nodes.append(scalar)
            rules_node = options.get("rules")
            if rules_node is not None and not (
                isinstance(rules_node, YScalar) and rules_node.is_null
            ):
                if isinstance(rules_node, YSeq):
                    for position, item in enumerate(rules_node.items, 1):
                        errors_before = len(self.report.items)
                        rule = self.rule(name, position, item)
                        if rule is not None:
                            rules.append(rule)
                        elif not any(d.is_error for d in self.report.items[errors_before:]):
                            # A rule is never dropped in silence: that would change routing.
                            self.report.error(
                                item.line,
                                item.column,
                                "this rule could not be compiled",
                                "",
                                "bad-rule",
                            )
                else:
                    self.report.error(
                        rules_node.line,
                        rules_node.column,
                        f"rules must be a list, not {describe(rules_node)}",
                        "start each rule with '- '",
                        "bad-type",
                    )
        context = Context(name, key.line, tuple(rules), tuple(n.text for n in include_nodes))
        return context, include_nodes

    def rule(self, context: str, position: int, node: YNode) -> Rule | None:
        body = expect_map(
            node, self.report, "a rule", "a rule is a mapping: - match: ... actions: [...]"
        )
        if body is None:
            return None
        check_keys(body, RULE_KEYS, self.report, "rule key", "unknown-key")
        name = f"#{position}"
        if (name_node := body.get("name")) is not None:
            scalar = expect_text(name_node, self.report, "a rule name")
            if scalar is not None:
                name = scalar.text
        dest: Matcher | None = None
        prefix = ""
        ok = True
        match_node, regex_node = body.get("match"), body.get("regex")
        if match_node is not None and regex_node is not None:
            self.report.error(
                regex_node.line,
                regex_node.column,
                "a rule has either 'match' or 'regex', not both",
                "split it into two rules",
                "bad-rule",
            )
            ok = False
        elif match_node is not None:
            dest = self.pattern_matcher(match_node)
            ok = dest is not None
            if dest is not None:
                prefix = (
                    dest.literal
                    if dest.literal is not None
                    else dest.pattern.prefix
                    if dest.pattern
                    else ""
                )
        elif regex_node is not None:
            dest = self.regex_matcher(regex_node)
            ok = dest is not None
            if dest is not None:
                prefix = regex_prefix(dest.source)
        conditions: tuple[Condition, ...] = ()
        if (when := body.get("when")) is not None:
            parsed = self.conditions(when)
            if parsed is None:
                ok = False
            else:
                conditions = parsed
        errors_before = len(self.report.items)
        actions_node = body.get("actions")
        else_node = body.get("else")
        if actions_node is None:
            self.report.error(
                body.line,
                body.column,
                f"rule {name!r} has no actions",
                "add actions: [...]",
                "no-actions",
            )
            actions: tuple[ActionSpec, ...] = ()
            ok = False
        else:
            actions = self.actions.actions(actions_node)
        else_actions = self.actions.actions(else_node) if else_node is not None else None
        if else_node is not None and not conditions:
            self.report.warning(
                else_node.line,
                else_node.column,
                "'else' never runs in a rule without 'when'",
                "add conditions or remove 'else'",
                "useless-else",
            )
        keep_going = False
        if (cont := body.get("continue")) is not None:
            value = cont.as_bool() if isinstance(cont, YScalar) else None
            if value is None:
                self.report.error(
                    cont.line,
                    cont.column,
                    f"continue must be true or false, not {describe(cont)}",
                    "",
                    "bad-type",
                )
                ok = False
            else:
                keep_going = value
        if any(d.is_error for d in self.report.items[errors_before:]):
            ok = False
        if not ok:
            return None
        return Rule(
            name,
            context,
            body.line,
            body.column,
            dest,
            conditions,
            actions,
            else_actions,
            keep_going,
            prefix,
        )

    def pattern_matcher(self, node: YNode) -> Matcher | None:
        scalar = expect_text(
            node, self.report, "match", "write a number (1001) or a pattern (_1XXX)"
        )
        if scalar is None:
            return None
        text = scalar.text
        if not text.startswith("_"):
            if any(ch.isspace() for ch in text):
                self.report.error(
                    scalar.line,
                    scalar.column,
                    f"a number cannot contain spaces: {text!r}",
                    "",
                    "bad-pattern",
                )
                return None
            return Matcher(text, literal=text)
        try:
            return Matcher(text, pattern=parse_asterisk(text))
        except PatternError as exc:
            self.report.error(
                scalar.line,
                scalar.text_column + exc.offset,
                f"bad pattern '{text}': {exc.message}",
                exc.hint,
                "bad-pattern",
            )
            return None

    def regex_matcher(self, node: YNode) -> Matcher | None:
        scalar = expect_text(
            node, self.report, "regex", "write a regular expression such as ^9(\\d+)$"
        )
        if scalar is None:
            return None
        try:
            return Matcher(scalar.text, regex=re.compile(scalar.text))
        except re.error as exc:
            column = scalar.text_column + (exc.pos or 0)
            self.report.error(
                scalar.line,
                column,
                f"bad regex '{scalar.text}': {exc.msg}",
                "check brackets and escapes; in YAML use single quotes around regexes",
                "bad-regex",
            )
            return None

    def listed(self, node: YNode, what: str) -> tuple[YNode, ...]:
        """A scalar or a non-empty list; an empty list would silently never match."""
        items = as_list(node)
        if not items:
            self.report.error(
                node.line, node.column, f"{what} needs at least one value", "", "bad-type"
            )
        return items

    def value_matchers(self, node: YNode, what: str) -> tuple[Matcher, ...] | None:
        out: list[Matcher] = []
        ok = True
        for item in self.listed(node, what):
            if isinstance(item, YMap):
                check_keys(item, ("regex",), self.report, f"{what} matcher")
                inner = item.get("regex")
                if inner is None:
                    self.report.error(
                        item.line, item.column, f"{what} needs 'regex:'", "", "bad-type"
                    )
                matcher = self.regex_matcher(inner) if inner is not None else None
            else:
                matcher = self.pattern_matcher(item)
            if matcher is None:
                ok = False
            else:
                out.append(matcher)
        return tuple(out) if ok and out else None

    def conditions(self, node: YNode) -> tuple[Condition, ...] | None:
        when = expect_map(node, self.report, "when", "write when: {caller: _10XX, time: {...}}")
        if when is None:
            return None
        check_keys(when, CONDITIONS, self.report, "condition", "unknown-condition")
        out: list[Condition] = []
        ok = True
        for key, value in when.items:
            condition: Condition | list[Condition] | None = None
            match key.text:
                case "caller" | "caller_name" | "caller_context" | "trunk":
                    env_key = "context" if key.text == "caller_context" else key.text
                    matchers = self.value_matchers(value, key.text)
                    condition = ValueCondition(key.text, env_key, matchers) if matchers else None
                case "group":
                    names = [
                        expect_text(v, self.report, "a group name")
                        for v in self.listed(value, "group")
                    ]
                    if all(n is not None for n in names) and names:
                        condition = GroupCondition(
                            frozenset(n.text for n in names if n is not None)
                        )
                case "header" | "var":
                    condition = self.keyed(key.text, value)
                case "time":
                    windows = [self.window(v) for v in self.listed(value, "time")]
                    if all(w is not None for w in windows) and windows:
                        condition = TimeCondition(tuple(w for w in windows if w is not None))
                case _:
                    continue
            if condition is None:
                ok = False
            elif isinstance(condition, list):
                out.extend(condition)
            else:
                out.append(condition)
        return tuple(out) if ok else None

    def keyed(self, kind: str, node: YNode) -> list[Condition] | None:
        options = expect_map(node, self.report, kind, f"write {kind}: {{NAME: VALUE}}")
        if options is None:
            return None
        out: list[Condition] = []
        for key, value in options.items:
            matchers = self.value_matchers(value, f"{kind} {key.text}")
            if matchers is None:
                return None
            if kind == "header":
                out.append(
                    ValueCondition(
                        f"header {key.text}", "header." + key.text.lower(), matchers, required=True
                    )
                )
            else:
                out.append(ValueCondition(f"variable {key.text}", key.text, matchers))
        return out

    def window(self, node: YNode) -> TimeWindow | None:
        options = expect_map(
            node, self.report, "time", "write time: {days: mon-fri, from: '09:00', to: '18:00'}"
        )
        if options is None:
            return None
        check_keys(options, TIME_KEYS, self.report, "time option")
        tz = self.tz
        if (tz_node := options.get("tz")) is not None:
            zone = self.zone(tz_node)
            if zone is None:
                return None
            tz = zone
        days: frozenset[int] | None = frozenset(range(7))
        if (days_node := options.get("days")) is not None:
            days = self.days(days_node)
        start = self.clock(options.get("from"), 0)
        end = self.clock(options.get("to"), 24 * 60)
        dates: frozenset[tuple[int, int, int]] | None = frozenset()
        if (dates_node := options.get("dates")) is not None:
            dates = self.dates(dates_node)
        if days is None or start is None or end is None or dates is None:
            return None
        source = " ".join(
            part
            for part in (
                _show_days(days),
                f"{start // 60:02d}:{start % 60:02d}-{end // 60:02d}:{end % 60:02d}",
                f"on {len(dates)} dates" if dates else "",
                tz.key,
            )
            if part
        )
        return TimeWindow(days, start, end % (24 * 60) if end != start else end, dates, tz, source)

    def days(self, node: YNode) -> frozenset[int] | None:
        out: set[int] = set()
        for item in as_list(node):
            scalar = expect_text(item, self.report, "days", "write mon-fri, sat,sun or weekdays")
            if scalar is None:
                return None
            text = _DAY_ALIASES.get(scalar.text.strip().lower(), scalar.text.strip().lower())
            for part in text.split(","):
                first, _, last = part.strip().partition("-")
                if first not in DAY_NAMES or (last and last not in DAY_NAMES):
                    self.report.error(
                        scalar.line,
                        scalar.column,
                        f"bad day {part.strip()!r}",
                        "use mon tue wed thu fri sat sun, ranges like mon-fri",
                        "bad-value",
                    )
                    return None
                a = DAY_NAMES.index(first)
                b = DAY_NAMES.index(last) if last else a
                # A range such as fri-mon wraps over the weekend.
                out.update((a + i) % 7 for i in range((b - a) % 7 + 1))
        return frozenset(out)

    def clock(self, node: YNode | None, default: int) -> int | None:
        if node is None:
            return default
        scalar = expect_text(node, self.report, "a time of day", "write '09:30' in quotes")
        if scalar is None:
            return None
        m = _HHMM.fullmatch(scalar.text)
        if m is None or (int(m.group(1)) == 24 and m.group(2) != "00"):
            self.report.error(
                scalar.line,
                scalar.column,
                f"bad time of day {scalar.text!r}",
                "write HH:MM from 00:00 to 24:00, in quotes",
                "bad-value",
            )
            return None
        return int(m.group(1)) * 60 + int(m.group(2))

    def dates(self, node: YNode) -> frozenset[tuple[int, int, int]] | None:
        out: set[tuple[int, int, int]] = set()
        for item in as_list(node):
            scalar = expect_text(item, self.report, "a date", "write MM-DD or YYYY-MM-DD")
            m = _DATE.fullmatch(scalar.text) if scalar is not None else None
            if (
                scalar is None
                or m is None
                or not (1 <= int(m.group(2)) <= 12 and 1 <= int(m.group(3)) <= 31)
            ):
                if scalar is not None:
                    self.report.error(
                        scalar.line,
                        scalar.column,
                        f"bad date {scalar.text!r}",
                        "write MM-DD or YYYY-MM-DD",
                        "bad-value",
                    )
                return None
            out.add((int(m.group(1) or 0), int(m.group(2)), int(m.group(3))))
        return frozenset(out)


def _show_days(days: frozenset[int]) -> str:
    if len(days) == 7:
        return ""
    runs: list[list[int]] = []
    for day in sorted(days):
        if runs and runs[-1][-1] == day - 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    return ",".join(
        DAY_NAMES[r[0]] if len(r) == 1 else f"{DAY_NAMES[r[0]]}-{DAY_NAMES[r[-1]]}" for r in runs
    )
