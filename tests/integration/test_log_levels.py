"""What the server logs, and at which level, for routine and suspicious traffic (issue 18, point 7).

Uses the shared server (JSON logs at debug level): each test finds its own
lines by its client's port or Call-ID.
"""

from __future__ import annotations

import json
import secrets

import pytest

from softswitch.sip.digest import authorization, first_challenge
from tests.support.server import ServerProcess
from tests.support.sip_client import SipClient, build_request, options_request
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


def events(server: ServerProcess, **match: object) -> list[dict]:
    out = []
    for line in server.log_path.read_text(errors="replace").splitlines():
        if not line.startswith("{"):
            continue
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if all(event.get(k) == v for k, v in match.items()):
            out.append(event)
    return out


def test_crlf_keepalives_over_udp_are_ignored_silently(server: ServerProcess) -> None:
    with SipClient("udp", ("127.0.0.1", server.udp_port)) as client:
        peer = f"{client.local[0]}:{client.local[1]}"
        client.send(b"\r\n\r\n")  # RFC 5626 double-CRLF ping, as phones send it
        client.send(b"\r\n")
        # Datagrams from one socket are handled in order: the first answer
        # after the keep-alives is the OPTIONS one, not a 400 for them.
        response = client.request(options_request(client))
        assert response is not None and response.status == 200
        assert client.recv(timeout=0.2) is None
    wait_for(lambda: events(server, event="sip_in", peer=peer, method="OPTIONS"), 5,
             "the OPTIONS logged")
    assert events(server, event="sip_malformed", peer=peer) == []


def _register(client: SipClient, server: ServerProcess, call_id: str, cseq: int,
              auth: str | None = None) -> bytes:
    headers = {"Contact": f"<sip:1001@{client.local[0]}:{client.local[1]}>", "Expires": "60"}
    if auth is not None:
        headers["Authorization"] = auth
    request = build_request(client, "REGISTER", f"sip:127.0.0.1:{server.udp_port}",
                            headers=headers, call_id=call_id, cseq=cseq)
    # The registrar authenticates the To user: make it 1001 of the default domain.
    return request.replace(f"To: <sip:127.0.0.1:{server.udp_port}>".encode(),
                           f"To: <sip:1001@127.0.0.1:{server.udp_port}>".encode()).replace(
        f"From: <sip:tester@{client.local[0]}>".encode(),
        f"From: <sip:1001@127.0.0.1:{server.udp_port}>".encode())


def test_challenge_is_debug_and_a_wrong_password_a_warning_with_the_source(
        server: ServerProcess) -> None:
    call_id = secrets.token_hex(8)
    with SipClient("udp", ("127.0.0.1", server.udp_port)) as client:
        challenge = client.request(_register(client, server, call_id, 1))
        assert challenge is not None and challenge.status == 401
        found = first_challenge(challenge)
        assert found is not None
        auth = authorization(found[0], "REGISTER", f"sip:127.0.0.1:{server.udp_port}", "1001",
                             "not-the-password", cnonce=secrets.token_hex(8))
        refused = client.request(_register(client, server, call_id, 2, auth))
        assert refused is not None and refused.status == 403
    full_call_id = f"{call_id}@test"
    [challenged] = wait_for(lambda: events(server, event="register_auth", call_id=full_call_id),
                            5, "the challenge logged")
    assert challenged["level"] == "debug"
    [failed] = wait_for(lambda: events(server, event="auth_failed", call_id=full_call_id), 5,
                        "the failure logged")
    assert failed["level"] == "warning"
    assert failed["source"] == "127.0.0.1" and failed["user"] == "1001"
    assert failed["method"] == "REGISTER"
    assert "not-the-password" not in server.log_path.read_text()
