"""Header names, lists, parameters, quoted strings, name-addr, Via, CSeq (RFC 3261 7.3, 20, 25)."""

from __future__ import annotations

import pytest

from softswitch.sip.errors import MessageError
from softswitch.sip.headers import (
    COMPACT_FORMS,
    CSeq,
    NameAddr,
    Via,
    display_name_of,
    format_params,
    header_key,
    parse_params,
    quote,
    read_quoted,
    split_list,
    unquote_param,
)
from softswitch.sip.uri import SipURI, TelURI


@pytest.mark.parametrize("short, long", [
    ("v", "via"), ("f", "from"), ("t", "to"), ("i", "call-id"), ("m", "contact"),
    ("l", "content-length"), ("c", "content-type"), ("k", "supported"), ("s", "subject"),
    ("e", "content-encoding"), ("o", "event"), ("u", "allow-events"), ("r", "refer-to"),
    ("x", "session-expires"), ("b", "referred-by"),
])
def test_compact_forms(short: str, long: str) -> None:
    assert COMPACT_FORMS[short] == long
    assert header_key(short) == header_key(short.upper()) == long


def test_header_keys_are_case_insensitive() -> None:
    assert header_key("CALL-ID") == header_key("call-Id") == "call-id"
    assert header_key("X-Custom") == "x-custom"
    assert display_name_of("call-id") == "Call-ID"
    assert display_name_of("www-authenticate") == "WWW-Authenticate"
    assert display_name_of("record-route") == "Record-Route"


@pytest.mark.parametrize("value, items", [
    ("INVITE, ACK,BYE", ["INVITE", "ACK", "BYE"]),
    ("", []),
    (" , ,", []),
    ('"Doe, John" <sip:j@h>, <sip:k@h;x=1,2>', ['"Doe, John" <sip:j@h>', "<sip:k@h;x=1,2>"]),
    (r'"a \", b" <sip:a@h>, <sip:b@h>', [r'"a \", b" <sip:a@h>', "<sip:b@h>"]),
    ("<sip:a@h?x=1,2>;q=0.5 , sip:b@h", ["<sip:a@h?x=1,2>;q=0.5", "sip:b@h"]),
    ("  single  ", ["single"]),
])
def test_split_list(value: str, items: list[str]) -> None:
    assert split_list(value) == items


def test_split_list_unterminated_quote() -> None:
    with pytest.raises(MessageError):
        split_list('"open, <sip:a@h>')


@pytest.mark.parametrize("text, content, end", [
    ('"plain"', "plain", 7),
    (r'"with \"quotes\" and \\ slash"', 'with "quotes" and \\ slash', 30),
    ('"" rest', "", 2),
    ('"ünïcode ☎"x', "ünïcode ☎", 11),
])
def test_read_quoted(text: str, content: str, end: int) -> None:
    assert read_quoted(text, 0) == (content, end)


@pytest.mark.parametrize("text", ['"open', '"ends in escape\\', '"escaped end\\"'])
def test_read_quoted_unterminated(text: str) -> None:
    with pytest.raises(MessageError):
        read_quoted(text, 0)


@pytest.mark.parametrize("display", ["", "plain", 'a "quoted" \\ word', "Zoë ☎"])
def test_quote_round_trip(display: str) -> None:
    assert read_quoted(quote(display), 0) == (display, len(quote(display)))


def test_parse_params() -> None:
    params = parse_params(';Tag=abc ; lr;received=[2001:db8::1];q = 0.7;x="a;b\\"c"')
    assert params == {"tag": "abc", "lr": None, "received": "[2001:db8::1]", "q": "0.7",
                      "x": '"a;b\\"c"'}
    assert unquote_param(params["x"]) == 'a;b"c'
    assert unquote_param(params["tag"]) == "abc"
    assert format_params({"tag": "abc", "lr": None}) == ";tag=abc;lr"


@pytest.mark.parametrize("text", [
    "tag=x", ";", ";=v", ";a=", ";a=b c", ';a="x', ';a="x"y', ";a=<x>", ";a,b", ";a=b,c",
    ";a@b=1",
])
def test_bad_params(text: str) -> None:
    with pytest.raises(MessageError):
        parse_params(text)


def test_name_addr_with_quoted_display() -> None:
    addr = NameAddr.parse('"Alice \\"Al\\" Liddell" <sip:alice@atlanta.com;transport=tcp>;tag=1928')
    assert addr.display_name == 'Alice "Al" Liddell'
    assert isinstance(addr.uri, SipURI) and addr.uri.params == {"transport": "tcp"}
    assert addr.params == {"tag": "1928"} and addr.tag == "1928"
    assert str(addr) == '"Alice \\"Al\\" Liddell" <sip:alice@atlanta.com;transport=tcp>;tag=1928'


def test_name_addr_token_display_and_no_space() -> None:
    addr = NameAddr.parse("Bob Smith<sip:bob@biloxi.com>")
    assert addr.display_name == "Bob Smith" and addr.angle
    assert NameAddr.parse('"Bob"<sip:bob@biloxi.com>').display_name == "Bob"


def test_addr_spec_params_belong_to_the_header() -> None:
    # RFC 3261 20.10: without <>, parameters after the URI are header parameters.
    addr = NameAddr.parse("sip:bob@biloxi.com;tag=456248")
    assert not addr.angle and addr.display_name is None
    assert addr.params == {"tag": "456248"}
    assert isinstance(addr.uri, SipURI) and addr.uri.params == {}
    assert str(addr) == "sip:bob@biloxi.com;tag=456248"


def test_name_addr_tel_uri_and_wildcard() -> None:
    addr = NameAddr.parse("<tel:+1-201-555-0123>")
    assert isinstance(addr.uri, TelURI)
    with pytest.raises(MessageError):
        addr.sip_uri  # noqa: B018
    star = NameAddr.parse(" * ")
    assert star.wildcard and str(star) == "*"


def test_name_addr_copy_is_independent() -> None:
    addr = NameAddr.parse("<sip:a@h;lr>;tag=1")
    dup = addr.copy()
    dup.params["tag"] = "2"
    dup.sip_uri.params.pop("lr")
    assert addr.tag == "1" and "lr" in addr.sip_uri.params


@pytest.mark.parametrize("value", [
    '"unterminated <sip:a@h>', '"Alice" sip:a@h', "<sip:a@h", "Al;ice <sip:a@h>",
    "<sip:a@h> junk", "sip:a@h x", "", "<>", "<sip:>",
])
def test_bad_name_addr(value: str) -> None:
    with pytest.raises(MessageError):
        NameAddr.parse(value)


def test_via() -> None:
    via = Via.parse("SIP/2.0/UDP pc33.atlanta.com:5066;branch=z9hG4bK776asdhds;rport;"
                    "received=192.0.2.1")
    assert (via.transport, via.host, via.port) == ("UDP", "pc33.atlanta.com", 5066)
    assert via.branch == "z9hG4bK776asdhds"
    assert via.params["rport"] is None and via.params["received"] == "192.0.2.1"
    assert str(via) == ("SIP/2.0/UDP pc33.atlanta.com:5066;branch=z9hG4bK776asdhds;rport;"
                        "received=192.0.2.1")


def test_via_with_white_space_everywhere_it_may_be() -> None:
    via = Via.parse(" SIP / 2.0 / tcp  [2001:db8::9] : 5070 ; branch = z9hG4bKws ")
    assert (via.transport, via.host, via.port, via.branch) == (
        "TCP", "[2001:db8::9]", 5070, "z9hG4bKws")
    assert via.sent_by == "[2001:db8::9]:5070"


@pytest.mark.parametrize("value", [
    "", "SIP/2.0", "SIP/2.0/UDP", "SIP/2.0/UDP ;branch=x", "SIP/3.0/UDP h", "HTTP/2.0/UDP h",
    "SIP/2.0/U@P h", "SIP/2.0/UDP h:port", "SIP/2.0/UDP h;=x",
    "SIP/2.0/UDP h:70000", "SIP/2.0/UDP h;branch=a b",
])
def test_bad_via(value: str) -> None:
    with pytest.raises(MessageError):
        Via.parse(value)


def test_cseq() -> None:
    assert CSeq.parse("4711 INVITE") == CSeq(4711, "INVITE")
    assert CSeq.parse("  0\tACK ") == CSeq(0, "ACK")
    assert CSeq.parse("4294967295 BYE").seq == 0xFFFFFFFF
    assert str(CSeq(1, "REGISTER")) == "1 REGISTER"


@pytest.mark.parametrize("value", [
    "", "INVITE", "1", "x INVITE", "-1 INVITE", "4294967296 INVITE", "1 INV@TE",
    "1 INVITE extra", "١ INVITE", "12345678901 INVITE",
])
def test_bad_cseq(value: str) -> None:
    with pytest.raises(MessageError):
        CSeq.parse(value)
