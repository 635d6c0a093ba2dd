"""Linking compiled contexts into a plan: includes, goto targets and the prefix index.

Owns resolving `include:` (own rules first, then each included context in
order, depth-first, every rule at most once so include cycles are harmless),
refusing references to missing contexts, and building each context's index.
"""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType

from dialplan.compiler import Compiled
from dialplan.diagnostics import Reporter
from dialplan.nodes import suggest
from dialplan.plan import Context, Plan, Rule, index_rules


def check_references(compiled: Compiled, report: Reporter) -> None:
    names = compiled.contexts.keys()
    for context, nodes in compiled.include_refs.items():
        for node in nodes:
            if node.text not in names:
                report.error(
                    node.line,
                    node.column,
                    f"context {context!r} includes missing context {node.text!r}",
                    suggest(node.text, names) or "define it under contexts:",
                    "missing-context",
                )
    for ref in compiled.refs.gotos:
        if ref.context not in names:
            report.error(
                ref.line,
                ref.column,
                f"goto to missing context {ref.context!r}",
                suggest(ref.context, names) or "define it under contexts:",
                "missing-context",
            )


def expand(name: str, contexts: dict[str, Context]) -> tuple[Rule, ...]:
    out: list[Rule] = []
    seen: set[str] = set()

    def visit(current: str) -> None:
        if current in seen or current not in contexts:
            return
        seen.add(current)
        context = contexts[current]
        out.extend(context.rules)
        for included in context.includes:
            visit(included)

    visit(name)
    return tuple(out)


def link(compiled: Compiled, file: str) -> Plan:
    linked: dict[str, Context] = {}
    for name, context in compiled.contexts.items():
        expanded = expand(name, compiled.contexts)
        index, lengths = index_rules(expanded)
        linked[name] = replace(context, expanded=expanded, index=index, prefix_lengths=lengths)
    return Plan(MappingProxyType(linked), file, compiled.max_gotos, compiled.timezone)
