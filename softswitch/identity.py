"""Who is calling: an account of the directory, or a trunk.

A new INVITE comes from a trunk admitted by its source address (the trunk's
ACL, `trunk_acl.py`), or from an account that proves itself with digest in
its domain's realm like a REGISTER does (RFC 3261 22), or from a trunk that
authenticates with the username and password of its configuration. The
registrar and the calls share the rule that maps a host to a directory
domain (`domain_for`). Nothing here sends: `CallerIdentity.identify`
returns the caller or the response that refuses the request.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from urllib.parse import unquote

from softswitch.auth import Authenticator, Outcome
from softswitch.config import TrunkSettings
from softswitch.directory import Directory, Domain
from softswitch.logs import get_logger
from softswitch.sip.locate import is_numeric
from softswitch.sip.message import Request, Response, make_response, new_tag
from softswitch.sip.peer import Peer
from softswitch.sip.uri import SipURI
from softswitch.trunk_acl import acl_admits, trunk_by_address, trunk_by_credentials


@dataclass(slots=True, frozen=True)
class Caller:
    """Who a new call comes from, as the dialplan and the CDR see it."""

    user: str  # account user, or the From user of a trunk call ("" if none)
    display_name: str  # "" if none
    context: str
    groups: frozenset[str]
    domain: str | None  # the account's domain; None for trunks
    trunk: str | None  # the trunk name when the call comes from a trunk
    account: str | None  # the account user when it is an account (None for trunks)


def domain_for(directory: Directory, host: str,
               local_names: Callable[[], Collection[str]]) -> Domain | None:
    """The directory domain a request naming `host` belongs to.

    A phone configured with the server's address (or one of `local_names`)
    instead of the domain name belongs to the default domain.
    """
    domain = directory.domain(host)
    if domain is None and (is_numeric(host) or host.lower() in local_names()):
        domain = directory.default_domain
    return domain


def _default_local_names() -> set[str]:
    return {"localhost"}


class CallerIdentity:
    """Identifies the sender of a new INVITE against the directory and the trunks.

    The directory is read through `directory_source` at each call, since a
    reload (SIGHUP) replaces it; `auth` is the registrar's authenticator, so
    nonces and nonce counts are shared with REGISTER.
    """

    def __init__(self, directory_source: Callable[[], Directory], auth: Authenticator,
                 trunks: Sequence[TrunkSettings], *,
                 local_names: Callable[[], Collection[str]] = _default_local_names) -> None:
        self._directory = directory_source
        self._auth = auth
        self._trunks: tuple[TrunkSettings, ...] = tuple(trunks)
        self._local_names = local_names
        self.log = get_logger("softswitch.identity")

    def set_trunks(self, trunks: Sequence[TrunkSettings]) -> None:
        """Use these trunks from now on (a reloaded configuration)."""
        self._trunks = tuple(trunks)

    def default_domain(self) -> str | None:
        """The name of the directory's default domain, None when it has none."""
        domain = self._directory().default_domain
        return domain.name if domain is not None else None

    def identify(self, request: Request, source: Peer, now: float) -> Caller | Response:
        """Who sent `request` (a new INVITE from `source`), or the response refusing it.

        Refusals, in this order: 404 when the Request-URI names no user (no
        number dialled); for a sender no trunk's ACL admits, 403 when From
        is not a SIP URI with a user or names no domain we serve, else
        the authenticator's 401 (challenge), 403 or 400 (logged).
        """
        trunk = trunk_by_address(self._trunks, source)
        if not isinstance(request.uri, SipURI) or request.uri.user is None:
            return make_response(request, 404, "No number dialled", to_tag=new_tag())
        from_uri = request.from_addr.uri
        display_name = request.from_addr.display_name or ""
        if trunk is not None:
            user = from_uri.user if isinstance(from_uri, SipURI) and from_uri.user else ""
            return _trunk_caller(trunk, user, display_name)
        if not isinstance(from_uri, SipURI) or from_uri.user is None:
            return make_response(request, 403, to_tag=new_tag())
        directory = self._directory()
        domain = domain_for(directory, from_uri.host, self._local_names) \
            or directory.default_domain
        if domain is None:
            return make_response(request, 403, to_tag=new_tag())
        account = domain.accounts.get(unquote(from_uri.user))
        by_credentials = None if account is not None \
            else trunk_by_credentials(self._trunks, request, domain)
        checked = account if by_credentials is None else by_credentials[1]
        result = self._auth.check(request, checked, domain, now)
        if result.outcome is not Outcome.OK:
            assert result.response is not None
            # A challenge is routine (debug); a wrong password or an unknown
            # user is what fail2ban-style tools read (warning, with the source).
            failed = result.outcome is not Outcome.CHALLENGE
            (self.log.warning if failed else self.log.debug)(
                "auth_failed" if failed else "invite_auth", method="INVITE",
                outcome=result.outcome.value, reason=result.reason, user=from_uri.user,
                call_id=request.call_id, source=source.host, peer=str(source))
            return result.response
        if by_credentials is not None:
            # A trunk that authenticates instead of being known by address.
            return _trunk_caller(by_credentials[0], from_uri.user, display_name)
        assert account is not None
        return Caller(user=account.user, display_name=account.display_name or display_name,
                      context=account.context, groups=frozenset(account.groups),
                      domain=domain.name, trunk=None, account=account.user)

    def dialled(self, request: Request, source: Peer, caller: Caller) -> str:
        """The number `caller` dialled, once `identify` accepted `request`.

        The Request-URI's user, unescaped; except when a provider we
        register to (a trunk known by address) calls our registered Contact
        (sip:trunkuser@us): then the number is in To.
        """
        uri = request.uri
        dest = unquote(uri.user) if isinstance(uri, SipURI) and uri.user is not None else ""
        if caller.trunk is None:
            return dest
        trunk = next((t for t in self._trunks if t.name == caller.trunk), None)
        to_uri = request.to_addr.uri
        if trunk is not None and dest == trunk.username and isinstance(to_uri, SipURI) \
                and to_uri.user and _admitted_by_address(trunk, source):
            return unquote(to_uri.user)
        return dest


def _trunk_caller(trunk: TrunkSettings, user: str, display_name: str) -> Caller:
    return Caller(user=user, display_name=display_name, context=trunk.context,
                  groups=frozenset(), domain=None, trunk=trunk.name, account=None)


def _admitted_by_address(trunk: TrunkSettings, source: Peer) -> bool:
    # The trunk `identify` found by ACL admits `source`; one found by its
    # credentials does not (no trunk's ACL did), so the To rule is kept to
    # the former, as it always was.
    return any(acl_admits(entry, source) for entry in trunk.acl or [trunk.host])
