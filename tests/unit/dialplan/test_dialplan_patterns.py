"""Asterisk patterns: semantics of every form, errors, prefixes, coverage; regex prefixes."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dialplan.patterns import (
    PatternError,
    covers,
    literal_as_pattern,
    parse_asterisk,
    regex_prefix,
)

MATCHES = [
    # N is 2-9, X is 0-9, Z is 1-9
    ("_NXXNXXXXXX", "2125551234", True),
    ("_NXXNXXXXXX", "1125551234", False),
    ("_NXXNXXXXXX", "2121551234", False),
    ("_NXXNXXXXXX", "212555123", False),
    ("_NXXNXXXXXX", "21255512345", False),
    ("_1XXX", "1000", True),
    ("_1XXX", "1999", True),
    ("_1XXX", "2000", False),
    ("_1XXX", "100", False),
    ("_Z", "0", False),
    ("_Z", "1", True),
    ("_N", "1", False),
    ("_N", "2", True),
    ("_X", "a", False),
    # sets and ranges
    ("_[2-5]XX", "200", True),
    ("_[2-5]XX", "599", True),
    ("_[2-5]XX", "600", False),
    ("_[2-5]XX", "199", False),
    ("_[135-7]X", "10", True),
    ("_[135-7]X", "60", True),
    ("_[135-7]X", "20", False),
    ("_[135-7]X", "80", False),
    # '.' is one or more of anything, '!' zero or more
    ("_X.", "1", False),
    ("_X.", "12", True),
    ("_X.", "1*#", True),
    ("_X.", "a1", False),
    ("_9.", "9", False),
    ("_9.", "91", True),
    ("_9!", "9", True),
    ("_9!", "9123", True),
    ("_9!", "8", False),
    ("_!", "", True),
    ("_!", "anything", True),
    ("_.", "", False),
    ("_[2-5]XX!", "200", True),
    ("_[2-5]XX!", "2001234", True),
    ("_[2-5]XX!", "20", False),
    # dashes are ignored, letters are case-insensitive wildcards
    ("_1-NXX-NXX-XXXX", "12125551234", True),
    ("_nxx", "212", True),
    ("_nxx", "112", False),
    # literal characters
    ("_+1NXXNXXXXXX", "+12125551234", True),
    ("_+1NXXNXXXXXX", "12125551234", False),
    ("_*98", "*98", True),
    ("_#X", "#5", True),
]


@pytest.mark.parametrize(("pattern", "number", "expected"), MATCHES)
def test_pattern_semantics(pattern: str, number: str, expected: bool) -> None:
    parsed = parse_asterisk(pattern)
    assert parsed.matches(number) is expected
    assert (re.fullmatch(parsed.to_regex(), number) is not None) is expected


@pytest.mark.parametrize(
    ("pattern", "offset", "message"),
    [
        ("_", 0, "empty pattern"),
        ("_1[5-2]", 3, "reversed range"),
        ("_1[23", 2, "unclosed '['"),
        ("_[]X", 1, "empty set"),
        ("_9.X", 3, "must be the last"),
        ("_9!1", 3, "must be the last"),
        ("_1?", 2, "unexpected character"),
        ("1001", 0, "starts with '_'"),
    ],
)
def test_pattern_errors(pattern: str, offset: int, message: str) -> None:
    with pytest.raises(PatternError) as info:
        parse_asterisk(pattern)
    assert message in info.value.message
    assert info.value.offset == offset


@pytest.mark.parametrize(
    ("pattern", "prefix"),
    [
        ("_1XXX", "1"),
        ("_9NXX", "9"),
        ("_+1NXX", "+1"),
        ("_X.", ""),
        ("_011.", "011"),
        ("_1-800-NXX", "1800"),
    ],
)
def test_literal_prefix(pattern: str, prefix: str) -> None:
    assert parse_asterisk(pattern).prefix == prefix


@pytest.mark.parametrize(
    ("outer", "inner", "expected"),
    [
        ("_1XXX", "_1[0-4]XX", True),
        ("_1XXX", "_1XX", False),
        ("_1XXX", "_2XXX", False),
        ("_X.", "_1XXX", True),
        ("_X.", "_X", False),
        ("_X.", "_X.", True),
        ("_X.", "_X!", False),
        ("_!", "_X!", True),
        ("_NXX", "_ZXX", False),
        ("_ZXX", "_NXX", True),
        ("_1XXX", "_1XXX.", False),
    ],
)
def test_covers(outer: str, inner: str, expected: bool) -> None:
    assert covers(parse_asterisk(outer), parse_asterisk(inner)) is expected


def test_literal_is_covered_like_a_pattern() -> None:
    assert covers(parse_asterisk("_1XXX"), literal_as_pattern("1001"))
    assert not covers(parse_asterisk("_1XXX"), literal_as_pattern("10011"))


@pytest.mark.parametrize(
    ("regex", "prefix"),
    [
        (r"^9(\d+)$", "9"),
        (r"^\+1555(\d{4})$", "+1555"),
        (r"^91?(\d+)$", "9"),
        (r"^1800|^1888", ""),
        (r"9(\d+)$", ""),
        (r"^(?i)abc", ""),
        (r"^011\d+", "011"),
        (r"^10*", "1"),
    ],
)
def test_regex_prefix(regex: str, prefix: str) -> None:
    assert regex_prefix(regex) == prefix


# --- property tests: the direct matcher and the regex a pattern compiles to agree ---

ELEMENTS = ["X", "Z", "N", "0", "1", "2", "9", "*", "#", "+", "[2-5]", "[135-7]", "[0-1]"]
ALPHABET = "0123456789*#+"


@st.composite
def patterns(draw: st.DrawFn) -> str:
    body = draw(st.lists(st.sampled_from(ELEMENTS), min_size=1, max_size=7))
    tail = draw(st.sampled_from(["", "", ".", "!"]))
    return "_" + "".join(body) + tail


@st.composite
def pattern_and_number(draw: st.DrawFn) -> tuple[str, str]:
    """A pattern and a number that is either arbitrary or built to fit it."""
    pattern = draw(patterns())
    if draw(st.booleans()):
        return pattern, draw(st.text(ALPHABET, max_size=12))
    parsed = parse_asterisk(pattern)
    chars = [draw(st.sampled_from(sorted(element))) for element in parsed.elements]
    extra = {"": 0, ".": 1, "!": 0}[parsed.tail]
    if parsed.tail:
        chars += draw(st.lists(st.sampled_from(ALPHABET), min_size=extra, max_size=4))
    return pattern, "".join(chars)


@settings(max_examples=400, deadline=None)
@given(pattern_and_number())
def test_pattern_agrees_with_its_regex(case: tuple[str, str]) -> None:
    pattern, number = case
    parsed = parse_asterisk(pattern)
    assert parsed.matches(number) == (re.fullmatch(parsed.to_regex(), number) is not None)


@settings(max_examples=300, deadline=None)
@given(patterns(), pattern_and_number())
def test_covers_is_sound(outer_source: str, case: tuple[str, str]) -> None:
    inner_source, number = case
    outer, inner = parse_asterisk(outer_source), parse_asterisk(inner_source)
    if covers(outer, inner) and inner.matches(number):
        assert outer.matches(number)


@settings(max_examples=200, deadline=None)
@given(pattern_and_number())
def test_prefix_is_a_prefix_of_every_match(case: tuple[str, str]) -> None:
    pattern, number = case
    parsed = parse_asterisk(pattern)
    if parsed.matches(number):
        assert number.startswith(parsed.prefix)
