"""A glance at a message's bytes before parsing it: method, To tag, a stateless answer.

Used only when the server sheds load (`softswitch/overload_gate.py`): the
request line's method, the To header (its tag, its address) and whether
credentials are present say whether a request starts new work, and reading
them costs a fraction of a full parse. The answers
are hints, not validation: anything admitted is parsed properly afterwards,
and a malformed message gets no worse treatment than from the parser.
`stateless_response` answers a request from its raw header lines (RFC 3261
8.2.6: Via, From, To, Call-ID, CSeq copied), a fraction of the cost of
parsing it first.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from softswitch.sip.errors import MessageError
from softswitch.sip.headers import Via, split_list
from softswitch.sip.peer import Peer, response_peer, stamp

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


def _head_end(data: bytes) -> int:
    end = data.find(b"\r\n\r\n")
    return end if end >= 0 else len(data)


def to_value(data: bytes) -> bytes | None:
    """The To header's value as written, None when no To is found."""
    match = _TO_RE.search(data, 0, _head_end(data))
    return None if match is None else match.group(1)


# Credentials answering a challenge (RFC 3261 22.2 and 22.3).
_CREDENTIALS_RE = re.compile(rb"^(?:proxy-)?authorization[ \t]*:", re.IGNORECASE | re.MULTILINE)


def has_credentials(data: bytes) -> bool:
    """Whether the header section carries an Authorization or Proxy-Authorization."""
    return _CREDENTIALS_RE.search(data, 0, _head_end(data)) is not None


def to_tag(data: bytes) -> bytes | None:
    """The To header's tag parameter, None when it has none (or no To is found)."""
    value = to_value(data)
    if value is None:
        return None
    # Parameters inside <...> belong to the URI, not to the header.
    close = value.rfind(b">")
    if close >= 0:
        value = value[close + 1:]
    tag = _TAG_RE.search(value)
    return tag.group(1) if tag else None


# Header names (full and compact, RFC 3261 7.3.3) a response copies from its
# request (RFC 3261 8.2.6.2), as they are written in the response.
_COPIED = {b"via": b"Via", b"v": b"Via", b"from": b"From", b"f": b"From", b"to": b"To",
           b"t": b"To", b"call-id": b"Call-ID", b"i": b"Call-ID", b"cseq": b"CSeq"}


def stateless_response(data: bytes, source: Peer, status: int, reason: str, to_tag: str,
                       extra: list[tuple[str, str]],
                       stamp_via: Callable[[Via], object] | None = None,
                       ) -> tuple[bytes, Peer, Via] | None:
    """A response to the request in `data` built from its raw header lines, where it
    goes, and the request's top Via (stamped).

    For answers sent without a transaction (the overload gate's 503): Via,
    From, To, Call-ID and CSeq are copied as written, the top Via stamped
    (received, rport), then given to `stamp_via` if any (RFC 7339 oc
    parameters), and the To given `to_tag` (the request has none).
    None when the header section is not plain enough (folded lines, a
    missing header, a bad top Via): the caller then parses the request.
    """
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = data[:end].split(b"\r\n")[1:]
    kept: dict[bytes, list[bytes]] = {}
    for line in lines:
        if line[:1] in (b" ", b"\t"):
            return None  # a folded line: leave it to the parser
        colon = line.find(b":")
        if colon <= 0:
            return None
        name = _COPIED.get(line[:colon].strip(b" \t").lower())
        if name is not None:
            kept.setdefault(name, []).append(line[colon + 1:].strip(b" \t"))
    if len(kept) != 5 or len(kept[b"To"]) != 1:
        return None
    try:
        first, *rest = split_list(kept[b"Via"][0].decode("latin-1"))
        via = Via.parse(first)
    except (MessageError, ValueError):
        return None
    stamp(via, source)
    if stamp_via is not None:
        stamp_via(via)
    top = ", ".join([str(via), *rest]).encode("latin-1")
    out = [f"SIP/2.0 {status} {reason}".encode(), b"Via: " + top]
    out += [b"Via: " + value for value in kept[b"Via"][1:]]
    out.append(b"From: " + kept[b"From"][0])
    out.append(b"To: " + kept[b"To"][0] + b";tag=" + to_tag.encode())
    out.append(b"Call-ID: " + kept[b"Call-ID"][0])
    out.append(b"CSeq: " + kept[b"CSeq"][0])
    out += [f"{name}: {value}".encode() for name, value in extra]
    out.append(b"Content-Length: 0")
    return b"\r\n".join(out) + b"\r\n\r\n", response_peer(via, source), via
