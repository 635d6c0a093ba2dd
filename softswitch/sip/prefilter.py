"""A glance at a message's bytes before parsing it: method and To tag.

Used only when the server sheds load (`softswitch/overload_gate.py`): the
request line's method and the To header's tag say whether a request starts
new work, and reading them costs a fraction of a full parse. The answers
are hints, not validation: anything admitted is parsed properly afterwards,
and a malformed message gets no worse treatment than from the parser.
"""

from __future__ import annotations

import re

# The To header (or its compact form t, RFC 3261 7.3.3) at the start of a
# line, within the header section.
_TO_RE = re.compile(rb"^(?:to|t)[ \t]*:([^\r\n]*)", re.IGNORECASE | re.MULTILINE)
_TAG_RE = re.compile(rb";[ \t]*tag[ \t]*=[ \t]*([^;, \t\r\n]+)", re.IGNORECASE)


def request_method(data: bytes) -> bytes | None:
    """The method of a request (b"INVITE"...), None for a response or junk."""
    space = data.find(b" ", 0, 32)
    if space <= 0:
        return None
    method = data[:space]
    if method.startswith(b"SIP/"):
        return None
    return method


def to_tag(data: bytes) -> bytes | None:
    """The To header's tag parameter, None when it has none (or no To is found)."""
    end = data.find(b"\r\n\r\n")
    head_end = end if end >= 0 else len(data)
    match = _TO_RE.search(data, 0, head_end)
    if match is None:
        return None
    value = match.group(1)
    # Parameters inside <...> belong to the URI, not to the header.
    close = value.rfind(b">")
    if close >= 0:
        value = value[close + 1:]
    tag = _TAG_RE.search(value)
    return tag.group(1) if tag else None
