"""Stream framing by Content-Length and RFC 5626 keep-alives (RFC 3261 18.3, RFC 5626 4.4.1)."""

from __future__ import annotations

import pytest

from softswitch.sip.errors import MessageError
from softswitch.sip.framing import PING, PONG, StreamFramer
from softswitch.sip.message import ParserLimits, parse_message
from tests.sipcases.malformed import request

A = request(body=b"")
B = request("MESSAGE sip:echo@softswitch.test SIP/2.0", body=b"hello\r\n\r\nworld")
C = request("MESSAGE sip:echo@softswitch.test SIP/2.0", body=b"x" * 3000).replace(
    b"Content-Length:", b"l:   ")


def test_several_messages_in_one_segment() -> None:
    framer = StreamFramer()
    assert framer.feed(A + B + C) == [A, B, C]
    assert framer.pending == 0
    for data in (A, B, C):
        parse_message(data, datagram=False)


def test_one_message_across_many_segments() -> None:
    framer = StreamFramer()
    out = []
    for i in range(len(B)):
        out += framer.feed(B[i : i + 1])
    assert out == [B] and framer.pending == 0


def test_body_with_blank_lines_is_not_split() -> None:
    framer = StreamFramer()
    head, _, _ = B.partition(b"\r\n\r\n")
    assert framer.feed(head + b"\r\n\r\nhello\r\n\r\n") == []
    assert framer.feed(b"world" + A[:10]) == [B]
    assert framer.feed(A[10:]) == [A]


def test_ping_gets_pong_and_pong_is_skipped() -> None:
    framer = StreamFramer()
    assert framer.feed(b"\r\n\r\n") == [PING]
    assert PONG == b"\r\n"
    assert framer.feed(b"\r\n\r\n" + A + b"\r\n\r\n") == [PING, A, PING]
    # a ping split across segments
    assert framer.feed(b"\r\n") == []
    assert framer.feed(b"\r\n") == [PING]
    # a lone CRLF (a pong from the peer) before a message is skipped
    assert framer.feed(b"\r\n" + A) == [A]
    assert framer.pending == 0


def test_bad_content_length_breaks_the_stream() -> None:
    for value in (b"ten", b"", b"-5", b"1234567890"):
        framer = StreamFramer()
        data = A.replace(b"Content-Length: 0", b"Content-Length: " + value)
        with pytest.raises(MessageError):
            framer.feed(data)


def test_limits() -> None:
    limits = ParserLimits(max_message_size=4000)
    with pytest.raises(MessageError) as info:
        StreamFramer(limits).feed(C.replace(b"x" * 3000, b"x" * 5000).replace(b"3000", b"5000"))
    assert info.value.status == 513
    with pytest.raises(MessageError) as info:  # headers that never end
        framer = StreamFramer(limits)
        framer.feed(b"OPTIONS sip:x SIP/2.0\r\n")
        for _ in range(400):
            framer.feed(b"X-Filler: 0123456789\r\n")
    assert info.value.status == 513


def test_slow_sender_is_not_rescanned_quadratically() -> None:
    # A 60 KB head fed a byte at a time must stay cheap (the scan resumes).
    framer = StreamFramer()
    head = b"OPTIONS sip:x SIP/2.0\r\n" + b"X: y\r\n" * 10000
    for i in range(len(head)):
        framer.feed(head[i : i + 1])
    assert framer.feed(b"\r\n") == [head + b"\r\n"]
