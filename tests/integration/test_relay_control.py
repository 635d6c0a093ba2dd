"""The softswitch's side of the relay protocol, against a scripted ng relay on loopback.

The stand-in relay answers ping, offer, answer (the SDP unchanged, so the
phones' RTP flows directly), query (with figures) and delete, and records
what it was asked. It lets the tests check what no real relay shows from
outside: the tags and flags the softswitch sends, that a `teardown` ends
the call with BYE on both legs and the CDR's cause, that the CDR carries
the relay's figures, and that a relay that stops answering pings gets no
new calls.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rtpmedia import ng
from softswitch.cdr import CdrRecord, read_cdrs
from tests.support.phone import Phone, answered_call, registered_phones
from tests.support.server import ServerProcess, free_port
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


class ScriptedRelay:
    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.asked: list[dict[str, Any]] = []
        self.answering = True
        self.acks: list[tuple[bytes, dict[str, Any]]] = []
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                data, addr = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            cookie, message = ng.decode(data)
            if "command" not in message:
                self.acks.append((cookie, message))  # an answer to our teardown
                continue
            if not self.answering:
                continue
            self.asked.append(message)
            self.sock.sendto(ng.encode(cookie, self.answer(message)), addr)

    def answer(self, message: dict[str, Any]) -> dict[str, Any]:
        command = message["command"]
        if command == "ping":
            return {"result": "pong"}
        if command in ("offer", "answer"):
            return {"result": "ok", "sdp": message["sdp"]}
        if command == "query":
            tags = {m["from-tag"]: 1 for m in self.calls(message["call-id"])}
            tags.update({m["to-tag"]: 2 for m in self.calls(message["call-id"])})
            # Bencode has no floats: a relay sends integers or strings
            # (rtpengine: MOS in tenths).
            return {"result": "ok", "tags": {tag: {"medias": [{"streams": [
                {"stats": {"packets": 100}, "loss": f"{loss}.5", "jitter": 3 * loss,
                 "mos": 44}]}]} for tag, loss in tags.items()}}
        return {"result": "ok"}

    def calls(self, call_id: str) -> list[dict[str, Any]]:
        return [m for m in self.asked if m.get("call-id") == call_id and m["command"] == "offer"]

    def commands(self) -> list[str]:
        return [m["command"] for m in self.asked if m["command"] != "ping"]

    def teardown(self, call_id: str, notify_port: int) -> None:
        self.sock.sendto(ng.encode(b"td1", {"command": "teardown", "call-id": call_id,
                                            "reason": "media timeout"}),
                         ("127.0.0.1", notify_port))

    def close(self) -> None:
        self._stop = True
        self._thread.join()
        self.sock.close()


@pytest.fixture(scope="module")
def relays() -> Iterator[tuple[ScriptedRelay, ScriptedRelay]]:
    one, two = ScriptedRelay(), ScriptedRelay()
    try:
        yield one, two
    finally:
        one.close()
        two.close()


@pytest.fixture(scope="module")
def server(relays: tuple[ScriptedRelay, ScriptedRelay],
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    one, two = relays
    notify = free_port()
    server = ServerProcess(
        tmp_path_factory.mktemp("scripted"),
        extra_config=(f"media:\n  mode: relay\n  embedded: false\n"
                      f"  notify: udp:127.0.0.1:{notify}\n  ping_interval: 0.3\n"
                      f"  timeout: 0.5\n  relays:\n"
                      f"    - address: udp:127.0.0.1:{one.port}\n"
                      f"    - address: udp:127.0.0.1:{two.port}\n"))
    server.notify_port = notify  # type: ignore[attr-defined]
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def phones(server: ServerProcess, tmp_path: Path) -> Iterator[tuple[Phone, Phone]]:
    a, b = registered_phones(server.udp_port, ["1001", "1002"], tmp_path)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def cdr_of(server: ServerProcess, call_id: str) -> CdrRecord | None:
    path = server.data_dir / "cdr.sqlite"
    found = [r for r in read_cdrs(path) if r.uuid == call_id] if path.exists() else []
    return found[0] if found else None


def new_call_ids(relay: ScriptedRelay, before: set[str]) -> list[str]:
    return [m["call-id"] for m in relay.asked if m["command"] == "offer"
            and m["call-id"] not in before]


def test_teardown_ends_the_call_with_bye_both_ways_and_the_cdr_has_the_figures(
        server: ServerProcess, relays: tuple[ScriptedRelay, ScriptedRelay],
        phones: tuple[Phone, Phone]) -> None:
    a, b = phones
    seen = {m["call-id"] for r in relays for m in r.asked if "call-id" in m}
    call, incoming = answered_call(a, b, f"sip:1002@127.0.0.1:{server.udp_port}")
    [(relay, call_id)] = [(r, c) for r in relays for c in new_call_ids(r, seen)]
    [offer] = relay.calls(call_id)
    [answer] = [m for m in relay.asked if m["command"] == "answer" and m["call-id"] == call_id]
    # The agreed naming: answer's tags are the offer's; via-branch names the callee leg.
    assert (answer["from-tag"], answer["to-tag"]) == (offer["from-tag"], offer["to-tag"])
    assert offer["via-branch"] == offer["to-tag"] != offer["from-tag"]
    assert offer["ICE"] == "remove" and offer["replace"] == ["origin", "session-connection"]
    wait_for(lambda: a.stats(call)["rx_packets"] > 10, 10, "RTP")

    relay.teardown(call_id, server.notify_port)  # type: ignore[attr-defined]
    a.wait_call_state(call, "DISCONNECTED", 10)
    b.wait_call_state(incoming, "DISCONNECTED", 10)
    wait_for(lambda: any(cookie == b"td1" and m == {"result": "ok"} for cookie, m in relay.acks),
             5, "the teardown to be acknowledged")
    record = wait_for(lambda: cdr_of(server, call_id), 10, "the CDR")
    assert "media timeout" in record.hangup_cause and record.hangup_side.value == "system"
    # The relay's last figures, per leg: from the caller's tag and the callee's.
    assert (record.a_loss, record.a_jitter, record.a_mos) == (1.5, 3.0, 4.4)
    assert (record.b_loss, record.b_jitter, record.b_mos) == (2.5, 6.0, 4.4)
    ended = relay.commands()
    assert ended[-2:] == ["query", "delete"]
    # (Pings go on every 0.3 s: one may come after the delete.)
    assert [m for m in relay.asked if m["command"] != "ping"][-1] == {"command": "delete",
                                                                      "call-id": call_id}


def test_new_calls_spread_over_relays_and_avoid_one_that_stops_answering(
        server: ServerProcess, relays: tuple[ScriptedRelay, ScriptedRelay],
        phones: tuple[Phone, Phone]) -> None:
    a, b = phones
    one, two = relays
    uri = f"sip:1002@127.0.0.1:{server.udp_port}"

    def place_call() -> ScriptedRelay:
        seen = {m["call-id"] for r in relays for m in r.asked if "call-id" in m}
        call, incoming = answered_call(a, b, uri)
        [taker] = [r for r in relays if new_call_ids(r, seen)]
        a.hangup(call)
        b.wait_call_state(incoming, "DISCONNECTED", 10)
        return taker

    assert {place_call(), place_call()} == {one, two}  # equal weights: one each
    one.answering = False
    pings = len([m for m in two.asked if m["command"] == "ping"])
    # Two missed pings (0.3 s apart) and `one` is down.
    wait_for(lambda: len([m for m in two.asked if m["command"] == "ping"]) >= pings + 3,
             10, "pings")
    assert [place_call() for _ in range(2)] == [two, two]
    one.answering = True
    pings = len([m for m in one.asked if m["command"] == "ping"])
    wait_for(lambda: len([m for m in one.asked if m["command"] == "ping"]) > pings, 10,
             "a ping answered")
    assert one in {place_call(), place_call()}
    assert "relay_down" in server.log() or "relay_down" in server.log_path.read_text()
