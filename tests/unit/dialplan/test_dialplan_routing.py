"""Routing: every condition and action, substitution, includes, goto, loops and the index."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dialplan import (
    Answer,
    CallerId,
    CallFacts,
    Dial,
    Echo,
    Goto,
    Hangup,
    Plan,
    Playback,
    Record,
    SetVariables,
    Transfer,
    TrunkTarget,
    UriTarget,
    UserTarget,
    Voicemail,
    load_text,
)

# Thursday 2026-12-24 19:00 UTC is 14:00 in New York and 20:00 in Paris.
THURSDAY_19H_UTC = datetime(2026, 12, 24, 19, 0, tzinfo=UTC)


def plan_of(text: str) -> Plan:
    result = load_text(textwrap.dedent(text))
    assert result.plan is not None, [d.format() for d in result.diagnostics]
    return result.plan


def call(plan: Plan, dest: str, context: str = "internal", **facts: object) -> tuple:
    facts.setdefault("time", THURSDAY_19H_UTC)
    decision = plan.route(CallFacts(context=context, dest=dest, **facts))  # type: ignore[arg-type]
    return decision.actions


# --- matching the number: literal, pattern, regex, captures ---

NUMBERS = plan_of(
    r"""
    contexts:
      internal:
        rules:
          - {name: literal, match: "1001", actions: [dial: user/1001]}
          - {name: pattern, match: "_1[0-4]XX", actions: [dial: "user/${dest}"]}
          - name: regex
            regex: '^9(1?)([2-9]\d{9})$'
            actions: [dial: "trunk/provider/+1${2}"]
          - name: named
            regex: '^\*(?P<code>\d\d)$'
            actions: [playback: "feature-${code}"]
          - {name: rest, actions: [hangup: 404]}
    """
)


@pytest.mark.parametrize(
    ("dest", "expected"),
    [
        ("1001", Dial((UserTarget("1001"),))),
        ("1002", Dial((UserTarget("1002"),))),
        ("1499", Dial((UserTarget("1499"),))),
        ("92125551234", Dial((TrunkTarget("provider", "+12125551234"),))),
        ("912125551234", Dial((TrunkTarget("provider", "+12125551234"),))),
        ("*42", Playback("feature-42")),
        ("1500", Hangup(404, "Not Found")),
        ("", Hangup(404, "Not Found")),
    ],
)
def test_number_matching(dest: str, expected: object) -> None:
    assert call(NUMBERS, dest) == (expected,)


# --- conditions ---

CONDITIONS = plan_of(
    """
    settings: {timezone: America/New_York}
    contexts:
      internal:
        rules:
          - name: by-caller
            match: "1"
            when: {caller: [_10XX, "2000"]}
            actions: [playback: caller]
          - name: by-caller-regex
            match: "1"
            when: {caller: {regex: '^\\+44'}}
            actions: [playback: uk]
          - name: by-name
            match: "2"
            when: {caller_name: {regex: '(?i)^boss'}}
            actions: [playback: boss]
          - name: by-context
            match: "3"
            when: {caller_context: internal}
            actions: [playback: internal]
          - name: by-trunk
            match: "4"
            when: {trunk: provider}
            actions: [playback: trunk]
          - name: by-group
            match: "5"
            when: {group: [sales, support]}
            actions: [playback: group]
          - name: by-header
            match: "6"
            when: {header: {X-Priority: urgent}}
            actions: [playback: urgent]
          - name: by-variable
            match: "7"
            when: {var: {night: "1"}}
            actions: [playback: night]
          - name: office-hours
            match: "8"
            when: {time: {days: mon-fri, from: "09:00", to: "18:00"}}
            actions: [playback: open]
          - name: overnight-paris
            match: "9"
            when: {time: {days: thu, from: "19:30", to: "06:00", tz: Europe/Paris}}
            actions: [playback: night]
          - name: holidays
            match: "10"
            when: {time: [{dates: ["12-25", "2026-12-24"]}, {days: weekend}]}
            actions: [playback: holiday]
          - name: everything-at-once
            match: "11"
            when: {caller: "1001", group: sales, header: {x-tenant: acme}}
            actions: [playback: all]
          - {name: fallback, actions: [playback: fallback]}
      other:
        include: [internal]
    """
)


@pytest.mark.parametrize(
    ("dest", "facts", "played"),
    [
        ("1", {"caller": "1042"}, "caller"),
        ("1", {"caller": "2000"}, "caller"),
        ("1", {"caller": "+442071234567"}, "uk"),
        ("1", {"caller": "3000"}, "fallback"),
        ("2", {"caller_name": "Boss Lady"}, "boss"),
        ("2", {"caller_name": "Intern"}, "fallback"),
        ("3", {}, "internal"),
        ("3", {"context": "other"}, "fallback"),
        ("4", {"trunk": "provider"}, "trunk"),
        ("4", {"trunk": "backup"}, "fallback"),
        ("4", {}, "fallback"),
        ("5", {"groups": frozenset({"support"})}, "group"),
        ("5", {"groups": frozenset({"guests"})}, "fallback"),
        ("6", {"headers": {"x-priority": "urgent"}}, "urgent"),
        ("6", {"headers": {"X-PRIORITY": "urgent"}}, "urgent"),
        ("6", {"headers": {"X-Priority": "low"}}, "fallback"),
        ("6", {}, "fallback"),
        ("7", {"variables": {"night": "1"}}, "night"),
        ("7", {}, "fallback"),
        # 19:00 UTC is 14:00 in New York, a Thursday
        ("8", {}, "open"),
        ("8", {"time": datetime(2026, 12, 24, 23, 30, tzinfo=UTC)}, "fallback"),
        ("8", {"time": datetime(2026, 12, 26, 15, 0, tzinfo=UTC)}, "fallback"),
        ("8", {"time": datetime(2026, 12, 24, 10, 0, tzinfo=ZoneInfo("America/New_York"))}, "open"),
        # overnight window: Thursday 20:00 Paris is in, Friday 05:00 Paris belongs to Thursday
        ("9", {}, "night"),
        ("9", {"time": datetime(2026, 12, 25, 5, 0, tzinfo=ZoneInfo("Europe/Paris"))}, "night"),
        ("9", {"time": datetime(2026, 12, 25, 7, 0, tzinfo=ZoneInfo("Europe/Paris"))}, "fallback"),
        ("9", {"time": datetime(2026, 12, 24, 5, 0, tzinfo=ZoneInfo("Europe/Paris"))}, "fallback"),
        ("10", {}, "holiday"),
        ("10", {"time": datetime(2027, 12, 25, 12, 0, tzinfo=UTC)}, "holiday"),
        ("10", {"time": datetime(2027, 12, 24, 12, 0, tzinfo=UTC)}, "fallback"),
        ("10", {"time": datetime(2027, 1, 2, 12, 0, tzinfo=UTC)}, "holiday"),
        (
            "11",
            {"caller": "1001", "groups": frozenset({"sales"}), "headers": {"X-Tenant": "acme"}},
            "all",
        ),
        ("11", {"caller": "1001", "groups": frozenset({"sales"})}, "fallback"),
    ],
)
def test_conditions(dest: str, facts: dict, played: str) -> None:
    context = facts.pop("context", "internal")
    assert call(CONDITIONS, dest, context, **facts) == (Playback(played),)


def test_naive_time_is_refused() -> None:
    with pytest.raises(ValueError):
        CallFacts(context="internal", dest="1", time=datetime(2026, 1, 1, 12, 0))


# --- actions, each form ---

ACTIONS = plan_of(
    """
    contexts:
      internal:
        rules:
          - name: dial-forms
            match: "1"
            actions:
              - dial: user/1001
              - dial: [user/1002, "sip:bob@example.com"]
              - dial:
                  to: trunk/provider/+15551234567
                  timeout: 30
                  caller_id: {number: "+15550100100", name: "Office ${caller}"}
                  headers: {X-Account: "${header.x-account}"}
                  on_busy: [hangup: 486]
                  on_no_answer: [voicemail: "1001"]
                  on_failure: [goto: {context: failover, number: "${dest}"}]
          - name: simple
            match: "2"
            actions:
              - answer
              - playback: welcome
              - echo
              - record: {file: "rec/${caller}", max_seconds: 30, beep: false}
              - voicemail
              - hangup: {code: 603, reason: Go Away}
          - name: misc
            match: "3"
            actions:
              - set: {caller_id_name: Reception, tag: "x${caller}"}
              - playback: "${tag}"
              - transfer: user/1004
          - name: hangups
            match: "4"
            actions: [hangup]
          - name: transfer-uri
            match: "5"
            actions: [transfer: {to: "sips:desk@example.com"}]
          - name: record-short
            match: "6"
            actions: [record: memo]
          - name: mailbox-menu
            match: "7"
            actions:
              - voicemail: {menu: true}
              - voicemail: {box: "1004", menu: true}
              - voicemail: {box: "1005"}
      failover:
        rules:
          - {name: any, actions: [hangup: 503]}
    """
)


def test_dial_forms() -> None:
    actions = call(ACTIONS, "1", caller="1001", headers={"X-Account": "42"})
    assert actions[0] == Dial((UserTarget("1001"),))
    assert actions[1] == Dial((UserTarget("1002"), UriTarget("sip:bob@example.com")))
    assert actions[2] == Dial(
        (TrunkTarget("provider", "+15551234567"),),
        timeout=30,
        caller_id=CallerId("+15550100100", "Office 1001"),
        headers=(("X-Account", "42"),),
        on_busy=(Hangup(486, "Busy Here"),),
        on_no_answer=(Voicemail("1001"),),
        on_failure=(Goto("failover", "1"),),
    )


def test_simple_actions() -> None:
    assert call(ACTIONS, "2", caller="1001") == (
        Answer(),
        Playback("welcome"),
        Echo(),
        Record("rec/1001", 30, False),
        Voicemail("2"),
        Hangup(603, "Go Away"),
    )
    assert call(ACTIONS, "4") == (Hangup(480, "Temporarily Unavailable"),)
    assert call(ACTIONS, "5") == (Transfer(UriTarget("sips:desk@example.com")),)
    assert call(ACTIONS, "6") == (Record("memo", 60, True),)
    # The menu is the caller's own box unless a box is named.
    assert call(ACTIONS, "7", caller="1001") == (
        Voicemail("1001", menu=True), Voicemail("1004", menu=True), Voicemail("1005"))


def test_set_feeds_later_actions_and_final_variables() -> None:
    decision = ACTIONS.route(
        CallFacts(context="internal", dest="3", caller="1001", time=THURSDAY_19H_UTC)
    )
    assert decision.actions == (
        SetVariables((("caller_id_name", "Reception"), ("tag", "x1001"))),
        Playback("x1001"),
        Transfer(UserTarget("1004")),
    )
    assert decision.variables["tag"] == "x1001"
    assert decision.variables["dest"] == "3"


def test_failure_handler_goto_is_resumed_by_the_softswitch() -> None:
    facts = CallFacts(context="internal", dest="1", time=THURSDAY_19H_UTC)
    decision = ACTIONS.route(facts)
    dial = decision.actions[2]
    assert isinstance(dial, Dial) and dial.on_failure is not None
    goto = dial.on_failure[0]
    assert isinstance(goto, Goto)
    assert ACTIONS.resume(facts, goto, decision.variables).actions == (
        Hangup(503, "Service Unavailable"),
    )


# --- continue, else, variables between rules, includes, goto ---

FLOW = plan_of(
    """
    contexts:
      internal:
        include: [features, outbound]
        rules:
          - name: tag-vip
            match: _X.
            when: {caller: "1001"}
            continue: true
            actions: [set: {vip: "yes"}]
          - name: vip-only
            match: "100"
            when: {var: {vip: "yes"}}
            actions: [playback: vip]
            else: [playback: not-vip]
      features:
        rules:
          - {name: echo, match: "9196", actions: [answer, echo]}
          - {name: own-before-included, match: "100", actions: [playback: never]}
      outbound:
        rules:
          - name: strip-9
            match: _9.
            actions: [goto: {context: outbound, number: "${dest:1}"}]
          - name: national
            match: _0XXXXXXXXX
            actions: [goto: {context: trunk, number: "+33${dest:1}"}]
      trunk:
        rules:
          - name: out
            regex: '^\\+'
            actions: [dial: "trunk/provider/${dest}"]
    """
)


def test_continue_and_variables_set_by_earlier_rules() -> None:
    assert call(FLOW, "100", caller="1001") == (
        SetVariables((("vip", "yes"),)),
        Playback("vip"),
    )


def test_else_actions_run_when_conditions_fail() -> None:
    assert call(FLOW, "100", caller="1002") == (Playback("not-vip"),)


def test_includes_come_after_own_rules_in_order() -> None:
    assert call(FLOW, "9196") == (Answer(), Echo())


def test_goto_with_number_rewrites_dest() -> None:
    decision = FLOW.route(CallFacts(context="internal", dest="90140000000", time=THURSDAY_19H_UTC))
    assert decision.actions == (Dial((TrunkTarget("provider", "+33140000000"),)),)
    assert decision.variables["dest"] == "+33140000000"
    outcomes = [(s.outcome, s.rule) for s in decision.trace if s.outcome in ("match", "goto")]
    assert outcomes == [
        ("match", "strip-9"),
        ("goto", ""),
        ("match", "national"),
        ("goto", ""),
        ("match", "out"),
    ]


def test_trace_says_why_rules_did_not_match() -> None:
    decision = FLOW.route(
        CallFacts(context="internal", dest="100", caller="2000", time=THURSDAY_19H_UTC)
    )
    reasons = {step.rule: (step.outcome, step.reason) for step in decision.trace if step.rule}
    assert reasons["tag-vip"][0] == "no-match"
    assert "caller '2000' does not match 1001" in reasons["tag-vip"][1]
    assert reasons["vip-only"][0] == "else"
    assert "variable vip" in reasons["vip-only"][1]


def test_unknown_context_and_no_match_give_404() -> None:
    decision = FLOW.route(CallFacts(context="nowhere", dest="1", time=THURSDAY_19H_UTC))
    assert decision.actions == (Hangup(404, "Not Found"),)
    assert not decision.matched
    assert call(FLOW, "555") == (Hangup(404, "Not Found"),)


def test_dynamic_goto_loop_is_cut_at_run_time() -> None:
    # The number changes at each hop, so the checker cannot prove a loop; the router cuts it.
    plan = plan_of(
        """
        settings: {max_gotos: 5}
        contexts:
          internal:
            rules:
              - name: grow
                match: _X!
                actions: [goto: {context: internal, number: "${dest}1"}]
        """
    )
    decision = plan.route(CallFacts(context="internal", dest="1", time=THURSDAY_19H_UTC))
    assert decision.actions == (Hangup(482, "Loop Detected"),)
    assert sum(step.outcome == "goto" for step in decision.trace) == 5
    assert "loop cut" in decision.trace[-1].reason


def test_target_that_substitutes_to_garbage_is_dropped_and_traced() -> None:
    plan = plan_of(
        """
        contexts:
          internal:
            rules:
              - {name: var-target, match: _X., actions: [dial: ["${target}", user/1001]]}
        """
    )
    decision = plan.route(
        CallFacts(
            context="internal", dest="12", variables={"target": "nonsense"}, time=THURSDAY_19H_UTC
        )
    )
    assert decision.actions == (Dial((UserTarget("1001"),)),)
    assert any("target dropped" in step.reason for step in decision.trace)


def test_plan_is_immutable() -> None:
    with pytest.raises((AttributeError, TypeError)):
        FLOW.max_gotos = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        FLOW.contexts["x"] = FLOW.contexts["internal"]  # type: ignore[index]


# --- the index returns every rule that could match, in file order ---

RULE_FORMS = ["1001", "100", "_1XXX", "_1X.", "_X.", "_NXX", "_9!", "_+1NXX", "+1212"]
REGEX_FORMS = [r"^1\d+$", r"^\+", "0", r"^9(\d)"]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.sampled_from(RULE_FORMS).map(lambda m: f'match: "{m}"'),
            st.sampled_from(REGEX_FORMS).map(lambda r: f"regex: '{r}'"),
            st.just("name: any"),
        ),
        min_size=1,
        max_size=25,
    ),
    st.lists(st.text("0123456789+", max_size=6), min_size=1, max_size=20),
)
def test_index_candidates_equal_linear_scan(matchers: list[str], numbers: list[str]) -> None:
    rules = "\n".join(
        f"      - {{{m}, continue: true, actions: [set: {{r{i}: x}}]}}"
        for i, m in enumerate(matchers)
    )
    result = load_text(f"contexts:\n  internal:\n    rules:\n{rules}\n")
    assert result.plan is not None
    context = result.plan.contexts["internal"]
    for number in numbers:
        linear = [
            i
            for i, rule in enumerate(context.expanded)
            if rule.dest is None or rule.dest.test(number) is not False
        ]
        candidates = list(context.candidates(number))
        assert candidates == sorted(candidates)
        assert set(linear) <= set(candidates)


def test_set_media_direct_and_its_checks() -> None:
    plan = plan_of("""
        contexts:
          internal:
            rules:
              - match: "1002"
                actions: [{set: {media: direct}}, {dial: user/1002}]
        """)
    decision = plan.route(CallFacts(context="internal", dest="1002", time=THURSDAY_19H_UTC))
    assert dict(decision.variables)["media"] == "direct"
    result = load_text(textwrap.dedent("""
        contexts:
          internal:
            rules:
              - match: "1002"
                actions: [{set: {media: sometimes, media_relay: "udp:1.2.3.4:5"}}, hangup]
        """))
    assert result.plan is None
    messages = [d.format() for d in result.diagnostics]
    assert any("media 'sometimes' is neither relay nor direct" in m for m in messages), messages
    assert any("'media_relay' is set by the router" in m for m in messages), messages


def test_set_record_call_and_its_checks() -> None:
    plan = plan_of("""
        contexts:
          internal:
            rules:
              - match: "1002"
                actions: [{set: {record_call: "yes"}}, {dial: user/1002}]
        """)
    decision = plan.route(CallFacts(context="internal", dest="1002", time=THURSDAY_19H_UTC))
    assert dict(decision.variables)["record_call"] == "yes"
    result = load_text(textwrap.dedent("""
        contexts:
          internal:
            rules:
              - match: "1002"
                actions: [{set: {record_call: maybe, recording: "x.wav"}}, hangup]
        """))
    assert result.plan is None
    messages = [d.format() for d in result.diagnostics]
    assert any("record_call 'maybe' is neither yes nor no" in m for m in messages), messages
    assert any("'recording' is set by the router" in m for m in messages), messages


def test_set_media_repair_and_its_check() -> None:
    plan = plan_of("""
        contexts:
          internal:
            rules:
              - match: "1002"
                actions: [{set: {media_repair: caller}}, {dial: user/1002}]
        """)
    decision = plan.route(CallFacts(context="internal", dest="1002", time=THURSDAY_19H_UTC))
    assert dict(decision.variables)["media_repair"] == "caller"
    result = load_text(textwrap.dedent("""
        contexts:
          internal:
            rules:
              - match: "1002"
                actions: [{set: {media_repair: everyone}}, hangup]
        """))
    assert result.plan is None
    messages = [d.format() for d in result.diagnostics]
    assert any("media_repair 'everyone' is not one of" in m for m in messages), messages
