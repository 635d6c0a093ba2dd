"""REGISTER load from plain UDP clients that remember every registration the
server acknowledged (a 200 naming the contact), for crash tests.

Each client moves its one binding along: every REGISTER removes its last
acknowledged contact (expires=0) and adds a new one, so an account stays
under the registrar's bindings limit however long the load runs, and the
newest acknowledged contact of each client is the one that must survive.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading

from tests.support.sip_client import SipClient

DOMAIN = "pbx.example.com"
PASSWORDS = {"1001": "1001pass", "1002": "1002pass"}


def authorization(challenge: str, user: str, password: str, uri: str) -> str:
    params = {name.lower(): quoted or bare
              for name, quoted, bare in re.findall(r'(\w+)=(?:"([^"]*)"|([^,\s]+))', challenge)}
    algorithm = params.get("algorithm", "MD5")
    name = {"MD5": "md5", "SHA-256": "sha256"}[algorithm]

    def h(*parts: str) -> str:
        return hashlib.new(name, ":".join(parts).encode()).hexdigest()

    cnonce, nc = secrets.token_hex(8), "00000001"
    response = h(h(user, params["realm"], password), params["nonce"], nc, cnonce, "auth",
                 h("REGISTER", uri))
    return (f'Digest username="{user}", realm="{params["realm"]}", nonce="{params["nonce"]}", '
            f'uri="{uri}", response="{response}", algorithm={algorithm}, cnonce="{cnonce}", '
            f'qop=auth, nc={nc}')


class RegisterLoad:
    """`clients` threads registering new contacts as fast as answered, until stopped."""

    def __init__(self, port: int, label: str, clients: int = 6) -> None:
        self.port = port
        self.label = label
        self.acknowledged: set[tuple[str, str]] = set()  # (aor, contact)
        # Per client: (aor, its newest acknowledged contact, that contact's number).
        self.newest: dict[int, tuple[str, str, int]] = {}
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                         for i in range(clients)]

    def __enter__(self) -> RegisterLoad:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(10)

    def _run(self, index: int) -> None:
        user = sorted(PASSWORDS)[index % len(PASSWORDS)]
        uri = f"sip:127.0.0.1:{self.port}"
        with SipClient("udp", ("127.0.0.1", self.port)) as client:
            host, port = client.local
            n = 0
            previous: str | None = None
            while not self.stop.is_set():
                n += 1
                contact = f"sip:{user}-{self.label}-{index}-{n}@{host}:{port}"
                call_id = f"{secrets.token_hex(8)}@load"
                contacts = f"<{contact}>;expires=3600"
                if previous is not None:
                    contacts += f", <{previous}>;expires=0"

                def register(cseq: int, extra: str = "", n: int = n, call_id: str = call_id,
                             contacts: str = contacts) -> bytes:
                    return (f"REGISTER {uri} SIP/2.0\r\n"
                            f"Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bK{secrets.token_hex(6)}"
                            f";rport\r\nMax-Forwards: 70\r\nFrom: <sip:{user}@{DOMAIN}>;tag={n}\r\n"
                            f"To: <sip:{user}@{DOMAIN}>\r\nCall-ID: {call_id}\r\n"
                            f"CSeq: {cseq} REGISTER\r\nContact: {contacts}\r\n"
                            f"{extra}Content-Length: 0\r\n\r\n").encode()

                challenge = client.request(register(1), timeout=1)
                if challenge is None or challenge.status != 401:
                    continue  # the server is down (killed): try again
                offer = next(v for v in challenge.get_all("www-authenticate") if "MD5" in v)
                auth = authorization(offer, user, PASSWORDS[user], uri)
                answer = client.request(register(2, f"Authorization: {auth}\r\n"), timeout=1)
                if answer is not None and answer.status == 200 and any(
                        str(c.uri) == contact for c in answer.contacts):
                    with self._lock:
                        self.acknowledged.add((f"{user}@{DOMAIN}", contact))
                        self.newest[index] = (f"{user}@{DOMAIN}", contact, n)
                    previous = contact
