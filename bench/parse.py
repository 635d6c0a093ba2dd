"""Parsing and serialising speed of the SIP message layer.

Run `python bench/parse.py` for messages per second of a softphone's INVITE
(with SDP) and a REGISTER with credentials, or `--profile` for the top of a
cProfile of parse + header access. Figures only: nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from softswitch.sip.message import Request, Response, parse_message  # noqa: E402

SDP = (
    b"v=0\r\n"
    b"o=- 3912637321 3912637321 IN IP4 192.0.2.41\r\n"
    b"s=pjmedia\r\n"
    b"b=AS:84\r\n"
    b"t=0 0\r\n"
    b"a=X-nat:0\r\n"
    b"m=audio 4002 RTP/AVP 96 9 8 0 101\r\n"
    b"c=IN IP4 192.0.2.41\r\n"
    b"b=TIAS:64000\r\n"
    b"a=rtcp:4003 IN IP4 192.0.2.41\r\n"
    b"a=sendrecv\r\n"
    b"a=rtpmap:96 opus/48000/2\r\n"
    b"a=fmtp:96 useinbandfec=1\r\n"
    b"a=rtpmap:9 G722/8000\r\n"
    b"a=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-16\r\n"
    b"a=ssrc:1129443431 cname:5b2e1d0a7c3f4e21\r\n"
)

INVITE = (
    "INVITE sip:2002@pbx.example.net SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 192.0.2.41:5060;rport;branch=z9hG4bKPj6f0c1e2d3a4b5c6d7e8f90\r\n"
    "Max-Forwards: 70\r\n"
    'From: "Alice Example" <sip:2001@pbx.example.net>;tag=9c1e7f4a2b3d4e5f\r\n'
    "To: <sip:2002@pbx.example.net>\r\n"
    "Contact: <sip:2001@192.0.2.41:5060;ob>\r\n"
    "Call-ID: 4a7b9c2d1e3f4a5b6c7d8e9f0a1b2c3d\r\n"
    "CSeq: 7341 INVITE\r\n"
    "Route: <sip:pbx.example.net;lr>\r\n"
    "Allow: PRACK, INVITE, ACK, BYE, CANCEL, UPDATE, INFO, SUBSCRIBE, NOTIFY, REFER, MESSAGE, OPTIONS\r\n"
    "Supported: replaces, 100rel, timer, norefersub\r\n"
    "Session-Expires: 1800\r\n"
    "Min-SE: 90\r\n"
    "User-Agent: ExamplePhone/2.14.1 (Linux x86_64)\r\n"
    "Allow-Events: presence, dialog, message-summary, refer\r\n"
    "Content-Type: application/sdp\r\n"
    f"Content-Length: {len(SDP)}\r\n"
    "\r\n"
).encode() + SDP

REGISTER = (
    b"REGISTER sip:pbx.example.net SIP/2.0\r\n"
    b"Via: SIP/2.0/TCP 192.0.2.41:49822;rport;branch=z9hG4bKPj1a2b3c4d5e6f7a8b9c0d\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: <sip:2001@pbx.example.net>;tag=4d5e6f7a8b9c0d1e\r\n"
    b"To: <sip:2001@pbx.example.net>\r\n"
    b"Call-ID: 0f1e2d3c4b5a69788796a5b4c3d2e1f0\r\n"
    b"CSeq: 52013 REGISTER\r\n"
    b'Contact: <sip:2001@192.0.2.41:49822;transport=TCP;ob>;reg-id=1;'
    b'+sip.instance="<urn:uuid:00000000-0000-0000-0000-00005b2e1d0a>"\r\n'
    b"Expires: 300\r\n"
    b"Allow: PRACK, INVITE, ACK, BYE, CANCEL, UPDATE, INFO, SUBSCRIBE, NOTIFY, REFER, MESSAGE, OPTIONS\r\n"
    b"User-Agent: ExamplePhone/2.14.1 (Linux x86_64)\r\n"
    b'Authorization: Digest username="2001", realm="pbx.example.net", '
    b'nonce="a1b2c3d4e5f60718293a4b5c6d7e8f90", uri="sip:pbx.example.net", '
    b'response="0123456789abcdef0123456789abcdef", algorithm=MD5, '
    b'cnonce="f0e1d2c3b4a5", qop=auth, nc=00000001\r\n'
    b"Content-Length: 0\r\n"
    b"\r\n"
)


def parse(data: bytes) -> Request | Response:
    return parse_message(data)


def parse_and_access(data: bytes) -> tuple[object, ...]:
    message = parse_message(data)
    return (message.top_via.branch, message.call_id, message.cseq,
            message.from_tag, message.to_tag)


def rate(func: Callable[[], object], seconds: float) -> float:
    """Calls per second of `func`, best of three runs of about `seconds` / 3."""
    n = 200
    while True:  # calibrate the batch size to ~0.05 s
        start = time.perf_counter()
        for _ in range(n):
            func()
        elapsed = time.perf_counter() - start
        if elapsed > 0.05:
            break
        n *= 2
    batches = max(1, int(seconds / 3 / elapsed))
    best = 0.0
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(batches):
            for _ in range(n):
                func()
        best = max(best, batches * n / (time.perf_counter() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=1.5, help="time per figure")
    parser.add_argument("--profile", action="store_true",
                        help="print the top of a cProfile of parse + access instead")
    args = parser.parse_args()

    messages = {"INVITE+SDP": INVITE, "REGISTER+auth": REGISTER}
    for data in messages.values():  # the samples must be valid
        assert parse_message(data).to_bytes() == data

    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(20000):
            parse_and_access(INVITE)
            parse_and_access(REGISTER)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(20)
        return

    print(f"Python {sys.version.split()[0]}, single process, best of 3, messages/s")
    print(f"{'message':<15}{'bytes':>7}{'parse':>12}{'serialise':>12}{'parse+access':>14}")
    for name, data in messages.items():
        parsed = parse_message(data)
        figures = (rate(lambda d=data: parse_message(d), args.seconds),
                   rate(parsed.to_bytes, args.seconds),
                   rate(lambda d=data: parse_and_access(d), args.seconds))
        print(f"{name:<15}{len(data):>7}" + "".join(f"{f:>12,.0f}" for f in figures[:2])
              + f"{figures[2]:>14,.0f}")
    print("parse+access reads top_via.branch, call_id, cseq, from_tag and to_tag.")


if __name__ == "__main__":
    main()
