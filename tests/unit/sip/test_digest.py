"""Digest authentication: RFC vectors, challenges, nonces, nonce counts, parsing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from softswitch.sip.digest import (
    Algorithm,
    CountVerdict,
    Credentials,
    NonceCountTracker,
    NonceFactory,
    NonceState,
    challenges,
    ha1,
    parse_credentials,
    response,
    verify,
)
from softswitch.sip.errors import MessageError

# RFC 7616 section 3.9.1.
RFC7616_HEADER_TEMPLATE = (
    'Digest username="Mufasa", realm="http-auth@example.org", uri="/dir/index.html", '
    'algorithm={alg}, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", nc=00000001, '
    'cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", qop=auth, '
    'response="{resp}", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
)
# The MD5 value printed in RFC 7616 3.9.1 is wrong (an erratum corrects it);
# this is the corrected one, which RFC 2617-style MD5 implementations produce.
RFC7616_MD5 = "8ca523f5e9506fed4657c9700eebdbec"
RFC7616_SHA256 = "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"


@pytest.mark.parametrize(
    ("alg", "expected"),
    [(Algorithm.MD5, RFC7616_MD5), (Algorithm.SHA256, RFC7616_SHA256)],
)
def test_rfc7616_example(alg: Algorithm, expected: str) -> None:
    creds = parse_credentials(RFC7616_HEADER_TEMPLATE.format(alg=alg.value, resp=expected))
    assert creds.username == "Mufasa"
    assert creds.digest_algorithm is alg
    assert creds.nonce_count == 1
    key = ha1(alg, "Mufasa", "http-auth@example.org", "Circle of Life")
    assert verify(creds, "GET", key)
    assert not verify(creds, "POST", key)
    assert not verify(creds, "GET", ha1(alg, "Mufasa", "http-auth@example.org", "circle of life"))


def test_rfc2617_example() -> None:
    # RFC 2617 section 3.5.
    key = ha1(Algorithm.MD5, "Mufasa", "testrealm@host.com", "Circle Of Life")
    got = response(
        Algorithm.MD5,
        key,
        "dcd98b7102dd2f0e8b11d0f600bfb0c093",
        "GET",
        "/dir/index.html",
        qop="auth",
        nc="00000001",
        cnonce="0a4f113b",
    )
    assert got == "6629fae49393a05397450978507c4ef1"


# A SIP REGISTER answered with SHA-256 (RFC 8760); the expected values were
# computed with coreutils sha256sum, independently of this module.
SIP_HA1 = "fddf6b2bb599516244a298569376446799a9a4a2d5a9458e328eb8c98bc2cd12"


def test_rfc8760_sha256_register() -> None:
    assert ha1(Algorithm.SHA256, "alice", "atlanta.example.com", "s3cr3t") == SIP_HA1
    creds = parse_credentials(
        'Digest username="alice",realm="atlanta.example.com",nonce="YWJjZGVmZ2hpamtsbW5vcA",'
        'uri="sip:atlanta.example.com",response="40dd57db502d90411e6954de712be60e2a7034b1'
        'd509182acd3d86f1042b2a7c",algorithm=SHA-256,cnonce="0a4f113b",nc=00000001,qop=auth'
    )
    assert verify(creds, "REGISTER", SIP_HA1)


def test_sha256_sess() -> None:
    creds = parse_credentials(
        'Digest username="alice", realm="atlanta.example.com", nonce="YWJjZGVmZ2hpamtsbW5vcA", '
        'uri="sip:atlanta.example.com", algorithm=SHA-256-sess, cnonce="0a4f113b", '
        "nc=00000002, qop=auth, "
        'response="00118264e31d944ba00d4521adecb51f1e70035dcbbe4e8773ca0287c5a99107"'
    )
    assert verify(creds, "REGISTER", SIP_HA1)


def test_verify_refuses_missing_qop_and_unknown_algorithm() -> None:
    base = Credentials("alice", "r", "n", "sip:r", "00", qop=None)
    assert not verify(base, "REGISTER", SIP_HA1)
    odd = Credentials("alice", "r", "n", "sip:r", "00", "SHA-512-256", "c", "00000001", "auth")
    assert odd.digest_algorithm is None
    assert not verify(odd, "REGISTER", SIP_HA1)


def test_parse_tolerates_whitespace_order_case_escapes() -> None:
    creds = parse_credentials(
        '  digest   RESPONSE = "ABCDEF" ,, nc=0000000a ,qop=auth,cnonce="x",'
        ' uri="sip:a@b", nonce = "n\\"1", realm="r\\\\x", Username="1001", foo=bar\t'
    )
    assert creds.username == "1001"
    assert creds.realm == "r\\x"
    assert creds.nonce == 'n"1'
    assert creds.response == "abcdef"
    assert creds.algorithm == "MD5"  # RFC 7616 3.4: absent means MD5
    assert creds.nonce_count == 10


@pytest.mark.parametrize(
    "value",
    [
        "",
        "Basic dXNlcjpwYXNz",
        'Digest username="a"',
        'Digest username="a", realm="r", nonce="n", uri="u", response="zz"',
        'Digest username="a, realm="r", nonce="n", uri="u", response="00"',
        'Digest username="a" realm="r", nonce="n", uri="u", response="00"',
        'Digest username="a", username="b", realm="r", nonce="n", uri="u", response="00"',
        'Digest username="a", realm="r", nonce="n", uri="u", response="00", qop=auth',
        'Digest username="a", realm="r", nonce="n", uri="u", response="00", qop=auth, '
        'cnonce="c", nc=1',
        'Digest username=, realm="r", nonce="n", uri="u", response="00"',
        'Digest username="a\\',
        'Digestusername="a", realm="r", nonce="n", uri="u", response="00"',
    ],
)
def test_parse_rejects_malformed(value: str) -> None:
    with pytest.raises(MessageError) as info:
        parse_credentials(value)
    assert info.value.status == 400


@given(st.text())
def test_parse_arbitrary_text_gives_credentials_or_message_error(text: str) -> None:
    try:
        creds = parse_credentials(text)
    except MessageError as exc:
        assert exc.status == 400
    else:
        assert isinstance(creds, Credentials)


_qtext = st.text(st.characters(blacklist_characters="\r\n", codec="utf-8"), max_size=20)


@given(user=_qtext, realm=_qtext, nonce=_qtext, uri=_qtext)
def test_parse_round_trips_quoted_values(user: str, realm: str, nonce: str, uri: str) -> None:
    def q(s: str) -> str:
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'

    value = (
        f"Digest username={q(user)}, realm={q(realm)}, nonce={q(nonce)}, uri={q(uri)}, "
        'response="0123", qop=auth, nc=00000001, cnonce="c"'
    )
    creds = parse_credentials(value)
    assert (creds.username, creds.realm, creds.nonce, creds.uri) == (user, realm, nonce, uri)


def test_challenges_default_order_and_stale() -> None:
    values = challenges('pbx "x"', "abc", stale=True, opaque="op")
    assert len(values) == 2
    assert values[0].startswith('Digest realm="pbx \\"x\\"", nonce="abc"')
    assert "algorithm=SHA-256," in values[0]
    assert "algorithm=MD5," in values[1]
    assert all('qop="auth"' in v and v.endswith("stale=true") for v in values)
    assert all('opaque="op"' in v for v in values)
    (md5_only,) = challenges("r", "n", [Algorithm.MD5])
    assert md5_only == 'Digest realm="r", nonce="n", algorithm=MD5, qop="auth"'


def test_challenge_answered_by_client_verifies() -> None:
    factory = NonceFactory(b"s" * 32, lifetime=300)
    nonce = factory.make("pbx.example.com", now=1000.0)
    key = ha1(Algorithm.SHA256, "1001", "pbx.example.com", "1001pass")
    resp = response(
        Algorithm.SHA256,
        key,
        nonce,
        "REGISTER",
        "sip:pbx.example.com",
        nc="00000001",
        cnonce="cafe",
    )
    creds = parse_credentials(
        f'Digest username="1001", realm="pbx.example.com", nonce="{nonce}", '
        f'uri="sip:pbx.example.com", response="{resp}", algorithm=SHA-256, qop=auth, '
        'nc=00000001, cnonce="cafe"'
    )
    assert verify(creds, "REGISTER", key)
    assert factory.check(creds.nonce, 1001.0, "pbx.example.com") is NonceState.VALID


def test_nonce_valid_stale_invalid() -> None:
    factory = NonceFactory(b"k" * 32, lifetime=30)
    nonce = factory.make("r", now=100.0)
    assert factory.issued_at(nonce) == 100.0
    assert factory.check(nonce, 100.0, "r") is NonceState.VALID
    assert factory.check(nonce, 130.0, "r") is NonceState.VALID
    assert factory.check(nonce, 130.5, "r") is NonceState.STALE
    assert factory.check(nonce, 100.0, "other") is NonceState.INVALID
    assert NonceFactory(b"z" * 32, 30).check(nonce, 100.0, "r") is NonceState.INVALID
    assert factory.check(nonce, 50.0, "r") is NonceState.INVALID  # from the future
    tampered = ("A" if nonce[0] != "A" else "B") + nonce[1:]
    assert factory.check(tampered, 100.0, "r") is NonceState.INVALID
    for garbage in ("", "!!!", "é", "x" * 500, nonce + "AAAA"):
        assert factory.check(garbage, 100.0, "r") is NonceState.INVALID


def test_nonces_are_unique_within_the_same_instant() -> None:
    factory = NonceFactory(b"k" * 32, lifetime=30)
    assert len({factory.make("r", 5.0) for _ in range(100)}) == 100
    assert factory.make("r", 5.0, salt=b"12345678") == factory.make("r", 5.0, salt=b"12345678")


def test_nonce_count_refuses_replay() -> None:
    factory, tracker = NonceFactory(b"k" * 32, lifetime=60), NonceCountTracker(slots=16)
    n1 = factory.make("r", 0.0, salt=tracker.issue())
    n2 = factory.make("r", 0.0, salt=tracker.issue())
    assert tracker.accept(n1, 1) is CountVerdict.ACCEPTED
    assert tracker.accept(n1, 1) is CountVerdict.REPLAYED
    assert tracker.accept(n1, 3) is CountVerdict.ACCEPTED  # gaps are fine (lost requests)
    assert tracker.accept(n1, 2) is CountVerdict.REPLAYED  # going back is not
    assert tracker.accept(n2, 1) is CountVerdict.ACCEPTED  # counters are per nonce
    assert tracker.accept(n2, 0) is CountVerdict.REPLAYED


def test_nonce_count_memory_is_fixed_and_old_nonces_are_re_challenged() -> None:
    factory, tracker = NonceFactory(b"k" * 32, lifetime=60), NonceCountTracker(slots=4)
    first = factory.make("r", 0.0, salt=tracker.issue())
    assert tracker.accept(first, 1) is CountVerdict.ACCEPTED
    later = [factory.make("r", 0.0, salt=tracker.issue()) for _ in range(4)]
    # Four newer nonces took every slot: the first is forgotten, never accepted
    # again (not even as "new"), so a replay of it cannot get through.
    assert tracker.accept(first, 2) is CountVerdict.FORGOTTEN
    assert tracker.accept(first, 1) is CountVerdict.FORGOTTEN
    assert all(tracker.accept(n, 1) is CountVerdict.ACCEPTED for n in later)
    # A nonce from another server (or before a restart) owns no slot here.
    other = NonceCountTracker(slots=4)
    assert other.accept(later[0], 5) is CountVerdict.FORGOTTEN
    with pytest.raises(ValueError):
        NonceCountTracker(slots=3)


# -- the client side ---------------------------------------------------------------


def test_our_authorization_answers_our_own_challenge() -> None:
    from softswitch.sip.digest import (
        DEFAULT_ALGORITHMS,
        authorization,
        challenges,
        ha1,
        parse_challenge,
        parse_credentials,
        verify,
    )

    for value in challenges("example.com", "abc123", DEFAULT_ALGORITHMS, opaque="op"):
        challenge = parse_challenge(value)
        assert challenge is not None and challenge.qop == ("auth",)
        header = authorization(challenge, "INVITE", "sip:+15551234567@192.0.2.1", "trunkuser",
                               "s3cret", cnonce="0a4f113b", nc=1)
        credentials = parse_credentials(header)
        assert credentials.opaque == "op" and credentials.nc == "00000001"
        expected = ha1(challenge.algorithm, "trunkuser", "example.com", "s3cret")
        assert verify(credentials, "INVITE", expected)
        assert not verify(credentials, "BYE", expected)


def test_challenge_parsing_edge_cases() -> None:
    from softswitch.sip.digest import Algorithm, parse_challenge

    assert parse_challenge('Basic realm="x"') is None
    assert parse_challenge('Digest realm="x", nonce="n", algorithm=AKAv1-MD5') is None
    plain = parse_challenge('Digest realm="x", nonce="n"')
    assert plain is not None and plain.algorithm is Algorithm.MD5 and plain.qop == ()
    with pytest.raises(MessageError):
        parse_challenge('Digest realm="x"')
