"""A SIP trunk over TLS for tests: accepts connections with a given certificate
and answers every INVITE with 486 Busy Here (sipp here is built without TLS).

Enough to show that a request reached the trunk through a verified (or
refused) TLS connection; it records the handshakes and the methods seen.
"""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path

from softswitch.sip.framing import KeepAlivePing, StreamFramer
from softswitch.sip.message import Request, parse_message


class TlsUas:
    def __init__(self, certificate: Path, private_key: Path) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(certificate, private_key)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.methods: list[str] = []
        self.handshakes = 0
        self.failed_handshakes = 0
        self._stop = False
        self._thread = threading.Thread(target=self._serve, name="tls-uas", daemon=True)

    def __enter__(self) -> TlsUas:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop = True
        self.listener.close()
        self._thread.join(5)

    def _serve(self) -> None:
        while not self._stop:
            try:
                plain, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._connection, args=(plain,), daemon=True).start()

    def _connection(self, plain: socket.socket) -> None:
        plain.settimeout(30)
        try:
            conn = self.context.wrap_socket(plain, server_side=True)
        except (ssl.SSLError, OSError):
            self.failed_handshakes += 1
            plain.close()
            return
        self.handshakes += 1
        framer = StreamFramer()
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except (OSError, ssl.SSLError):
                    return
                if not data:
                    return
                for item in framer.feed(data):
                    if isinstance(item, KeepAlivePing):
                        continue
                    message = parse_message(item, datagram=False)
                    if isinstance(message, Request):
                        self.methods.append(message.method)
                        if message.method == "INVITE":
                            conn.sendall(_busy(message))


def _busy(invite: Request) -> bytes:
    lines = ["SIP/2.0 486 Busy Here"]
    for name in ("Via", "From", "Call-ID", "CSeq"):
        for value in invite.get_all(name):
            lines.append(f"{name}: {value}")
    to = invite.get("To") or ""
    lines.append(f"To: {to};tag=busy1" if ";tag=" not in to else f"To: {to}")
    lines.append("Content-Length: 0")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()
