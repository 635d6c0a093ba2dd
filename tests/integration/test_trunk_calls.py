"""Calls through a SIP trunk, with sipp standing in for the provider.

One server for the module, with the shipped dialplan and a `provider` trunk:
its calls go to a sipp UAS on PROVIDER_PORT, and only sipp's UAC port
(PROVIDER_UAC_PORT) is admitted as the provider, so phones and test
clients on 127.0.0.1 are not.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from softswitch.cdr import CdrRecord, Disposition, HangupSide, read_cdrs
from softswitch.sip.message import Response
from tests.support.phone import Phone
from tests.support.server import ServerProcess, free_port
from tests.support.sip_client import SipClient
from tests.support.sipp import SCENARIOS, SippResult, run_sipp
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


NUMBER = "2125551234"  # a 10-digit NANP number: the plan sends +12125551234
E164 = "+12125551234"
DID = "+15550101001"  # the shipped plan's direct-dial DID of extension 1001




class TrunkServer(ServerProcess):
    provider_port: int
    provider_uac_port: int


@pytest.fixture(scope="module")
def trunk_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrunkServer]:
    provider, provider_uac = free_port(), free_port()
    proc = TrunkServer(
        Path(tmp_path_factory.mktemp("trunk")),
        extra_config=(
            "trunks:\n"
            "  - name: provider\n"
            "    host: 127.0.0.1\n"
            f"    port: {provider}\n"
            f'    acl: ["127.0.0.1:{provider_uac}"]\n'
            "    username: trunkuser\n"
            "    context: from-provider\n"))
    proc.provider_port, proc.provider_uac_port = provider, provider_uac
    proc.start()
    yield proc
    proc.stop()


def cdrs(server: ServerProcess) -> list[CdrRecord]:
    path = server.data_dir / "cdr.sqlite"
    return read_cdrs(path) if path.exists() else []


def new_cdr(server: ServerProcess, before: int) -> CdrRecord:
    [record] = wait_for(lambda: cdrs(server)[before:], 10, "the CDR")
    return record


class BackgroundSipp:
    """`run_sipp` in a thread, for scenarios that run while the test drives a phone."""

    def __init__(self, args: list[str], workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.result: SippResult | None = None
        self.thread = threading.Thread(target=self._run, args=(args, workdir), daemon=True)
        self.thread.start()

    def _run(self, args: list[str], workdir: Path) -> None:
        self.result = run_sipp(args, workdir, timeout=60)

    def wait(self, timeout: float = 30) -> SippResult:
        self.thread.join(timeout)
        assert self.result is not None, "sipp did not finish"
        return self.result


def port_taken(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def test_outbound_call_reaches_the_trunk_in_e164(trunk_server: TrunkServer,
                                                 tmp_path: Path) -> None:
    workdir = tmp_path / "uas"
    messages = workdir / "messages.log"
    uas = BackgroundSipp(["-sf", str(SCENARIOS / "trunk_uas.xml"), "-i", "127.0.0.1",
                          "-p", str(trunk_server.provider_port), "-mi", "127.0.0.1",
                          "-mp", str(free_port()), "-m", "1", "-timeout", "30",
                          "-trace_msg", "-message_file", str(messages)], workdir)
    wait_for(lambda: port_taken(trunk_server.provider_port) or uas.result is not None, 10,
             "sipp to listen")
    before = len(cdrs(trunk_server))
    with Phone.start("1001", "1001pass", trunk_server.udp_port, log_dir=tmp_path) as a:
        assert a.register() == 200
        call = a.call(f"sip:{NUMBER}@127.0.0.1:{trunk_server.udp_port}")
        a.wait_call_state(call, "CONFIRMED", 10)
        wait_for(lambda: a.stats(call)["tx_packets"] > 10, 10, "RTP towards the provider")
        a.hangup(call)
        a.wait_call_state(call, "DISCONNECTED", 10)
        assert a.unregister() == 200
    result = uas.wait()
    assert result.successful == 1 and result.failed == 0, result.output
    text = messages.read_text(errors="replace")
    invite = re.search(r"^INVITE .*?(?=\n\n)", text, re.MULTILINE | re.DOTALL)
    assert invite is not None, text
    assert invite.group(0).startswith(f"INVITE sip:{E164}@127.0.0.1:{trunk_server.provider_port}")
    assert re.search(r'^From: "Example Office" <sip:\+15550100100@', invite.group(0),
                     re.MULTILINE), invite.group(0)
    record = new_cdr(trunk_server, before)
    assert record.caller == "1001" and record.dialled == NUMBER
    assert record.trunk == "provider" and record.callee == f"trunk/provider/{E164}"
    assert record.disposition is Disposition.ANSWERED
    assert record.hangup_side is HangupSide.CALLER and record.b_leg_codes == [200]


@pytest.mark.parametrize("scenario,extra", [
    ("provider_uac.xml", []),
    # A provider we register to sends the call to our Contact (the trunk
    # user) and puts the DID in To.
    ("provider_uac_registered.xml", ["-key", "ruser", "trunkuser"]),
])
def test_inbound_call_from_the_provider_rings_the_did(trunk_server: TrunkServer, tmp_path: Path,
                                                      scenario: str, extra: list[str]) -> None:
    before = len(cdrs(trunk_server))
    with Phone.start("1001", "1001pass", trunk_server.udp_port, log_dir=tmp_path) as b:
        assert b.register() == 200
        since = b.mark()
        uac = BackgroundSipp(["127.0.0.1:" + str(trunk_server.udp_port),
                              "-sf", str(SCENARIOS / scenario), "-s", DID, *extra,
                              "-i", "127.0.0.1", "-p", str(trunk_server.provider_uac_port),
                              "-mi", "127.0.0.1", "-mp", str(free_port()),
                              "-m", "1", "-timeout", "30"], tmp_path / "uac")
        incoming = b.wait_event("incoming_call", 10, since=since)
        assert "+12125550000" in incoming["remote_uri"]
        b.answer(incoming["call"], 180)
        b.answer(incoming["call"], 200)
        b.wait_call_state(incoming["call"], "CONFIRMED", 10)
        # sipp keeps the call a second, then hangs up.
        b.wait_call_state(incoming["call"], "DISCONNECTED", 10)
        result = uac.wait()
        assert b.unregister() == 200
    assert result.successful == 1 and result.failed == 0, result.output
    record = new_cdr(trunk_server, before)
    assert record.caller == "+12125550000" and record.dialled == DID
    assert record.context == "from-provider" and record.trunk == "provider"
    assert record.callee == "user/1001" and record.disposition is Disposition.ANSWERED
    assert record.hangup_side is HangupSide.CALLER


# -- nobody reaches the trunk without authenticating -------------------------------------


def _invite(client: SipClient, uri: str, call_id: str, cseq: int, from_tag: str,
            authorization: str | None = None) -> tuple[bytes, str]:
    host, port = client.local
    branch = "z9hG4bK" + secrets.token_hex(6)
    lines = [
        f"INVITE {uri} SIP/2.0",
        f"Via: SIP/2.0/UDP {host}:{port};branch={branch};rport",
        "Max-Forwards: 70",
        f"From: <sip:1001@pbx.example.com>;tag={from_tag}",
        f"To: <{uri}>",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} INVITE",
        f"Contact: <sip:1001@{host}:{port}>",
    ]
    if authorization:
        lines.append(f"Authorization: {authorization}")
    body = (f"v=0\r\no=- 1 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
            f"m=audio 4000 RTP/AVP 0\r\n").encode()
    lines += ["Content-Type: application/sdp", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body, branch


def _ack(client: SipClient, uri: str, call_id: str, cseq: int, from_tag: str, branch: str,
         to: str) -> bytes:
    """The ACK of a non-2xx final response: same branch as its INVITE (RFC 3261 17.1.1.3)."""
    host, port = client.local
    return ("\r\n".join([
        f"ACK {uri} SIP/2.0",
        f"Via: SIP/2.0/UDP {host}:{port};branch={branch};rport",
        "Max-Forwards: 70",
        f"From: <sip:1001@pbx.example.com>;tag={from_tag}",
        f"To: {to}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} ACK",
        "Content-Length: 0",
    ]) + "\r\n\r\n").encode()


def _final(client: SipClient) -> Response:
    while True:
        response = client.recv(5)
        assert response is not None, "no final response"
        if response.status >= 200:
            return response


def _md5_authorization(challenge: str, user: str, password: str, uri: str) -> str:
    params = dict(re.findall(r'(\w+)="?([^",]*)"?', challenge))
    realm, nonce = params["realm"], params["nonce"]

    def h(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()

    ha1, ha2 = h(f"{user}:{realm}:{password}"), h(f"INVITE:{uri}")
    value = (f'Digest username="{user}", realm="{realm}", nonce="{nonce}", uri="{uri}", '
             f'algorithm=MD5')
    if "qop" in params:
        cnonce, nc = secrets.token_hex(8), "00000001"
        response = h(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
        value += f', qop=auth, nc={nc}, cnonce="{cnonce}"'
    else:
        response = h(f"{ha1}:{nonce}:{ha2}")
    if "opaque" in params:
        value += f', opaque="{params["opaque"]}"'
    return value + f', response="{response}"'


def test_unauthenticated_invite_never_reaches_the_trunk(trunk_server: TrunkServer) -> None:
    """From 127.0.0.1 but not the provider's port: a stranger, challenged
    (401), then refused with wrong credentials (403); the trunk hears nothing."""
    uri = f"sip:{E164}@127.0.0.1:{trunk_server.udp_port}"
    before = len(cdrs(trunk_server))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as provider, \
            SipClient("udp", ("127.0.0.1", trunk_server.udp_port)) as client:
        provider.bind(("127.0.0.1", trunk_server.provider_port))
        call_id, from_tag = secrets.token_hex(8) + "@test", secrets.token_hex(4)

        invite, branch = _invite(client, uri, call_id, 1, from_tag)
        client.send(invite)
        challenge = _final(client)
        assert challenge.status == 401
        client.send(_ack(client, uri, call_id, 1, from_tag, branch,
                         challenge.get("to") or ""))
        offers = [v for n, v in challenge.headers
                  if n.lower() == "www-authenticate"]
        md5 = next(v for v in offers if re.search(r"algorithm=\"?MD5\b", v, re.IGNORECASE))

        invite, branch = _invite(client, uri, call_id, 2, from_tag,
                                 _md5_authorization(md5, "1001", "wrong-password", uri))
        client.send(invite)
        refused = _final(client)
        assert refused.status == 403
        client.send(_ack(client, uri, call_id, 2, from_tag, branch,
                         refused.get("to") or ""))

        provider.settimeout(1.0)
        try:
            data = provider.recv(65535)
        except TimeoutError:
            data = b""
        assert data == b"", f"the trunk got a request:\n{data.decode(errors='replace')}"
    # Refused before routing: no call, so no CDR.
    assert cdrs(trunk_server)[before:] == []
