"""The compiled, immutable plan and the router.

Owns `Rule`, `Context` and `Plan`, the prefix index and `Plan.route`. Each
context is flattened once (its own rules, then its includes depth-first, each
rule once) and indexed by the literal prefix of each rule's number pattern:
for a number, the router looks up the prefixes of that number (one dict probe
per distinct prefix length) and evaluates only those rules, in file order. A
rule without a literal prefix (a regex, `_X.`) sits under the empty prefix and
is a candidate for every number, so rule order is preserved exactly.

A plan is never changed after compilation: a reload builds a new one, and a
call keeps the plan it started with.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from dialplan.actions import Action, Goto, Hangup
from dialplan.conditions import Condition, Matcher
from dialplan.facts import CallFacts, Decision, TraceStep
from dialplan.specs import ActionSpec, GotoSpec

DEFAULT_MAX_GOTOS = 16


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    context: str
    line: int
    column: int
    # None matches any number.
    dest: Matcher | None
    conditions: tuple[Condition, ...]
    actions: tuple[ActionSpec, ...]
    # FreeSWITCH anti-actions: run when the number matched but a condition did not.
    else_actions: tuple[ActionSpec, ...] | None
    keep_going: bool
    index_prefix: str


@dataclass(frozen=True, slots=True)
class Context:
    name: str
    line: int
    rules: tuple[Rule, ...]
    includes: tuple[str, ...]
    expanded: tuple[Rule, ...] = ()
    index: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    prefix_lengths: tuple[int, ...] = ()

    def candidates(self, dest: str) -> tuple[int, ...]:
        """Positions in `expanded` of the rules that may match `dest`, in order.

        Each index entry already holds the rules of every shorter prefix too, so
        the longest indexed prefix of `dest` gives the whole answer in one probe.
        """
        index = self.index
        size = len(dest)
        for length in self.prefix_lengths:
            if length <= size:
                hit = index.get(dest[:length])
                if hit is not None:
                    return hit
        return ()


def index_rules(rules: tuple[Rule, ...]) -> tuple[dict[str, tuple[int, ...]], tuple[int, ...]]:
    """Map each literal prefix to the positions of all rules whose prefix is a prefix of it.

    Returned with the prefix lengths, longest first, which is the probing order.
    """
    buckets: dict[str, list[int]] = {}
    for position, rule in enumerate(rules):
        buckets.setdefault(rule.index_prefix, []).append(position)
    lengths = sorted({len(p) for p in buckets}, reverse=True)
    index: dict[str, tuple[int, ...]] = {}
    for prefix, own in buckets.items():
        merged = list(own)
        for length in lengths:
            if length < len(prefix):
                merged.extend(buckets.get(prefix[:length], ()))
        merged.sort()
        index[prefix] = tuple(merged)
    return index, tuple(lengths)


@dataclass(frozen=True, slots=True)
class Plan:
    contexts: Mapping[str, Context]
    file: str = "<string>"
    max_gotos: int = DEFAULT_MAX_GOTOS
    # The `settings: timezone`, default for time conditions (and for `dialplan test --at`).
    timezone: ZoneInfo = ZoneInfo("UTC")

    @property
    def rule_count(self) -> int:
        return sum(len(c.rules) for c in self.contexts.values())

    def route(self, facts: CallFacts) -> Decision:
        env: dict[str, str] = dict(facts.variables)
        env["dest"] = facts.dest
        env["caller"] = facts.caller
        env["caller_name"] = facts.caller_name
        env["context"] = facts.context
        env["trunk"] = facts.trunk or ""
        for name, value in facts.headers.items():
            env["header." + name] = value
        return self._run(facts, facts.context, facts.dest, env, [], [])

    def resume(self, facts: CallFacts, goto: Goto, variables: Mapping[str, str]) -> Decision:
        """Follow a goto returned inside a dial's failure handler, with the call's variables."""
        env = dict(variables)
        trace = [TraceStep(goto.context, "", 0, "goto", "from a dial failure handler")]
        dest = goto.number if goto.number is not None else env.get("dest", facts.dest)
        env["dest"] = dest
        return self._run(facts, goto.context, dest, env, [], trace)

    def _run(
        self,
        facts: CallFacts,
        context_name: str,
        dest: str,
        env: dict[str, str],
        actions: list[Action],
        trace: list[TraceStep],
    ) -> Decision:
        jumps = 0
        matched = False
        while True:
            context = self.contexts.get(context_name)
            if context is None:
                trace.append(TraceStep(context_name, "", 0, "note", "no such context"))
                break
            goto, hit = self._scan(context, facts, dest, env, actions, trace)
            matched = matched or hit
            if goto is None:
                break
            jumps += 1
            if jumps > self.max_gotos:
                trace.append(
                    TraceStep(
                        context_name,
                        "",
                        0,
                        "note",
                        f"more than {self.max_gotos} gotos: routing loop cut",
                    )
                )
                actions.append(Hangup(482, "Loop Detected"))
                return Decision(tuple(actions), env, tuple(trace), matched)
            if goto.number is not None:
                dest = goto.number
                env["dest"] = dest
            trace.append(TraceStep(goto.context, "", 0, "goto", f"continue with {dest!r}"))
            context_name = goto.context
        if not actions:
            trace.append(TraceStep(context_name, "", 0, "note", "nothing to do: answering 404"))
            actions.append(Hangup(404, "Not Found"))
            matched = False
        return Decision(tuple(actions), env, tuple(trace), matched)

    def _scan(
        self,
        context: Context,
        facts: CallFacts,
        dest: str,
        env: dict[str, str],
        actions: list[Action],
        trace: list[TraceStep],
    ) -> tuple[Goto | None, bool]:
        """Evaluate one context's candidate rules; return a goto to follow, if any."""
        rules = context.expanded
        positions = context.candidates(dest)
        trace.append(
            TraceStep(
                context.name,
                "",
                context.line,
                "enter",
                f"{dest!r}: {len(positions)} of {len(rules)} rules are candidates",
            )
        )
        matched = False
        for position in positions:
            rule = rules[position]
            matcher = rule.dest
            if matcher is not None:
                result = matcher.test(dest)
                if result is False:
                    trace.append(
                        TraceStep(
                            rule.context,
                            rule.name,
                            rule.line,
                            "no-match",
                            f"{dest!r} does not match {matcher}",
                        )
                    )
                    continue
                if isinstance(result, re.Match):
                    _captures(result, env)
            failed = None
            for condition in rule.conditions:
                failed = condition.check(facts, env)
                if failed is not None:
                    break
            if failed is None:
                specs = rule.actions
                trace.append(
                    TraceStep(rule.context, rule.name, rule.line, "match", _why(rule, dest))
                )
            elif rule.else_actions is not None:
                specs = rule.else_actions
                trace.append(
                    TraceStep(rule.context, rule.name, rule.line, "else", f"{failed}: else actions")
                )
            else:
                trace.append(TraceStep(rule.context, rule.name, rule.line, "no-match", failed))
                continue
            matched = True
            notes: list[str] = []
            for spec in specs:
                if isinstance(spec, GotoSpec):
                    goto = spec.render(env, notes)
                    _note(trace, rule, notes)
                    assert isinstance(goto, Goto)
                    return goto, True
                actions.append(spec.render(env, notes))
            _note(trace, rule, notes)
            if not rule.keep_going:
                return None, True
        return None, matched


def _captures(result: re.Match[str], env: dict[str, str]) -> None:
    for number, text in enumerate(result.groups(), 1):
        env[str(number)] = text or ""
    for name, text in result.groupdict().items():
        env[name] = text or ""


def _why(rule: Rule, dest: str) -> str:
    what = f"{dest!r} matches {rule.dest}" if rule.dest is not None else "any number"
    if rule.conditions:
        what += " and all conditions hold"
    if rule.keep_going:
        what += "; continue"
    return what


def _note(trace: list[TraceStep], rule: Rule, notes: list[str]) -> None:
    for note in notes:
        trace.append(TraceStep(rule.context, rule.name, rule.line, "note", note))
