"""Toll fraud: every way to a trunk without the right to it is closed.

One server with a trunk whose "provider" is a bare UDP socket here, and a
dialplan that sends any number to that trunk (a careless one: the policy
must hold whatever the dialplan says). Unauthenticated INVITEs (no
credentials, credentials of another realm, the trunk's address from
another port than its ACL's, with Replaces) are challenged; accounts
dialling classes they lack get 403 with the reason and a CDR; a REFER to
an international number is refused; max_calls refuses the next call with
486. The trunk socket sees no packet until the last test, a national call
1001 may make, which proves it would have.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cdrs import wait_for_cdrs
from tests.support.phone import Phone, answered_call, registered_phones
from tests.support.server import ServerProcess, free_port
from tests.support.sip_client import SipClient, build_request
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

DIRECTORY = """\
domains:
  - name: pbx.example.com
    users:
      - {user: "1001", password: "1001pass"}
      - {user: "1002", password: "1002pass", max_calls: 1}
      - {user: "1003", password: "1003pass"}
"""

DIALPLAN = """\
settings:
  timezone: UTC
contexts:
  internal:
    rules:
      - name: users
        match: _100X
        actions:
          - dial: user/${dest}
      - name: anything-else-out
        match: _X.
        actions:
          - dial: trunk/provider/${dest}
  from-provider:
    rules:
      - name: nothing
        actions:
          - hangup: 404
"""

INTERNATIONAL = "011442071234567"
PREMIUM = "19005551234"
NATIONAL = "2125551234"


class Trunk:
    """The provider: a UDP socket that records what reaches it."""

    def __init__(self) -> None:
        self.port = free_port()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.setblocking(False)

    def received(self) -> list[bytes]:
        out = []
        while True:
            try:
                out.append(self.sock.recv(65536))
            except BlockingIOError:
                return out


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Trunk]]:
    folder = Path(tmp_path_factory.mktemp("toll"))
    (folder / "directory.yaml").write_text(DIRECTORY)
    (folder / "dialplan.yaml").write_text(DIALPLAN)
    trunk = Trunk()
    server = ServerProcess(folder / "server", directory=folder / "directory.yaml",
                           dialplan=folder / "dialplan.yaml")
    # Known by address only from port 1: our test clients use other ports.
    server.extra_config = (
        f"trunks:\n  - {{name: provider, host: 127.0.0.1, port: {trunk.port}, "
        "context: from-provider, acl: ['127.0.0.1:1']}\n")
    server.start()
    yield server, trunk
    server.stop()
    trunk.sock.close()


def invite(client: SipClient, server: ServerProcess, number: str,
           headers: dict[str, str] | None = None) -> bytes:
    uri = f"sip:{number}@127.0.0.1:{server.udp_port}"
    data = build_request(client, "INVITE", uri, headers={
        "Contact": f"<sip:1001@{client.local[0]}:{client.local[1]}>", **(headers or {})})
    return data.replace(f"From: <sip:tester@{client.local[0]}>".encode(),
                        b"From: <sip:1001@pbx.example.com>")


@pytest.mark.parametrize("headers", [
    {},  # no credentials
    {"Authorization": 'Digest username="1001", realm="evil.example", nonce="x", '
                      'uri="sip:x@127.0.0.1", response="00000000000000000000000000000000"'},
    {"Replaces": "abc@host;to-tag=1;from-tag=2"},
], ids=["no-credentials", "wrong-realm", "replaces"])
def test_unauthenticated_invites_are_challenged(setup: tuple[ServerProcess, Trunk],
                                                headers: dict[str, str]) -> None:
    server, trunk = setup
    with SipClient("udp", ("127.0.0.1", server.udp_port)) as client:
        assert client.local[1] != 1  # the trunk's address, not its ACL's port
        response = client.request(invite(client, server, NATIONAL, headers))
        assert response is not None and response.status == 401
    assert trunk.received() == []


def test_an_unknown_user_is_challenged_like_a_known_one(setup: tuple[ServerProcess, Trunk]) -> None:
    server, trunk = setup
    with SipClient("udp", ("127.0.0.1", server.udp_port)) as client:
        data = invite(client, server, NATIONAL).replace(b"sip:1001@pbx", b"sip:6666@pbx")
        first = client.request(data)
        assert first is not None and first.status == 401
    assert trunk.received() == []


@pytest.mark.parametrize(("number", "klass"), [(INTERNATIONAL, "international"),
                                                (PREMIUM, "premium")])
def test_a_class_the_account_lacks_gets_403_and_a_cdr(setup: tuple[ServerProcess, Trunk],
                                                      tmp_path: Path, number: str,
                                                      klass: str) -> None:
    server, trunk = setup
    before = len(wait_for_cdrs(server.data_dir, 0))
    with Phone.start("1001", "1001pass", server.udp_port, log_dir=tmp_path) as alice:
        assert alice.register() == 200
        call = alice.call(f"sip:{number}@127.0.0.1:{server.udp_port}")
        ended = alice.wait_call_state(call, "DISCONNECTED", 10)
        assert (ended["code"], ended["reason"]) == (403, f"Destination not allowed ({klass})")
    records = wait_for_cdrs(server.data_dir, before + 1)
    assert records[-1].hangup_cause == f"403 Destination not allowed ({klass})"
    assert records[-1].trunk is None
    assert trunk.received() == []


def test_a_transfer_to_an_international_number_is_refused(setup: tuple[ServerProcess, Trunk],
                                                          tmp_path: Path) -> None:
    server, trunk = setup
    port = server.udp_port
    alice, carol = registered_phones(port, ("1001", "1003"), tmp_path)
    try:
        call, at_carol = answered_call(alice, carol, f"sip:1003@127.0.0.1:{port}")
        before = len(events(server, "dial_refused", INTERNATIONAL))
        carol.transfer(at_carol, f"sip:{INTERNATIONAL}@127.0.0.1:{port}")
        refused = wait_for(lambda: events(server, "dial_refused", INTERNATIONAL)[before:], 10,
                           "the transfer refused")
        # Judged by who asked for it (the referrer), and the call goes on.
        assert refused[0]["party"] == "user/1003@pbx.example.com"
        assert refused[0]["code"] == 403
        alice.hangup(call)
        carol.wait_call_state(at_carol, "DISCONNECTED", 10)
    finally:
        for phone in (alice, carol):
            phone.close()
    assert trunk.received() == []


def test_max_calls_refuses_the_next_call_with_486(setup: tuple[ServerProcess, Trunk],
                                                  tmp_path: Path) -> None:
    server, trunk = setup
    port = server.udp_port
    bob, carol, alice = registered_phones(port, ("1002", "1003", "1001"), tmp_path)
    try:
        since = carol.mark()
        ringing = bob.call(f"sip:1003@127.0.0.1:{port}")
        carol.wait_event("incoming_call", 10, since=since)  # bob's one call, ringing
        second = bob.call(f"sip:1001@127.0.0.1:{port}")
        ended = bob.wait_call_state(second, "DISCONNECTED", 10)
        assert (ended["code"], ended["reason"]) == (486, "Too many calls")
        bob.hangup(ringing)
        bob.wait_call_state(ringing, "DISCONNECTED", 10)
        # Its slot is free again: the next call rings.
        since = alice.mark()
        third = bob.call(f"sip:1001@127.0.0.1:{port}")
        alice.wait_event("incoming_call", 10, since=since)
        bob.hangup(third)
    finally:
        for phone in (bob, carol, alice):
            phone.close()
    assert trunk.received() == []


def test_zz_a_national_call_does_reach_the_trunk(setup: tuple[ServerProcess, Trunk],
                                                 tmp_path: Path) -> None:
    """The control: the socket would have seen what the tests above refused."""
    server, trunk = setup
    with Phone.start("1001", "1001pass", server.udp_port, log_dir=tmp_path) as alice:
        assert alice.register() == 200
        call = alice.call(f"sip:{NATIONAL}@127.0.0.1:{server.udp_port}")
        got = wait_for(trunk.received, 10, "the INVITE at the trunk")
        assert got[0].startswith(f"INVITE sip:{NATIONAL}@".encode())
        alice.hangup(call)


def events(server: ServerProcess, name: str, target: str) -> list[dict]:
    out = []
    for line in server.log_path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            event = json.loads(line)
            if event.get("event") == name and any(target in t for t in event.get("targets", [])):
                out.append(event)
    return out
