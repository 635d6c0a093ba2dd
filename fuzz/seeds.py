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


def _records(packets: list[tuple[int, bytes]]) -> bytes:
    """Datagrams as `fuzz.targets.datagrams` reads them: length, time step, bytes."""
    return b"".join(len(p).to_bytes(2, "big") + bytes([step]) + p for step, p in packets)


def _rtp(pt: int, seq: int, ts: int, payload: bytes, marker: bool = False) -> bytes:
    return (bytes([0x80, (0x80 if marker else 0) | pt]) + seq.to_bytes(2, "big")
            + ts.to_bytes(4, "big") + b"\x12\x34\x56\x78" + payload)


def _media_seeds() -> list[bytes]:
    """A talkspurt of 20 ms packets with a loss and a reordering, one of 30 ms
    packets, an L16 stream and an RFC 4733 digit."""
    voice = bytes(range(0x40, 0xE0))[:160]
    twenty = [(40, _rtp(0, s, s * 160, voice, s == 0)) for s in (0, 1, 3, 2, 4, 5, 6, 7)]
    thirty = [(60, _rtp(8, s, s * 240, bytes(240), s == 0)) for s in range(8)]
    l16 = [(40, _rtp(96, s, s * 160, bytes(320))) for s in range(5)]
    event = [(40, _rtp(101, 9 + s, 1600, bytes([5, 0x0A | (0x80 if s > 1 else 0)])
                       + (160 * (s + 1)).to_bytes(2, "big")))
             for s in range(4)]
    # A padded packet with an extension and a CSRC.
    odd = [(40, bytes([0xB1, 0]) + (10).to_bytes(2, "big") + (1760).to_bytes(4, "big") + b"\x12\x34\x56\x78"
            + b"\0\0\0\1" + b"\xbe\xde\0\1" + b"\0\0\0\0" + voice + b"\0\0\3")]
    return [_records(twenty), _records(thirty), _records(l16), _records(twenty[:3] + event + odd)]


def _rtcp_seeds() -> list[bytes]:
    """A sender report with one block, a receiver report echoing it, SDES after it."""
    block = (b"\x12\x34\x56\x78" + b"\x05\x00\x00\x03" + (1000).to_bytes(4, "big")
             + (40).to_bytes(4, "big") + b"\xaa\xbb\xcc\xdd" + (6554).to_bytes(4, "big"))
    sr = (bytes([0x81, 200]) + (12).to_bytes(2, "big") + b"\x87\x65\x43\x21"
          + b"\xe9\x00\xaa\xbb\xcc\xdd\x00\x00" + (1600).to_bytes(4, "big")
          + (10).to_bytes(4, "big") + (1600).to_bytes(4, "big") + block)
    rr = bytes([0x81, 201]) + (7).to_bytes(2, "big") + b"\x12\x34\x56\x78" + block
    sdes = bytes([0x81, 202]) + (2).to_bytes(2, "big") + b"\x12\x34\x56\x78" + b"\x01\x01a\x00"
    return [_records([(0, sr), (20, rr + sdes)]), _records([(0, rr)])]


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
    if target == "rtp_media":
        return _media_seeds()
    if target == "rtcp":
        return _rtcp_seeds()
    names = {"config_yaml": "softswitch.yaml", "directory_yaml": "directory.yaml",
             "dialplan_yaml": "dialplan.yaml"}
    return [(ROOT / "conf" / names[target]).read_bytes()]


def write_seeds(target: str, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for data in seeds(target):
        (folder / hashlib.sha1(data).hexdigest()).write_bytes(data)
    return folder
