"""The Authenticator and the nonce secret (RFC 3261 22, RFC 7616, RFC 8760).

Requests are parsed from bytes; digest responses are computed here as a
client would, with `softswitch.sip.digest`.
"""

from __future__ import annotations

import os
import re
import secrets
import stat
from pathlib import Path

import pytest

from softswitch.auth import Authenticator, AuthResult, Outcome, load_secret
from softswitch.directory import Account, Domain
from softswitch.sip import digest
from softswitch.sip.digest import Algorithm
from softswitch.sip.message import Request, parse_message

NOW = 1_700_000_000.0
REALM = "pbx.example.com"
SECRET = b"s" * 32
ALICE = Account("1001", REALM, password="alice-pw")
OLD_PHONE = Account("1004", REALM, algorithms=(Algorithm.MD5,), password="old-pw")
HA1_ONLY = Account("1003", REALM,
                   ha1_md5=digest.ha1(Algorithm.MD5, "1003", REALM, "carol-pw").upper(),
                   ha1_sha256=digest.ha1(Algorithm.SHA256, "1003", REALM, "carol-pw"))
DOMAIN = Domain(REALM, (Algorithm.SHA256, Algorithm.MD5),
                {a.user: a for a in (ALICE, OLD_PHONE, HA1_ONLY)})


def request(method: str = "REGISTER", uri: str = f"sip:{REALM}",
            authorization: str | None = None, header: str = "Authorization") -> Request:
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK{secrets.token_hex(6)}",
        "Max-Forwards: 70",
        f"From: <sip:1001@{REALM}>;tag=a1",
        f"To: <sip:1001@{REALM}>" if method == "REGISTER" else f"To: <{uri}>",
        "Call-ID: c1@phone",
        f"CSeq: 1 {method}",
    ]
    if authorization is not None:
        lines.append(f"{header}: {authorization}")
    lines.append("Content-Length: 0")
    message = parse_message(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert isinstance(message, Request)
    return message


def credentials(account: Account, password: str, nonce: str, *, method: str = "REGISTER",
                uri: str = f"sip:{REALM}", algorithm: Algorithm = Algorithm.SHA256,
                nc: int = 1, realm: str = REALM) -> str:
    cnonce = secrets.token_hex(4)
    key = digest.ha1(algorithm, account.user, realm, password)
    if algorithm.is_session:
        key = digest.session_ha1(algorithm, key, nonce, cnonce)
    answer = digest.response(algorithm, key, nonce, method, uri, qop="auth",
                             nc=f"{nc:08x}", cnonce=cnonce)
    return (f'Digest username="{account.user}", realm="{realm}", nonce="{nonce}", '
            f'uri="{uri}", response="{answer}", algorithm={algorithm.value}, qop=auth, '
            f'nc={nc:08x}, cnonce="{cnonce}"')


def offers(result: AuthResult) -> list[str]:
    assert result.response is not None
    return result.response.get_all("www-authenticate")


def param(challenge: str, name: str) -> str:
    found = re.search(rf'\b{name}="?([^",]+)', challenge)
    assert found is not None, challenge
    return found.group(1)


def nonce_of(result: AuthResult) -> str:
    return param(offers(result)[0], "nonce")


@pytest.fixture
def auth() -> Authenticator:
    return Authenticator(SECRET, nonce_lifetime=300.0)


# -- the secret ------------------------------------------------------------------------


def test_load_secret_creates_a_private_file_and_reuses_it(tmp_path: Path) -> None:
    secret = load_secret(tmp_path)
    path = tmp_path / "nonce.secret"
    assert len(secret) >= 32
    assert path.read_bytes() == secret
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # A restart keeps the secret, so nonces handed out before stay valid.
    assert load_secret(tmp_path) == secret
    nonce = Authenticator(secret).nonces.make(REALM, NOW)
    assert Authenticator(load_secret(tmp_path)).nonces.check(nonce, NOW + 1, REALM) \
        is digest.NonceState.VALID


def test_load_secret_replaces_a_truncated_file(tmp_path: Path) -> None:
    (tmp_path / "nonce.secret").write_bytes(b"short")
    secret = load_secret(tmp_path)
    assert len(secret) >= 32 and secret != b"short"
    assert (tmp_path / "nonce.secret").read_bytes() == secret


def test_load_secret_is_0600_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        load_secret(tmp_path)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "nonce.secret").stat().st_mode) == 0o600


# -- challenges --------------------------------------------------------------------------


def test_no_credentials_challenges_in_preference_order(auth: Authenticator) -> None:
    result = auth.check(request(), ALICE, DOMAIN, NOW)
    assert result.outcome is Outcome.CHALLENGE
    assert result.response is not None and result.response.status == 401
    values = offers(result)
    assert [param(v, "algorithm") for v in values] == ["SHA-256", "MD5"]
    for value in values:
        assert value.startswith(f'Digest realm="{REALM}", nonce="')
        assert 'qop="auth"' in value and "stale" not in value
    # One nonce for all the offers, so whichever the client picks is valid.
    assert len({param(v, "nonce") for v in values}) == 1
    assert auth.nonces.check(nonce_of(result), NOW, REALM) is digest.NonceState.VALID


def test_challenge_follows_the_account_algorithms(auth: Authenticator) -> None:
    values = offers(auth.check(request(), OLD_PHONE, DOMAIN, NOW))
    assert len(values) == 1 and "algorithm=MD5" in values[0]


def test_unknown_user_is_challenged_with_the_domain_algorithms(auth: Authenticator) -> None:
    result = auth.check(request(), None, DOMAIN, NOW)
    assert result.outcome is Outcome.CHALLENGE
    assert len(offers(result)) == 2


def test_each_challenge_has_a_fresh_nonce(auth: Authenticator) -> None:
    first = nonce_of(auth.check(request(), ALICE, DOMAIN, NOW))
    second = nonce_of(auth.check(request(), ALICE, DOMAIN, NOW))
    assert first != second


# -- checking credentials ------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", list(Algorithm))
def test_right_password_with_every_algorithm(auth: Authenticator, algorithm: Algorithm) -> None:
    nonce = nonce_of(auth.check(request(), ALICE, DOMAIN, NOW))
    result = auth.check(request(authorization=credentials(ALICE, "alice-pw", nonce,
                                                          algorithm=algorithm)),
                        ALICE, DOMAIN, NOW + 1)
    assert result.outcome is Outcome.OK
    assert result.username == "1001" and result.response is None


def test_ha1_only_account(auth: Authenticator) -> None:
    nonce = nonce_of(auth.check(request(), HA1_ONLY, DOMAIN, NOW))
    for nc, algorithm in enumerate((Algorithm.MD5, Algorithm.SHA256), start=1):
        value = credentials(HA1_ONLY, "carol-pw", nonce, algorithm=algorithm, nc=nc)
        assert auth.check(request(authorization=value), HA1_ONLY, DOMAIN, NOW).outcome \
            is Outcome.OK


def test_wrong_password_is_forbidden(auth: Authenticator) -> None:
    nonce = nonce_of(auth.check(request(), ALICE, DOMAIN, NOW))
    result = auth.check(request(authorization=credentials(ALICE, "nope", nonce)),
                        ALICE, DOMAIN, NOW)
    assert result.outcome is Outcome.FORBIDDEN
    assert result.response is not None and result.response.status == 403
    assert result.response.get("www-authenticate") is None


def test_credentials_of_another_user_are_forbidden(auth: Authenticator) -> None:
    nonce = nonce_of(auth.check(request(), ALICE, DOMAIN, NOW))
    value = credentials(OLD_PHONE, "old-pw", nonce, algorithm=Algorithm.MD5)
    assert auth.check(request(authorization=value), ALICE, DOMAIN, NOW).outcome \
        is Outcome.FORBIDDEN
    assert auth.check(request(authorization=value), None, DOMAIN, NOW).outcome \
        is Outcome.FORBIDDEN


def test_algorithm_not_offered_is_challenged_again(auth: Authenticator) -> None:
    nonce = nonce_of(auth.check(request(), OLD_PHONE, DOMAIN, NOW))
    value = credentials(OLD_PHONE, "old-pw", nonce, algorithm=Algorithm.SHA256)
    result = auth.check(request(authorization=value), OLD_PHONE, DOMAIN, NOW)
    assert result.outcome is Outcome.CHALLENGE
    assert "algorithm=MD5" in offers(result)[0]


def test_forged_or_foreign_nonce_is_challenged(auth: Authenticator) -> None:
    foreign = Authenticator(b"x" * 32).make_nonce(REALM, NOW)
    for nonce in (foreign, "bm90IG91ciBub25jZQ", auth.make_nonce("other.example", NOW)):
        result = auth.check(request(authorization=credentials(ALICE, "alice-pw", nonce)),
                            ALICE, DOMAIN, NOW)
        assert result.outcome is Outcome.CHALLENGE
        assert all("stale" not in v for v in offers(result))


def test_credentials_for_another_realm_are_ignored(auth: Authenticator) -> None:
    nonce = auth.make_nonce("other.example", NOW)
    value = credentials(ALICE, "alice-pw", nonce, realm="other.example")
    result = auth.check(request(authorization=value), ALICE, DOMAIN, NOW)
    assert result.outcome is Outcome.CHALLENGE
    assert result.reason == "no credentials"


def test_stale_nonce_with_right_password_is_stale_challenge(auth: Authenticator) -> None:
    nonce = nonce_of(auth.check(request(), ALICE, DOMAIN, NOW))
    later = NOW + 301
    result = auth.check(request(authorization=credentials(ALICE, "alice-pw", nonce)),
                        ALICE, DOMAIN, later)
    assert result.outcome is Outcome.CHALLENGE
    values = offers(result)
    assert len(values) == 2 and all(v.endswith("stale=true") for v in values)
    assert auth.nonces.check(nonce_of(result), later, REALM) is digest.NonceState.VALID
    # With a wrong password the nonce's age does not matter: 403, not stale.
    wrong = auth.check(request(authorization=credentials(ALICE, "nope", nonce)),
                       ALICE, DOMAIN, later)
    assert wrong.outcome is Outcome.FORBIDDEN


def test_nonce_count_must_grow(auth: Authenticator) -> None:
    nonce = nonce_of(auth.check(request(), ALICE, DOMAIN, NOW))
    value = credentials(ALICE, "alice-pw", nonce, nc=1)
    assert auth.check(request(authorization=value), ALICE, DOMAIN, NOW).outcome is Outcome.OK
    replay = auth.check(request(authorization=value), ALICE, DOMAIN, NOW + 1)
    assert replay.outcome is Outcome.CHALLENGE and replay.reason == "replayed nonce count"
    skipped = credentials(ALICE, "alice-pw", nonce, nc=5)
    assert auth.check(request(authorization=skipped), ALICE, DOMAIN, NOW + 2).outcome \
        is Outcome.OK
    older = credentials(ALICE, "alice-pw", nonce, nc=3)
    assert auth.check(request(authorization=older), ALICE, DOMAIN, NOW + 3).outcome \
        is Outcome.CHALLENGE


def test_proxy_authorization_header(auth: Authenticator) -> None:
    nonce = auth.make_nonce(REALM, NOW)
    uri = f"sip:1002@{REALM}"
    value = credentials(ALICE, "alice-pw", nonce, method="INVITE", uri=uri)
    invite = request("INVITE", uri, value, header="Proxy-Authorization")
    assert auth.check(invite, ALICE, DOMAIN, NOW).outcome is Outcome.CHALLENGE
    assert auth.check(invite, ALICE, DOMAIN, NOW, header="proxy-authorization").outcome \
        is Outcome.OK


# -- the digest uri --------------------------------------------------------------------------


@pytest.mark.parametrize("request_uri, digest_uri", [
    ("tel:+15551234567", "tel:+15551234567"),
    ("tel:+1-555-123-4567", "tel:+1-555-123-4567"),
    ("tel:+1-555-123-4567", "tel:+15551234567"),  # RFC 3966: same number
    ("tel:7042;phone-context=example.com", "tel:7042;phone-context=example.com"),
    ("urn:service:sos", "urn:service:sos"),
    ("sip:1002@pbx.example.com;user=phone", "sip:1002@pbx.example.com;user=phone"),
    ("sip:1002@PBX.example.com", "sip:1002@pbx.example.com"),  # RFC 3261 19.1.4
])
def test_digest_uri_of_tel_and_other_requests(
        auth: Authenticator, request_uri: str, digest_uri: str) -> None:
    # The hash covers the uri as the client wrote it in the credentials.
    nonce = auth.make_nonce(REALM, NOW)
    value = credentials(ALICE, "alice-pw", nonce, method="INVITE", uri=digest_uri)
    invite = request("INVITE", request_uri, value, header="Proxy-Authorization")
    result = auth.check(invite, ALICE, DOMAIN, NOW, header="proxy-authorization")
    assert result.outcome is Outcome.OK, result.reason


@pytest.mark.parametrize("request_uri, digest_uri", [
    ("tel:+19005550000", "tel:+15551234567"),  # sent to a premium number instead
    ("sip:1002@pbx.example.com", "tel:+15551234567"),
    ("tel:+15551234567", "sip:+15551234567@pbx.example.com"),
    ("urn:service:sos", "urn:service:police"),
    ("sip:1002@pbx.example.com", "not a uri"),
])
def test_digest_uri_must_name_the_request_uri(
        auth: Authenticator, request_uri: str, digest_uri: str) -> None:
    nonce = auth.make_nonce(REALM, NOW)
    value = credentials(ALICE, "alice-pw", nonce, method="INVITE", uri=digest_uri)
    invite = request("INVITE", request_uri, value, header="Proxy-Authorization")
    result = auth.check(invite, ALICE, DOMAIN, NOW, header="proxy-authorization")
    assert result.outcome is Outcome.BAD_REQUEST
    assert result.response is not None and result.response.status == 400
    # Refused before the nonce count was taken: the real request still goes through.
    good = request("INVITE", digest_uri, value, header="Proxy-Authorization") \
        if digest_uri != "not a uri" else None
    if good is not None:
        assert auth.check(good, ALICE, DOMAIN, NOW, header="proxy-authorization").outcome \
            is Outcome.OK
