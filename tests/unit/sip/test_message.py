"""Requests and responses: parsing, header access, serialising, limits, errors (RFC 3261 7, 8.2.6, 18.3)."""

from __future__ import annotations

import pytest

from softswitch.sip.errors import MessageError
from softswitch.sip.message import (
    ParserLimits,
    Request,
    Response,
    error_response,
    make_response,
    parse_message,
)
from softswitch.sip.uri import SipURI
from tests.sipcases.malformed import CASES, MalformedCase, request

SDP = b"v=0\r\no=- 1 1 IN IP4 192.0.2.5\r\ns=-\r\nc=IN IP4 192.0.2.5\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"

INVITE = (
    b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.9:5062;branch=z9hG4bKnashds8, SIP/2.0/TCP [2001:db8::2];branch=z9hG4bK3\r\n"
    b"Max-Forwards: 70\r\n"
    b'To: "Bob" <sip:bob@biloxi.example.com>\r\n'
    b'From: "Alice, \\"A\\"" <sip:alice@atlanta.example.com>;tag=1928301774\r\n'
    b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:alice@pc33.atlanta.example.com>, \"x,y\" <sip:a2@h;lr>\r\n"
    b"Record-Route: <sip:p1.example.com;lr>\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: " + str(len(SDP)).encode() + b"\r\n\r\n" + SDP
)


def test_parse_request() -> None:
    msg = parse_message(INVITE)
    assert isinstance(msg, Request)
    assert msg.method == "INVITE" and msg.version == "SIP/2.0"
    assert isinstance(msg.uri, SipURI) and msg.uri.user == "bob"
    assert [v.host for v in msg.vias] == ["pc33.atlanta.example.com", "192.0.2.9", "[2001:db8::2]"]
    assert msg.top_via.branch == msg.branch == "z9hG4bK776asdhds"
    assert msg.call_id == "a84b4c76e66710@pc33.atlanta.example.com"
    assert (msg.cseq.seq, msg.cseq.method) == (314159, "INVITE")
    assert msg.from_addr.display_name == 'Alice, "A"' and msg.from_tag == "1928301774"
    assert msg.to_tag is None
    assert [c.sip_uri.user for c in msg.contacts] == ["alice", "a2"]
    assert msg.body == SDP
    assert msg.to_bytes() == INVITE == bytes(msg)


def test_case_insensitive_names_and_compact_forms() -> None:
    data = (b"OPTIONS sip:x@h SIP/2.0\r\n"
            b"v: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
            b"f: <sip:a@h>;tag=1\r\nt: <sip:x@h>\r\ni: abc\r\nCSEQ: 2 OPTIONS\r\n"
            b"k: path, gruu\r\nm: <sip:a@h>\r\ns: hi\r\no: dialog\r\nu: talk\r\nx: 90\r\n"
            b"e: gzip\r\nr: <sip:b@h>\r\nc: text/plain\r\nl: 2\r\n\r\nhi")
    msg = parse_message(data)
    assert msg.call_id == "abc" and msg.get("Call-ID") == "abc" and msg.get("I") == "abc"
    assert msg.values("Supported") == ["path", "gruu"]
    for compact, long in [("m", "Contact"), ("s", "Subject"), ("o", "Event"),
                          ("u", "Allow-Events"), ("x", "Session-Expires"),
                          ("e", "Content-Encoding"), ("r", "Refer-To"), ("c", "Content-Type"),
                          ("l", "content-length")]:
        assert msg.get(long) == msg.get(compact) is not None
    assert msg.body == b"hi"
    assert msg.to_bytes() == data


def test_line_folding_is_unfolded() -> None:
    data = (b"OPTIONS sip:x@h SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n ;branch=z9hG4bK1\r\n"
            b"From: <sip:a@h>\r\n\t;tag=9\r\nTo: <sip:x@h>\r\nCall-ID: c\r\n"
            b"Subject: I know you're there,\r\n      pick up the phone\r\n"
            b"CSeq: 1 OPTIONS\r\n\r\n")
    msg = parse_message(data)
    assert msg.branch == "z9hG4bK1" and msg.from_tag == "9"
    assert msg.get("subject") == "I know you're there, pick up the phone"


def test_lf_only_line_ends_are_accepted() -> None:
    data = INVITE.split(b"\r\n\r\n")[0].replace(b"\r\n", b"\n") + b"\n\n" + SDP
    assert parse_message(data).body == SDP


def test_parse_response() -> None:
    data = (b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
            b"From: <sip:a@h>;tag=1\r\nTo: <sip:b@h>;tag=2\r\nCall-ID: c\r\n"
            b"CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")
    msg = parse_message(data)
    assert isinstance(msg, Response) and (msg.status, msg.reason) == (180, "Ringing")
    assert msg.to_tag == "2" and msg.to_bytes() == data
    # A CSeq method is not compared for responses; an empty reason is allowed.
    empty = parse_message(data.replace(b"180 Ringing", b"200 "))
    assert isinstance(empty, Response) and empty.reason == ""


def test_datagram_body_is_cut_to_content_length() -> None:
    msg = parse_message(INVITE + b"trailing junk")
    assert msg.body == SDP
    with pytest.raises(MessageError):
        parse_message(INVITE + b"trailing junk", datagram=False)


def test_missing_content_length() -> None:
    data = request(body=b"").replace(b"Content-Length: 0\r\n", b"") + b"body"
    assert parse_message(data).body == b"body"
    with pytest.raises(MessageError):
        parse_message(data, datagram=False)


def test_duplicate_singletons_rejected() -> None:
    data = request(extra=("Call-ID: second",))
    with pytest.raises(MessageError):
        parse_message(data)
    data = request(extra=("Content-Length: 0",))
    with pytest.raises(MessageError):
        parse_message(data)


@pytest.mark.parametrize("value", ["x", "256", "-1", "٣"])
def test_bad_max_forwards(value: str) -> None:
    with pytest.raises(MessageError):
        parse_message(request(replace={"Max-Forwards": f"Max-Forwards: {value}"}))


def test_configured_limits() -> None:
    limits = ParserLimits(max_message_size=2000, max_headers=10, max_header_line=100)
    ok = request()
    parse_message(ok, limits)
    with pytest.raises(MessageError) as info:
        parse_message(request(extra=tuple(f"X-{i}: {i}" for i in range(4))), limits)
    assert info.value.status == 400
    with pytest.raises(MessageError):
        parse_message(request(extra=("Subject: " + "y" * 100,)), limits)
    with pytest.raises(MessageError):  # a folded line counts whole
        parse_message(request(extra=("Subject: " + "y" * 60, " " + "y" * 60)), limits)
    with pytest.raises(MessageError) as info:
        parse_message(request(body=b"b" * 2000), limits)
    assert info.value.status == 513


def test_exactly_at_the_size_limit() -> None:
    size = 65536
    body = b"b" * (size - len(request("MESSAGE sip:x@h SIP/2.0", body=b"b" * 60000)))
    body += b"b" * 60000
    data = request("MESSAGE sip:x@h SIP/2.0", body=body)
    assert len(data) == size
    assert parse_message(data).body == body
    with pytest.raises(MessageError):
        parse_message(request("MESSAGE sip:x@h SIP/2.0", body=body + b"b"))


@pytest.mark.parametrize("case", CASES, ids=str)
def test_malformed_case(case: MalformedCase) -> None:
    with pytest.raises(MessageError) as info:
        parse_message(case.data)
    error = info.value
    assert error.reason
    answer = error_response(case.data, error)
    if case.expect == "drop":
        assert answer is None
    else:
        assert error.status == case.expect
        assert answer is not None and answer.status == case.expect
        # The answer goes back along the sender's Via and is itself well formed.
        assert answer.top_via.branch == "z9hG4bKmalformed1"
        head = answer.to_bytes().decode("utf-8")
        assert head.endswith("\r\n\r\n")
        assert all(line.isprintable() for line in head.split("\r\n"))


def test_error_response_copies_what_identifies_the_request() -> None:
    data = request(replace={"CSeq": "CSeq: 12 INVITE"})
    with pytest.raises(MessageError) as info:
        parse_message(data)
    answer = error_response(data, info.value)
    assert answer is not None and answer.status == 400
    assert answer.reason == "CSeq method does not match the request method"
    assert answer.call_id == "malformed-7c1e9a@198.51.100.7"
    assert answer.from_tag == "m41f0rmed" and answer.get("cseq") == "12 INVITE"
    assert answer.get("content-length") == "0"


def test_error_response_never_copies_control_characters() -> None:
    data = request(replace={"Call-ID": "Call-ID: abc\rX-Injected: yes"})
    with pytest.raises(MessageError) as info:
        parse_message(data)
    answer = error_response(data, info.value)
    assert answer is not None
    assert b"X-Injected" not in answer.to_bytes() and b"\r\r" not in answer.to_bytes()


def test_error_response_ignores_folds_of_headers_it_does_not_copy() -> None:
    data = request(extra=("Subject: first", " folded", "Bad line",))
    with pytest.raises(MessageError) as info:
        parse_message(data)
    answer = error_response(data, info.value)
    assert answer is not None and "folded" not in answer.to_bytes().decode()


def test_make_response() -> None:
    req = parse_message(INVITE)
    assert isinstance(req, Request)
    ringing = make_response(req, 180, to_tag="t1")
    assert ringing.to_tag == "t1" and ringing.reason == "Ringing"
    assert [v.branch for v in ringing.vias] == [v.branch for v in req.vias]
    assert ringing.get("record-route") == "<sip:p1.example.com;lr>"
    assert ringing.cseq == req.cseq and ringing.call_id == req.call_id
    trying = make_response(req, 100, to_tag="t1")
    assert trying.to_tag is None and trying.get("record-route") is None
    busy = make_response(req, 486, to_tag="t1")
    assert busy.get("record-route") is None and busy.to_tag == "t1"
    assert parse_message(ringing.to_bytes()).to_bytes() == ringing.to_bytes()


def test_header_editing() -> None:
    msg = parse_message(INVITE)
    assert msg.pop_first_value("via") == "SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds"
    assert msg.pop_first_value("v") == "SIP/2.0/UDP 192.0.2.9:5062;branch=z9hG4bKnashds8"
    assert [v.branch for v in msg.vias] == ["z9hG4bK3"]
    msg.add("Via", "SIP/2.0/UDP proxy.test;branch=z9hG4bKp", first=True)
    assert msg.top_via.host == "proxy.test"
    msg.set("Max-Forwards", "69")
    msg.remove("record-route")
    assert msg.get("max-forwards") == "69" and not msg.has("Record-Route")
    msg.set_body(b"", None)
    assert msg.get("content-length") == "0" and not msg.has("content-type")
    again = parse_message(msg.to_bytes())
    assert again.top_via.branch == "z9hG4bKp" and again.body == b""


def test_request_built_in_code_serialises() -> None:
    from softswitch.sip.uri import parse_uri
    req = Request("OPTIONS", parse_uri("sip:x@h"), [
        ["Via", "SIP/2.0/UDP h;branch=z9hG4bKq"], ["From", "<sip:a@h>;tag=1"],
        ["To", "<sip:x@h>"], ["Call-ID", "c"], ["CSeq", "1 OPTIONS"], ["Content-Length", "0"]])
    assert parse_message(req.to_bytes()).to_bytes() == req.to_bytes()
    assert str(req).startswith("OPTIONS sip:x@h SIP/2.0\r\n")
