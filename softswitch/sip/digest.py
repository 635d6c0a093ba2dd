"""HTTP Digest authentication for SIP: challenges, credentials, nonces.

Implements the server side of RFC 3261 section 22.4 with the digest scheme of
RFC 7616 (section 3.3 challenge, 3.4 response, 3.4.2 -sess HA1, 3.9 examples),
the algorithm list of RFC 8760 (SHA-256 preferred, several challenges in order
of preference, section 2.4), and RFC 2617 section 3.2.2 for MD5 and qop=auth.

Pure: no Twisted, no I/O, no clock. Time is passed in by the caller, so nonce
expiry and nonce-count eviction are driven by tests without sleeping.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import re
import secrets
import struct
from array import array
from collections.abc import Sequence
from dataclasses import dataclass

from softswitch.sip.errors import MessageError
from softswitch.sip.message import Response


class Algorithm(enum.Enum):
    """Digest algorithms (RFC 7616 section 6.1 registry); value is the wire token."""

    MD5 = "MD5"
    MD5_SESS = "MD5-sess"
    SHA256 = "SHA-256"
    SHA256_SESS = "SHA-256-sess"

    @classmethod
    def from_token(cls, token: str) -> Algorithm | None:
        """The algorithm named by `token` (case-insensitive, RFC 7616 3.3), or None."""
        return _ALGORITHMS_BY_TOKEN.get(token.lower())

    @property
    def hash_name(self) -> str:
        """The hashlib name of the underlying hash."""
        return "md5" if self in (Algorithm.MD5, Algorithm.MD5_SESS) else "sha256"

    @property
    def is_session(self) -> bool:
        return self in (Algorithm.MD5_SESS, Algorithm.SHA256_SESS)

    @property
    def base(self) -> Algorithm:
        """The non-session algorithm whose HA1 a -sess variant is derived from."""
        return Algorithm.MD5 if self.hash_name == "md5" else Algorithm.SHA256


_ALGORITHMS_BY_TOKEN = {a.value.lower(): a for a in Algorithm}

# RFC 8760 section 2.4: offer the strongest first; MD5 stays for old phones
# (see /work/shared/notes/sipp.md for which clients only take the topmost).
DEFAULT_ALGORITHMS: tuple[Algorithm, ...] = (Algorithm.SHA256, Algorithm.MD5)


def _h(algorithm: Algorithm, data: str) -> str:
    # RFC 7616 3.4.1: H(data) is the lowercase hex of the hash of the UTF-8 bytes.
    return hashlib.new(algorithm.hash_name, data.encode("utf-8")).hexdigest()


def ha1(algorithm: Algorithm, user: str, realm: str, password: str) -> str:
    """HA1 = H(user:realm:password) (RFC 7616 3.4.2), what a directory may store.

    For a -sess algorithm this is still the base HA1; `session_ha1` derives the
    per-nonce value, so the directory keeps one HA1 per hash function.
    """
    return _h(algorithm, f"{user}:{realm}:{password}")


def session_ha1(algorithm: Algorithm, base_ha1: str, nonce: str, cnonce: str) -> str:
    """HA1 for -sess algorithms: H(H(user:realm:password):nonce:cnonce) (RFC 7616 3.4.2)."""
    return _h(algorithm, f"{base_ha1}:{nonce}:{cnonce}")


def response(
    algorithm: Algorithm,
    ha1_value: str,
    nonce: str,
    method: str,
    uri: str,
    *,
    qop: str | None = "auth",
    nc: str | None = None,
    cnonce: str | None = None,
) -> str:
    """The request-digest (RFC 7616 3.4.1) for an already-derived HA1.

    `ha1_value` is the HA1 to use as is (for -sess, pass `session_ha1(...)`).
    With qop=None it is the RFC 2069 form kept by RFC 2617 3.2.2.1.
    """
    ha2 = _h(algorithm, f"{method}:{uri}")
    if qop is None:
        return _h(algorithm, f"{ha1_value}:{nonce}:{ha2}")
    if nc is None or cnonce is None:
        raise ValueError("qop requires nc and cnonce")
    return _h(algorithm, f"{ha1_value}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


# ---------------------------------------------------------------------------
# Credentials: parsing an Authorization / Proxy-Authorization value.


@dataclass(slots=True, frozen=True)
class Credentials:
    """The digest-response of an Authorization header (RFC 7616 3.4, RFC 3261 25.1).

    `algorithm` is the token as sent ("MD5" when absent, RFC 7616 3.4); use
    `digest_algorithm` for the typed value, None when we do not know it.
    `nc` keeps the 8 hex digits as sent because they enter the hash verbatim.
    """

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: str = "MD5"
    cnonce: str | None = None
    nc: str | None = None
    qop: str | None = None
    opaque: str | None = None

    @property
    def digest_algorithm(self) -> Algorithm | None:
        return Algorithm.from_token(self.algorithm)

    @property
    def nonce_count(self) -> int | None:
        return int(self.nc, 16) if self.nc is not None else None


_TOKEN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~")
_WS = " \t\r\n"
_HEX = frozenset("0123456789abcdefABCDEF")
_REQUIRED = ("username", "realm", "nonce", "uri", "response")
_KNOWN = frozenset(_REQUIRED + ("algorithm", "cnonce", "nc", "qop", "opaque"))


_TOKEN_RUN_RE = re.compile("[" + re.escape("".join(sorted(_TOKEN_CHARS))) + "]*")
_QUOTED_RE = re.compile(r'"((?:[^"\\\r\n]|\\[^\r\n])*)"')
_ESCAPE_RE = re.compile(r"\\(.)")


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in _WS:
        i += 1
    return i


def _read_token(text: str, i: int) -> tuple[str, int]:
    match = _TOKEN_RUN_RE.match(text, i)
    assert match is not None  # the pattern also matches the empty string
    return match.group(), match.end()


def _read_quoted(text: str, i: int) -> tuple[str, int]:
    # RFC 3261 25.1 quoted-string: backslash escapes any char except CR/LF.
    # A regular expression reads the well-formed case (every REGISTER and
    # INVITE carries five of these); the loop below finds what is wrong.
    match = _QUOTED_RE.match(text, i)
    if match is not None:
        value = match.group(1)
        if "\\" in value:
            value = _ESCAPE_RE.sub(r"\1", value)
        return value, match.end()
    assert text[i] == '"'
    i += 1
    out: list[str] = []
    while i < len(text):
        c = text[i]
        if c == '"':
            return "".join(out), i + 1
        if c == "\\":
            if i + 1 >= len(text) or text[i + 1] in "\r\n":
                raise MessageError("bad escape in quoted string")
            out.append(text[i + 1])
            i += 2
            continue
        if c in "\r\n":
            raise MessageError("line break in quoted string")
        out.append(c)
        i += 1
    raise MessageError("unterminated quoted string")


def _parse_params(text: str, i: int) -> dict[str, str]:
    params: dict[str, str] = {}
    while True:
        i = _skip_ws(text, i)
        # Tolerate empty list elements ("a=1,,b=2"), as RFC 7230 7 asks of #rule.
        while i < len(text) and text[i] == ",":
            i = _skip_ws(text, i + 1)
        if i >= len(text):
            return params
        name, i = _read_token(text, i)
        if not name:
            raise MessageError(f"expected a parameter name at offset {i}")
        i = _skip_ws(text, i)
        if i >= len(text) or text[i] != "=":
            raise MessageError(f"parameter {name!r} has no value")
        i = _skip_ws(text, i + 1)
        if i < len(text) and text[i] == '"':
            value, i = _read_quoted(text, i)
        else:
            value, i = _read_token(text, i)
            if not value:
                raise MessageError(f"parameter {name!r} has an empty value")
        key = name.lower()
        if key in params:
            raise MessageError(f"duplicate parameter {name!r}")
        params[key] = value
        i = _skip_ws(text, i)
        if i < len(text) and text[i] != ",":
            raise MessageError(f"expected ',' after parameter {name!r}")


def parse_credentials(value: str) -> Credentials:
    """Parse the value of an Authorization or Proxy-Authorization header.

    Raises MessageError(status=400) for anything that is not a well-formed
    Digest credential; unknown auth-params are ignored (RFC 7616 3.4).
    """
    i = _skip_ws(value, 0)
    scheme, i = _read_token(value, i)
    if scheme.lower() != "digest":
        raise MessageError("authorization scheme is not Digest")
    if i < len(value) and value[i] not in _WS:
        raise MessageError("expected whitespace after Digest")
    params = _parse_params(value, i)
    for name in _REQUIRED:
        if name not in params:
            raise MessageError(f"digest credentials lack {name}")
    qop = params.get("qop")
    cnonce = params.get("cnonce")
    nc = params.get("nc")
    if qop is not None and (cnonce is None or nc is None):
        # RFC 7616 3.4: cnonce and nc MUST be sent when qop is.
        raise MessageError("qop without cnonce and nc")
    if nc is not None and (len(nc) != 8 or not _HEX.issuperset(nc)):
        raise MessageError("nc is not 8 hex digits")
    if not params["response"] or not _HEX.issuperset(params["response"]):
        raise MessageError("response is not hex")
    return Credentials(
        username=params["username"],
        realm=params["realm"],
        nonce=params["nonce"],
        uri=params["uri"],
        response=params["response"].lower(),
        algorithm=params.get("algorithm", "MD5"),
        cnonce=cnonce,
        nc=nc,
        qop=qop,
        opaque=params.get("opaque"),
    )


def verify(credentials: Credentials, method: str, expected_ha1: str) -> bool:
    """True when the credentials' response matches the one computed from HA1.

    `expected_ha1` is the base HA1 for the credentials' hash function (from the
    directory); -sess derivation happens here. Only qop=auth is accepted: our
    challenges always offer it, and without it there is no nc to stop replays.
    The caller still checks realm, nonce freshness, nc and that `uri` matches
    the Request-URI (RFC 3261 22.4 point 4 is the caller's business).
    """
    algorithm = credentials.digest_algorithm
    if algorithm is None or credentials.qop is None or credentials.qop.lower() != "auth":
        return False
    if credentials.nc is None or credentials.cnonce is None:
        return False
    key = expected_ha1.lower()
    if algorithm.is_session:
        key = session_ha1(algorithm, key, credentials.nonce, credentials.cnonce)
    expected = response(
        algorithm,
        key,
        credentials.nonce,
        method,
        credentials.uri,
        qop=credentials.qop,
        nc=credentials.nc,
        cnonce=credentials.cnonce,
    )
    return hmac.compare_digest(expected.encode("ascii"), credentials.response.encode("ascii"))


# ---------------------------------------------------------------------------
# Challenges.


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def challenges(
    realm: str,
    nonce: str,
    algorithms: Sequence[Algorithm] = DEFAULT_ALGORITHMS,
    *,
    stale: bool = False,
    opaque: str | None = None,
) -> list[str]:
    """WWW-Authenticate / Proxy-Authenticate values, one per algorithm, in order.

    RFC 8760 2.4: the client answers the topmost challenge it supports, so the
    order of `algorithms` is the server's preference.
    """
    values = []
    for algorithm in algorithms:
        parts = [
            f"Digest realm={_quote(realm)}",
            f"nonce={_quote(nonce)}",
        ]
        if opaque is not None:
            parts.append(f"opaque={_quote(opaque)}")
        parts.append(f"algorithm={algorithm.value}")
        parts.append('qop="auth"')
        if stale:
            # RFC 7616 3.3: stale=true says the password was right, the nonce old.
            parts.append("stale=true")
        values.append(", ".join(parts))
    return values


# ---------------------------------------------------------------------------
# Stateless nonces.


class NonceState(enum.Enum):
    VALID = "valid"
    STALE = "stale"  # our MAC, but older than the lifetime: challenge with stale=true
    INVALID = "invalid"  # not ours (forged, other realm, garbage)


_STAMP = struct.Struct(">Q")
_SERIAL = struct.Struct(">Q")
_SALT_LEN = 8
_MAC_LEN = 32
_NONCE_LEN = _STAMP.size + _SALT_LEN + _MAC_LEN
# Nonces from a clock slightly ahead (another node of a cluster) are tolerated.
_FUTURE_SKEW_MS = 2000


class NonceFactory:
    """Makes and checks nonces without remembering them (RFC 7616 3.3, 5.4).

    nonce = base64url(timestamp_ms || salt || HMAC-SHA256(secret, timestamp_ms ||
    salt || realm)). The salt makes each nonce unique, which matters because
    nonce counts are kept per nonce; NonceCountTracker.issue gives it. Any node that knows the
    secret can check a nonce, so a restart or a second node needs no state.
    """

    __slots__ = ("_secret", "lifetime")

    def __init__(self, secret: bytes, lifetime: float) -> None:
        if len(secret) < 16:
            raise ValueError("nonce secret must be at least 16 bytes")
        if lifetime <= 0:
            raise ValueError("nonce lifetime must be positive")
        self._secret = secret
        self.lifetime = lifetime

    def _mac(self, head: bytes, realm: str) -> bytes:
        return hmac.new(self._secret, head + realm.encode("utf-8"), hashlib.sha256).digest()

    def make(self, realm: str, now: float, salt: bytes | None = None) -> str:
        """A fresh nonce for `realm` issued at `now` (salt is for tests only)."""
        if salt is None:
            salt = secrets.token_bytes(_SALT_LEN)
        if len(salt) != _SALT_LEN:
            raise ValueError(f"salt must be {_SALT_LEN} bytes")
        head = _STAMP.pack(int(now * 1000)) + salt
        raw = head + self._mac(head, realm)
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")

    def issued_at(self, nonce: str) -> float | None:
        """When a nonce says it was issued (unauthenticated: call `check` first)."""
        raw = _decode(nonce)
        if raw is None:
            return None
        return float(_STAMP.unpack_from(raw)[0]) / 1000.0

    def check(self, nonce: str, now: float, realm: str) -> NonceState:
        raw = _decode(nonce)
        if raw is None:
            return NonceState.INVALID
        head, mac = raw[:-_MAC_LEN], raw[-_MAC_LEN:]
        if not hmac.compare_digest(mac, self._mac(head, realm)):
            return NonceState.INVALID
        issued_ms = _STAMP.unpack_from(head)[0]
        now_ms = int(now * 1000)
        if issued_ms > now_ms + _FUTURE_SKEW_MS:
            return NonceState.INVALID
        if now_ms - issued_ms > self.lifetime * 1000:
            return NonceState.STALE
        return NonceState.VALID


def _decode(nonce: str) -> bytes | None:
    if len(nonce) > 128 or not nonce.isascii():
        return None
    try:
        raw = base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == _NONCE_LEN else None


# ---------------------------------------------------------------------------
# Nonce-count replay protection.


class CountVerdict(enum.Enum):
    ACCEPTED = "accepted"
    REPLAYED = "replayed"  # nc not above the highest seen: refuse
    FORGOTTEN = "forgotten"  # the nonce's slot went to a newer nonce: re-challenge


class NonceCountTracker:
    """Refuses a nonce-count not above the highest seen for its nonce (RFC 7616 3.4, 5.3).

    Memory is fixed, whatever the rate: every nonce we issue takes the next
    of `slots` slots (its 8-byte salt is a serial number, which the HMAC of
    the nonce protects), and the slot keeps the serial and the highest nc
    seen. When the serials have gone round and a newer nonce owns the slot,
    the older nonce's requests are neither accepted nor called replays: they
    get a fresh challenge (stale=true), which a client answers without asking
    its user. With 2^20 slots (12 MiB) a nonce keeps its slot for 2^20 more
    challenges: over five minutes at 3,000 challenges a second. Nonces issued
    before a restart find their slots empty and are re-challenged the same way.
    """

    __slots__ = ("_owner", "_count", "_next", "_mask")

    def __init__(self, slots: int = 1 << 20) -> None:
        if slots <= 0 or slots & (slots - 1):
            raise ValueError("slots must be a power of two")
        self._mask = slots - 1
        self._owner = array("Q", bytes(8 * slots))
        self._count = array("I", bytes(4 * slots))
        # Serials start at a random point so that a restarted server never
        # mistakes an old nonce for one of its own.
        self._next = secrets.randbits(63) | 1

    def issue(self) -> bytes:
        """The salt of a new nonce: the next serial, whose slot it now owns."""
        serial = self._next
        self._next = (serial + 1) & 0xFFFFFFFFFFFFFFFF or 1
        slot = serial & self._mask
        self._owner[slot] = serial
        self._count[slot] = 0
        return _SERIAL.pack(serial)

    def accept(self, nonce: str, nc: int) -> CountVerdict:
        """Record `nc` for `nonce` (already checked with NonceFactory.check)."""
        raw = _decode(nonce)
        if raw is None or nc < 1 or nc > 0xFFFFFFFF:
            return CountVerdict.REPLAYED
        serial = _SERIAL.unpack_from(raw, _STAMP.size)[0]
        slot = serial & self._mask
        if self._owner[slot] != serial:
            return CountVerdict.FORGOTTEN
        if nc <= self._count[slot]:
            return CountVerdict.REPLAYED
        self._count[slot] = nc
        return CountVerdict.ACCEPTED


# ---------------------------------------------------------------------------
# The client side: answering a challenge (a trunk that challenges our INVITEs).


@dataclass(slots=True, frozen=True)
class Challenge:
    """One WWW-Authenticate / Proxy-Authenticate Digest challenge."""

    realm: str
    nonce: str
    algorithm: Algorithm
    qop: tuple[str, ...]
    opaque: str | None = None
    stale: bool = False


def parse_challenge(value: str) -> Challenge | None:
    """The challenge in `value`, or None if it is not Digest or uses an algorithm we lack."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        return None
    params = _parse_params(rest, 0)
    if "realm" not in params or "nonce" not in params:
        raise MessageError("Digest challenge without realm or nonce")
    algorithm = Algorithm.from_token(params.get("algorithm", "MD5"))
    if algorithm is None:
        return None
    qop = tuple(q.strip().lower() for q in params.get("qop", "").split(",") if q.strip())
    return Challenge(params["realm"], params["nonce"], algorithm, qop, params.get("opaque"),
                     params.get("stale", "").lower() == "true")


def first_challenge(response: Response) -> tuple[Challenge, bool] | None:
    """The challenge of a 401/407 to answer, and whether it is a proxy's (407).

    RFC 8760 2.4: the first challenge whose algorithm we support is the
    server's preference; malformed ones are skipped.
    """
    proxy = response.status == 407
    for value in response.get_all("proxy-authenticate" if proxy else "www-authenticate"):
        try:
            challenge = parse_challenge(value)
        except MessageError:
            continue
        if challenge is not None:
            return challenge, proxy
    return None


def authorization(challenge: Challenge, method: str, uri: str, user: str, password: str,
                  *, cnonce: str, nc: int = 1) -> str:
    """The Authorization value answering `challenge` (RFC 7616 3.4, RFC 8760)."""
    algorithm = challenge.algorithm
    key = ha1(algorithm.base, user, challenge.realm, password)
    if algorithm.is_session:
        key = session_ha1(algorithm, key, challenge.nonce, cnonce)
    parts = [f"Digest username={_quote(user)}", f"realm={_quote(challenge.realm)}",
             f"nonce={_quote(challenge.nonce)}", f"uri={_quote(uri)}",
             f"algorithm={algorithm.value}"]
    if "auth" in challenge.qop:
        nc_text = f"{nc:08x}"
        digest = response(algorithm, key, challenge.nonce, method, uri, qop="auth",
                          nc=nc_text, cnonce=cnonce)
        parts += [f"response={_quote(digest)}", "qop=auth", f"nc={nc_text}",
                  f"cnonce={_quote(cnonce)}"]
    else:
        # RFC 2069 form, for servers that offer no qop.
        digest = response(algorithm, key, challenge.nonce, method, uri, qop=None)
        parts.append(f"response={_quote(digest)}")
    if challenge.opaque is not None:
        parts.append(f"opaque={_quote(challenge.opaque)}")
    return ", ".join(parts)
