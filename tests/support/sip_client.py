"""A small blocking SIP client over UDP, TCP and TLS for integration tests.

It writes raw requests (so tests can send anything, broken or not) and reads
responses with the project's parser and stream framer.
"""

from __future__ import annotations

import secrets
import socket
import ssl
import time
from typing import Any

from softswitch.sip.framing import KeepAlivePing, StreamFramer
from softswitch.sip.message import Response, parse_message


class SipClient:
    def __init__(self, transport: str, server: tuple[str, int], bind: str = "127.0.0.1") -> None:
        self.transport = transport
        self.server = server
        self.framer = StreamFramer()
        self.raw = b""
        self.pending: list[Any] = []
        if transport == "udp":
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.bind((bind, 0))  # another loopback address: another source
        else:
            plain = socket.create_connection(server, timeout=5, source_address=(bind, 0))
            if transport == "tls":
                ctx = ssl.create_default_context()
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                self.sock = ctx.wrap_socket(plain, server_hostname="127.0.0.1")
            else:
                self.sock = plain
        self.local = self.sock.getsockname()[:2]

    def __enter__(self) -> SipClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    @property
    def via_transport(self) -> str:
        return self.transport.upper()

    def send(self, data: bytes) -> None:
        if self.transport == "udp":
            self.sock.sendto(data, self.server)
        else:
            self.sock.sendall(data)

    def recv_raw(self, timeout: float = 2.0) -> bytes | KeepAlivePing | None:
        """The next datagram, framed stream message or keep-alive; None on timeout."""
        if self.pending:
            return self.pending.pop(0)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                if self.transport == "udp":
                    data, _ = self.sock.recvfrom(70000)
                    return data
                data = self.sock.recv(70000)
            except TimeoutError:
                return None
            except OSError:
                return None
            if not data:
                return None
            self.raw += data
            items = self.framer.feed(data)
            if items:
                self.pending.extend(items[1:])
                return items[0]

    def recv(self, timeout: float = 2.0) -> Response | None:
        """The next response, skipping keep-alives; None on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            item = self.recv_raw(max(0.0, deadline - time.monotonic()))
            if item is None:
                return None
            if isinstance(item, KeepAlivePing):
                continue
            message = parse_message(item, datagram=self.transport == "udp")
            if isinstance(message, Response):
                return message

    def request(self, data: bytes, timeout: float = 2.0) -> Response | None:
        self.send(data)
        return self.recv(timeout)


def build_request(client: SipClient, method: str, uri: str, *, headers: dict[str, str] | None = None,
                  body: bytes = b"", cseq: int = 1, call_id: str | None = None,
                  branch: str | None = None, max_forwards: int = 70) -> bytes:
    host, port = client.local
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: SIP/2.0/{client.via_transport} {host}:{port};branch={branch or 'z9hG4bK' + secrets.token_hex(6)};rport",
        f"Max-Forwards: {max_forwards}",
        f"From: <sip:tester@{host}>;tag={secrets.token_hex(4)}",
        f"To: <{uri}>",
        f"Call-ID: {call_id or secrets.token_hex(8)}@test",
        f"CSeq: {cseq} {method}",
    ]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def options_request(client: SipClient, **kwargs: Any) -> bytes:
    return build_request(client, "OPTIONS", f"sip:{client.server[0]}:{client.server[1]}", **kwargs)
