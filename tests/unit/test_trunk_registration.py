"""Outbound trunk registration (RFC 3261 10.2) on a `task.Clock`.

`TrunkRegistration` is driven with a send function that records what it is
asked to send; the registrar's answers are bytes parsed by the real parser,
and digest credentials are checked as a registrar would, with
`softswitch.sip.digest`. The service is run on a real `SipCore` whose
transaction layer (timers F and E on the clock) sends and matches.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs
from twisted.internet import task

from softswitch.config import TrunkSettings
from softswitch.core import SipCore
from softswitch.sip import digest
from softswitch.sip.message import Request, Response, parse_message
from softswitch.sip.peer import Peer
from softswitch.trunk_registration import (
    RegistrationState,
    TrunkRegistration,
    TrunkRegistrationService,
)

PROVIDER = "192.0.2.50"
LOCAL = ("198.51.100.7", 5070)
REALM = "provider.test"

S = RegistrationState


def trunk(**overrides: Any) -> TrunkSettings:
    fields: dict[str, Any] = {
        "name": "provider", "host": PROVIDER, "port": 5080, "username": "trunkuser",
        "password": "trunkpass", "register": True, "register_expires": 600,
        "retry_min": 10.0, "retry_max": 40.0}
    fields.update(overrides)
    return TrunkSettings.model_validate(fields)


@dataclass
class Sent:
    request: Request
    peer: Peer
    on_response: Callable[[Response], None]
    on_timeout: Callable[[], None]
    on_transport_error: Callable[[], None]

    def reply(self, status: int, *headers: str) -> None:
        """Answer with a response parsed from bytes, as the provider would send it."""
        r = self.request
        lines = [f"SIP/2.0 {status} Whatever", f"Via: {r.get('via')}",
                 f"From: {r.get('from')}", f"To: {r.get('to')};tag=reg1",
                 f"Call-ID: {r.call_id}", f"CSeq: {r.get('cseq')}", *headers,
                 "Content-Length: 0", "", ""]
        response = parse_message("\r\n".join(lines).encode())
        assert isinstance(response, Response)
        self.on_response(response)

    def challenge(self, nonce: str, *, stale: bool = False, proxy: bool = False) -> None:
        params = f'realm="{REALM}", nonce="{nonce}", algorithm=MD5, qop="auth"'
        if stale:
            params += ", stale=true"
        if proxy:
            self.reply(407, f"Proxy-Authenticate: Digest {params}")
        else:
            self.reply(401, f"WWW-Authenticate: Digest {params}")

    def ok(self, expires: int | None = None, *, header: int | None = None) -> None:
        contact = self.request.get("contact")
        headers = [f"Contact: {contact};expires={expires}"] if expires is not None else []
        if header is not None:
            headers.append(f"Expires: {header}")
        self.reply(200, *headers)

    @property
    def expires(self) -> int:
        return int(self.request.get("expires") or "-1")

    @property
    def cseq(self) -> int:
        return self.request.cseq.seq


class Harness:
    def __init__(self, settings: TrunkSettings) -> None:
        self.clock = task.Clock()
        self.clock.advance(1_700_000_000)
        self.sent: list[Sent] = []
        self.registration = TrunkRegistration(settings, self.clock, self.send, self.local)

    def send(self, request: Request, peer: Peer, on_response: Callable[[Response], None],
             on_timeout: Callable[[], None], on_transport_error: Callable[[], None]) -> object:
        # What goes out must be what a registrar can parse.
        parsed = parse_message(request.to_bytes())
        assert isinstance(parsed, Request)
        self.sent.append(Sent(parsed, peer, on_response, on_timeout, on_transport_error))
        return object()

    @staticmethod
    def local(peer: Peer) -> tuple[str, int]:
        return LOCAL

    @property
    def last(self) -> Sent:
        return self.sent[-1]

    @property
    def state(self) -> RegistrationState:
        return self.registration.state


def check_digest(request: Request, *, header: str = "authorization",
                 password: str = "trunkpass") -> digest.Credentials:
    value = request.get(header)
    assert value is not None, f"no {header} in {request}"
    creds = digest.parse_credentials(value)
    assert creds.username == "trunkuser" and creds.realm == REALM
    assert creds.uri == str(request.uri)
    key = digest.ha1(digest.Algorithm.MD5, "trunkuser", REALM, password)
    assert creds.nc is not None and creds.cnonce is not None
    expected = digest.response(digest.Algorithm.MD5, key, creds.nonce, "REGISTER", creds.uri,
                               qop="auth", nc=creds.nc, cnonce=creds.cnonce)
    assert creds.response == expected
    return creds


def registered(h: Harness, expires: int = 600) -> None:
    h.registration.start()
    h.last.challenge("n1")
    h.last.ok(expires)
    assert h.state is S.REGISTERED


def test_register_builds_the_request_of_rfc3261_10_2() -> None:
    h = Harness(trunk(from_domain="voip.example.net"))
    h.registration.start()
    assert h.state is S.REGISTERING
    [sent] = h.sent
    r = sent.request
    assert sent.peer == Peer("udp", PROVIDER, 5080)
    assert r.method == "REGISTER" and str(r.uri) == "sip:voip.example.net"
    assert r.to_addr.uri is not None and str(r.to_addr.uri) == "sip:trunkuser@voip.example.net"
    assert str(r.from_addr.uri) == "sip:trunkuser@voip.example.net" and r.from_tag
    assert r.to_tag is None
    assert r.get("contact") == "<sip:trunkuser@198.51.100.7:5070>"
    assert r.top_via.sent_by == "198.51.100.7:5070" and r.top_via.transport == "UDP"
    assert r.top_via.branch is not None and r.top_via.branch.startswith("z9hG4bK")
    assert sent.expires == 600 and r.get("authorization") is None


def test_registrar_address_and_tcp_transport() -> None:
    h = Harness(trunk(registrar="192.0.2.60:5099", transport="tcp"))
    h.registration.start()
    assert h.last.peer == Peer("tcp", "192.0.2.60", 5099)
    assert str(h.last.request.uri) == f"sip:{PROVIDER}"
    assert h.last.request.get("contact") == "<sip:trunkuser@198.51.100.7:5070;transport=tcp>"
    assert h.last.request.top_via.transport == "TCP"


def test_200_with_the_contact_expiry_registers_and_refreshes_at_half() -> None:
    h = Harness(trunk())
    with capture_logs() as logs:
        h.registration.start()
        h.last.ok(300, header=900)  # our Contact's expires wins over Expires (10.2.4)
    assert h.state is S.REGISTERED
    assert h.registration.expires_at == h.clock.seconds() + 300
    assert [(e["state"], e.get("code")) for e in logs if e["event"] == "trunk_registration"] == [
        ("registering", None), ("registered", 200)]
    assert all(e["trunk"] == "provider" for e in logs)
    h.clock.advance(149)
    assert len(h.sent) == 1
    h.clock.advance(1)
    assert h.state is S.REFRESHING and len(h.sent) == 2
    assert h.last.expires == 600  # we ask again for what we want
    h.last.ok(300)
    assert h.state is S.REGISTERED


def test_granted_expiry_from_expires_header_when_contact_has_none() -> None:
    h = Harness(trunk())
    h.registration.start()
    # Another binding of the same AOR (another PBX node) carries its own expiry.
    h.last.reply(200, "Contact: <sip:trunkuser@203.0.113.9:5060>;expires=50",
                 f"Contact: {h.last.request.get('contact')}", "Expires: 120")
    assert h.state is S.REGISTERED
    assert h.registration.expires_at == h.clock.seconds() + 120


def test_401_is_answered_with_the_trunk_credentials() -> None:
    h = Harness(trunk())
    h.registration.start()
    h.last.reply(100)  # provisional: nothing changes
    h.last.challenge("nonce-1")
    assert h.state is S.REGISTERING and len(h.sent) == 2
    creds = check_digest(h.last.request)
    assert creds.nonce == "nonce-1" and creds.nc == "00000001" and creds.qop == "auth"
    assert h.sent[1].request.top_via.branch != h.sent[0].request.top_via.branch
    h.last.ok(600)
    assert h.state is S.REGISTERED


def test_407_is_answered_with_proxy_authorization() -> None:
    h = Harness(trunk())
    h.registration.start()
    h.last.challenge("pn", proxy=True)
    check_digest(h.last.request, header="proxy-authorization")
    assert h.last.request.get("authorization") is None


def test_refused_credentials_fail_and_retry_with_backoff() -> None:
    h = Harness(trunk(password="wrong"))
    h.registration.start()
    h.last.challenge("n1")
    check_digest(h.last.request, password="wrong")
    h.last.challenge("n2")  # a second challenge, not stale: the answer was refused
    assert h.state is S.FAILED and len(h.sent) == 2
    assert h.registration.last_status == 401


def test_stale_nonce_is_answered_again() -> None:
    h = Harness(trunk())
    h.registration.start()
    h.last.challenge("n1")
    h.last.challenge("n2", stale=True)
    assert h.state is S.REGISTERING and len(h.sent) == 3
    assert check_digest(h.last.request).nonce == "n2"
    h.last.ok(600)
    assert h.state is S.REGISTERED


def test_refresh_reuses_the_challenge_with_a_higher_nonce_count() -> None:
    h = Harness(trunk())
    registered(h, 100)
    h.clock.advance(50)
    creds = check_digest(h.last.request)
    assert (creds.nonce, creds.nc) == ("n1", "00000002")
    # The registrar forgot that nonce: a new challenge is answered even
    # without stale=true, since we had not answered it yet.
    h.last.challenge("n9")
    assert check_digest(h.last.request).nonce == "n9"
    h.last.ok(100)
    assert h.state is S.REGISTERED


def test_403_fails_then_retries_with_doubling_backoff_capped() -> None:
    h = Harness(trunk())
    with capture_logs() as logs:
        h.registration.start()
        delays = []
        for _ in range(4):
            h.last.reply(403)
            assert h.state is S.FAILED
            before = len(h.sent)
            delays.append(logs[-1]["retry_in"])
            h.clock.advance(delays[-1] - 0.01)
            assert h.state is S.FAILED and len(h.sent) == before
            h.clock.advance(0.01)
            assert h.state is S.REGISTERING and len(h.sent) == before + 1
    assert delays == [10.0, 20.0, 40.0, 40.0]
    failed = [e for e in logs if e.get("state") == "failed"]
    assert [(e["code"], e["retry_in"]) for e in failed] == [
        (403, 10.0), (403, 20.0), (403, 40.0), (403, 40.0)]
    assert all(e["log_level"] == "warning" for e in failed)
    h.last.ok(600)
    assert h.state is S.REGISTERED and h.registration.failures == 0


def test_timeout_and_transport_error_back_off() -> None:
    h = Harness(trunk())
    h.registration.start()
    h.last.on_timeout()
    assert h.state is S.FAILED and h.registration.last_status == 408
    h.clock.advance(10)
    assert h.state is S.REGISTERING
    h.last.on_transport_error()
    assert h.state is S.FAILED and h.registration.last_status == 503
    h.clock.advance(19)
    assert h.state is S.FAILED
    h.clock.advance(1)
    assert h.state is S.REGISTERING


def test_failed_refresh_backs_off() -> None:
    h = Harness(trunk())
    registered(h, 600)
    h.clock.advance(300)
    assert h.state is S.REFRESHING
    h.last.on_timeout()
    assert h.state is S.FAILED and h.registration.expires_at is None


def test_retry_after_is_honoured_when_longer() -> None:
    h = Harness(trunk())
    h.registration.start()
    h.last.reply(503, "Retry-After: 120")
    h.clock.advance(119)
    assert h.state is S.FAILED
    h.clock.advance(1)
    assert h.state is S.REGISTERING


def test_423_asks_again_with_min_expires() -> None:
    h = Harness(trunk(register_expires=60))
    h.registration.start()
    h.last.reply(423, "Min-Expires: 1800")
    assert h.state is S.REGISTERING and h.last.expires == 1800
    h.last.ok(1800)
    h.clock.advance(900)
    assert h.last.expires == 1800


def test_call_id_is_stable_and_cseq_increases() -> None:
    h = Harness(trunk())
    registered(h, 100)
    h.clock.advance(50)
    h.last.ok(100)
    h.clock.advance(50)
    h.last.reply(500)
    h.clock.advance(10)
    h.registration.stop()
    assert len({s.request.call_id for s in h.sent}) == 1
    assert len({s.request.from_tag for s in h.sent}) == 1
    cseqs = [s.cseq for s in h.sent]
    assert cseqs == sorted(set(cseqs)) and len(cseqs) == 6


def test_stop_unregisters_our_contact() -> None:
    h = Harness(trunk())
    registered(h)
    done: list[bool] = []
    with capture_logs() as logs:
        h.registration.stop(lambda: done.append(True))
        assert h.state is S.UNREGISTERING
        r = h.last.request
        assert h.last.expires == 0 and r.get("contact") == "<sip:trunkuser@198.51.100.7:5070>"
        check_digest(r)  # the cached challenge, so that no round trip is needed
        assert not done
        h.last.ok(header=0)
    assert h.state is S.UNREGISTERED and done == [True]
    assert [(e["state"], e.get("code")) for e in logs] == [("unregistering", None),
                                                            ("unregistered", 200)]
    assert h.clock.getDelayedCalls() == []  # no refresh left behind


def test_stop_answers_a_challenge_to_the_unregister() -> None:
    h = Harness(trunk())
    registered(h)
    h.registration.stop()
    h.last.challenge("n2")
    assert h.last.expires == 0 and check_digest(h.last.request).nonce == "n2"
    h.last.ok(header=0)
    assert h.state is S.UNREGISTERED


def test_stop_while_registering_ignores_the_late_answer() -> None:
    h = Harness(trunk())
    h.registration.start()
    first = h.last
    h.registration.stop()
    assert h.state is S.UNREGISTERING and h.last.expires == 0
    first.ok(600)  # the answer to the REGISTER we gave up on
    assert h.state is S.UNREGISTERING
    h.last.on_timeout()
    assert h.state is S.UNREGISTERED


def test_stop_when_failed_sends_nothing() -> None:
    h = Harness(trunk())
    h.registration.start()
    h.last.reply(403)
    h.registration.stop()
    assert h.state is S.UNREGISTERED and len(h.sent) == 1
    assert h.clock.getDelayedCalls() == []


def test_a_trunk_without_username_cannot_register() -> None:
    with pytest.raises(ValueError):
        Harness(trunk(username=None))


EVENTS = st.lists(st.one_of(
    st.sampled_from([100, 200, 401, 407, 403, 423, 500, 503]).map(lambda c: ("reply", c)),
    st.sampled_from(["timeout", "transport", "stale", "start", "stop", "late"]).map(
        lambda e: (e, 0)),
    st.floats(min_value=0, max_value=400).map(lambda t: ("advance", t)),
), max_size=40)


@settings(max_examples=200, deadline=None)
@given(events=EVENTS)
def test_any_sequence_of_events_keeps_the_machine_sound(events: list[tuple[str, Any]]) -> None:
    h = Harness(trunk())
    old: list[Sent] = []
    for kind, value in events:
        sent = h.last if h.sent else None
        if kind == "start":
            h.registration.start()
        elif kind == "stop":
            h.registration.stop()
        elif kind == "advance":
            h.clock.advance(value)
        elif sent is None:
            continue
        elif kind == "reply":
            if value == 401 or value == 407:
                sent.challenge(f"n{len(h.sent)}", proxy=value == 407)
            elif value == 423:
                sent.reply(423, "Min-Expires: 900")
            elif value == 200:
                sent.ok(120)
            else:
                sent.reply(value)
        elif kind == "stale":
            sent.challenge(f"s{len(h.sent)}", stale=True)
        elif kind == "timeout":
            sent.on_timeout()
        elif kind == "transport":
            sent.on_transport_error()
        elif kind == "late" and old:
            old[0].ok(120)  # an answer to a REGISTER long superseded
        if sent is not None and sent not in old:
            old.append(sent)
        # At most one timer (refresh or retry), and only where one belongs.
        timers = h.clock.getDelayedCalls()
        assert len(timers) <= 1
        if h.state in (S.REGISTERED, S.FAILED):
            assert len(timers) == 1
        if h.state is S.UNREGISTERED:
            assert not timers
        if h.state is S.REGISTERED:
            assert h.registration.expires_at is not None
        elif h.state is not S.REFRESHING:
            assert h.registration.expires_at is None
    cseqs = [s.cseq for s in h.sent]
    assert cseqs == list(range(1, len(cseqs) + 1))
    assert len({s.request.call_id for s in h.sent}) <= 1


# -- the service, on a real SipCore ---------------------------------------------------


class Wire:
    """What the core sends, as bytes, for the test to read and answer."""

    def __init__(self) -> None:
        self.out: list[tuple[bytes, Peer]] = []

    def __call__(self, message: Any, peer: Peer) -> None:
        self.out.append((message.to_bytes(), peer))

    def request(self, index: int = -1) -> Request:
        parsed = parse_message(self.out[index][0])
        assert isinstance(parsed, Request)
        return parsed


def answer(core: SipCore, request: Request, status: int, *headers: str) -> None:
    lines = [f"SIP/2.0 {status} Answer", f"Via: {request.get('via')}",
             f"From: {request.get('from')}", f"To: {request.get('to')};tag=x",
             f"Call-ID: {request.call_id}", f"CSeq: {request.get('cseq')}", *headers,
             "Content-Length: 0", "", ""]
    core.receive("\r\n".join(lines).encode(), Peer("udp", PROVIDER, 5080))


def test_service_registers_the_trunks_that_ask_and_unregisters() -> None:
    clock = task.Clock()
    wire = Wire()
    core = SipCore(clock, wire)
    trunks = [trunk(), trunk(name="calls-only", register=False),
              trunk(name="by-name", host="sip.example.net"),
              TrunkSettings(name="anon", host="192.0.2.70", register=True)]
    service = TrunkRegistrationService(trunks, core, Harness.local, clock)
    with capture_logs() as logs:
        service.startService()
    assert list(service.registrations) == ["provider"]
    assert sorted(e["trunk"] for e in logs if e["event"] == "trunk_registration_skipped") == [
        "anon", "by-name"]
    [(_, peer)] = wire.out
    assert peer.host == PROVIDER and peer.port == 5080
    answer(core, wire.request(), 200, f"Contact: {wire.request().get('contact')};expires=600")
    assert service.registrations["provider"].state is S.REGISTERED

    done = service.unregister_all()
    assert not done.called
    assert wire.request().get("expires") == "0"
    answer(core, wire.request(), 200)
    assert done.called and service.registrations["provider"].state is S.UNREGISTERED
    count = len(wire.out)
    service.stopService()
    assert len(wire.out) == count  # nothing left to unregister


def test_service_unregister_is_bounded_and_timer_f_backs_off() -> None:
    clock = task.Clock()
    wire = Wire()
    core = SipCore(clock, wire)
    service = TrunkRegistrationService([trunk()], core, Harness.local, clock, stop_timeout=2.0)
    service.startService()
    clock.pump([0.5] * 64)  # Timer F (64*T1) ends the unanswered REGISTER
    registration = service.registrations["provider"]
    assert registration.state is S.FAILED and registration.last_status == 408
    clock.advance(10)
    assert registration.state is S.REGISTERING
    done = service.unregister_all()
    clock.advance(2.0)
    assert done.called and registration.state is S.UNREGISTERING
