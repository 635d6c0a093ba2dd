"""What the brute-force guard costs per message, next to parsing the same message.

The guard looks at every message before the SIP core parses it
(`SourceGuard.admit`: the ban table, the scanner User-Agent search over the
headers, the source's token bucket). This measures, in one run and side by
side, microseconds per call of `parse_message` and of `admit` for an
INVITE with SDP and a REGISTER, from one source and from 10,000 sources
(the bucket table at its busiest), and for a scanner's OPTIONS (dropped).

Run: .venv/bin/python bench/guard.py [--count 200000]
Figures only: nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import itertools
import timeit

from softswitch.guard.settings import SCANNER_USER_AGENTS
from softswitch.guard.sources import SourceGuard
from softswitch.sip.message import parse_message

INVITE = (
    b"INVITE sip:2125551234@pbx.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK776asdhds;rport\r\n"
    b"Max-Forwards: 70\r\nTo: <sip:2125551234@pbx.example.com>\r\n"
    b"From: \"Alice\" <sip:1001@pbx.example.com>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710@pc33.example.com\r\nCSeq: 314159 INVITE\r\n"
    b"Contact: <sip:1001@198.51.100.7:5060>\r\nUser-Agent: Linphone/5.2.0 (belle-sip/5.2.0)\r\n"
    b"Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REFER, NOTIFY\r\n"
    b"Supported: replaces, timer, 100rel\r\nContent-Type: application/sdp\r\n"
    b"Content-Length: 142\r\n\r\n"
    b"v=0\r\no=- 1 1 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\n"
    b"m=audio 4000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n")
REGISTER = (
    b"REGISTER sip:pbx.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bKnashds7;rport\r\n"
    b"Max-Forwards: 70\r\nTo: <sip:1001@pbx.example.com>\r\n"
    b"From: <sip:1001@pbx.example.com>;tag=456248\r\nCall-ID: 843817637684230@998sdasdh09\r\n"
    b"CSeq: 1826 REGISTER\r\nContact: <sip:1001@198.51.100.7:5060>\r\nExpires: 3600\r\n"
    b"User-Agent: Yealink SIP-T46S 66.86.0.15\r\nContent-Length: 0\r\n\r\n")
SCANNER = (
    b"OPTIONS sip:100@203.0.113.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.66:5070;branch=z9hG4bK-1\r\n"
    b"Max-Forwards: 70\r\nTo: <sip:100@203.0.113.1>\r\nFrom: <sip:100@203.0.113.1>;tag=1\r\n"
    b"Call-ID: 1@192.0.2.66\r\nCSeq: 1 OPTIONS\r\nUser-Agent: friendly-scanner\r\n"
    b"Content-Length: 0\r\n\r\n")


def per_call(fn: object, count: int) -> float:
    timer = timeit.Timer(fn)  # type: ignore[arg-type]
    return min(timer.repeat(3, count)) / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200_000)
    args = parser.parse_args()
    n = args.count
    guard = SourceGuard(requests_per_second=1e9, request_burst=1e9,
                        scanner_agents=SCANNER_USER_AGENTS)
    hosts = [f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}" for i in range(10_000)]
    many = itertools.cycle(hosts)
    print(f"{'message':<10} {'parse_message µs':>17} {'admit, 1 source µs':>19} "
          f"{'admit, 10k sources µs':>22} {'admit / parse':>14}")
    for name, data in (("INVITE", INVITE), ("REGISTER", REGISTER), ("scanner", SCANNER)):
        parse = per_call(lambda d=data: parse_message(d), n)
        one = per_call(lambda d=data: guard.admit("198.51.100.7", d, 0.0), n)
        spread = per_call(lambda d=data: guard.admit(next(many), d, 0.0), n)
        print(f"{name:<10} {parse:>17.2f} {one:>19.2f} {spread:>22.2f} {one / parse:>14.1%}")


if __name__ == "__main__":
    main()
