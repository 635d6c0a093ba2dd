"""Splitting a TCP/TLS byte stream into SIP messages (RFC 3261 18.3).

Over a stream each message ends after Content-Length bytes of body; a segment
may hold several messages or a part of one. Between messages a peer may send
the RFC 5626 4.4.1 keep-alive: a double CRLF "ping", which we answer with a
single CRLF "pong"; a lone CRLF (a pong) is skipped.

The framer only frames: it hands each message's bytes to the parser, and
raises MessageError when the stream cannot be framed any more (the
connection must then be closed, as there is no way to find the next message).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from softswitch.sip.errors import MessageError
from softswitch.sip.message import DEFAULT_LIMITS, ParserLimits

_CONTENT_LENGTH_RE = re.compile(
    rb"^(?:content-length|l)[ \t]*:[ \t]*([^\r\n]*?)[ \t]*\r?$", re.IGNORECASE | re.MULTILINE
)


@dataclass(slots=True, frozen=True)
class KeepAlivePing:
    """A CRLFCRLF ping: answer it with `PONG`."""


PING = KeepAlivePing()
PONG = b"\r\n"


class StreamFramer:
    """Feed it bytes; get back whole messages (bytes) and keep-alive pings."""

    __slots__ = ("_buffer", "_limits", "_need", "_scanned")

    def __init__(self, limits: ParserLimits = DEFAULT_LIMITS) -> None:
        self._buffer = bytearray()
        self._limits = limits
        self._need = 0  # total length of the message in progress, once known
        # How far the search for the end of the headers got: a head sent a
        # byte at a time must not be searched from its start every time.
        self._scanned = 0

    @property
    def pending(self) -> int:
        """Bytes received but not yet part of a whole message."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes | KeepAlivePing]:
        self._buffer += data
        out: list[bytes | KeepAlivePing] = []
        buf = self._buffer
        while buf:
            if not self._need:
                if buf[:1] in (b"\r", b"\n"):
                    if buf.startswith(b"\r\n\r\n"):
                        out.append(PING)
                        del buf[:4]
                        continue
                    if len(buf) < 4 and b"\r\n\r\n".startswith(bytes(buf)):
                        break  # maybe the start of a ping: wait for more
                    # a pong, or stray line ends before a message
                    del buf[: 2 if buf.startswith(b"\r\n") else 1]
                    continue
                end = buf.find(b"\r\n\r\n", self._scanned)
                if end < 0:
                    if len(buf) > self._limits.max_message_size:
                        raise MessageError("header section too large", 513)
                    self._scanned = max(0, len(buf) - 3)
                    break
                self._scanned = 0
                head_len = end + 4
                match = _CONTENT_LENGTH_RE.search(buf, 0, end + 2)
                if match is None:
                    length = 0
                else:
                    text = match.group(1)
                    if not text.isdigit() or len(text) > 9:
                        raise MessageError("bad Content-Length")
                    length = int(text)
                self._need = head_len + length
                if self._need > self._limits.max_message_size:
                    raise MessageError("message too large", 513)
            if len(buf) < self._need:
                break
            out.append(bytes(buf[: self._need]))
            del buf[: self._need]
            self._need = 0
        return out
