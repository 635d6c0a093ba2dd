"""Operations against a running server with real pjsua2 calls: the API, the CLI, metrics, HEP.

One server for the module, with a HEP collector (a UDP socket of the test)
and a trunk whose password must never show. The phones call each other;
the tests read the call through `softswitch calls`, hang it up from the
CLI, and check what the metrics and the collector saw.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from softswitch.cdr import read_cdrs
from softswitch.management.hep import HepPacket
from tests.support.hep import Collector
from tests.support.phone import Phone, answered_call, registered_phones
from tests.support.server import ROOT, ServerProcess
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

TRUNK_PASSWORD = "trunk-secret-Zq81x"
TOKEN = "tok-3f9a1c77e2d54b0a9e"


@pytest.fixture(scope="module")
def hep() -> Iterator[Collector]:
    collector = Collector()
    yield collector
    collector.close()


@pytest.fixture(scope="module")
def ops_server(tmp_path_factory: pytest.TempPathFactory, hep: Collector) -> Iterator[ServerProcess]:
    proc = ServerProcess(Path(tmp_path_factory.mktemp("ops")), extra_config=(
        f"hep:\n  collector: 127.0.0.1:{hep.port}\n  agent_id: 7\n"
        "trunks:\n  - name: carrier\n    host: 192.0.2.50\n    port: 5999\n"
        f"    username: acct42\n    password: {TRUNK_PASSWORD}\n"))
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture
def phones(ops_server: ServerProcess, tmp_path: Path) -> Iterator[tuple[Phone, Phone]]:
    a, b = registered_phones(ops_server.udp_port, ["1001", "1002"], tmp_path)
    try:
        yield a, b
    finally:
        for phone in (a, b):
            try:
                phone.unregister()
            finally:
                phone.close()


def cli(server: ServerProcess, *args: str, env: dict[str, str] | None = None,
        ) -> subprocess.CompletedProcess[str]:
    """`softswitch ARGS` with its output on a pipe (so listings are one record per line)."""
    # `users` works on the directory file only: it has no --data-dir.
    where = [] if args[0] == "users" else ["--data-dir", str(server.data_dir)]
    return subprocess.run(
        [sys.executable, "-m", "softswitch", *args, "--config", str(server.config_path), *where],
        cwd=ROOT, capture_output=True, text=True, timeout=30,
        env=dict(os.environ, **(env or {})))


def api(server: ServerProcess, path: str, method: str = "GET", token: str | None = None) -> Any:
    url = json.loads((server.data_dir / "management.json").read_text())["url"]
    request = urllib.request.Request(url + path, method=method,
                                     data=b"" if method == "POST" else None)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=10) as response:
        body = response.read()
    return body.decode() if path == "/metrics" else json.loads(body)


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample of the Prometheus text (0 when absent)."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        match = re.match(r"([a-z_]+)(\{[^}]*\})? (\S+)$", line)
        if match is None or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(match.group(3))
    return total


def ladder_of(call: dict[str, Any], call_id: str) -> list[tuple[str, str]]:
    return [(m["direction"], m["summary"]) for m in call["messages"] if m["call_id"] == call_id]


def in_order(seen: list[tuple[str, str]], wanted: list[tuple[str, str]]) -> bool:
    """Whether `wanted` appears in `seen` in this order (other messages may come between)."""
    position = 0
    for item in seen:
        if position < len(wanted) and (item[0], item[1].split()[0]) == wanted[position]:
            position += 1
    return position == len(wanted)


def test_call_listed_detailed_captured_and_hung_up_from_the_cli(
        ops_server: ServerProcess, phones: tuple[Phone, Phone], hep: Collector) -> None:
    a, b = phones
    before = api(ops_server, "/metrics")
    cdrs_before = len(read_cdrs(ops_server.data_dir / "cdr.sqlite"))
    since = b.mark()
    call = a.call(f"sip:1002@127.0.0.1:{ops_server.udp_port}")
    incoming = int(b.wait_event("incoming_call", 10, since=since)["call"])
    b.answer(incoming, 180)
    a.wait_call_state(call, "EARLY", 10)
    b.answer(incoming, 200)
    a.wait_call_state(call, "CONFIRMED", 10)

    # The list, on a pipe: a header and one whole record per line.
    listed = wait_for(lambda: (r := cli(ops_server, "calls")).stdout.count("\n") == 2 and r,
                      10, "one call in `softswitch calls`")
    assert listed.returncode == 0
    header, line = listed.stdout.splitlines()
    assert header.split("\t") == ["id", "caller", "callee", "state", "duration", "codecs",
                                  "loss", "jitter", "MOS"]
    fields = line.split("\t")
    assert fields[1] == "1001" and fields[2] == "user/1002" and fields[3] == "confirmed"
    assert "PCMU/8000" in fields[5].split() or "PCMA/8000" in fields[5].split()
    assert fields[6:] == ["-", "-", "-"]  # no relay: no media figures
    [summary] = json.loads(cli(ops_server, "calls", "--json").stdout)
    short = fields[0]
    assert summary["id"].startswith(short)

    # The detail, by a prefix of the id, with both legs.
    detail = json.loads(cli(ops_server, "calls", "show", short, "--json").stdout)
    assert detail["context"] == "internal" and detail["rule"]
    legs = {leg["name"]: leg for leg in detail["legs"]}
    assert legs["a"]["call_id"] == detail["call_id"] and legs["a"]["state"] == "confirmed"
    callee = next(leg for leg in detail["legs"] if not leg["caller_side"])
    assert callee["call_id"] != detail["call_id"]
    assert legs["a"]["user_agent"] == "softswitch-test-phone"  # from its INVITE
    assert callee["codecs"] and legs["a"]["codecs"]
    assert detail["timings"]["answered"] >= detail["timings"]["ringing"] >= detail["started"]

    # Hang up from the CLI: both phones see the call end, a CDR is written.
    done = cli(ops_server, "calls", "hangup", short)
    assert done.returncode == 0, done.stderr
    a.wait_call_state(call, "DISCONNECTED", 10)
    b.wait_call_state(incoming, "DISCONNECTED", 10)
    records = wait_for(lambda: read_cdrs(ops_server.data_dir / "cdr.sqlite")[cdrs_before:],
                       10, "the CDR")
    assert records[-1].uuid == summary["id"] and records[-1].answer is not None
    again = cli(ops_server, "calls", "hangup", short)
    assert again.returncode == 1 and "already ended" in again.stderr

    # The ended call is still there for inspection, with the whole ladder.
    def ended() -> dict[str, Any] | None:
        found = json.loads(cli(ops_server, "calls", "show", short, "--json").stdout)
        steps = ladder_of(found, found["call_id"])
        return found if ("in", "200 OK") in steps[-1:] else None

    finished = wait_for(ended, 10, "the BYE's 200 from the caller")
    assert finished["finished"] is True
    steps = ladder_of(finished, finished["call_id"])
    assert in_order(steps, [("in", "INVITE"), ("out", "100"), ("out", "180"), ("out", "200"),
                            ("in", "ACK"), ("out", "BYE"), ("in", "200")]), steps
    b_steps = ladder_of(finished, callee["call_id"])
    assert in_order(b_steps, [("out", "INVITE"), ("in", "180"), ("in", "200"), ("out", "ACK"),
                              ("out", "BYE"), ("in", "200")]), b_steps
    text = cli(ops_server, "calls", "show", short).stdout
    assert "softswitch" in text and re.search(r"\|-+ INVITE -+>\|", text), text

    # Metrics moved by what happened.
    after = api(ops_server, "/metrics")
    for name, labels, delta in [
        ("softswitch_calls_started_total", {}, 1),
        ("softswitch_calls_ended_total", {"disposition": "ANSWERED", "code": "200"}, 1),
        ("softswitch_sip_requests_total", {"direction": "out", "method": "BYE"}, 2),
    ]:
        assert metric(after, name, **labels) - metric(before, name, **labels) == delta, name
    assert metric(after, "softswitch_sip_requests_total", direction="in", method="INVITE") \
        - metric(before, "softswitch_sip_requests_total", direction="in", method="INVITE") >= 1
    assert metric(after, "softswitch_sip_response_seconds_count", side="ours",
                  method="INVITE") > 0
    assert metric(after, "softswitch_calls_active") == 0

    # HEP: the collector got every message of both legs, correlated by Call-ID.
    for call_id, seen in ((finished["call_id"], steps), (callee["call_id"], b_steps)):
        def captured(call_id: str = call_id) -> list[HepPacket]:
            return [p for p in hep.drain() if p.correlation_id == call_id]

        packets = wait_for(lambda seen=seen, captured=captured: len(captured()) >= len(seen) and
                           captured(), 10, "HEP packets")
        assert len(packets) == len(seen)
        for packet in packets:
            assert packet.agent_id == 7 and packet.payload_type == 1
            assert f"Call-ID: {call_id}".encode() in packet.payload or \
                call_id.encode() in packet.payload
            assert {packet.source[0], packet.destination[0]} == {"127.0.0.1"}
            assert ops_server.udp_port in (packet.source[1], packet.destination[1])
    assert hep.malformed == 0


def test_every_listing_command_on_a_pipe_gives_whole_records(
        ops_server: ServerProcess, phones: tuple[Phone, Phone]) -> None:
    a, b = phones
    call, incoming = answered_call(a, b, f"sip:1002@127.0.0.1:{ops_server.udp_port}")
    live = wait_for(lambda: (r := cli(ops_server, "calls")).stdout.count("\n") == 2 and r,
                    10, "the call listed")
    a.hangup(call)
    b.wait_call_state(incoming, "DISCONNECTED", 10)
    wait_for(lambda: "<1001>\t1002\t" in cli(ops_server, "cdr").stdout, 10, "the CDR")
    outputs = {"calls": live.stdout.splitlines()}
    for args in (["registrations"], ["trunks"], ["cdr"], ["users", "list"]):
        result = cli(ops_server, *args)
        assert result.returncode == 0, (args, result.stderr)
        outputs[args[0]] = result.stdout.splitlines()
    for name, lines in outputs.items():
        assert len(lines) >= 2, (name, lines)
        width = len(lines[0].split("\t"))
        assert width > 2 and all(len(line.split("\t")) == width for line in lines), name
        assert not any(c in "\n".join(lines) for c in "│┃━─"), name  # no box drawing
    # Every field whole: grep finds the record by values that would wrap in a table.
    contact = next(line for line in outputs["registrations"][1:] if line.startswith("1001@"))
    assert re.search(r"\tsip:1001@127\.0\.0\.1:\d+[^\t]*\t", contact)
    assert any(line.split("\t")[1] == "1001" for line in outputs["calls"][1:])
    assert any("1001" in line.split("\t") for line in outputs["users"][1:])
    assert any(line.split("\t")[1] == "Alice Example <1001>" and line.split("\t")[2] == "1002"
               for line in outputs["cdr"][1:])  # `softswitch cdr | grep 1001` finds it
    [trunk] = outputs["trunks"][1:]
    assert trunk.split("\t")[:3] == ["carrier", "udp:192.0.2.50:5999", "from-trunk"]
    relays = cli(ops_server, "relays")
    assert relays.returncode == 0 and "no relay configured" in relays.stdout


def test_secrets_never_leave_the_server(ops_server: ServerProcess,
                                        phones: tuple[Phone, Phone]) -> None:
    a, b = phones
    call, incoming = answered_call(a, b, f"sip:1002@127.0.0.1:{ops_server.udp_port}")
    short = wait_for(lambda: cli(ops_server, "calls").stdout.splitlines()[1:], 10,
                     "the call")[0].split("\t")[0]
    seen = [ops_server.log_path.read_text(errors="replace")]
    for path in ("/api/calls", "/api/trunks", "/api/registrations", "/metrics",
                 f"/api/calls/{short}"):
        seen.append(json.dumps(api(ops_server, path)))
    for args in (["calls"], ["calls", "show", short, "--messages"], ["trunks", "--json"],
                 ["registrations", "--json"]):
        seen.append(cli(ops_server, *args).stdout)
    a.hangup(call)
    b.wait_call_state(incoming, "DISCONNECTED", 10)
    everything = "\n".join(seen)
    assert "INVITE" in everything and "carrier" in everything  # we did look at something
    ha1 = hashlib.md5(b"1001:pbx.example.com:1001pass").hexdigest()
    for secret in ("1001pass", "1002pass", ha1, TRUNK_PASSWORD):
        assert secret not in everything, secret


def test_every_log_line_about_a_call_names_it(ops_server: ServerProcess,
                                              phones: tuple[Phone, Phone]) -> None:
    a, b = phones
    call, incoming = answered_call(a, b, f"sip:1002@127.0.0.1:{ops_server.udp_port}")
    a.hangup(call)
    b.wait_call_state(incoming, "DISCONNECTED", 10)
    lines = [json.loads(line) for line in ops_server.log_path.read_text().splitlines()
             if line.startswith("{")]
    about_calls = [line for line in lines if "call" in line]
    assert about_calls
    for line in about_calls:
        assert line.get("call_id"), line


def test_no_server_exits_3(tmp_path: Path) -> None:
    config = tmp_path / "softswitch.yaml"
    config.write_text(f"data_dir: {tmp_path / 'data'}\n")
    for args in (["calls"], ["calls", "show", "abc"], ["calls", "hangup", "abc"], ["trunks"],
                 ["relays"]):
        result = subprocess.run([sys.executable, "-m", "softswitch", *args, "--config",
                                 str(config)], cwd=ROOT, capture_output=True, text=True,
                                timeout=30)
        assert result.returncode == 3, (args, result)
        assert "no running server" in result.stderr and not result.stdout


def test_api_off_loopback_needs_the_token(own_server: ServerProcess) -> None:
    """Listening on 127.0.0.2 stands for "elsewhere": every request must carry the token."""
    own_server.extra_config = f"management:\n  listen: 127.0.0.2:0\n  token: {TOKEN}\n"
    own_server.start()
    url = json.loads((own_server.data_dir / "management.json").read_text())["url"]
    assert url.startswith("http://127.0.0.2:")
    for token in (None, "wrong-token-0000000000", TOKEN[:-1]):
        with pytest.raises(urllib.error.HTTPError) as refused:
            api(own_server, "/api/calls", token=token)
        assert refused.value.code == 401
        with pytest.raises(urllib.error.HTTPError):
            api(own_server, "/metrics", token=token)
    assert api(own_server, "/api/calls", token=TOKEN) == []
    assert "softswitch_calls_active" in api(own_server, "/metrics", token=TOKEN)
    # The CLI takes the token from the configuration, or the environment.
    assert cli(own_server, "calls").stdout.strip() == "no calls in progress"
    wrong = cli(own_server, "calls", env={"SOFTSWITCH_API_TOKEN": "not-the-token-xxxxxx"})
    assert wrong.returncode == 1 and "refused the token" in wrong.stderr
    assert TOKEN not in wrong.stderr + wrong.stdout
    assert TOKEN not in own_server.log_path.read_text()


def test_top_shows_the_call_opens_its_ladder_and_hangs_it_up(
        ops_server: ServerProcess, phones: tuple[Phone, Phone]) -> None:
    """`softswitch top` driven by textual's pilot, against the real server."""
    import asyncio

    from textual.widgets import DataTable, Static

    from softswitch.cli.api_client import ApiClient
    from softswitch.cli.top_app import CallScreen, TopApp

    a, b = phones
    call, incoming = answered_call(a, b, f"sip:1002@127.0.0.1:{ops_server.udp_port}")
    url = json.loads((ops_server.data_dir / "management.json").read_text())["url"]

    async def until(pilot: Any, predicate: Any, what: str, timeout: float = 10.0) -> None:
        for _ in range(int(timeout / 0.05)):
            if predicate():
                return
            await pilot.pause(0.05)
        raise AssertionError(f"timed out waiting for {what}")

    async def drive() -> None:
        app = TopApp(ApiClient(url))
        async with app.run_test(size=(160, 50)) as pilot:
            table = app.query_one("#calls", DataTable)
            await until(pilot, lambda: table.row_count == 1, "the call in the table")
            row = table.get_row_at(0)
            assert row[1] == "1001" and row[3] == "confirmed"
            status = str(app.query_one("#status", Static).render())
            assert "calls 1" in status and "registrations 2" in status
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, CallScreen), "the detail")
            detail = app.screen.query_one("#detail", Static)
            await until(pilot, lambda: "INVITE" in str(detail.render()), "the ladder")
            assert "legs:" in str(detail.render())
            await pilot.press("h")
            await until(pilot, lambda: "(ended)" in str(detail.render()), "the call ended",
                        timeout=15)
            await pilot.press("escape")
            await until(pilot, lambda: table.row_count == 0, "the table empty")

    asyncio.run(drive())
    a.wait_call_state(call, "DISCONNECTED", 10)
    b.wait_call_state(incoming, "DISCONNECTED", 10)


def test_top_in_a_real_terminal(ops_server: ServerProcess, phones: tuple[Phone, Phone],
                                tmp_path: Path) -> None:
    """`softswitch top` in tmux: the call shows, Enter opens its ladder, q quits."""
    import shutil

    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    a, b = phones
    call, incoming = answered_call(a, b, f"sip:1002@127.0.0.1:{ops_server.udp_port}")
    tmux = ["tmux", "-L", f"softswitch-test-{os.getpid()}", "-f", "/dev/null"]
    command = " ".join([sys.executable, "-m", "softswitch", "top", "--config",
                        str(ops_server.config_path), "--data-dir", str(ops_server.data_dir)])
    subprocess.run([*tmux, "new-session", "-d", "-s", "top", "-x", "160", "-y", "45",
                    "-c", str(ROOT), command], check=True, timeout=10)

    def screen() -> str:
        return subprocess.run([*tmux, "capture-pane", "-p", "-t", "top"], capture_output=True,
                              text=True, timeout=10).stdout

    try:
        wait_for(lambda: "1001" in screen() and "confirmed" in screen(), 20, "the call in top")
        assert "calls 1" in screen()
        subprocess.run([*tmux, "send-keys", "-t", "top", "Enter"], check=True, timeout=10)
        wait_for(lambda: "legs:" in screen() and "user agent softswitch-test-phone" in screen(),
                 10, "the call's detail")
        subprocess.run([*tmux, "send-keys", "-t", "top", "Escape"], check=True, timeout=10)
        # Back on the list (a key sent at once would read as Alt+key after Escape).
        wait_for(lambda: "calls 1" in screen(), 10, "the list again")
        subprocess.run([*tmux, "send-keys", "-t", "top", "q"], check=True, timeout=10)
        wait_for(lambda: subprocess.run([*tmux, "has-session", "-t", "top"],
                                        capture_output=True, timeout=10).returncode != 0,
                 10, "top to quit")
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True, timeout=10)
        a.hangup(call)
        b.wait_call_state(incoming, "DISCONNECTED", 10)
