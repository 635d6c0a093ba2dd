"""An rtpengine ng protocol client over UDP (cookie + bencode, `rtpmedia.ng`).

One socket asks every relay. Each request gets a fresh cookie; it is sent
again on the SIP retransmission schedule (`Backoff`: T1 doubling to T2)
until an answer with its cookie arrives or the overall timeout passes, when
its Deferred fails with `NgTimeout`. A relay answers a retry with the same
cookie from its cache, so retries are safe (rtpengine does the same).
An answer `{"result": "error"}` fails the Deferred with `NgFailure`.

The relay may also tell us things (our relay's extensions, see
docs/relay.md): an unsolicited `teardown` is handed to
`on_teardown(call_id, reason)`, a `media event` (a prompt played, a
recording done, a voicemail flow ended, a digit) to
`on_media_event(call_id, message)`. Each is answered `{"result": "ok"}`
with its cookie every time it comes (the relay repeats it, with the same
cookie, until it hears that answer). A teardown is handed on every time
(ending a call twice is harmless); a media event only the first time: a
repeated `played` must not end the prompt that follows.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.protocol import DatagramProtocol

from rtpmedia import ng
from softswitch.logs import get_logger
from softswitch.sip.retransmit import Backoff

Address = tuple[str, int]

# How long a media event's cookie is remembered: longer than a relay repeats
# it (30 s in the hosted-ng agreement).
NOTICE_MEMORY = 60.0


class NgTimeout(Exception):
    """The relay did not answer in time."""

    def __init__(self, address: Address, command: str) -> None:
        super().__init__(f"no answer from relay {address[0]}:{address[1]} to {command}")
        self.address = address
        self.command = command


class NgFailure(Exception):
    """The relay answered `{"result": "error"}` (or something that is not ng)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(slots=True, eq=False)
class _Pending:
    datagram: bytes
    address: Address
    command: str
    backoff: Backoff
    deadline: float
    deferred: Deferred[dict[str, Any]]
    timer: Any = None
    sent: int = field(default=1)


def parse_address(text: str) -> Address:
    """`udp:HOST:PORT` (or `HOST:PORT`; `[v6]:PORT`) as (host, port); ValueError if not."""
    rest = text[4:] if text.lower().startswith("udp:") else text
    if rest.startswith("["):
        host, close, port = rest[1:].partition("]")
        port = port[1:] if close and port.startswith(":") else ""
    else:
        host, _, port = rest.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected udp:HOST:PORT, got {text!r}")
    return host, int(port)


class NgClient(DatagramProtocol):
    """Requests to ng relays with retries and a timeout; unsolicited teardowns from them."""

    def __init__(self, clock: Any, *, t1: float = 0.25, t2: float = 1.0,
                 timeout: float = 3.0,
                 on_teardown: Callable[[str, str], None] | None = None,
                 on_media_event: Callable[[str, dict[str, Any]], None] | None = None) -> None:
        self.clock = clock
        self.t1 = t1
        self.t2 = t2
        self.timeout = timeout
        self.on_teardown = on_teardown
        self.on_media_event = on_media_event
        # Media events already handed on, by (relay, cookie) -> when; oldest first.
        self._noticed: dict[tuple[Address, bytes], float] = {}
        # A random prefix: a restarted softswitch must not reuse cookies a
        # relay still has in its answer cache.
        self._prefix = os.urandom(4).hex()
        self._numbers = itertools.count(1)
        self._pending: dict[bytes, _Pending] = {}
        self.log = get_logger("softswitch.relay")

    def request(self, address: Address, message: dict[str, Any],
                timeout: float | None = None) -> Deferred[dict[str, Any]]:
        """Send `message` to the relay at `address`; fires with its answer (str keys)."""
        cookie = f"{self._prefix}_{next(self._numbers)}".encode()
        datagram = ng.encode(cookie, message)
        deferred: Deferred[dict[str, Any]] = Deferred()
        backoff = Backoff(self.t1, self.t2)
        pending = _Pending(datagram, address, str(message.get("command", "")), backoff,
                           self.clock.seconds() + (timeout or self.timeout), deferred)
        self._pending[cookie] = pending
        self._send(pending)
        pending.timer = self.clock.callLater(backoff.first(), self._retry, cookie)
        return deferred

    @property
    def outstanding(self) -> int:
        """Requests sent and not yet answered (tests, metrics)."""
        return len(self._pending)

    def _send(self, pending: _Pending) -> None:
        if self.transport is None:
            return  # not listening (yet, or any more): the timeout will tell
        try:
            self._write(pending.datagram, pending.address)
        except OSError as exc:  # an unreachable relay answers ICMP; keep retrying
            self.log.debug("ng_send_failed", relay=f"{pending.address[0]}:{pending.address[1]}",
                           error=str(exc))

    def _write(self, datagram: bytes, address: Address) -> None:
        # Twisted's IUDPTransport stub types write() for connected sockets only.
        transport: Any = self.transport
        transport.write(datagram, address)

    def _retry(self, cookie: bytes) -> None:
        pending = self._pending.get(cookie)
        if pending is None:
            return
        now = self.clock.seconds()
        delay = pending.backoff.next()
        if now >= pending.deadline - 1e-9 or delay is None:
            del self._pending[cookie]
            pending.deferred.errback(NgTimeout(pending.address, pending.command))
            return
        pending.sent += 1
        self._send(pending)
        pending.timer = self.clock.callLater(min(delay, max(0.0, pending.deadline - now)),
                                             self._retry, cookie)

    def datagramReceived(self, datagram: bytes, addr: Address) -> None:  # noqa: N802
        try:
            cookie, message = ng.decode(datagram)
        except ng.NgError as exc:
            self.log.warning("ng_bad_datagram", source=f"{addr[0]}:{addr[1]}", error=str(exc))
            return
        pending = self._pending.pop(cookie, None)
        if pending is not None:
            if pending.timer is not None and pending.timer.active():
                pending.timer.cancel()
            if message.get("result") == "error":
                pending.deferred.errback(NgFailure(str(message.get("error-reason", "error"))))
            else:
                pending.deferred.callback(message)
            return
        command = message.get("command")
        if command == "teardown" or command == "media event":
            self._notified(cookie, message, addr)
        # Anything else: a late answer to a request we gave up on.

    def _notified(self, cookie: bytes, message: dict[str, Any], addr: Address) -> None:
        """An unsolicited notice from a relay: acknowledge it, then hand it on."""
        call_id = message.get("call-id")
        if not isinstance(call_id, str) or not call_id:
            self._write(ng.encode(cookie, {"result": "error", "error-reason": "no call-id"}),
                        addr)
            return
        self._write(ng.encode(cookie, {"result": "ok"}), addr)
        if message.get("command") == "teardown":
            if self.on_teardown is not None:
                self.on_teardown(call_id, str(message.get("reason") or "media timeout"))
        elif self.on_media_event is not None and self._first_time(addr, cookie):
            self.on_media_event(call_id, message)

    def _first_time(self, addr: Address, cookie: bytes) -> bool:
        now = self.clock.seconds()
        noticed = self._noticed
        for key, when in list(noticed.items()):
            if now - when < NOTICE_MEMORY:
                break  # the rest are younger
            del noticed[key]
        if (addr, cookie) in noticed:
            return False
        noticed[(addr, cookie)] = now
        return True

    def stop(self) -> None:
        """Fail every request still waiting (the server stops)."""
        pending, self._pending = self._pending, {}
        for p in pending.values():
            if p.timer is not None and p.timer.active():
                p.timer.cancel()
            p.deferred.errback(NgTimeout(p.address, p.command))
