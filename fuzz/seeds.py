"""Seed inputs for each fuzz target, written as files for libFuzzer's corpus.

Well-formed examples (so that the fuzzer starts past the first checks) and
the malformed messages of tests/sipcases/malformed.py; the YAML targets
start from the shipped configuration files.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SDP = (b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
       b"m=audio 4000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 "
       b"telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n"
       b"m=video 0 RTP/AVP 96\r\nc=IN IP6 2001:db8::1\r\na=inactive\r\n")

INVITE = (
    "INVITE sip:1002@pbx.example.com;transport=udp SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 192.0.2.7:5062;branch=z9hG4bKabc;rport\r\n"
    "Via: SIP/2.0/TCP [2001:db8::7]:5060;branch=z9hG4bKdef;received=192.0.2.9\r\n"
    "Max-Forwards: 70\r\n"
    "From: \"Alice \\\"A\\\"\" <sip:1001@pbx.example.com>;tag=a1\r\n"
    "To: <sip:1002@pbx.example.com>\r\n"
    "Call-ID: 1234@192.0.2.7\r\nCSeq: 1 INVITE\r\n"
    "Contact: <sip:1001@192.0.2.7:5062;ob>;expires=60, *\r\n"
    "Route: <sip:proxy.example.com;lr>\r\n"
    "Proxy-Authorization: Digest username=\"1001\", realm=\"pbx\", nonce=\"n\", "
    "uri=\"sip:1002@pbx.example.com\", response=\"0123\", qop=auth, nc=00000001, cnonce=\"c\"\r\n"
    "Supported: 100rel, timer\r\nSession-Expires: 1800;refresher=uac\r\n"
    f"Content-Type: application/sdp\r\nContent-Length: {len(SDP)}\r\n\r\n"
).encode() + SDP

RESPONSE = (b"SIP/2.0 401 Unauthorized\r\nVia: SIP/2.0/UDP 192.0.2.7;branch=z9hG4bKx\r\n"
            b"From: <sip:1001@pbx.example.com>;tag=1\r\nTo: <sip:1001@pbx.example.com>;tag=2\r\n"
            b"Call-ID: x\r\nCSeq: 2 REGISTER\r\n"
            b"WWW-Authenticate: Digest realm=\"pbx\", nonce=\"abc\", algorithm=SHA-256, qop=\"auth\"\r\n"
            b"Content-Length: 0\r\n\r\n")

DIGEST = [
    b'Digest username="1001", realm="pbx.example.com", nonce="bm9uY2U", uri="sip:pbx", '
    b'response="6629fae49393a05397450978507c4ef1", algorithm=MD5, qop=auth, nc=00000001, '
    b'cnonce="0a4f113b", opaque="5ccc"',
    b'Digest realm="pbx", nonce="abc", algorithm=SHA-256, qop="auth,auth-int", stale=TRUE',
    b'Digest username="a\\"b", realm=x, nonce=y, uri="u", response=""',
]

NG = [b"cookie1 d7:command4:pinge", b"c2 d7:command5:offer3:sdp3:v=07:call-id1:xe",
      b"c3 d6:result2:ok4:listli1ei2eee"]


def seeds(target: str) -> list[bytes]:
    if target in ("sip_message", "stream_framer"):
        from tests.sipcases.malformed import CASES
        out = [INVITE, RESPONSE, *(c.data for c in CASES if len(c.data) < 4096)]
        if target == "stream_framer":
            out = [b"\r\n\r\n" + INVITE + RESPONSE, INVITE + b"\r\n" + INVITE[:50]] + out
        return out
    if target == "sdp":
        return [SDP, SDP.replace(b"\r\n", b"\n")]
    if target == "digest":
        return DIGEST
    if target == "ng":
        return NG
    names = {"config_yaml": "softswitch.yaml", "directory_yaml": "directory.yaml",
             "dialplan_yaml": "dialplan.yaml"}
    return [(ROOT / "conf" / names[target]).read_bytes()]


def write_seeds(target: str, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for data in seeds(target):
        (folder / hashlib.sha1(data).hexdigest()).write_bytes(data)
    return folder
