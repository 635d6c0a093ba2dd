"""From a dialplan target to the B-leg INVITEs that ring it.

`user/1002` rings every live binding of the user (the registered contacts,
reached at the address their REGISTER came from, so phones behind NAT
answer), `trunk/NAME/NUMBER` sends NUMBER to the trunk's host, and a SIP
URI is called directly. `build_invite` writes the B-leg INVITE: a new
Call-ID and From tag (the B-leg is a dialog of its own), Max-Forwards one
less than the caller's (loop protection), Route from the binding's Path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from twisted.internet.defer import Deferred

from dialplan import Target, TrunkTarget, UriTarget, UserTarget
from softswitch.b2bua.targets import Destination
from softswitch.config import TrunkSettings
from softswitch.registrar import Registrar
from softswitch.sip.errors import MessageError
from softswitch.sip.headers import NameAddr, Via, quote
from softswitch.sip.locate import TargetSpec, is_numeric
from softswitch.sip.message import Request, new_branch, new_tag
from softswitch.sip.peer import DEFAULT_PORTS, Peer
from softswitch.sip.uri import SipURI, parse_sip_uri
from softswitch.transport.dns import DnsLocator

# Our address and port as a given peer should see them, for Via and Contact.
LocalAddress = Callable[[Peer], tuple[str, int]]

# What the B2BUA takes inside a dialog, for the Allow of its INVITEs and 2xx.
ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REFER, NOTIFY, PRACK"

# Headers a dialplan may not set on a B-leg: they belong to the SIP layer.
PROTECTED_HEADERS = frozenset({
    "via", "from", "to", "call-id", "cseq", "contact", "route", "record-route",
    "max-forwards", "content-length", "content-type", "authorization",
    "proxy-authorization",
})


@dataclass(slots=True)
class Resolution:
    destinations: list[Destination] = field(default_factory=list)
    failure: int | None = None  # a SIP status when nothing can be rung
    reason: str = ""
    # A host name being looked up (RFC 3263): the Resolution comes later.
    pending: Deferred[Resolution] | None = None


def _peer_from_received(received: str, transport: str) -> Peer | None:
    host, _, port = received.rpartition(":")
    if not host or not port.isdigit():
        return None
    return Peer(transport, host.strip("[]"), int(port))


class TargetResolver:
    def __init__(self, registrar: Registrar, trunks: Sequence[TrunkSettings], clock: object,
                 dns: DnsLocator | None = None) -> None:
        self.registrar = registrar
        self.trunks = {t.name: t for t in trunks}
        self.clock = clock
        self.dns = dns

    def resolve(self, target: Target, domain: str) -> Resolution:
        match target:
            case UserTarget(user=user):
                return self._user(user, domain)
            case TrunkTarget(trunk=name, number=number):
                return self._trunk(name, number)
            case UriTarget(uri=text):
                return self._uri(text)
        return Resolution(failure=404, reason="Not Found")

    def _user(self, user: str, domain: str) -> Resolution:
        account = self.registrar.directory.find(user, domain)
        if account is None:
            return Resolution(failure=404, reason="Not Found")
        now = self.clock.seconds()  # type: ignore[attr-defined]
        out = Resolution()
        for binding in self.registrar.bindings(account.aor, now):
            try:
                contact = parse_sip_uri(binding.contact)
            except MessageError:
                continue
            peer = _peer_from_received(binding.received, binding.transport)
            if peer is None:
                continue
            out.destinations.append(Destination(contact, peer, f"sip:{account.aor}",
                                                f"user/{user}", tuple(binding.path)))
        if not out.destinations:
            out.failure, out.reason = 480, "Temporarily Unavailable"
        return out

    def _trunk(self, name: str, number: str) -> Resolution:
        trunk = self.trunks.get(name)
        if trunk is None:
            return Resolution(failure=503, reason=f"No trunk {name}")
        if not is_numeric(trunk.host):
            # RFC 3263: a port or transport the operator wrote is kept; what
            # is left to defaults is for NAPTR/SRV to choose.
            explicit = trunk.model_fields_set
            spec = TargetSpec(trunk.host, trunk.port if "port" in explicit else None,
                              trunk.transport if "transport" in explicit else None)
            uri = SipURI("sip", trunk.host, number, None, spec.port, {})
            return self._later(spec, uri, f"sip:{number}@{trunk.host}",
                               f"trunk/{name}/{number}", name)
        params: dict[str, str | None] = {}
        if trunk.transport != "udp":
            params["transport"] = trunk.transport
        uri = SipURI("sip", trunk.host, number, None, trunk.port, params)
        peer = Peer(trunk.transport, trunk.host.strip("[]"), trunk.port)
        return Resolution([Destination(uri, peer, f"sip:{number}@{trunk.host}",
                                       f"trunk/{name}/{number}", trunk=name)])

    def _uri(self, text: str) -> Resolution:
        try:
            uri = parse_sip_uri(text)
        except MessageError:
            return Resolution(failure=404, reason="Bad URI")
        if not is_numeric(uri.host):
            return self._later(TargetSpec.from_uri(uri), uri, str(uri), text, None)
        transport = uri.transport or ("tls" if uri.scheme == "sips" else "udp")
        port = uri.port or DEFAULT_PORTS.get(transport, 5060)
        return Resolution([Destination(uri, Peer(transport, uri.host_no_brackets, port),
                                       str(uri), text)])


    def _later(self, spec: TargetSpec, uri: SipURI, to_uri: str, label: str,
               trunk: str | None) -> Resolution:
        if self.dns is None:
            return Resolution(failure=503, reason="No DNS resolver")

        def found(peers: list[Peer]) -> Resolution:
            if not peers:
                return Resolution(failure=503, reason=f"No server found for {spec.host}")
            # The first target of RFC 3263's list; the others are tried in
            # turn if it answers 503 or not at all.
            if trunk is not None:
                # A trunk's TLS certificate is checked against the name configured.
                peers = [replace(p, name=spec.host) for p in peers]
            peer = peers[0]
            request_uri = uri.copy()
            if peer.transport != "udp":
                request_uri.params.setdefault("transport", peer.transport)
            return Resolution([Destination(request_uri, peer, to_uri, label, trunk=trunk,
                                           alternates=tuple(peers[1:]))])

        return Resolution(pending=self.dns.locate(spec).addCallback(found))


def build_invite(dest: Destination, *, max_forwards: int, caller: str,
                 caller_name: str | None, from_host: str, via_host: str, via_port: int,
                 body: bytes, content_type: str | None,
                 extra_headers: Sequence[tuple[str, str]] = (), call_id: str | None = None,
                 from_tag: str | None = None, branch: str | None = None) -> Request:
    """The INVITE of one B-leg towards `dest`.

    `max_forwards` is one less than the caller's (loop protection); the
    Call-ID, From tag and branch may be chosen beforehand (they name the leg).
    """
    transport = dest.peer.transport
    via = Via(transport.upper(), _host(via_host), via_port,
              {"branch": branch or new_branch(), "rport": None})
    display = f"{quote(caller_name)} " if caller_name else ""
    contact_params = f";transport={transport}" if transport != "udp" else ""
    headers: list[list[str]] = [
        ["Via", str(via)],
        ["Max-Forwards", str(max_forwards)],
    ]
    if dest.route:
        headers.append(["Route", ", ".join(dest.route)])
    headers += [
        ["From", f"{display}<sip:{caller}@{from_host}>;tag={from_tag or new_tag()}"],
        ["To", f"<{dest.to_uri}>"],
        ["Call-ID", call_id or f"{new_tag()}{new_tag()}@{_host(via_host)}"],
        ["CSeq", "1 INVITE"],
        ["Contact", f"<sip:b2bua@{_host(via_host)}:{via_port}{contact_params}>"],
        ["Allow", ALLOW],
    ]
    for name, value in extra_headers:
        if name.lower() not in PROTECTED_HEADERS:
            headers.append([name, value])
    request = Request("INVITE", dest.request_uri, headers)
    request.set_body(body, content_type if body else None)
    return request


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def contact_of(via_host: str, via_port: int, transport: str) -> NameAddr:
    params = f";transport={transport}" if transport != "udp" else ""
    return NameAddr.parse(f"<sip:b2bua@{_host(via_host)}:{via_port}{params}>")
