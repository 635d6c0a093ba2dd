"""SIP, SIPS and TEL URIs: parsing, serialising, equality (RFC 3261 19.1, RFC 3966)."""

from __future__ import annotations

import pytest

from softswitch.sip.errors import MessageError
from softswitch.sip.uri import AbsoluteURI, SipURI, TelURI, parse_sip_uri, parse_uri


def test_full_sip_uri_components() -> None:
    uri = parse_uri("sips:j.doe:s3cr%65t@Example.COM:5061;transport=TLS;lr;maddr=239.255.255.1"
                    "?subject=project%20x&priority=urgent")
    assert isinstance(uri, SipURI)
    assert (uri.scheme, uri.user, uri.password, uri.host, uri.port) == (
        "sips", "j.doe", "s3cr%65t", "Example.COM", 5061)
    assert uri.params == {"transport": "TLS", "lr": None, "maddr": "239.255.255.1"}
    assert uri.headers == {"subject": "project%20x", "priority": "urgent"}
    assert uri.transport == "tls"
    assert uri.host_port == "Example.COM:5061"
    assert uri.aor == "j.doe@example.com"


@pytest.mark.parametrize("text, host, port, bare", [
    ("sip:alice@192.0.2.1", "192.0.2.1", None, "192.0.2.1"),
    ("sip:alice@192.0.2.1:5070", "192.0.2.1", 5070, "192.0.2.1"),
    ("sip:alice@[2001:db8::10]", "[2001:db8::10]", None, "2001:db8::10"),
    ("sip:alice@[2001:db8::10]:5070", "[2001:db8::10]", 5070, "2001:db8::10"),
    ("sip:[::ffff:192.0.2.1]", "[::ffff:192.0.2.1]", None, "::ffff:192.0.2.1"),
    ("sip:alice@atlanta.example.com.", "atlanta.example.com.", None, "atlanta.example.com."),
    ("sip:gw-1.example", "gw-1.example", None, "gw-1.example"),
    ("sip:alice@host:0", "host", 0, "host"),
    ("sip:alice@host:65535", "host", 65535, "host"),
])
def test_hosts_and_ports(text: str, host: str, port: int | None, bare: str) -> None:
    uri = parse_sip_uri(text)
    assert (uri.host, uri.port, uri.host_no_brackets) == (host, port, bare)
    assert str(uri) == text


@pytest.mark.parametrize("text", [
    "sip:alice@atlanta.com",
    "sip:alice:secretword@atlanta.com;transport=tcp",
    "sips:alice@atlanta.com?subject=project%20x&priority=urgent",
    "sip:+1-212-555-1212:1234@gateway.com;user=phone",
    "sip:alice;day=tuesday@atlanta.com",
    "sip:user;par=u%40example.net@example.com",
    "sip:what?is=this@example.com",
    "sip:%61lice@atlanta.com;maddr=[2001:db8::1]",
    "sip:atlanta.com;method=REGISTER?to=alice%40atlanta.com",
    "sip:alice@atlanta.com;lr;ob;x-flag=on",
    "tel:+1-201-555-0123",
    "tel:7042;phone-context=example.com",
    "tel:863-1234;phone-context=+1-914-555",
    "urn:service:sos",
    "mailto:alice@example.com",
])
def test_round_trip(text: str) -> None:
    assert str(parse_uri(text)) == text


def test_user_may_hold_question_mark_and_semicolon() -> None:
    # The last "@" ends the userinfo: no later part of a SIP URI holds "@".
    uri = parse_sip_uri("sip:what?is=this@example.com?subject=x")
    assert (uri.user, uri.host, uri.headers) == ("what?is=this", "example.com", {"subject": "x"})
    uri = parse_sip_uri("sip:user;par=u%40example.net@example.com")
    assert (uri.user, uri.params) == ("user;par=u%40example.net", {})


def test_scheme_and_param_names_are_case_insensitive() -> None:
    uri = parse_sip_uri("SIP:Bob@Biloxi.COM;Transport=UDP")
    assert uri.scheme == "sip" and uri.params == {"transport": "UDP"}
    assert str(uri) == "sip:Bob@Biloxi.COM;transport=UDP"


def test_tel_uri() -> None:
    uri = parse_uri("tel:+1-201-555-0123;ext=12")
    assert isinstance(uri, TelURI)
    assert uri.digits == "+12015550123" and uri.params == {"ext": "12"}
    assert uri == parse_uri("tel:+1.201.555.0123;EXT=12")
    assert uri != parse_uri("tel:+1-201-555-0124;ext=12")


def test_other_schemes_are_kept_opaque() -> None:
    uri = parse_uri("urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6")
    assert isinstance(uri, AbsoluteURI) and uri.scheme == "urn"


@pytest.mark.parametrize("text", [
    "", "sip", "sip:", "sips:", "sip:@host", "sip:alice@", "sip:alice@host:", "sip:alice@host:x",
    "sip:alice@host:65536", "sip:alice@host:123456", "sip:alice@256.1.1.1",
    "sip:alice@[2001:db8::1", "sip:alice@[2001:db8::1]x", "sip:alice@[zz::1]",
    "sip:al ice@host", "sip:alice@ho st", "sip:alice@-host", "sip:alice@host-",
    "sip:alice@host;=x", "sip:alice@host;a=", "sip:alice@host;a=b c", "sip:alice@host?x",
    "sip:alice@host?=y", "sip:alice@ho%st", "sip:ali<ce@host", "sip:alice:pa@ss@host:x",
    "sip:a%zz@host", "sip:alice@١.١.١.١", "tel:", "tel:xyz", "tel:+", "1sip:x",
    "urn:with space", "http:\x00",
])
def test_malformed_uris_raise_message_error(text: str) -> None:
    with pytest.raises(MessageError) as info:
        parse_uri(text)
    assert info.value.status == 400


# RFC 3261 19.1.4: the section's examples, retyped here as pairs.
EQUAL = [
    ("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com;security=on"),
    ("sip:carol@chicago.com;newparam=5", "sip:carol@chicago.com;security=on"),
    ("sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
     "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com"),
    ("sip:alice@atlanta.com?subject=project%20x&priority=urgent",
     "sip:alice@atlanta.com?priority=urgent&subject=project%20x"),
    ("sip:%61lice@host", "sip:alice@host"),
    ("sip:alice@host;lr", "sip:alice@host;LR"),
]
NOT_EQUAL = [
    ("SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com:6000;transport=tcp"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting"),
    ("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"),
    ("sip:alice@host", "sips:alice@host"),
    ("sip:alice@host", "sip:host"),
    ("sip:alice:a@host", "sip:alice:b@host"),
    ("sip:alice@host;user=phone", "sip:alice@host"),
    ("sip:alice@host;maddr=192.0.2.1", "sip:alice@host"),
    ("sip:alice@host;ttl=1", "sip:alice@host;ttl=2"),
    ("sip:%fe@host", "sip:%ff@host"),
]


@pytest.mark.parametrize("a, b", EQUAL)
def test_equal_uris(a: str, b: str) -> None:
    ua, ub = parse_uri(a), parse_uri(b)
    assert ua == ub and ub == ua
    assert hash(ua) == hash(ub)


@pytest.mark.parametrize("a, b", NOT_EQUAL)
def test_unequal_uris(a: str, b: str) -> None:
    ua, ub = parse_uri(a), parse_uri(b)
    assert ua != ub and ub != ua


def test_different_kinds_never_equal() -> None:
    assert parse_uri("sip:1234@host") != parse_uri("tel:1234")
    assert parse_uri("urn:x:y") == parse_uri("urn:x:y")


def test_aor_unescapes_and_keeps_non_utf8_escaped() -> None:
    assert parse_sip_uri("sip:%61lice@ATLANTA.com").aor == "alice@atlanta.com"
    assert parse_sip_uri("sip:ATLANTA.com").aor == "atlanta.com"
    aor = parse_sip_uri("sip:%fe@host").aor
    assert aor.encode("utf-8") and aor != parse_sip_uri("sip:%ff@host").aor


def test_copy_is_independent() -> None:
    uri = parse_sip_uri("sip:alice@host;lr?x=y")
    dup = uri.copy()
    dup.params["transport"] = "tcp"
    dup.headers["z"] = "1"
    assert "transport" not in uri.params and "z" not in uri.headers
