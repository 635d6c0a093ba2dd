"""Substitution: variables, captures, headers and Asterisk-style substrings."""

from __future__ import annotations

import pytest

from dialplan.template import TemplateError, compile_template

ENV = {
    "dest": "918005551234",
    "caller": "1001",
    "1": "8005551234",
    "header.x-account": "42",
    "greeting": "hello",
}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("user/${caller}", "user/1001"),
        ("${dest}", "918005551234"),
        ("${dest:1}", "18005551234"),
        ("${dest:-4}", "1234"),
        ("${dest:0:1}", "9"),
        ("${dest:1:-4}", "1800555"),
        ("+1${1}", "+18005551234"),
        ("${header.X-Account}", "42"),
        ("${header.x-ACCOUNT}", "42"),
        ("${unknown}", ""),
        ("${greeting}, ${caller}!", "hello, 1001!"),
        ("no variables", "no variables"),
        ("$dest {dest}", "$dest {dest}"),
        ("", ""),
    ],
)
def test_render(source: str, expected: str) -> None:
    assert compile_template(source).render(ENV) == expected


@pytest.mark.parametrize("source", ["${}", "${a b}", "${dest:x}", "${dest:1:2:3}", "user/${dest"])
def test_errors(source: str) -> None:
    with pytest.raises(TemplateError):
        compile_template(source)


def test_literal_head() -> None:
    assert compile_template("trunk/provider/+${dest}").literal_head == "trunk/provider/+"
    assert compile_template("${x}/1").literal_head == ""
    assert compile_template("user/1001").is_literal
