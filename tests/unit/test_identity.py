"""Who is calling (softswitch/identity.py) and the trunk ACLs (softswitch/trunk_acl.py).

INVITEs are parsed from bytes; digest responses are computed as a phone or
a provider would, with `softswitch.sip.digest`; the authenticator is the
real one.
"""

from __future__ import annotations

import re
import secrets

import pytest
from structlog.testing import capture_logs

from softswitch.auth import Authenticator
from softswitch.config import TrunkSettings
from softswitch.directory import Account, Directory, Domain
from softswitch.identity import Caller, CallerIdentity, domain_for
from softswitch.sip import digest
from softswitch.sip.digest import Algorithm
from softswitch.sip.message import Request, Response, parse_message
from softswitch.sip.peer import Peer
from softswitch.trunk_acl import acl_admits, trunk_by_address

NOW = 1_700_000_000.0
REALM = "pbx.example.com"
ALICE = Account("1001", REALM, display_name="Alice", context="office", groups=("sales",),
                password="alice-pw")
DOMAIN = Domain(REALM, (Algorithm.SHA256, Algorithm.MD5), {"1001": ALICE})
OTHER = Domain("other.example.org", (Algorithm.SHA256,), {})
PHONE = Peer("udp", "192.0.2.10", 5062)
CARRIER = TrunkSettings(name="carrier", host="198.51.100.7", context="from-carrier",
                        username="acct77", password="carrier-pw")
SHARED = TrunkSettings(name="shared-host", host="203.0.113.5", acl=["203.0.113.5:5080"])
BY_CREDENTIALS = TrunkSettings(name="roaming", host="roaming.example.net",
                               acl=["233.252.0.1"], username="trunkuser",
                               password="trunk-pw", context="from-roaming")


def invite(*, from_user: str | None = "1001", from_host: str = REALM, to: str | None = None,
           uri: str = f"sip:2000@{REALM}", authorization: str | None = None,
           display: str = "") -> Request:
    from_uri = f"sip:{from_user}@{from_host}" if from_user is not None else f"sip:{from_host}"
    lines = [
        f"INVITE {uri} SIP/2.0",
        f"Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK{secrets.token_hex(6)}",
        "Max-Forwards: 70",
        f"From: {display}<{from_uri}>;tag=a1",
        f"To: <{to or uri}>",
        "Call-ID: c1@phone",
        "CSeq: 1 INVITE",
    ]
    if authorization is not None:
        lines.append(f"Authorization: {authorization}")
    lines.append("Content-Length: 0")
    message = parse_message(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert isinstance(message, Request)
    return message


def credentials(user: str, password: str, nonce: str, uri: str = f"sip:2000@{REALM}") -> str:
    cnonce = secrets.token_hex(4)
    key = digest.ha1(Algorithm.SHA256, user, REALM, password)
    answer = digest.response(Algorithm.SHA256, key, nonce, "INVITE", uri, qop="auth",
                             nc="00000001", cnonce=cnonce)
    return (f'Digest username="{user}", realm="{REALM}", nonce="{nonce}", uri="{uri}", '
            f'response="{answer}", algorithm=SHA-256, qop=auth, nc=00000001, '
            f'cnonce="{cnonce}"')


def nonce_of(response: Response) -> str:
    found = re.search(r'nonce="([^"]+)"', response.get_all("www-authenticate")[0])
    assert found is not None
    return found.group(1)


@pytest.fixture
def directory() -> list[Directory]:
    # A list, so a test can swap the directory as a reload would.
    return [Directory([DOMAIN, OTHER])]


@pytest.fixture
def identity(directory: list[Directory]) -> CallerIdentity:
    return CallerIdentity(lambda: directory[0], Authenticator(b"s" * 32),
                          [CARRIER, SHARED, BY_CREDENTIALS])


def authenticated(identity: CallerIdentity, user: str, password: str,
                  **kwargs: str) -> Caller | Response:
    challenge = identity.identify(invite(**kwargs), PHONE, NOW)
    assert isinstance(challenge, Response) and challenge.status == 401
    answer = credentials(user, password, nonce_of(challenge))
    return identity.identify(invite(authorization=answer, **kwargs), PHONE, NOW + 1)


# -- accounts -----------------------------------------------------------------------------


def test_an_account_without_credentials_is_challenged_and_it_is_logged(
        identity: CallerIdentity) -> None:
    with capture_logs() as logs:
        refused = identity.identify(invite(), PHONE, NOW)
    assert isinstance(refused, Response) and refused.status == 401
    assert refused.get_all("www-authenticate")
    assert [(e["event"], e["outcome"], e["peer"]) for e in logs] == \
        [("invite_auth", "challenge", str(PHONE))]


def test_an_account_with_the_right_password_is_the_caller(identity: CallerIdentity) -> None:
    caller = authenticated(identity, "1001", "alice-pw", display='"Someone" ')
    assert caller == Caller(user="1001", display_name="Alice", context="office",
                            groups=frozenset({"sales"}), domain=REALM, trunk=None,
                            account="1001")


def test_an_account_with_a_wrong_password_is_forbidden(identity: CallerIdentity) -> None:
    refused = authenticated(identity, "1001", "guess")
    assert isinstance(refused, Response) and refused.status == 403


def test_a_from_without_user_is_forbidden(identity: CallerIdentity) -> None:
    refused = identity.identify(invite(from_user=None), PHONE, NOW)
    assert isinstance(refused, Response) and refused.status == 403


def test_an_unknown_from_domain_falls_back_to_the_default_domain(
        identity: CallerIdentity) -> None:
    # As before: a phone whose From names a domain we do not serve is
    # checked in the default domain, so it can still prove who it is.
    caller = authenticated(identity, "1001", "alice-pw", from_host="unknown.example")
    assert isinstance(caller, Caller) and caller.domain == REALM and caller.account == "1001"


def test_no_domain_at_all_is_forbidden(identity: CallerIdentity,
                                       directory: list[Directory]) -> None:
    directory[0] = Directory([])  # a reload emptied the directory
    refused = identity.identify(invite(from_host="unknown.example"), PHONE, NOW)
    assert isinstance(refused, Response) and refused.status == 403
    assert identity.default_domain() is None


def test_the_directory_is_read_at_each_call(identity: CallerIdentity,
                                            directory: list[Directory]) -> None:
    assert identity.default_domain() == REALM
    directory[0] = Directory([OTHER, DOMAIN])
    assert identity.default_domain() == "other.example.org"


def test_no_user_in_the_request_uri_is_404_before_anything_else(
        identity: CallerIdentity) -> None:
    refused = identity.identify(invite(uri=f"sip:{REALM}", from_user=None), PHONE, NOW)
    assert isinstance(refused, Response) and refused.status == 404


# -- trunks ---------------------------------------------------------------------------------


def test_a_trunk_by_its_host_needs_no_credentials(identity: CallerIdentity) -> None:
    source = Peer("udp", "198.51.100.7", 5060)
    request = invite(from_user="+15551234", from_host="carrier.example", display='"Bob" ')
    caller = identity.identify(request, source, NOW)
    assert caller == Caller(user="+15551234", display_name="Bob", context="from-carrier",
                            groups=frozenset(), domain=None, trunk="carrier", account=None)
    assert identity.dialled(request, source, caller) == "2000"


def test_a_trunk_acl_with_a_port_admits_that_port_only(identity: CallerIdentity) -> None:
    caller = identity.identify(invite(), Peer("udp", "203.0.113.5", 5080), NOW)
    assert isinstance(caller, Caller) and caller.trunk == "shared-host"
    refused = identity.identify(invite(), Peer("udp", "203.0.113.5", 5060), NOW)
    assert isinstance(refused, Response) and refused.status == 401


def test_a_trunk_calling_its_registered_contact_dialled_the_to_user(
        identity: CallerIdentity) -> None:
    source = Peer("udp", "198.51.100.7", 5060)
    request = invite(uri="sip:acct77@192.0.2.1", to=f"sip:%2B4930123@{REALM}")
    caller = identity.identify(request, source, NOW)
    assert isinstance(caller, Caller)
    assert identity.dialled(request, source, caller) == "+4930123"


def test_a_trunk_by_credentials(identity: CallerIdentity) -> None:
    caller = authenticated(identity, "trunkuser", "trunk-pw", from_user="+15550000",
                           from_host="roaming.example.net")
    assert caller == Caller(user="+15550000", display_name="", context="from-roaming",
                            groups=frozenset(), domain=None, trunk="roaming", account=None)


def test_a_trunk_by_credentials_keeps_the_request_uri_number(identity: CallerIdentity) -> None:
    # The To rule is for a provider known by address calling our registered
    # Contact; a trunk that authenticates dials what its Request-URI says.
    uri = "sip:trunkuser@192.0.2.1"
    challenge = identity.identify(invite(from_user="x", uri=uri, to=f"sip:777@{REALM}"),
                                  PHONE, NOW)
    assert isinstance(challenge, Response) and challenge.status == 401
    request = invite(from_user="x", uri=uri, to=f"sip:777@{REALM}",
                     authorization=credentials("trunkuser", "trunk-pw", nonce_of(challenge),
                                               uri))
    caller = identity.identify(request, PHONE, NOW + 1)
    assert isinstance(caller, Caller) and caller.trunk == "roaming"
    assert identity.dialled(request, PHONE, caller) == "trunkuser"


def test_a_trunk_with_a_wrong_password_is_forbidden(identity: CallerIdentity) -> None:
    refused = authenticated(identity, "trunkuser", "guess", from_user="x")
    assert isinstance(refused, Response) and refused.status == 403


def test_set_trunks_replaces_the_trunks(identity: CallerIdentity) -> None:
    source = Peer("udp", "198.51.100.7", 5060)
    identity.set_trunks([])
    refused = identity.identify(invite(), source, NOW)
    assert isinstance(refused, Response) and refused.status == 401


# -- the pieces ----------------------------------------------------------------------------


@pytest.mark.parametrize(("entry", "host", "port", "admitted"), [
    ("192.0.2.7", "192.0.2.7", 5060, True),
    ("192.0.2.0/24", "192.0.2.200", 5060, True),
    ("192.0.2.0/24", "192.0.3.1", 5060, False),
    ("192.0.2.7:5080", "192.0.2.7", 5080, True),
    ("192.0.2.7:5080", "192.0.2.7", 5060, False),
    ("[2001:db8::7]:5060", "2001:db8::7", 5060, True),
    ("[2001:db8::7]:5060", "2001:db8::7", 5061, False),
    ("2001:db8::/32", "2001:db8::1234", 5060, True),
    ("sip.example.com", "192.0.2.7", 5060, False),
])
def test_acl_entries(entry: str, host: str, port: int, admitted: bool) -> None:
    assert acl_admits(entry, Peer("udp", host, port)) is admitted


def test_the_first_trunk_whose_acl_admits_wins() -> None:
    first = TrunkSettings(name="a", host="192.0.2.1", acl=["192.0.2.0/24"])
    second = TrunkSettings(name="b", host="192.0.2.7")
    assert trunk_by_address([first, second], Peer("udp", "192.0.2.7", 5060)) is first
    assert trunk_by_address([second, first], Peer("udp", "192.0.2.7", 5060)) is second


def test_domain_for_maps_addresses_and_local_names_to_the_default_domain() -> None:
    directory = Directory([DOMAIN, OTHER])
    names = {"pbx-1"}
    assert domain_for(directory, "OTHER.example.org", lambda: names) is OTHER
    assert domain_for(directory, "192.0.2.1", lambda: names) is DOMAIN
    assert domain_for(directory, "[2001:db8::1]", lambda: names) is DOMAIN
    assert domain_for(directory, "pbx-1", lambda: names) is DOMAIN
    assert domain_for(directory, "elsewhere.example", lambda: names) is None
