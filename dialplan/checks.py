"""Whole-plan checks: shadowed rules, static goto loops and unknown dial targets.

Owns the warnings and errors that need more than one rule to see:
- a rule that can never match because an earlier unconditional rule matches
  every number it could (warning);
- a goto loop that every call reaching it would follow for ever (error): the
  check follows unconditional gotos whose number is fixed or unchanged and
  stops as soon as the outcome depends on the call, so it never refuses a
  plan that could route;
- a dial or transfer to a user or trunk the configuration does not know (warning);
- whether any rule reaches a given user (`reaches_user`, for `softswitch users add`).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from dialplan.action_parser import References
from dialplan.actions import Dial, TrunkTarget, UserTarget
from dialplan.diagnostics import Reporter
from dialplan.facts import CallFacts
from dialplan.nodes import suggest
from dialplan.patterns import AsteriskPattern, covers, literal_as_pattern
from dialplan.plan import Context, Plan, Rule
from dialplan.specs import GotoSpec


def as_pattern(rule: Rule) -> AsteriskPattern | None:
    dest = rule.dest
    if dest is None:
        return None
    if dest.literal is not None:
        return literal_as_pattern(dest.literal)
    return dest.pattern


def is_catch_all(rule: Rule) -> bool:
    if rule.dest is None:
        return True
    pattern = rule.dest.pattern
    return pattern is not None and not pattern.elements and pattern.tail == "!"


def _stops(rule: Rule) -> bool:
    """True when the rule, once its number matches, always ends the search."""
    return not rule.conditions and not rule.keep_going


def check_shadowing(plan: Plan, report: Reporter) -> None:
    for context in plan.contexts.values():
        _shadowing_in(context, report)


def _shadowing_in(context: Context, report: Reporter) -> None:
    by_prefix: dict[str, list[tuple[Rule, AsteriskPattern]]] = {}
    regexes: list[Rule] = []
    catch_all: Rule | None = None
    for rule in context.rules:
        culprit = catch_all
        own = as_pattern(rule)
        if culprit is None and own is not None:
            prefix = own.prefix
            for size in range(len(prefix) + 1):
                for earlier, pattern in by_prefix.get(prefix[:size], ()):
                    if covers(pattern, own):
                        culprit = earlier
                        break
                if culprit is not None:
                    break
            if culprit is None and rule.dest is not None and rule.dest.literal is not None:
                literal = rule.dest.literal
                for earlier in regexes:
                    assert earlier.dest is not None and earlier.dest.regex is not None
                    if earlier.dest.regex.search(literal):
                        culprit = earlier
                        break
        if culprit is not None:
            report.warning(
                rule.line,
                rule.column,
                f"rule {rule.name!r} in {context.name!r} can never match: "
                f"rule {culprit.name!r} (line {culprit.line}) matches every number it could",
                "move it above that rule, or add conditions to the earlier rule",
                "shadowed-rule",
            )
            continue
        if not _stops(rule):
            continue
        if is_catch_all(rule):
            catch_all = catch_all or rule
        elif own is not None:
            by_prefix.setdefault(own.prefix, []).append((rule, own))
        elif rule.dest is not None and rule.dest.regex is not None:
            regexes.append(rule)
    if catch_all is not None:
        for included in context.includes:
            report.warning(
                catch_all.line,
                catch_all.column,
                f"context {included!r} included by {context.name!r} is never searched: "
                f"rule {catch_all.name!r} matches every number first",
                "included contexts come after the context's own rules; move the catch-all "
                "into a context included last",
                "shadowed-include",
            )


# The number a call carries along a chain of gotos: a literal, or "whatever matched
# rule R" (None pattern meaning any number at all).
_Number = tuple[str, str | AsteriskPattern | None]


def check_goto_loops(plan: Plan, report: Reporter) -> None:
    reported: set[frozenset[str]] = set()
    for context in plan.contexts.values():
        for rule in context.rules:
            goto = _goto_of(rule)
            if goto is None or rule.conditions:
                continue
            cycle = _cycle_through(plan, context.name, rule, goto)
            if cycle is None or frozenset(cycle) in reported:
                continue
            reported.add(frozenset(cycle))
            report.error(
                goto.line,
                goto.column,
                "goto loop: " + " -> ".join(cycle) + ": every call reaching this rule loops",
                "change the number or add a condition so the chain ends",
                "goto-loop",
            )


def _cycle_through(plan: Plan, origin: str, rule: Rule, goto: GotoSpec) -> list[str] | None:
    """The contexts of a certain loop that passes through `rule`, or None."""
    number = _next_number(("same", as_pattern(rule)), goto)
    steps: list[tuple[str, Rule]] = [(origin, rule)]
    seen: dict[tuple[str, str], int] = {}
    context_name = goto.context
    while number is not None and len(steps) <= 4 * len(plan.contexts) + 8:
        key = (context_name, _key(number))
        if key in seen:
            cycle = steps[seen[key] :]
            starts = [i for i, (_, taken) in enumerate(cycle) if taken is rule]
            if not starts:
                return None
            # Read the loop from the rule being reported: "a -> b -> a".
            cycle = cycle[starts[0] :] + cycle[: starts[0]]
            return [name for name, _ in cycle] + [cycle[0][0]]
        context = plan.contexts.get(context_name)
        taken = _first_certain_rule(context, number) if context is not None else None
        following = _goto_of(taken) if taken is not None else None
        if taken is None or following is None:
            return None
        seen[key] = len(steps)
        steps.append((context_name, taken))
        number = _next_number(number, following)
        context_name = following.context
    return None


def _goto_of(rule: Rule) -> GotoSpec | None:
    for spec in rule.actions:
        if isinstance(spec, GotoSpec):
            return spec
    return None


def _next_number(current: _Number, goto: GotoSpec) -> _Number | None:
    if goto.number is None:
        return current
    if goto.number.is_literal:
        return ("literal", goto.number.source)
    return None  # depends on the call: not a static loop


def _key(number: _Number) -> str:
    kind, value = number
    if kind == "literal":
        return f"literal:{value}"
    return f"same:{value.source if isinstance(value, AsteriskPattern) else '*'}"


def _first_certain_rule(context: Context, number: _Number) -> Rule | None:
    """The rule that certainly handles `number` here, or None when it depends on the call."""
    kind, value = number
    for rule in context.expanded:
        if kind == "literal":
            assert isinstance(value, str)
            if rule.dest is not None and rule.dest.test(value) is False:
                continue
        else:
            own = as_pattern(rule)
            certain = is_catch_all(rule) or (
                own is not None and isinstance(value, AsteriskPattern) and covers(own, value)
            )
            if not certain:
                return None  # might or might not match: the outcome depends on the number
        if rule.conditions:
            return None
        if rule.keep_going and _goto_of(rule) is None:
            continue
        return rule
    return None


def check_targets(
    refs: References,
    report: Reporter,
    known_users: Collection[str] | None,
    known_trunks: Collection[str] | None,
) -> None:
    for ref in refs.targets:
        target = ref.target
        if isinstance(target, UserTarget) and known_users is not None:
            if target.user not in known_users:
                report.warning(
                    ref.line,
                    ref.column,
                    f"unknown user {target.user!r} in dial target",
                    suggest(target.user, known_users) or "add the user to the directory",
                    "unknown-user",
                )
        elif isinstance(target, TrunkTarget) and known_trunks is not None:
            if target.trunk not in known_trunks:
                report.warning(
                    ref.line,
                    ref.column,
                    f"unknown trunk {target.trunk!r} in dial target",
                    suggest(target.trunk, known_trunks)
                    or "define it under trunks: in the configuration",
                    "unknown-trunk",
                )


def reaches_user(plan: Plan, user: str, context: str, when: datetime) -> bool:
    """Whether a call to `user`'s number from `context` at `when` dials user/`user`.

    Used when a user is added: a new extension that no rule reaches gets 404
    from every phone, which is easy to miss until someone calls it.
    """
    facts = CallFacts(context=context, dest=user, time=when)
    return any(
        isinstance(action, Dial)
        and any(isinstance(t, UserTarget) and t.user == user for t in action.targets)
        for action in plan.route(facts).actions
    )
