"""Dialplan benchmark: compile a generated 10,000-rule plan and route calls through it.

Prints the compile time (YAML parse, then compile, link and checks) and the
routing rate on one core. Aim: compile under 2 s, over 50,000 decisions/s.
Run: .venv/bin/python bench/dialplan.py [--rules N] [--calls N]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dialplan import CallFacts, load_text  # noqa: E402


def generate(rules: int) -> str:
    """A plan in the shape of a carrier-grade one: mostly DIDs and prefixes, some regex."""
    lines = [
        "settings: {timezone: Europe/Paris}",
        "contexts:",
        "  entry:",
        "    include: [big]",
        "    rules:",
        "      - {name: echo, match: '9196', actions: [answer, echo]}",
        "  big:",
        "    rules:",
    ]
    dids = rules * 4 // 10
    prefixes = rules * 3 // 10
    conditional = rules * 2 // 10
    regexes = rules - dids - prefixes - conditional - 21
    for i in range(dids):
        lines.append(
            f"      - {{name: did{i}, match: '+1555{i:07d}', actions: [dial: user/u{i % 500}]}}"
        )
    for i in range(prefixes):
        lines.append(
            f"      - name: pfx{i}\n        match: _1{i:06d}XXXX\n        actions:\n"
            f"          - dial: {{to: 'trunk/t{i % 7}/+${{dest}}', timeout: 30}}"
        )
    for i in range(conditional):
        lines.append(
            f"      - name: cond{i}\n        match: _2{i:05d}XX\n"
            f"        when: {{group: g{i % 10}, time: {{days: mon-fri, from: '08:00', to: '19:00'}}}}\n"
            f"        actions: [dial: user/u{i % 500}]\n        else: [hangup: 403]"
        )
    for i in range(regexes):
        lines.append(
            f"      - {{name: rx{i}, regex: '^\\+44{i:04d}([0-9]+)$', "
            f"actions: [{{set: {{uk: '${{1}}'}}}}, dial: 'trunk/uk/+44{i:04d}${{1}}']}}"
        )
    for i in range(20):
        lines.append(f"      - {{name: free{i}, regex: '^sip-{i}-', actions: [hangup: 404]}}")
    lines.append("      - {name: catch-all, actions: [hangup: 404]}")
    return "\n".join(lines) + "\n"


def workload(rules: int, count: int) -> list[CallFacts]:
    rng = random.Random(7)
    at = datetime(2026, 3, 3, 10, 30, tzinfo=UTC)
    dids = rules * 4 // 10
    prefixes = rules * 3 // 10
    conditional = rules * 2 // 10
    calls = []
    for _ in range(count):
        kind = rng.randrange(5)
        if kind == 0:
            dest = f"+1555{rng.randrange(dids):07d}"
        elif kind == 1:
            dest = f"1{rng.randrange(prefixes):06d}{rng.randrange(10000):04d}"
        elif kind == 2:
            dest = f"2{rng.randrange(conditional):05d}{rng.randrange(100):02d}"
        elif kind == 3:
            dest = f"+44{rng.randrange(900):04d}{rng.randrange(10**6):06d}"
        else:
            dest = f"{rng.randrange(10**8):08d}"  # no rule but the catch-all
        calls.append(
            CallFacts(
                context="entry",
                dest=dest,
                caller="1001",
                groups=frozenset({f"g{rng.randrange(10)}"}),
                headers={"User-Agent": "bench"},
                time=at,
            )
        )
    return calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=int, default=10_000)
    parser.add_argument("--calls", type=int, default=200_000)
    args = parser.parse_args()

    text = generate(args.rules)
    started = time.perf_counter()
    result = load_text(text, "bench.yaml")
    compile_s = time.perf_counter() - started
    if result.plan is None:
        for d in result.diagnostics[:20]:
            print(d.format())
        raise SystemExit("generated plan did not compile")
    plan = result.plan
    try:
        import _ruamel_yaml  # noqa: F401

        parser = "C (ruamel.yaml.clib)"
    except ImportError:
        parser = "pure Python (install ruamel.yaml.clib to load about 4x faster)"
    print(
        f"plan: {plan.rule_count} rules, {len(text.splitlines())} lines of YAML; parser: {parser}"
    )
    print(f"compile (parse + check + index): {compile_s:.2f} s")

    calls = workload(args.rules, args.calls)
    route = plan.route
    for facts in calls[:2000]:
        route(facts)  # warm up
    started = time.perf_counter()
    for facts in calls:
        route(facts)
    elapsed = time.perf_counter() - started
    print(
        f"routing: {len(calls) / elapsed:,.0f} decisions/s ({elapsed / len(calls) * 1e6:.1f} us each)"
    )


if __name__ == "__main__":
    main()
