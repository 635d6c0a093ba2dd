"""The shared listing printer: a table on a terminal, whole tab-separated records on a pipe."""

from __future__ import annotations

import io
import sys

import pytest

from softswitch.cli.listing import print_listing

LONG = "sip:1001@203.0.113.77:50607;transport=tcp;ob;+sip.instance=\"<urn:uuid:0001>\""


def test_on_a_pipe_each_record_is_one_whole_line(capsys: pytest.CaptureFixture[str]) -> None:
    print_listing("t", ["aor", "contact", "note"],
                  [["1001@pbx", LONG, "tab\there"], ["1002@pbx", "sip:x", "two\nlines"]])
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["aor\tcontact\tnote", f"1001@pbx\t{LONG}\ttab here",
                     "1002@pbx\tsip:x\ttwo lines"]


def test_on_a_terminal_a_table(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    monkeypatch.setattr(out, "isatty", lambda: True, raising=False)
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setenv("COLUMNS", "200")
    print_listing("2 things", ["aor", "contact"], [["1001@pbx", "sip:short"]])
    text = out.getvalue()
    assert "2 things" in text and "sip:short" in text and "\t" not in text
