"""Which trunk a request comes from: by its source address, or by its credentials.

A trunk's ACL lists addresses or networks, each optionally with a port; a
trunk that is not known by address may instead authenticate with digest in
our realm, with the username and password of its configuration.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from softswitch.config import TrunkSettings
from softswitch.directory import Account, Domain
from softswitch.sip.digest import parse_credentials
from softswitch.sip.message import Request
from softswitch.sip.peer import Peer


def trunk_by_address(trunks: Sequence[TrunkSettings], source: Peer) -> TrunkSettings | None:
    """The trunk whose ACL admits `source`, if any (default ACL: its host)."""
    for trunk in trunks:
        for entry in trunk.acl or [trunk.host]:
            if acl_admits(entry, source):
                return trunk
    return None


def trunk_by_credentials(trunks: Sequence[TrunkSettings], request: Request,
                         domain: Domain) -> tuple[TrunkSettings, Account] | None:
    """The trunk whose username the request's credentials claim, as an account.

    The digest is then checked against the trunk's password, in our realm.
    """
    for value in request.get_all("authorization"):
        if not value[:6].lower().startswith("digest"):
            continue
        username = parse_credentials(value).username
        for trunk in trunks:
            if trunk.username == username and trunk.password:
                return trunk, Account(user=username, domain=domain.name,
                                      algorithms=domain.algorithms, password=trunk.password)
    return None


def acl_admits(entry: str, source: Peer) -> bool:
    """Whether an ACL entry admits `source`.

    An entry is an address or network (`192.0.2.0/24`, `2001:db8::/32`),
    optionally with a port (`192.0.2.7:5060`, `[2001:db8::7]:5060`) for
    peers that share an address, as several services on one host do.
    """
    port: int | None = None
    text = entry.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest.startswith(":") and rest[1:].isdigit():
            port = int(rest[1:])
        text = host
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        if port_text.isdigit():
            text, port = host, int(port_text)
    if port is not None and port != source.port:
        return False
    try:
        return ipaddress.ip_address(source.host) in ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
