"""A PCMU-only phone calls a PCMA-only phone through softswitch and its embedded relay:
the relay transcodes, and each phone hears the other."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.relay.test_relay_phones import INTACT, assert_relayed, exchange
from tests.support.phone import Phone, answered_call, start_phones
from tests.support.server import ServerProcess, embedded_relay_config
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    media, ports = embedded_relay_config(100)
    server = ServerProcess(
        tmp_path_factory.mktemp("transcode-phones"),
        extra_config=media)
    server.port_range = ports  # type: ignore[attr-defined]
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_a_pcmu_only_phone_and_a_pcma_only_phone_hear_each_other(
        server: ServerProcess, tmp_path: Path) -> None:
    a, b = start_phones([
        dict(user="1001", password="1001pass", server_port=server.udp_port, log_dir=tmp_path,
             codecs="PCMU/8000/1"),
        dict(user="1002", password="1002pass", server_port=server.udp_port, log_dir=tmp_path,
             codecs="PCMA/8000/1")])
    try:
        assert a.register() == 200 and b.register() == 200
        call, incoming = answered_call(a, b, f"sip:1002@127.0.0.1:{server.udp_port}")
        alice, bob = (a, call), (b, incoming)
        assert_relayed(server, alice, bob)
        # Each phone speaks its own law: the relay converts between them.
        assert a.stats(call)["codec"] == "PCMU" and b.stats(incoming)["codec"] == "PCMA"
        scores = exchange(tmp_path / "both", (alice, bob), (bob, alice))
        assert min(scores) > INTACT, scores
        # RFC 4733 digits cross the transcoded call both ways (payload type mapped).
        for sender, s_call, receiver, r_call, digits in ((a, call, b, incoming, "159#"),
                                                         (b, incoming, a, call, "*260")):
            since = receiver.mark()
            sender.dtmf(s_call, digits)

            def heard(r: Phone = receiver, t: int = since, c: int = r_call) -> str:
                return "".join(e["digit"] for e in r.events[t:]
                               if e.get("event") == "dtmf" and e["call"] == c)

            count = len(digits)
            wait_for(lambda h=heard, n=count: len(h()) >= n, 10, f"{digits} at {receiver.user}")
            assert heard() == digits, heard()
        a.hangup(call)
        b.wait_call_state(incoming, "DISCONNECTED", 10)
    finally:
        a.close()
        b.close()
