"""Digest authentication of requests from users (RFC 3261 22, RFC 7616, RFC 8760).

`Authenticator.check(request, account, domain, now)` says whether a request
carries valid credentials for `account`, and if not, which response to send:
a 401 with one challenge per algorithm the account may use (most preferred
first), `stale=true` when only the nonce had expired, 403 when the
credentials were wrong, or 400 when they were computed for another
Request-URI (RFC 7616 3.4.6). Nonces are stateless (a timestamp and an HMAC with
the server secret), so a restart does not invalidate them; nonce counts are
tracked to refuse replays. Nothing here logs a password or an HA1.
"""

from __future__ import annotations

import enum
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from softswitch.directory import Account, Domain
from softswitch.sip.digest import (
    CountVerdict,
    Credentials,
    NonceCountTracker,
    NonceFactory,
    NonceState,
    challenges,
    parse_credentials,
    verify,
)
from softswitch.sip.errors import MessageError
from softswitch.sip.message import Request, Response, make_response, new_tag
from softswitch.sip.uri import parse_uri


class Outcome(enum.Enum):
    OK = "ok"
    CHALLENGE = "challenge"  # 401, no or stale credentials
    FORBIDDEN = "forbidden"  # 403, wrong credentials or user
    BAD_REQUEST = "bad_request"  # 400, credentials for another Request-URI


@dataclass(slots=True)
class AuthResult:
    outcome: Outcome
    response: Response | None = None  # what to send unless OK
    username: str | None = None
    reason: str = ""


def load_secret(data_dir: Path) -> bytes:
    """The server's nonce secret, created on first start (mode 0600)."""
    path = data_dir / "nonce.secret"
    try:
        secret = path.read_bytes()
        if len(secret) >= 32:
            return secret
    except FileNotFoundError:
        pass
    secret = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(secret)
        fh.flush()
        os.fsync(fh.fileno())
    return secret


def _same_resource(digest_uri: str, request: Request) -> bool:
    """Whether the credentials' `uri` names the Request-URI (RFC 7616 3.4.6).

    Compared as URIs (RFC 3261 19.1.4 for SIP, RFC 3966 for TEL), since a
    client may write the same URI differently; as text when it does not parse.
    """
    if digest_uri == str(request.uri):
        return True
    try:
        return parse_uri(digest_uri) == request.uri
    except MessageError:
        return False


class Authenticator:
    def __init__(self, secret: bytes, nonce_lifetime: float = 300.0) -> None:
        self.nonces = NonceFactory(secret, nonce_lifetime)
        self.counts = NonceCountTracker()
        self.failures = 0  # 403s for wrong credentials or user, since start (metrics)

    def make_nonce(self, realm: str, now: float) -> str:
        """A nonce for `realm` that owns a nonce-count slot."""
        return self.nonces.make(realm, now, salt=self.counts.issue())

    def check(self, request: Request, account: Account | None, domain: Domain,
              now: float, header: str = "authorization") -> AuthResult:
        realm = domain.name
        credentials = self._credentials(request, header, realm)
        if credentials is None:
            return self._challenge(request, account, domain, now, stale=False, reason="no credentials")
        state = self.nonces.check(credentials.nonce, now, realm)
        if state is NonceState.INVALID:
            return self._challenge(request, account, domain, now, stale=False, reason="unknown nonce")
        if not _same_resource(credentials.uri, request):
            # RFC 7616 3.4.6: the digest covers `uri`, not the Request-URI; a
            # middleman could otherwise keep valid credentials and send the
            # request elsewhere (an INVITE to another number).
            response = make_response(request, 400, "Digest uri does not match Request-URI",
                                     to_tag=new_tag())
            return AuthResult(Outcome.BAD_REQUEST, response, username=credentials.username,
                              reason="digest uri mismatch")
        if account is None or credentials.username != account.user:
            return self._forbidden(request, credentials, "unknown user or user mismatch")
        algorithm = credentials.digest_algorithm
        if algorithm is None or algorithm.base not in {a.base for a in account.algorithms}:
            return self._challenge(request, account, domain, now, stale=False,
                                   reason="algorithm not offered")
        expected = account.ha1(algorithm)
        if expected is None or not verify(credentials, request.method, expected):
            return self._forbidden(request, credentials, "wrong credentials")
        if state is NonceState.STALE:
            # The password was right but the nonce is old (RFC 7616 3.3).
            return self._challenge(request, account, domain, now, stale=True, reason="stale nonce")
        nc = credentials.nonce_count
        verdict = self.counts.accept(credentials.nonce, nc) if nc is not None \
            else CountVerdict.REPLAYED
        if verdict is CountVerdict.FORGOTTEN:
            # Right password, but the nonce's count was not kept: a new one.
            return self._challenge(request, account, domain, now, stale=True,
                                   reason="nonce count forgotten")
        if verdict is CountVerdict.REPLAYED:
            return self._challenge(request, account, domain, now, stale=False,
                                   reason="replayed nonce count")
        return AuthResult(Outcome.OK, username=credentials.username)

    def _credentials(self, request: Request, header: str, realm: str) -> Credentials | None:
        """The Digest credentials meant for `realm`, if the request has any."""
        for value in request.get_all(header):
            if not value[:6].lower().startswith("digest"):
                continue
            credentials = parse_credentials(value)  # MessageError -> 400 by the core
            if credentials.realm == realm:
                return credentials
        return None

    def _challenge(self, request: Request, account: Account | None, domain: Domain,
                   now: float, *, stale: bool, reason: str) -> AuthResult:
        # An unknown user is challenged like a known one, so that a 401
        # does not tell who exists.
        algorithms = account.algorithms if account is not None else domain.algorithms
        nonce = self.make_nonce(domain.name, now)
        response = make_response(request, 401, to_tag=new_tag())
        for value in challenges(domain.name, nonce, algorithms, stale=stale):
            response.add("WWW-Authenticate", value)
        return AuthResult(Outcome.CHALLENGE, response, reason=reason)

    def _forbidden(self, request: Request, credentials: Credentials, reason: str) -> AuthResult:
        self.failures += 1
        response = make_response(request, 403, to_tag=new_tag())
        return AuthResult(Outcome.FORBIDDEN, response, username=credentials.username, reason=reason)


