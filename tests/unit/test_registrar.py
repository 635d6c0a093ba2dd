"""The registrar end to end: RFC 3261 10.3 with digest auth and a durable store.

Real parts throughout: REGISTERs are bytes parsed by the real parser and fed
to a real `TransactionLayer` on Twisted's `task.Clock`; the real
`Authenticator` checks digest responses that the test computes as a phone
would (`softswitch.sip.digest`); the directory is a YAML file; bindings go to
a `SQLiteLocationStore` on a file in tmp_path with its writer thread. The
store hands its commits back through `callFromThread`, which `ThreadReactor`
queues; `pump` runs the queue on the test thread until the response appears.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import task

from softswitch.auth import Authenticator
from softswitch.directory import load_directory
from softswitch.location import Binding
from softswitch.location.sqlite import SQLiteLocationStore, read_bindings
from softswitch.registrar import Registrar, RegistrarPolicy
from softswitch.sip import digest
from softswitch.sip.errors import MessageError
from softswitch.sip.headers import NameAddr, unquote_param
from softswitch.sip.message import Message, Request, Response, make_response, new_tag, parse_message
from softswitch.sip.peer import Peer
from softswitch.sip.transaction import ServerTransaction, TransactionLayer
from tests.support.thread_reactor import ThreadReactor

NOW = 1_700_000_000.0
DOMAIN = "pbx.example.com"
SERVER_IP = "192.0.2.1"
NONCE_LIFETIME = 300.0

DIRECTORY = """\
domains:
  - name: pbx.example.com
    users:
      - user: "1001"
        password: "alice-pw"
      - user: "1002"
        ha1_md5: "{md5}"
        ha1_sha256: "{sha256}"
      - user: "1004"
        password: "old-phone-pw"
        algorithms: [MD5]
  - name: other.example.org
    users:
      - user: "2001"
        password: "other-pw"
"""

PHONE = Peer("udp", "192.0.2.10", 5062)


class RegistrarUser:
    """The transaction user: REGISTER to the registrar, as the core does it."""

    def __init__(self, registrar: Registrar) -> None:
        self.registrar = registrar

    def on_request(self, tx: ServerTransaction, request: Request) -> None:
        try:
            self.registrar.handle(tx, request)
        except MessageError as exc:
            tx.respond(make_response(request, exc.status, exc.reason, to_tag=new_tag()))

    def on_ack(self, request: Request, source: Peer) -> None:
        pass

    def on_stray_response(self, response: Response, source: Peer) -> None:
        pass


@dataclass
class Server:
    clock: task.Clock
    reactor: ThreadReactor
    store: SQLiteLocationStore
    registrar: Registrar
    layer: TransactionLayer
    sent: list[tuple[Message, Peer]] = field(default_factory=list)

    def deliver(self, data: bytes, source: Peer = PHONE) -> None:
        request = parse_message(data)
        assert isinstance(request, Request)
        self.layer.receive_request(request, source)

    def response(self, before: int) -> Response:
        """The response sent after the first `before` messages, once the store has answered."""
        self.reactor.wait_for(lambda: len(self.sent) > before)
        assert len(self.sent) == before + 1, self.sent
        message, _ = self.sent[before]
        # What the phone would read off the wire.
        parsed = parse_message(message.to_bytes())
        assert isinstance(parsed, Response)
        return parsed

    def exchange(self, data: bytes, source: Peer = PHONE) -> Response:
        before = len(self.sent)
        self.deliver(data, source)
        return self.response(before)

    def bindings(self, aor: str = f"1001@{DOMAIN}") -> list[Binding]:
        return self.store.lookup(aor)

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    directory_file = tmp_path / "directory.yaml"
    directory_file.write_text(DIRECTORY.format(
        md5=digest.ha1(digest.Algorithm.MD5, "1002", DOMAIN, "bob-pw"),
        sha256=digest.ha1(digest.Algorithm.SHA256, "1002", DOMAIN, "bob-pw")))
    clock = task.Clock()
    clock.advance(NOW)
    reactor = ThreadReactor()
    store = SQLiteLocationStore(str(tmp_path / "location.sqlite"), reactor)
    store.load(clock.seconds())
    registrar = Registrar(load_directory(directory_file), store,
                          Authenticator(secrets.token_bytes(32), NONCE_LIFETIME), clock,
                          RegistrarPolicy(min_expires=60, default_expires=3600, max_expires=7200),
                          local_names=lambda: {"localhost", "sip.internal"})
    sent: list[tuple[Message, Peer]] = []
    layer = TransactionLayer(clock, lambda m, p: sent.append((m, p)),
                             user=RegistrarUser(registrar))
    yield Server(clock, reactor, store, registrar, layer, sent)
    store.close()


# -- a phone ---------------------------------------------------------------------

_PARAM_RE = re.compile(r'([A-Za-z-]+)=("(?:[^"\\]|\\.)*"|[^,\s]+)')


def parse_challenge(value: str) -> dict[str, str]:
    assert value.startswith("Digest ")
    return {k.lower(): v.strip('"') for k, v in _PARAM_RE.findall(value[7:])}


def challenge_params(response: Response) -> list[dict[str, str]]:
    return [parse_challenge(v) for v in response.get_all("www-authenticate")]


@dataclass
class Phone:
    """A UA registering one AOR, computing digest responses like a client."""

    server: Server
    user: str = "1001"
    password: str = "alice-pw"
    domain: str = DOMAIN
    source: Peer = PHONE
    call_id: str = field(default_factory=lambda: secrets.token_hex(8) + "@phone")
    cseq: int = 0
    algorithm: digest.Algorithm | None = None  # None: the topmost challenge
    realm: str | None = None
    nonce: str | None = None
    nc: int = 0
    last_authorization: str | None = None

    @property
    def registrar_uri(self) -> str:
        return f"sip:{self.domain}"

    def build(self, contacts: list[str] | None = None, *, headers: list[str] | None = None,
              authorization: str | None = None, to: str | None = None,
              request_uri: str | None = None, cseq: int | None = None) -> bytes:
        if cseq is None:
            self.cseq += 1
            cseq = self.cseq
        host, port = self.source.host, self.source.port
        sent_by = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        transport = self.source.transport.upper()
        lines = [
            f"REGISTER {request_uri or self.registrar_uri} SIP/2.0",
            f"Via: SIP/2.0/{transport} {sent_by};branch=z9hG4bK{secrets.token_hex(8)};rport",
            "Max-Forwards: 70",
            f"From: <sip:{self.user}@{self.domain}>;tag={secrets.token_hex(4)}",
            f"To: {to or f'<sip:{self.user}@{self.domain}>'}",
            f"Call-ID: {self.call_id}",
            f"CSeq: {cseq} REGISTER",
        ]
        lines += [f"Contact: {c}" for c in contacts or []]
        lines += headers or []
        if authorization is not None:
            lines.append(f"Authorization: {authorization}")
        lines.append("Content-Length: 0")
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    def take_challenge(self, response: Response) -> None:
        assert response.status == 401, response
        offers = challenge_params(response)
        if self.algorithm is None:
            chosen = offers[0]
        else:
            chosen = next(o for o in offers if o["algorithm"] == self.algorithm.value)
        self.realm, self.nonce, self.nc = chosen["realm"], chosen["nonce"], 0
        self.algorithm = digest.Algorithm.from_token(chosen["algorithm"])

    def authorization(self, uri: str | None = None) -> str:
        assert self.nonce is not None and self.realm is not None and self.algorithm is not None
        self.nc += 1
        nc = f"{self.nc:08x}"
        cnonce = secrets.token_hex(4)
        uri = uri or self.registrar_uri
        key = digest.ha1(self.algorithm, self.user, self.realm, self.password)
        answer = digest.response(self.algorithm, key, self.nonce, "REGISTER", uri,
                                 qop="auth", nc=nc, cnonce=cnonce)
        value = (f'Digest username="{self.user}", realm="{self.realm}", nonce="{self.nonce}", '
                 f'uri="{uri}", response="{answer}", algorithm={self.algorithm.value}, '
                 f'qop=auth, nc={nc}, cnonce="{cnonce}"')
        self.last_authorization = value
        return value

    def register(self, contacts: list[str] | None = None, *,
                 headers: list[str] | None = None, cseq: int | None = None,
                 retry_stale: bool = True, **build: Any) -> Response:
        """Send an authenticated REGISTER, answering a challenge first if needed.

        Like a phone, it reuses the last nonce with the next nonce count, and
        answers a `stale=true` 401 with the new nonce without asking anyone.
        """
        if self.nonce is None:
            self.take_challenge(self.server.exchange(
                self.build(contacts, headers=headers, **build), self.source))
        authorization = self.authorization(build.get("request_uri"))
        response = self.server.exchange(
            self.build(contacts, headers=headers, authorization=authorization, cseq=cseq,
                       **build), self.source)
        stale = response.status == 401 and any(
            o.get("stale") == "true" for o in challenge_params(response))
        if stale and retry_stale:
            self.take_challenge(response)
            return self.register(contacts, headers=headers, cseq=cseq, retry_stale=False,
                                 **build)
        return response


def contacts_of(response: Response) -> dict[str, dict[str, str | None]]:
    """The Contact URIs of a 200 with their parameters."""
    out = {}
    for value in response.values("contact"):
        addr = NameAddr.parse(value)
        out[str(addr.uri)] = addr.params
    return out


def expires_of(response: Response) -> dict[str, int]:
    return {uri: int(params["expires"] or -1) for uri, params in contacts_of(response).items()}


# -- authentication ----------------------------------------------------------------


def test_no_credentials_gets_sha256_then_md5_challenges(server: Server) -> None:
    phone = Phone(server)
    response = server.exchange(phone.build(["<sip:1001@192.0.2.10:5062>"]))
    assert response.status == 401
    offers = challenge_params(response)
    assert [o["algorithm"] for o in offers] == ["SHA-256", "MD5"]
    for offer in offers:
        assert offer["realm"] == DOMAIN
        assert offer["qop"] == "auth"
        assert "stale" not in offer
    assert response.to_tag is not None
    assert server.bindings() == []


def test_md5_only_account_is_challenged_with_md5_alone(server: Server) -> None:
    phone = Phone(server, user="1004", password="old-phone-pw")
    response = server.exchange(phone.build(["<sip:1004@192.0.2.10:5062>"]))
    assert response.status == 401
    assert [o["algorithm"] for o in challenge_params(response)] == ["MD5"]
    phone.take_challenge(response)
    ok = phone.register(["<sip:1004@192.0.2.10:5062>"])
    assert ok.status == 200


@pytest.mark.parametrize("algorithm", [digest.Algorithm.SHA256, digest.Algorithm.MD5])
def test_right_password_registers_and_lists_the_binding(
        server: Server, algorithm: digest.Algorithm) -> None:
    phone = Phone(server, algorithm=algorithm)
    response = phone.register(["<sip:1001@192.0.2.10:5062>"])
    assert response.status == 200
    assert expires_of(response) == {"sip:1001@192.0.2.10:5062": 3600}
    assert response.get("date") is not None
    [binding] = server.bindings()
    assert binding.contact == "sip:1001@192.0.2.10:5062"
    assert binding.expires_at == NOW + 3600
    assert binding.call_id == phone.call_id and binding.cseq == phone.cseq
    # Durable: in the file, not only in memory.
    assert [b.contact for b in read_bindings(server.store.path)] == [binding.contact]


def test_ha1_only_account_registers(server: Server) -> None:
    phone = Phone(server, user="1002", password="bob-pw")
    assert phone.register(["<sip:1002@192.0.2.11>"]).status == 200
    assert len(server.bindings(f"1002@{DOMAIN}")) == 1


def test_wrong_password_is_forbidden(server: Server) -> None:
    phone = Phone(server, password="guess")
    response = phone.register(["<sip:1001@192.0.2.10:5062>"])
    assert response.status == 403
    assert response.get("www-authenticate") is None
    assert server.bindings() == []


def test_unknown_user_challenged_then_forbidden(server: Server) -> None:
    phone = Phone(server, user="9999", password="whatever")
    first = server.exchange(phone.build(["<sip:9999@192.0.2.10>"]))
    # Challenged like a real account, so that a 401 does not tell who exists.
    assert first.status == 401
    assert [o["algorithm"] for o in challenge_params(first)] == ["SHA-256", "MD5"]
    phone.take_challenge(first)
    assert phone.register(["<sip:9999@192.0.2.10>"]).status == 403


def test_stale_nonce_is_challenged_with_stale_true(server: Server) -> None:
    phone = Phone(server)
    assert phone.register(["<sip:1001@192.0.2.10:5062>"]).status == 200
    server.advance(NONCE_LIFETIME + 1)
    response = phone.register(["<sip:1001@192.0.2.10:5062>"], retry_stale=False)
    assert response.status == 401
    offers = challenge_params(response)
    assert offers and all(o.get("stale") == "true" for o in offers)
    # The phone retries with the fresh nonce, without asking its user.
    phone.take_challenge(response)
    assert phone.register(["<sip:1001@192.0.2.10:5062>"]).status == 200
    [binding] = server.bindings()
    assert binding.expires_at == server.clock.seconds() + 3600


def test_replayed_nonce_count_is_refused(server: Server) -> None:
    phone = Phone(server)
    assert phone.register(["<sip:1001@192.0.2.10:5062>"]).status == 200
    # Someone who saw that REGISTER sends its credentials again, elsewhere.
    replay = phone.build(["<sip:1001@203.0.113.66:5060>"], authorization=phone.last_authorization)
    response = server.exchange(replay, Peer("udp", "203.0.113.66", 5060))
    assert response.status != 200
    assert response.status == 401
    assert [b.contact for b in server.bindings()] == ["sip:1001@192.0.2.10:5062"]


def test_credentials_for_another_request_uri_are_refused(server: Server) -> None:
    phone = Phone(server)
    phone.take_challenge(server.exchange(phone.build(["<sip:1001@192.0.2.10>"])))
    data = phone.build(["<sip:1001@192.0.2.10>"],
                       authorization=phone.authorization("sip:elsewhere.example.net"))
    assert server.exchange(data).status == 400
    assert server.bindings() == []


def test_malformed_credentials_are_a_bad_request(server: Server) -> None:
    phone = Phone(server)
    data = phone.build(["<sip:1001@192.0.2.10>"], authorization='Digest username="1001", nc=1')
    assert server.exchange(data).status == 400


# -- adding, refreshing, removing ----------------------------------------------------


def test_200_is_sent_only_once_the_store_is_durable(server: Server) -> None:
    phone = Phone(server)
    phone.take_challenge(server.exchange(phone.build(["<sip:1001@192.0.2.10:5062>"])))
    before = len(server.sent)
    server.deliver(phone.build(["<sip:1001@192.0.2.10:5062>"],
                               authorization=phone.authorization()))
    # The writer thread may have committed already; its news has not reached
    # the reactor thread, so nothing was answered and nothing is visible yet.
    assert len(server.sent) == before
    assert server.bindings() == []
    response = server.response(before)
    assert response.status == 200
    assert len(server.bindings()) == 1


def test_refresh_with_same_call_id_and_higher_cseq(server: Server) -> None:
    phone = Phone(server)
    assert phone.register(["<sip:1001@192.0.2.10:5062>"]).status == 200
    [first] = server.bindings()
    server.advance(1000)
    response = phone.register(["<sip:1001@192.0.2.10:5062>;expires=1800"])
    assert response.status == 200
    assert expires_of(response) == {"sip:1001@192.0.2.10:5062": 1800}
    [refreshed] = server.bindings()
    assert refreshed.expires_at == NOW + 1000 + 1800
    assert refreshed.cseq == phone.cseq > first.cseq
    assert refreshed.registered_at == first.registered_at == NOW


def test_contact_compared_as_uri_not_text(server: Server) -> None:
    phone = Phone(server)
    assert phone.register(["<sip:1001@PHONE.example.net:5062>"]).status == 200
    response = phone.register(["<sip:1001@phone.example.net:5062>;expires=600"])
    assert response.status == 200
    # RFC 3261 19.1.4: the host is case-insensitive, so this is a refresh.
    assert len(server.bindings()) == 1
    assert expires_of(response) == {"sip:1001@PHONE.example.net:5062": 600}


def test_remove_one_binding_with_expires_zero(server: Server) -> None:
    phone = Phone(server)
    assert phone.register(["<sip:1001@192.0.2.10:5062>", "<sip:1001@192.0.2.10:5064>"]
                          ).status == 200
    response = phone.register(["<sip:1001@192.0.2.10:5062>;expires=0"])
    assert response.status == 200
    assert list(contacts_of(response)) == ["sip:1001@192.0.2.10:5064"]
    assert [b.contact for b in server.bindings()] == ["sip:1001@192.0.2.10:5064"]
    assert [b.contact for b in read_bindings(server.store.path)] == ["sip:1001@192.0.2.10:5064"]


def test_remove_all_with_star_and_expires_zero(server: Server) -> None:
    phone = Phone(server)
    assert phone.register(["<sip:1001@192.0.2.10:5062>"]).status == 200
    other = Phone(server, source=Peer("udp", "192.0.2.20", 5060))
    assert other.register(["<sip:1001@192.0.2.20>"]).status == 200
    assert len(server.bindings()) == 2
    response = phone.register(["*"], headers=["Expires: 0"])
    assert response.status == 200
    assert response.get("contact") is None
    assert server.bindings() == []
    assert read_bindings(server.store.path) == []


@pytest.mark.parametrize("contacts, headers", [
    (["*", "<sip:1001@192.0.2.10>"], ["Expires: 0"]),  # * with another contact
    (["*"], []),  # * without Expires
    (["*"], ["Expires: 3600"]),  # * with a non-zero Expires
    (["*;expires=0"], ["Expires: 60"]),
])
def test_star_with_anything_else_is_a_bad_request(
        server: Server, contacts: list[str], headers: list[str]) -> None:
    phone = Phone(server)
    assert phone.register(["<sip:1001@192.0.2.10:5062>"]).status == 200
    assert phone.register(contacts, headers=headers).status == 400
    assert len(server.bindings()) == 1


def test_star_with_old_cseq_is_refused(server: Server) -> None:
    phone = Phone(server)
    assert phone.register(["<sip:1001@192.0.2.10:5062>"]).status == 200
    stale = phone.cseq
    assert phone.register(["*"], headers=["Expires: 0"], cseq=stale).status == 500
    assert len(server.bindings()) == 1


def test_several_contacts_with_q_values(server: Server) -> None:
    phone = Phone(server)
    response = phone.register([
        "<sip:1001@192.0.2.10:5062>;q=0.5",
        '"Desk" <sip:1001@192.0.2.10:5064;transport=tcp>;q=1.0, <sip:1001@198.51.100.4>;q=0.1',
    ])
    assert response.status == 200
    listed = contacts_of(response)
    assert set(listed) == {"sip:1001@192.0.2.10:5062", "sip:1001@192.0.2.10:5064;transport=tcp",
                           "sip:1001@198.51.100.4"}
    assert listed["sip:1001@192.0.2.10:5062"]["q"] == "0.5"
    assert listed["sip:1001@198.51.100.4"]["q"] == "0.1"
    assert "q" not in listed["sip:1001@192.0.2.10:5064;transport=tcp"]  # 1.0 is the default
    assert [b.q for b in server.bindings()] == [1.0, 0.5, 0.1]


def test_bad_q_value_is_a_bad_request(server: Server) -> None:
    phone = Phone(server)
    assert phone.register(["<sip:1001@192.0.2.10>;q=1.5"]).status == 400
    assert server.bindings() == []


@pytest.mark.parametrize("contact, headers, expected", [
    ("<sip:1001@192.0.2.10>;expires=120", ["Expires: 900"], 120),  # the parameter wins
    ("<sip:1001@192.0.2.10>", ["Expires: 900"], 900),  # then the header
    ("<sip:1001@192.0.2.10>", [], 3600),  # then the default
    ("<sip:1001@192.0.2.10>;expires=86400", [], 7200),  # clamped to the maximum
    ("<sip:1001@192.0.2.10>", ["Expires: 86400"], 7200),
    ("<sip:1001@192.0.2.10>;expires=60", [], 60),  # the minimum itself is fine
])
def test_expires_sources_and_clamping(
        server: Server, contact: str, headers: list[str], expected: int) -> None:
    response = Phone(server).register([contact], headers=headers)
    assert response.status == 200
    assert expires_of(response) == {"sip:1001@192.0.2.10": expected}
    [binding] = server.bindings()
    assert binding.expires_at == NOW + expected


@pytest.mark.parametrize("contact, headers", [
    ("<sip:1001@192.0.2.10>;expires=30", []),
    ("<sip:1001@192.0.2.10>", ["Expires: 59"]),
    ("<sip:1001@192.0.2.10>;expires=1", ["Expires: 3600"]),
])
def test_too_brief_is_423_with_min_expires(
        server: Server, contact: str, headers: list[str]) -> None:
    response = Phone(server).register([contact], headers=headers)
    assert response.status == 423
    assert response.get("min-expires") == "60"
    assert server.bindings() == []


@pytest.mark.parametrize("value", ["soon", "-5"])
def test_malformed_expires_is_a_bad_request(server: Server, value: str) -> None:
    phone = Phone(server)
    assert phone.register(["<sip:1001@192.0.2.10>"], headers=[f"Expires: {value}"]).status == 400
    assert phone.register([f"<sip:1001@192.0.2.10>;expires={value}"]).status == 400
    assert server.bindings() == []


@pytest.mark.parametrize("back", [0, 1])
def test_same_call_id_with_old_cseq_is_refused(server: Server, back: int) -> None:
    phone = Phone(server)
    assert phone.register(["<sip:1001@192.0.2.10:5062>"]).status == 200
    [before] = server.bindings()
    # The repeat of an old REGISTER (a new transaction, not a retransmission).
    response = phone.register(["<sip:1001@192.0.2.10:5062>;expires=120"],
                              cseq=phone.cseq - back)
    assert response.status == 500
    assert server.bindings() == [before]
    response = phone.register(["<sip:1001@192.0.2.10:5062>;expires=0"], cseq=before.cseq - back)
    assert response.status == 500
    assert server.bindings() == [before]


def test_another_call_id_may_use_any_cseq(server: Server) -> None:
    phone = Phone(server)
    phone.cseq = 100
    assert phone.register(["<sip:1001@192.0.2.10:5062>"]).status == 200
    rebooted = Phone(server)  # new Call-ID, CSeq from 1
    response = rebooted.register(["<sip:1001@192.0.2.10:5062>;expires=300"])
    assert response.status == 200
    [binding] = server.bindings()
    assert binding.call_id == rebooted.call_id and binding.cseq == 2


def test_200_lists_every_binding_with_remaining_expires(server: Server) -> None:
    desk = Phone(server)
    assert desk.register(["<sip:1001@192.0.2.10:5062>"]).status == 200
    server.advance(100)
    mobile = Phone(server, source=Peer("udp", "198.51.100.4", 40000))
    response = mobile.register(["<sip:1001@10.0.0.7:5060>;expires=600"])
    assert response.status == 200
    assert expires_of(response) == {"sip:1001@192.0.2.10:5062": 3500,
                                    "sip:1001@10.0.0.7:5060": 600}


def test_expired_bindings_are_not_listed(server: Server) -> None:
    first = Phone(server)
    assert first.register(["<sip:1001@192.0.2.10:5062>;expires=60"]).status == 200
    server.advance(61)  # nobody swept the store: the registrar must not care
    second = Phone(server, source=Peer("udp", "192.0.2.20", 5060))
    response = second.register(["<sip:1001@192.0.2.20>"])
    assert response.status == 200
    assert list(contacts_of(response)) == ["sip:1001@192.0.2.20"]


def test_query_without_contact_lists_bindings(server: Server) -> None:
    phone = Phone(server)
    assert phone.register(["<sip:1001@192.0.2.10:5062>", "<sip:1001@192.0.2.10:5064>"]
                          ).status == 200
    server.advance(10)
    before = len(server.sent)
    commits = server.store.commits
    response = phone.register(None)
    assert response.status == 200
    assert len(server.sent) == before + 1
    assert expires_of(response) == {"sip:1001@192.0.2.10:5062": 3590,
                                    "sip:1001@192.0.2.10:5064": 3590}
    assert server.store.commits == commits  # nothing written
    assert len(server.bindings()) == 2


def test_too_many_contacts_is_refused(server: Server) -> None:
    phone = Phone(server)
    contacts = [f"<sip:1001@192.0.2.10:{5000 + i}>" for i in range(11)]
    assert phone.register(contacts).status == 403
    assert server.bindings() == []


# -- what a binding remembers --------------------------------------------------------


@pytest.mark.parametrize("source, received", [
    (Peer("udp", "203.0.113.9", 31337), "203.0.113.9:31337"),
    (Peer("tcp", "198.51.100.7", 40000, connection=3), "198.51.100.7:40000"),
    (Peer("tls", "2001:db8::5", 5061, connection=4), "[2001:db8::5]:5061"),
])
def test_source_address_and_transport_stored_as_received(
        server: Server, source: Peer, received: str) -> None:
    # The Contact is private (behind NAT): the source is what reaches the phone.
    phone = Phone(server, source=source)
    assert phone.register(["<sip:1001@10.1.2.3:5060>"]).status == 200
    [binding] = server.bindings()
    assert binding.contact == "sip:1001@10.1.2.3:5060"
    assert binding.received == received
    assert binding.transport == source.transport
    [stored] = read_bindings(server.store.path)
    assert (stored.received, stored.transport) == (received, source.transport)


def test_path_and_user_agent_are_stored_and_path_echoed(server: Server) -> None:
    phone = Phone(server)
    response = phone.register(["<sip:1001@10.1.2.3>"], headers=[
        "Supported: path",
        "Path: <sip:edge1.example.net;lr>",
        "Path: <sip:edge2.example.net;lr>, <sip:edge3.example.net;lr>",
        "User-Agent: Yealink SIP-T46S 66.86.0.15",
    ])
    assert response.status == 200
    [binding] = server.bindings()
    assert binding.path == ["<sip:edge1.example.net;lr>", "<sip:edge2.example.net;lr>",
                            "<sip:edge3.example.net;lr>"]
    assert binding.user_agent == "Yealink SIP-T46S 66.86.0.15"
    assert response.values("path") == binding.path
    [stored] = read_bindings(server.store.path)
    assert stored.path == binding.path and stored.user_agent == binding.user_agent


def test_path_is_not_echoed_to_a_ua_without_path_support(server: Server) -> None:
    response = Phone(server).register(["<sip:1001@10.1.2.3>"],
                                      headers=["Path: <sip:edge1.example.net;lr>"])
    assert response.status == 200
    assert response.values("path") == []
    assert server.bindings()[0].path == ["<sip:edge1.example.net;lr>"]


INSTANCE = "<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"


def test_same_instance_and_reg_id_replaces_the_old_flow(server: Server) -> None:
    phone = Phone(server)
    first = phone.register([f'<sip:1001@10.1.2.3:5060>;+sip.instance="{INSTANCE}";reg-id=1'])
    assert first.status == 200
    params = contacts_of(first)["sip:1001@10.1.2.3:5060"]
    assert unquote_param(params["+sip.instance"]) == INSTANCE and params["reg-id"] == "1"
    # After a reboot: new Call-ID, new port, same instance and reg-id.
    rebooted = Phone(server, source=Peer("udp", "192.0.2.10", 5070))
    response = rebooted.register(
        [f'<sip:1001@10.1.2.3:5070>;+sip.instance="{INSTANCE}";reg-id=1'])
    assert response.status == 200
    assert list(contacts_of(response)) == ["sip:1001@10.1.2.3:5070"]
    [binding] = server.bindings()
    assert (binding.instance, binding.reg_id) == (INSTANCE, 1)
    assert [b.contact for b in read_bindings(server.store.path)] == ["sip:1001@10.1.2.3:5070"]


def test_same_instance_with_another_reg_id_is_a_second_flow(server: Server) -> None:
    phone = Phone(server)
    assert phone.register([f'<sip:1001@10.1.2.3:5060>;+sip.instance="{INSTANCE}";reg-id=1']
                          ).status == 200
    second = Phone(server, source=Peer("tcp", "192.0.2.10", 40001, connection=9))
    response = second.register(
        [f'<sip:1001@10.1.2.3:5061;transport=tcp>;+sip.instance="{INSTANCE}";reg-id=2'])
    assert response.status == 200
    assert sorted(b.reg_id or 0 for b in server.bindings()) == [1, 2]


# -- which account a REGISTER is for ---------------------------------------------------


@pytest.mark.parametrize("host", [SERVER_IP, "[2001:db8::1]", "localhost", "sip.internal"])
def test_register_to_the_server_address_uses_the_default_domain(
        server: Server, host: str) -> None:
    phone = Phone(server, domain=host)
    response = phone.register(["<sip:1001@192.0.2.10:5062>"])
    assert response.status == 200
    assert phone.realm == DOMAIN
    assert len(server.bindings(f"1001@{DOMAIN}")) == 1


def test_second_domain_has_its_own_accounts(server: Server) -> None:
    phone = Phone(server, user="2001", password="other-pw", domain="Other.Example.org")
    assert phone.register(["<sip:2001@192.0.2.30>"]).status == 200
    assert phone.realm == "other.example.org"
    assert len(server.bindings("2001@other.example.org")) == 1
    # 1001 exists in the first domain only.
    stranger = Phone(server, user="1001", domain="other.example.org")
    assert stranger.register(["<sip:1001@192.0.2.30>"]).status == 403


def test_unknown_domain_is_404(server: Server) -> None:
    phone = Phone(server, domain="nowhere.example.net")
    response = server.exchange(phone.build(["<sip:1001@192.0.2.10>"]))
    assert response.status == 404
    assert response.get("www-authenticate") is None


@pytest.mark.parametrize("to", ["<tel:+15551001>", "<sip:pbx.example.com>",
                                "<urn:service:sos>"])
def test_to_without_a_sip_user_is_a_bad_request(server: Server, to: str) -> None:
    phone = Phone(server)
    assert server.exchange(phone.build(["<sip:1001@192.0.2.10>"], to=to)).status == 400


def test_non_sip_request_uri_is_416(server: Server) -> None:
    phone = Phone(server)
    data = phone.build(["<sip:1001@192.0.2.10>"], request_uri="tel:+15551001")
    assert server.exchange(data).status == 416


def test_store_failure_is_500_not_200(server: Server) -> None:
    phone = Phone(server)
    phone.take_challenge(server.exchange(phone.build(["<sip:1001@192.0.2.10>"])))
    server.store.close()
    data = phone.build(["<sip:1001@192.0.2.10>"], authorization=phone.authorization())
    assert server.exchange(data).status == 500
