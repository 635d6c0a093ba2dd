"""Property tests of the message layer: round trips, and "a message or MessageError"."""

from __future__ import annotations

import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from softswitch.sip.errors import MessageError
from softswitch.sip.framing import PING, StreamFramer
from softswitch.sip.headers import quote
from softswitch.sip.message import Request, Response, error_response, parse_message
from softswitch.sip.uri import SipURI, parse_uri

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ALNUM = string.ascii_letters + string.digits
TOKEN_CHARS = ALNUM + "-.!%*_+`'~"
USER_CHARS = ALNUM + "-_.!~*'()&=+$,;?/"

token = st.text(TOKEN_CHARS, min_size=1, max_size=12)
label = st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9-]{0,8}[A-Za-z0-9])?", fullmatch=True)
# RFC 3261 25.1: the top label starts with a letter ("0.0.0.300" is a bad IPv4 address).
toplabel = st.from_regex(r"[A-Za-z]([A-Za-z0-9-]{0,8}[A-Za-z0-9])?", fullmatch=True)
hostname = st.tuples(st.lists(label, max_size=3), toplabel).map(
    lambda parts: ".".join([*parts[0], parts[1]]))
ipv4 = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))
ipv6 = st.lists(st.from_regex(r"[0-9a-f]{1,4}", fullmatch=True), min_size=8, max_size=8).map(
    lambda parts: "[" + ":".join(parts) + "]")
host = st.one_of(hostname, ipv4, ipv6)
escaped = st.integers(0, 255).map(lambda b: f"%{b:02X}")
user = st.lists(st.one_of(st.sampled_from(USER_CHARS), escaped), min_size=1, max_size=12).map(
    "".join)
param_value = st.text(ALNUM + "-_.!~*'()[]/:&+$", min_size=1, max_size=10)
uri_params = st.dictionaries(st.text(string.ascii_lowercase + "-", min_size=1, max_size=8),
                             st.none() | param_value, max_size=3)
uri_headers = st.dictionaries(st.text(ALNUM, min_size=1, max_size=6),
                              st.text(ALNUM + "-_.!~*'()[]/?:+$", max_size=8), max_size=2)


@st.composite
def sip_uris(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(["sip:", "sips:"]))
    if draw(st.booleans()):
        text += draw(user)
        if draw(st.booleans()):
            text += ":" + draw(st.text(ALNUM + "&=+$,", max_size=6))
        text += "@"
    text += draw(host)
    port = draw(st.none() | st.integers(0, 65535))
    if port is not None:
        text += f":{port}"
    for name, value in draw(uri_params).items():
        text += f";{name}" if value is None else f";{name}={value}"
    hdrs = draw(uri_headers)
    if hdrs:
        text += "?" + "&".join(f"{k}={v}" for k, v in hdrs.items())
    return text


display_names = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=20)
header_value = st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1,
                       max_size=40).filter(lambda v: v.strip(" \t") == v and v.strip())
branch = st.text(ALNUM, min_size=1, max_size=16).map(lambda s: "z9hG4bK" + s)
tag = st.text(ALNUM + "-.", min_size=1, max_size=12)
RESERVED = {"via", "from", "to", "call-id", "cseq", "content-length", "max-forwards"}
extra_name = token.map(lambda t: "X-" + t)


@st.composite
def messages(draw: st.DrawFn) -> tuple[bytes, dict[str, object]]:
    """A canonical message and what its typed views must say."""
    is_request = draw(st.booleans())
    method = draw(st.sampled_from(["INVITE", "REGISTER", "OPTIONS", "BYE", "MESSAGE"]) | token)
    branches = draw(st.lists(branch, min_size=1, max_size=3))
    hosts = draw(st.lists(host, min_size=len(branches), max_size=len(branches)))
    display = draw(st.none() | display_names)
    from_tag = draw(tag)
    to_tag = draw(st.none() | tag)
    call_id = draw(st.text(ALNUM + "-.@", min_size=1, max_size=20))
    seq = draw(st.integers(0, 2**32 - 1))
    body = draw(st.binary(max_size=200))
    lines = [f"{method} {draw(sip_uris())} SIP/2.0" if is_request
             else f"SIP/2.0 {draw(st.integers(100, 699))} {draw(st.text(ALNUM + ' ', max_size=15))}"]
    lines += [f"Via: SIP/2.0/UDP {h};branch={b}" for h, b in zip(hosts, branches, strict=True)]
    from_value = f"<{draw(sip_uris())}>;tag={from_tag}"
    if display is not None:
        from_value = f"{quote(display)} {from_value}"
    lines.append(f"From: {from_value}")
    lines.append(f"To: <{draw(sip_uris())}>" + (f";tag={to_tag}" if to_tag else ""))
    lines += [f"Call-ID: {call_id}", f"CSeq: {seq} {method}", "Max-Forwards: 70"]
    extras = draw(st.lists(st.tuples(extra_name, header_value), max_size=5))
    lines += [f"{n}: {v}" for n, v in extras]
    lines.append(f"Content-Length: {len(body)}")
    data = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
    expected = {"branches": branches, "display": display, "from_tag": from_tag,
                "to_tag": to_tag, "call_id": call_id, "seq": seq, "method": method,
                "body": body, "request": is_request, "extras": extras}
    return data, expected


@SETTINGS
@given(messages())
def test_generated_messages_round_trip(case: tuple[bytes, dict[str, object]]) -> None:
    data, expected = case
    msg = parse_message(data)
    assert msg.to_bytes() == data
    assert isinstance(msg, Request) == expected["request"]
    assert [v.branch for v in msg.vias] == expected["branches"]
    assert msg.from_addr.display_name == expected["display"]
    assert msg.from_tag == expected["from_tag"] and msg.to_tag == expected["to_tag"]
    assert msg.call_id == expected["call_id"]
    assert (msg.cseq.seq, msg.cseq.method) == (expected["seq"], expected["method"])
    assert msg.body == expected["body"]
    for name, value in expected["extras"]:  # type: ignore[attr-defined]
        assert value in msg.get_all(name)
    # also over a stream
    assert parse_message(data, datagram=False).to_bytes() == data


def _parse_or_error(data: bytes) -> None:
    try:
        msg = parse_message(data)
    except MessageError as error:
        assert isinstance(error.reason, str) and error.status in (400, 505, 513)
        answer = error_response(data, error)
        assert answer is None or isinstance(answer, Response)
        if answer is not None:
            answer.to_bytes()
    else:
        assert isinstance(msg, Request | Response)
        msg.to_bytes()


@SETTINGS
@given(st.binary(max_size=400))
def test_arbitrary_bytes_give_a_message_or_message_error(data: bytes) -> None:
    _parse_or_error(data)


MUTATIONS = [b"\r", b"\n", b"\r\n", b'"', b"\x00", b"<", b">", b";", b",", b":", b" ", b"%",
             b"\xff", b"\r\n ", b"\r\n\r\n"]


@SETTINGS
@given(messages(), st.lists(st.tuples(st.integers(0, 5), st.integers(0, 10**6),
                                      st.sampled_from(MUTATIONS), st.integers(0, 255)),
                            min_size=1, max_size=4))
def test_mutated_messages_give_a_message_or_message_error(
        case: tuple[bytes, dict[str, object]], edits: list[tuple[int, int, bytes, int]]) -> None:
    data = bytearray(case[0])
    for kind, where, insert, byte in edits:
        pos = where % (len(data) + 1)
        if kind == 0:
            data[pos:pos] = insert
        elif kind == 1 and pos < len(data):
            data[pos] ^= byte or 1
        elif kind == 2:
            del data[pos:]
        elif kind == 3 and pos < len(data):
            del data[pos]
        elif kind == 4:
            data[pos:pos] = bytes([byte])
        else:
            data[pos:pos] = insert * 3
    _parse_or_error(bytes(data))


@SETTINGS
@given(st.lists(messages(), min_size=1, max_size=4), st.lists(st.integers(0, 10**5), max_size=10),
       st.lists(st.booleans(), min_size=4, max_size=4))
def test_framer_yields_exactly_the_messages(cases: list[tuple[bytes, dict[str, object]]],
                                            cuts: list[int], pings: list[bool]) -> None:
    expected: list[object] = []
    stream = b""
    for (data, _), ping in zip(cases, pings, strict=False):
        if ping:
            stream += b"\r\n\r\n"
            expected.append(PING)
        stream += data
        expected.append(data)
    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    framer = StreamFramer()
    out: list[object] = []
    for a, b in zip(points, points[1:], strict=False):
        out += framer.feed(stream[a:b])
    assert out == expected and framer.pending == 0
    for item in out:
        if isinstance(item, bytes):
            parse_message(item, datagram=False)


@SETTINGS
@given(sip_uris())
def test_generated_uris_round_trip(text: str) -> None:
    uri = parse_uri(text)
    assert isinstance(uri, SipURI)
    assert str(uri) == text
    assert uri == parse_uri(text) and hash(uri) == hash(parse_uri(text))


@SETTINGS
@given(st.text(max_size=60) | st.text(USER_CHARS + "@:[]<>%", max_size=30).map(lambda s: "sip:" + s))
def test_arbitrary_text_gives_a_uri_or_message_error(text: str) -> None:
    try:
        uri = parse_uri(text)
    except MessageError:
        return
    assert uri == uri
    str(uri)


@SETTINGS
@given(sip_uris(), sip_uris(), st.booleans())
def test_equality_is_symmetric_and_consistent_with_hash(a: str, b: str, swap_case: bool) -> None:
    ua, ub = parse_uri(a), parse_uri(b)
    if swap_case:  # scheme and host case never matter
        ub = parse_uri(a.replace(a.split(":", 1)[0], a.split(":", 1)[0].upper(), 1))
    assert ua == ua
    assert (ua == ub) == (ub == ua)
    if ua == ub:
        assert hash(ua) == hash(ub)
