"""Message-waiting indication end to end: a running server, pjsua2 phones, raw SIP.

A message deposited through the relay's seam (`softswitch.voicemail.deposit`)
lights the owner's phone: by a NOTIFY in its subscription (RFC 3842) or,
for a phone that does not subscribe, an unsolicited one; deleting the
messages with the CLI puts the light out. Refusals come from a raw client.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
import wave
from collections.abc import Iterator
from pathlib import Path

import pytest

from softswitch.sip.digest import authorization, first_challenge
from softswitch.sip.message import Request, Response, parse_message
from softswitch.voicemail import VoicemailStore, deposit
from tests.support.phone import Phone
from tests.support.server import ROOT, ServerProcess
from tests.support.sip_client import SipClient, build_request
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def mwi_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server of this module's own: its mailboxes start empty."""
    proc = ServerProcess(Path(tmp_path_factory.mktemp("mwi-server")))
    proc.start()
    yield proc
    proc.stop()


def _recording(folder: Path) -> Path:
    path = folder / f"rec-{secrets.token_hex(3)}.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x00" * 8000)
    return path


def _mwi_phone(user: str, server: ServerProcess, log_dir: Path) -> Phone:
    """A phone that subscribes to its mailbox.

    Its URI names the server's address: pjsua sends the SUBSCRIBE to the
    account's own URI, and pjsua 2.15 aborts (pjsip_dlg_dec_lock assertion)
    when that send fails at once, as it does for an unresolvable domain.
    The server files a numeric host under the default domain.
    """
    return Phone.start(user, f"{user}pass", server.udp_port, log_dir=log_dir, mwi=True,
                       domain=f"127.0.0.1:{server.udp_port}")


def _mwi_body(phone: Phone, text: str, since: int, timeout: float = 10.0) -> dict[str, str]:
    return phone.wait_event("mwi", timeout, since=since,
                            where=lambda e: text in str(e.get("body", "")))


def _cli(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "softswitch", "voicemail", *args,
                           "--data-dir", str(server.data_dir)],
                          cwd=ROOT, capture_output=True, text=True, timeout=30)


def test_subscribed_phone_lights_on_a_deposit_and_goes_dark_when_deleted(
        mwi_server: ServerProcess, tmp_path: Path) -> None:
    with _mwi_phone("1001", mwi_server, tmp_path) as phone:
        since = phone.mark()
        assert phone.register() == 200
        # The NOTIFY that follows the SUBSCRIBE at once (RFC 6665 4.2.1.2).
        first = _mwi_body(phone, "Messages-Waiting: no", since)
        assert first["subscription_state"].startswith("active")
        since = phone.mark()
        deposit(mwi_server.data_dir, "1001@pbx.example.com", _recording(tmp_path),
                caller="1002", caller_name="Bob Example", duration=1.0, call_id="c1")
        lit = _mwi_body(phone, "Messages-Waiting: yes", since)
        assert "Voice-Message: 1/0" in lit["body"]
        assert "Message-Account: sip:1001@pbx.example.com" in lit["body"]
        assert lit["subscription_state"].startswith("active;expires=")
        listed = _cli(mwi_server, "1001", "--json")
        assert listed.returncode == 0, listed.stderr
        assert '"caller": "1002"' in listed.stdout
        since = phone.mark()
        deleted = _cli(mwi_server, "delete", "1001", "--all")
        assert deleted.returncode == 0, deleted.stderr
        _mwi_body(phone, "Messages-Waiting: no", since)


def test_phone_without_subscription_gets_unsolicited_notify(
        mwi_server: ServerProcess, tmp_path: Path) -> None:
    with Phone.start("1002", "1002pass", mwi_server.udp_port, log_dir=tmp_path) as phone:
        assert phone.register() == 200
        since = phone.mark()
        deposit(mwi_server.data_dir, "1002@pbx.example.com", _recording(tmp_path),
                caller="1001", duration=1.0)
        lit = _mwi_body(phone, "Messages-Waiting: yes", since)
        assert "Voice-Message: 1/0" in lit["body"]
        store = VoicemailStore(mwi_server.data_dir)
        wait_for(lambda: store.messages("1002@pbx.example.com") or None, 5)
        [message] = store.messages("1002@pbx.example.com")
        assert message.caller == "1001" and message.received.tzinfo is not None
        since = phone.mark()
        store.mark_heard("1002@pbx.example.com", message.id)
        heard = _mwi_body(phone, "Voice-Message: 0/1", since)
        assert "Messages-Waiting: no" in heard["body"]


# -- refusals from a raw client --------------------------------------------------------------

def _subscribe(client: SipClient, server: ServerProcess, *, event: str = "message-summary",
               user: str = "1001", auth: str | None = None, call_id: str | None = None,
               cseq: int = 1, to_tag: str | None = None, expires: str = "600") -> bytes:
    uri = f"sip:{user}@127.0.0.1:{server.udp_port}"
    headers = {"Event": event, "Expires": expires,
               "Contact": f"<sip:{user}@{client.local[0]}:{client.local[1]}>",
               "Accept": "application/simple-message-summary"}
    if auth is not None:
        headers["Authorization"] = auth
    request = build_request(client, "SUBSCRIBE", uri, headers=headers,
                            call_id=call_id, cseq=cseq)
    request = request.replace(f"From: <sip:tester@{client.local[0]}>".encode(),
                              f"From: <{uri}>".encode())
    if to_tag is not None:
        request = request.replace(f"To: <{uri}>".encode(), f"To: <{uri}>;tag={to_tag}".encode())
    return request


def _next_response(client: SipClient) -> Response:
    """The next response, skipping the NOTIFYs the server sends this client."""
    while True:
        item = client.recv_raw(3.0)
        assert item is not None, "no answer from the server"
        if isinstance(item, bytes):
            message = parse_message(item)
            if isinstance(message, Response) and message.status >= 200:
                return message


def _authorized(client: SipClient, server: ServerProcess, **kwargs: object) -> Response:
    call_id = str(kwargs.pop("call_id", secrets.token_hex(8)))
    challenge = client.request(_subscribe(client, server, call_id=call_id, **kwargs))  # type: ignore[arg-type]
    assert challenge is not None and challenge.status == 401
    found = first_challenge(challenge)
    assert found is not None
    auth = authorization(found[0], "SUBSCRIBE", f"sip:1001@127.0.0.1:{server.udp_port}",
                         "1001", "1001pass", cnonce="abc", nc=1)
    client.send(_subscribe(client, server, call_id=call_id, cseq=2, auth=auth,
                           **kwargs))  # type: ignore[arg-type]
    return _next_response(client)


def test_subscribe_without_credentials_is_challenged(mwi_server: ServerProcess) -> None:
    with SipClient("udp", ("127.0.0.1", mwi_server.udp_port)) as client:
        response = client.request(_subscribe(client, mwi_server))
        assert response is not None and response.status == 401
        assert response.get("www-authenticate") is not None


def test_other_event_packages_get_489_with_allow_events(mwi_server: ServerProcess) -> None:
    with SipClient("udp", ("127.0.0.1", mwi_server.udp_port)) as client:
        response = client.request(_subscribe(client, mwi_server, event="presence"))
        assert response is not None and response.status == 489
        assert response.get("allow-events") == "message-summary"


def test_authenticated_subscribe_is_accepted_and_an_unknown_one_refreshed_is_481(
        mwi_server: ServerProcess) -> None:
    with SipClient("udp", ("127.0.0.1", mwi_server.udp_port)) as client:
        accepted = _authorized(client, mwi_server)
        assert accepted.status == 200
        assert accepted.get("expires") == "600" and accepted.to_tag
        # The NOTIFY that follows comes to our Contact.
        notify = wait_for(lambda: _a_notify(client), 5)
        assert notify.get("event") == "message-summary"
        refused = _authorized(client, mwi_server, to_tag="nosuchsubscription")
        assert refused.status == 481
        too_short = client.request(_subscribe(client, mwi_server, expires="10"))
        assert too_short is not None and too_short.status == 423
        assert too_short.get("min-expires") == "60"


def _a_notify(client: SipClient) -> Request | None:
    item = client.recv_raw(0.5)
    if isinstance(item, bytes):
        message = parse_message(item)
        if isinstance(message, Request) and message.method == "NOTIFY":
            return message
    return None


def test_subscriptions_survive_a_restart(own_server: ServerProcess, tmp_path: Path) -> None:
    own_server.start()
    with _mwi_phone("1002", own_server, tmp_path) as phone:
        since = phone.mark()
        assert phone.register() == 200
        _mwi_body(phone, "Messages-Waiting: no", since)
        assert own_server.stop() == 0
        own_server.start()
        since = phone.mark()
        deposit(own_server.data_dir, "1002@pbx.example.com", _recording(tmp_path),
                caller="1001", duration=2.5)
        # In the dialog the phone made before the restart: pjsua would answer
        # a NOTIFY of an unknown dialog 481 and never report it.
        lit = _mwi_body(phone, "Messages-Waiting: yes", since)
        assert lit["subscription_state"].startswith("active;expires=")
