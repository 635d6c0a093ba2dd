"""Rule conditions: matchers on caller, context, trunk, groups, headers, variables and time.

Owns the compiled condition objects and their evaluation against the routing
environment. Each check returns None when it holds, or the reason it failed,
which goes into the trace as is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from dialplan.facts import CallFacts
from dialplan.patterns import AsteriskPattern

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True, slots=True)
class Matcher:
    """A literal, an Asterisk `_pattern` or a regex (searched, like FreeSWITCH)."""

    source: str
    literal: str | None = None
    pattern: AsteriskPattern | None = None
    regex: re.Pattern[str] | None = None

    def test(self, value: str) -> re.Match[str] | bool:
        if self.literal is not None:
            return value == self.literal
        if self.pattern is not None:
            return self.pattern.matches(value)
        assert self.regex is not None
        return self.regex.search(value) or False

    def __str__(self) -> str:
        return f"/{self.source}/" if self.regex is not None else self.source


def _match_any(matchers: tuple[Matcher, ...], value: str, env: dict[str, str]) -> bool:
    for matcher in matchers:
        result = matcher.test(value)
        if result is False:
            continue
        if isinstance(result, re.Match):
            # Named groups of a condition regex become variables, like captures.
            for name, text in result.groupdict().items():
                if text is not None:
                    env[name] = text
        return True
    return False


def _show(matchers: tuple[Matcher, ...]) -> str:
    return " or ".join(str(m) for m in matchers)


@dataclass(frozen=True, slots=True)
class ValueCondition:
    """`caller`, `caller_name`, `caller_context`, `trunk`, `header.X` or `var.X`, looked up in env."""

    label: str
    key: str
    matchers: tuple[Matcher, ...]
    # Headers must be present; a variable or an empty caller compares as "".
    required: bool = False

    def check(self, facts: CallFacts, env: dict[str, str]) -> str | None:
        value = env.get(self.key)
        if value is None:
            if self.required:
                return f"{self.label} is absent"
            value = ""
        if _match_any(self.matchers, value, env):
            return None
        return f"{self.label} {value!r} does not match {_show(self.matchers)}"


@dataclass(frozen=True, slots=True)
class GroupCondition:
    groups: frozenset[str]

    def check(self, facts: CallFacts, env: dict[str, str]) -> str | None:
        if not self.groups.isdisjoint(facts.groups):
            return None
        wanted = ", ".join(sorted(self.groups))
        have = ", ".join(sorted(facts.groups)) or "none"
        return f"caller is in none of the groups {wanted} (has: {have})"


@dataclass(frozen=True, slots=True)
class TimeWindow:
    days: frozenset[int]  # 0 is Monday
    start: int  # minutes after midnight
    end: int  # exclusive; start > end wraps past midnight
    dates: frozenset[tuple[int, int, int]]  # (year or 0, month, day)
    tz: ZoneInfo
    source: str

    def contains(self, when: datetime) -> bool:
        local = when.astimezone(self.tz)
        minute = local.hour * 60 + local.minute
        if self.start == self.end:
            day_ok = self._day_ok(local)
        elif self.start < self.end:
            day_ok = self.start <= minute < self.end and self._day_ok(local)
        elif minute >= self.start:
            day_ok = self._day_ok(local)
        elif minute < self.end:
            # After midnight in an overnight window: it belongs to the previous day.
            day_ok = self._day_ok(local - timedelta(days=1))
        else:
            day_ok = False
        return day_ok

    def _day_ok(self, local: datetime) -> bool:
        if local.weekday() not in self.days:
            return False
        if not self.dates:
            return True
        return (local.year, local.month, local.day) in self.dates or (
            0,
            local.month,
            local.day,
        ) in self.dates


@dataclass(frozen=True, slots=True)
class TimeCondition:
    windows: tuple[TimeWindow, ...]

    def check(self, facts: CallFacts, env: dict[str, str]) -> str | None:
        when = facts.when
        for window in self.windows:
            if window.contains(when):
                return None
        local = when.astimezone(self.windows[0].tz)
        stamp = f"{DAY_NAMES[local.weekday()]} {local:%Y-%m-%d %H:%M} {self.windows[0].tz.key}"
        return f"time {stamp} is outside {' or '.join(w.source for w in self.windows)}"


Condition = ValueCondition | GroupCondition | TimeCondition
