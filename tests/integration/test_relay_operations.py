"""The relay in operations: `softswitch calls`, `calls show`, `relays` and `/metrics`
against a running server with its embedded relay and two pjsua2 phones in a call.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from softswitch.cdr import read_cdrs
from tests.integration.test_operations import api, cli, metric
from tests.support.phone import answered_call, registered_phones
from tests.support.server import ServerProcess, embedded_relay_config
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    media, _ = embedded_relay_config()
    server = ServerProcess(
        tmp_path_factory.mktemp("relayops"),
        extra_config=media)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def calls_json(server: ServerProcess) -> list[dict[str, Any]]:
    done = cli(server, "calls", "--json")
    assert done.returncode == 0, done.stderr
    found: list[dict[str, Any]] = json.loads(done.stdout)
    return found


def test_calls_streams_relays_and_metrics_show_the_relayed_call(
        server: ServerProcess, tmp_path: Path) -> None:
    a, b = registered_phones(server.udp_port, ["1001", "1002"], tmp_path)
    try:
        call, incoming = answered_call(a, b, f"sip:1002@127.0.0.1:{server.udp_port}")
        wait_for(lambda: a.stats(call)["rx_packets"] > 25
                 and b.stats(incoming)["rx_packets"] > 25, 10, "RTP both ways via the relay")

        def listed() -> dict[str, Any] | None:
            mine = [c for c in calls_json(server) if c["caller"] == "1001"]
            return mine[0] if mine and (mine[0]["packets"] or 0) > 0 else None

        first = wait_for(listed, 10, "the call listed with relay packets")
        assert first["codecs"] and first["state"] == "confirmed", first
        moved = wait_for(lambda: (c := listed()) is not None
                         and c["packets"] > first["packets"] + 20 and c, 10,
                         "the packet counter moving")
        assert moved["jitter_ms"] is not None and moved["loss"] is not None

        # The table on a pipe: the call's line has its codec.
        table = cli(server, "calls")
        assert table.returncode == 0, table.stderr
        line = next(x for x in table.stdout.splitlines() if first["id"][:8] in x)
        assert first["codecs"][0] in line

        show = cli(server, "calls", "show", first["id"], "--json")
        assert show.returncode == 0, show.stderr
        detail = json.loads(show.stdout)
        streams = detail["streams"]
        leg_names = {leg["name"] for leg in detail["legs"]}
        assert {s["leg"] for s in streams} == leg_names and len(streams) == 2, streams
        for s in streams:
            assert s["packets"] > 25 and s["kernel"] in (True, False), s
        text = cli(server, "calls", "show", first["id"])
        assert "kernel yes" in text.stdout or "kernel no" in text.stdout, text.stdout

        relays = json.loads(cli(server, "relays", "--json").stdout)
        assert relays["configured"]
        [embedded] = relays["relays"]
        assert embedded["name"] == "embedded" and embedded["up"] and embedded["calls"] == 1
        wait_for(lambda: json.loads(cli(server, "relays", "--json").stdout)
                 ["relays"][0]["load"] == 1, 10, "the relay's own call count")
        listing = cli(server, "relays")
        assert listing.returncode == 0 and "embedded" in listing.stdout and "up" in listing.stdout

        metrics = api(server, "/metrics")
        assert metric(metrics, "softswitch_relay_packets_total") > 50, metrics
        assert metric(metrics, "softswitch_relay_streams") == 2
        # The fast path may take a stream into the kernel between two reads: a range.
        assert "softswitch_relay_kernel_streams" in metrics
        assert 0 <= metric(metrics, "softswitch_relay_kernel_streams") <= 2
        a.hangup(call)
        wait_for(lambda: not [c for c in calls_json(server) if c["caller"] == "1001"], 10,
                 "the call gone from the list")
        # The counter stays monotonic after the call has gone.
        after = api(server, "/metrics")
        assert metric(after, "softswitch_relay_packets_total") >= metric(
            metrics, "softswitch_relay_packets_total")
        assert metric(after, "softswitch_relay_streams") == 0
    finally:
        a.close()
        b.close()


def relay_processes(data_dir: Path) -> set[int]:
    """Pids of `softswitch relay` processes serving this data dir (whoever their parent)."""
    wanted = str(data_dir / "relay")
    out: set[int] = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"relay" in argv and wanted.encode() in argv:
            out.add(int(proc.name))
    return out


def test_kill_9_of_the_softswitch_keeps_media_and_the_restart_adopts_the_relay(
        tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    """Issue 17, Crashes: the embedded relay outlives its parent's SIGKILL."""
    media, _ = embedded_relay_config()
    server = ServerProcess(
        tmp_path_factory.mktemp("crash"),
        extra_config=media)
    server.start()
    a, b = registered_phones(server.udp_port, ["1001", "1002"], tmp_path)
    try:
        call, incoming = answered_call(a, b, f"sip:1002@127.0.0.1:{server.udp_port}")
        wait_for(lambda: a.stats(call)["rx_packets"] > 25
                 and b.stats(incoming)["rx_packets"] > 25, 10, "RTP both ways via the relay")
        [relay] = wait_for(lambda: relay_processes(server.data_dir), 10, "the relay process")

        server.kill9()
        before = (a.stats(call)["rx_packets"], b.stats(incoming)["rx_packets"])
        wait_for(lambda: a.stats(call)["rx_packets"] > before[0] + 50
                 and b.stats(incoming)["rx_packets"] > before[1] + 50, 10,
                 "RTP both ways with the softswitch dead")
        assert relay_processes(server.data_dir) == {relay}

        server.start()
        listed = wait_for(lambda: [c for c in calls_json(server) if c["caller"] == "1001"], 10,
                          "the call listed after the restart")
        assert listed[0]["state"] == "confirmed"
        # Adopted, not doubled: the same relay, still forwarding, and no second one.
        before = (a.stats(call)["rx_packets"], b.stats(incoming)["rx_packets"])
        wait_for(lambda: a.stats(call)["rx_packets"] > before[0] + 50
                 and b.stats(incoming)["rx_packets"] > before[1] + 50, 10,
                 "RTP both ways after the restart")
        assert relay_processes(server.data_dir) == {relay}
        wait_for(lambda: (c := [c for c in calls_json(server) if c["caller"] == "1001"])
                 and (c[0]["packets"] or 0) > 0, 10, "the restarted server's relay figures")

        b.hangup(incoming)
        a.wait_call_state(call, "DISCONNECTED", 10)
        [record] = wait_for(lambda: [r for r in read_cdrs(server.data_dir / "cdr.sqlite")
                                     if r.caller == "1001"], 10, "the CDR")
        assert record.hangup_side.value == "callee"
        # The restarted server asked the adopted relay for the figures, then deleted the call.
        assert record.a_loss is not None and record.b_loss is not None, record
        wait_for(lambda: json.loads(cli(server, "relays", "--json").stdout)
                 ["relays"][0]["load"] == 0, 10, "the call deleted on the relay")
        assert "relay_died" not in server.log() and '"relay_adopted"' in server.log()
        # Its log outlived the first parent's pipes: the delete is in its file.
        relay_log = (server.data_dir / "relay" / "relay.log").read_text()
        assert "call deleted" in relay_log and "relay started" in relay_log
    finally:
        a.close()
        b.close()
        server.stop()
        for pid in relay_processes(server.data_dir):  # what the server's stop left behind
            os.kill(pid, signal.SIGKILL)
