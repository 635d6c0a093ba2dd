"""Malformed SIP messages and how a server must treat each.

Each case is sent as is: the unit tests feed it to `parse_message` and
`error_response`, the integration tests over UDP and TCP to a running server.
`expect` is the status of the answer, or "drop" when no answer may be sent
(nothing identifies the sender, or the message is a response or an ACK:
RFC 3261 17.1.1.1, 18.1.2). All messages are written for these tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Expect = int | Literal["drop"]

VIA = "Via: SIP/2.0/UDP 198.51.100.7:5062;branch=z9hG4bKmalformed1;rport"


@dataclass(slots=True, frozen=True)
class MalformedCase:
    name: str
    data: bytes
    expect: Expect

    def __str__(self) -> str:  # readable pytest ids
        return self.name


def request(
    start: str = "OPTIONS sip:echo@softswitch.test SIP/2.0",
    *,
    drop: tuple[str, ...] = (),
    replace: dict[str, str] | None = None,
    extra: tuple[str, ...] = (),
    body: bytes = b"",
    content_length: str | None = None,
) -> bytes:
    """A well-formed request, then spoiled: header lines dropped or replaced.

    `drop` and `replace` name headers by the text before their colon.
    """
    method = start.split(" ", 1)[0]
    lines = {
        "Via": VIA,
        "Max-Forwards": "Max-Forwards: 70",
        "From": '"Mallory" <sip:mallory@client.test>;tag=m41f0rmed',
        "To": "To: <sip:echo@softswitch.test>",
        "Call-ID": "Call-ID: malformed-7c1e9a@198.51.100.7",
        "CSeq": f"CSeq: 4711 {method}",
    }
    lines["From"] = "From: " + lines["From"]
    for name, line in (replace or {}).items():
        lines[name] = line
    out = [start]
    out += [line for name, line in lines.items() if name not in drop]
    out += extra
    length = str(len(body)) if content_length is None else content_length
    out.append(f"Content-Length: {length}")
    return ("\r\n".join(out) + "\r\n\r\n").encode("utf-8") + body


def _junk() -> bytes:
    # Deterministic binary noise: no CRLF pairs, first byte not a token char.
    return bytes(((i * 73 + 151) % 256) | 0x80 for i in range(700))


def _response(**changes: str) -> bytes:
    lines = [
        changes.get("start", "SIP/2.0 200 OK"),
        VIA,
        "From: <sip:echo@softswitch.test>;tag=a1",
        "To: <sip:mallory@client.test>;tag=b2",
        "Call-ID: resp-1@198.51.100.7",
        "CSeq: 1 OPTIONS",
        "Content-Length: 0",
    ]
    if "without" in changes:
        lines = [line for line in lines if not line.startswith(changes["without"] + ":")]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


CASES: list[MalformedCase] = [
    MalformedCase("binary_junk", _junk(), "drop"),
    MalformedCase("empty_datagram", b"", "drop"),
    MalformedCase("only_line_ends", b"\r\n\r\n\r\n", "drop"),
    MalformedCase("no_via", request(drop=("Via",)), "drop"),
    MalformedCase("unreadable_via", request(replace={"Via": "Via: nonsense"}), "drop"),
    MalformedCase("missing_call_id", request(drop=("Call-ID",)), 400),
    MalformedCase("missing_from", request(drop=("From",)), 400),
    MalformedCase("missing_to", request(drop=("To",)), 400),
    MalformedCase("missing_cseq", request(drop=("CSeq",)), 400),
    MalformedCase("cseq_method_differs",
                  request(replace={"CSeq": "CSeq: 4711 INVITE"}), 400),
    MalformedCase("cseq_number_not_numeric",
                  request(replace={"CSeq": "CSeq: forty OPTIONS"}), 400),
    MalformedCase("cseq_number_over_32_bits",
                  request(replace={"CSeq": "CSeq: 4294967296 OPTIONS"}), 400),
    MalformedCase("content_length_not_numeric",
                  request(content_length="twelve"), 400),
    MalformedCase("content_length_negative", request(content_length="-1"), 400),
    MalformedCase("content_length_beyond_body",
                  request(body=b"short", content_length="500"), 400),
    MalformedCase("version_sip_3",
                  request("OPTIONS sip:echo@softswitch.test SIP/3.0"), 505),
    MalformedCase("garbage_request_line", request("PLEASE answer me now"), 400),
    MalformedCase("request_line_two_words", request("OPTIONS sip:echo@softswitch.test"), 400),
    MalformedCase("bad_request_uri", request("OPTIONS sip:echo@exa$mple.test SIP/2.0"), 400),
    MalformedCase("bad_request_uri_port",
                  request("OPTIONS sip:echo@softswitch.test:99999 SIP/2.0"), 400),
    MalformedCase("header_without_colon",
                  request(extra=("Subject this line has no colon",)), 400),
    MalformedCase("header_bomb",
                  request(extra=tuple(f"X-Filler-{i}: {i}" for i in range(300))), 400),
    MalformedCase("header_line_over_limit",
                  request(extra=("Subject: " + "z" * 9000,)), 400),
    MalformedCase("message_over_64k",
                  request("MESSAGE sip:echo@softswitch.test SIP/2.0",
                          extra=("Content-Type: text/plain",), body=b"m" * 70000), 513),
    MalformedCase("nul_in_header", request(extra=("Subject: nul\x00here",)), 400),
    MalformedCase("bare_cr_in_header",
                  request(extra=("Subject: one\rX-Injected: two",)), 400),
    MalformedCase("unterminated_quote_in_from",
                  request(replace={"From": 'From: "Mallory <sip:mallory@client.test>;tag=q'}),
                  400),
    MalformedCase("from_without_closing_angle",
                  request(replace={"From": "From: <sip:mallory@client.test;tag=q"}), 400),
    MalformedCase("header_not_utf8",
                  request(extra=("Subject: caf",)).replace(b"caf", b"caf\xe9\xff"), 400),
    MalformedCase("continuation_before_any_header",
                  b"OPTIONS sip:echo@softswitch.test SIP/2.0\r\n folded\r\n"
                  + request().split(b"\r\n", 1)[1], 400),
    MalformedCase("response_missing_call_id", _response(without="Call-ID"), "drop"),
    MalformedCase("response_version_sip_3", _response(start="SIP/3.0 200 OK"), "drop"),
    MalformedCase("response_bad_status_code", _response(start="SIP/2.0 2000 OK"), "drop"),
    MalformedCase("ack_missing_cseq",
                  request("ACK sip:echo@softswitch.test SIP/2.0", drop=("CSeq",)), "drop"),
    MalformedCase("ack_cseq_method_differs",
                  request("ACK sip:echo@softswitch.test SIP/2.0",
                          replace={"CSeq": "CSeq: 4711 INVITE"}), "drop"),
]
