"""Registration of real pjsua2 phones with a real `softswitch run`.

Each phone is its own process (tests/support/phone.py). What a user would see
is checked twice: in the server's location file (read-only) and in the 200 of
a REGISTER query (no Contact) sent by a raw client.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.phone import Phone, start_phones
from tests.support.server import ServerProcess
from tests.support.sip_client import SipClient

pytestmark = pytest.mark.integration

DOMAIN = "pbx.example.com"
PASSWORDS = {"1001": "1001pass", "1002": "1002pass", "1003": "1003pass", "1004": "1004pass"}
EXPIRES = 300  # what the phones ask for


# -- what the server holds ---------------------------------------------------------


@dataclass(frozen=True)
class StoredBinding:
    aor: str
    contact: str
    expires_at: float
    transport: str
    instance: str | None


def stored_bindings(server: ServerProcess, aor: str) -> dict[str, StoredBinding]:
    """The rows of `aor` in the server's location file, read-only, by contact."""
    path = server.data_dir / "location.sqlite"
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        rows = db.execute("SELECT aor, contact, expires_at, transport, instance FROM bindings "
                          "WHERE aor = ?", (aor,)).fetchall()
    finally:
        db.close()
    return {r[1]: StoredBinding(*r) for r in rows}


def _digest(algorithm: str, *parts: str) -> str:
    name = {"MD5": "md5", "SHA-256": "sha256"}[algorithm]
    return hashlib.new(name, ":".join(parts).encode()).hexdigest()


def _authorization(challenge: str, user: str, password: str, uri: str) -> str:
    params = {name.lower(): quoted or bare
              for name, quoted, bare in re.findall(r'(\w+)=(?:"([^"]*)"|([^,\s]+))', challenge)}
    algorithm = params.get("algorithm", "MD5")
    realm, nonce = params["realm"], params["nonce"]
    cnonce, nc = secrets.token_hex(8), "00000001"
    ha1 = _digest(algorithm, user, realm, password)
    ha2 = _digest(algorithm, "REGISTER", uri)
    response = _digest(algorithm, ha1, nonce, nc, cnonce, "auth", ha2)
    return (f'Digest username="{user}", realm="{realm}", nonce="{nonce}", uri="{uri}", '
            f'response="{response}", algorithm={algorithm}, cnonce="{cnonce}", qop=auth, nc={nc}')


def query_bindings(server: ServerProcess, user: str) -> dict[str, int]:
    """REGISTER without Contact (RFC 3261 10.2.3): the server's contacts and expires."""
    with SipClient("udp", ("127.0.0.1", server.udp_port)) as client:
        host, port = client.local
        uri = f"sip:127.0.0.1:{server.udp_port}"
        tag, call_id = secrets.token_hex(4), f"{secrets.token_hex(8)}@test"

        def register(cseq: int, extra: str = "") -> bytes:
            return (f"REGISTER {uri} SIP/2.0\r\n"
                    f"Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bK{secrets.token_hex(6)};rport\r\n"
                    f"Max-Forwards: 70\r\nFrom: <sip:{user}@{DOMAIN}>;tag={tag}\r\n"
                    f"To: <sip:{user}@{DOMAIN}>\r\nCall-ID: {call_id}\r\n"
                    f"CSeq: {cseq} REGISTER\r\n{extra}Content-Length: 0\r\n\r\n").encode()

        challenge = client.request(register(1))
        assert challenge is not None and challenge.status == 401
        # The MD5 challenge: every account of the example directory has one.
        offer = next(v for v in challenge.get_all("www-authenticate") if "MD5" in v)
        auth = _authorization(offer, user, PASSWORDS[user], uri)
        response = client.request(register(2, f"Authorization: {auth}\r\n"))
    assert response is not None and response.status == 200, response
    return {str(c.uri): int(c.params["expires"] or 0) for c in response.contacts}


def contact_of(phone: Phone, bindings: dict[str, Any]) -> str | None:
    """The contact among `bindings` that points at this phone."""
    found = [c for c in bindings
             if c.partition("@")[2].split(";")[0] == phone.contact_hostport]
    assert len(found) <= 1, found
    return found[0] if found else None


# -- fixtures -------------------------------------------------------------------------


@pytest.fixture
def phones(tmp_path: Path) -> Iterator[Callable[..., list[Phone]]]:
    """Start phones in parallel (Phone.start kwargs each); all closed at the end."""
    started: list[Phone] = []

    def start(*specs: dict[str, Any]) -> list[Phone]:
        new = start_phones([{"log_dir": tmp_path / "phones", **s} for s in specs])
        started.extend(new)
        return new

    yield start
    for phone in started:
        phone.close()


# -- tests ----------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_right_password_registers_and_the_binding_is_stored(
        server: ServerProcess, phones: Callable[..., list[Phone]], transport: str) -> None:
    [phone] = phones(dict(user="1001", password="1001pass", server_port=server.udp_port,
                          transport=transport))
    before = time.time()
    assert phone.register() == 200
    assert phone.reg_state is not None and phone.reg_state["active"]

    stored = stored_bindings(server, f"1001@{DOMAIN}")
    contact = contact_of(phone, stored)
    assert contact is not None, stored
    assert contact == phone.contact  # what the 200 told the phone
    binding = stored[contact]
    assert binding.transport == transport
    assert before + EXPIRES - 2 <= binding.expires_at <= time.time() + EXPIRES + 1
    if transport == "tcp":
        assert "transport=tcp" in contact.lower()

    listed = query_bindings(server, "1001")
    assert contact in listed
    assert EXPIRES - 5 <= listed[contact] <= EXPIRES


@pytest.mark.parametrize("domain", [DOMAIN, "127.0.0.1"])
def test_account_uri_with_domain_or_server_address(
        server: ServerProcess, phones: Callable[..., list[Phone]], domain: str) -> None:
    # A phone configured with the server's address instead of the domain name
    # lands in the default domain, under the same address-of-record.
    [phone] = phones(dict(user="1002", password="1002pass", server_port=server.udp_port,
                          domain=domain))
    assert phone.register() == 200
    assert contact_of(phone, stored_bindings(server, f"1002@{DOMAIN}")) is not None


def test_md5_only_account_registers(server: ServerProcess,
                                    phones: Callable[..., list[Phone]]) -> None:
    [phone] = phones(dict(user="1004", password="1004pass", server_port=server.udp_port))
    assert phone.register() == 200
    assert contact_of(phone, stored_bindings(server, f"1004@{DOMAIN}")) is not None


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_wrong_password_is_refused(server: ServerProcess, phones: Callable[..., list[Phone]],
                                   transport: str) -> None:
    [phone] = phones(dict(user="1003", password="not-the-password",
                          server_port=server.udp_port, transport=transport))
    assert phone.register() == 403
    assert phone.reg_state is not None and not phone.reg_state["active"]
    assert contact_of(phone, stored_bindings(server, f"1003@{DOMAIN}")) is None


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_unregister_removes_the_binding(server: ServerProcess,
                                        phones: Callable[..., list[Phone]],
                                        transport: str) -> None:
    [phone] = phones(dict(user="1002", password="1002pass", server_port=server.udp_port,
                          transport=transport))
    assert phone.register() == 200
    assert contact_of(phone, stored_bindings(server, f"1002@{DOMAIN}")) is not None

    assert phone.unregister() == 200
    assert phone.reg_state is not None and not phone.reg_state["active"]
    assert contact_of(phone, stored_bindings(server, f"1002@{DOMAIN}")) is None
    assert contact_of(phone, query_bindings(server, "1002")) is None


@pytest.mark.parametrize("transports", [("udp", "udp"), ("tcp", "tcp"), ("udp", "tcp")])
def test_two_devices_of_one_user_both_appear(server: ServerProcess,
                                             phones: Callable[..., list[Phone]],
                                             transports: tuple[str, str]) -> None:
    instances = [f"<urn:uuid:{secrets.token_hex(4)}-0000-4000-8000-{secrets.token_hex(6)}>"
                 for _ in transports]
    devices = phones(*[dict(user="1001", password="1001pass", server_port=server.udp_port,
                            transport=t, instance=i) for t, i in zip(transports, instances, strict=True)])
    assert [d.register() for d in devices] == [200, 200]

    stored = stored_bindings(server, f"1001@{DOMAIN}")
    listed = query_bindings(server, "1001")
    for device, transport, instance in zip(devices, transports, instances, strict=True):
        contact = contact_of(device, stored)
        assert contact is not None, stored
        assert stored[contact].transport == transport
        assert stored[contact].instance == instance
        assert contact in listed

    # One device leaving does not take the other's binding with it.
    assert devices[0].unregister() == 200
    stored = stored_bindings(server, f"1001@{DOMAIN}")
    assert contact_of(devices[0], stored) is None
    assert contact_of(devices[1], stored) is not None


def test_binding_survives_kill9_and_restart(own_server: ServerProcess,
                                            phones: Callable[..., list[Phone]]) -> None:
    own_server.start()
    [phone] = phones(dict(user="1001", password="1001pass", server_port=own_server.udp_port))
    assert phone.register() == 200
    stored = stored_bindings(own_server, f"1001@{DOMAIN}")
    contact = contact_of(phone, stored)
    assert contact is not None, stored
    # The phone goes too, so nothing can refresh the binding behind our back.
    phone.kill()

    own_server.kill9()
    ports = (own_server.udp_port, own_server.tls_port)
    own_server.start()  # same config file, data dir and ports
    assert (own_server.udp_port, own_server.tls_port) == ports

    after = stored_bindings(own_server, f"1001@{DOMAIN}")
    assert contact in after, after
    assert after[contact].expires_at == stored[contact].expires_at
    listed = query_bindings(own_server, "1001")
    assert contact in listed, listed
    left = stored[contact].expires_at - time.time()
    assert left - 2 <= listed[contact] <= left + 1
