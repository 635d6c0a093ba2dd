"""The embedded relay child: restarted with backoff when it dies, stopped on exit.

Runs `EmbeddedRelay` in a separate Python process with the real reactor,
on a stand-in child (a sleeping Python): kill -9 the child, a new one
must come; stop the service, the child must be gone.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from tests.support.server import ROOT

SCRIPT = textwrap.dedent("""
    import json, os, signal, sys
    from twisted.internet import defer, task
    from softswitch.relay import child
    child.FIRST_WAIT = 0.1

    @defer.inlineCallbacks
    def main(reactor):
        relay = child.EmbeddedRelay([sys.executable, "-c", "import time; time.sleep(60)"], reactor)
        relay.startService()
        first = relay.pid
        os.kill(first, signal.SIGKILL)
        for _ in range(100):
            yield task.deferLater(reactor, 0.05, lambda: None)
            if relay.pid not in (None, first):
                break
        second = relay.pid
        yield relay.stopService()
        try:
            os.kill(second, 0)
            alive = True
        except ProcessLookupError:
            alive = False
        print(json.dumps({"first": first, "second": second, "restarts": relay.restarts,
                          "alive_after_stop": alive, "pid_after_stop": relay.pid}))

    task.react(main)
""")


def test_a_killed_child_is_restarted_and_stop_ends_it() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["first"] and result["second"] and result["first"] != result["second"]
    assert result["restarts"] == 1
    assert result["alive_after_stop"] is False and result["pid_after_stop"] is None
    assert "relay_died" in done.stdout + done.stderr


def test_the_relay_command_line() -> None:
    from softswitch.relay.child import relay_command
    argv = relay_command("udp:127.0.0.1:2223", "30000-30099", "192.0.2.5", "/d/relay",
                         "udp:127.0.0.1:2224", silence_timeout=60.0)
    assert argv[1:] == ["-m", "softswitch", "relay", "--control", "udp:127.0.0.1:2223",
                        "--ports", "30000-30099", "--advertise", "192.0.2.5",
                        "--data-dir", "/d/relay", "--notify", "udp:127.0.0.1:2224",
                        "--silence-timeout", "60", "--log-file", "/d/relay/relay.log"]
    # The softswitch's `hep:` collector: the relay captures RTCP to the same place.
    argv = relay_command("udp:127.0.0.1:2223", "30000-30099", "192.0.2.5", "/d/relay",
                         "udp:127.0.0.1:2224", hep="[::1]:9060", hep_id=7)
    assert argv[-6:-2] == ["--hep", "[::1]:9060", "--hep-id", "7"]


class _Reactor:
    """Just enough reactor to see whether a child is spawned (nothing is run)."""

    def __init__(self) -> None:
        from twisted.internet.task import Clock
        self.clock = Clock()
        self.spawned: list[list[str]] = []

    def seconds(self) -> float:
        return self.clock.seconds()

    def callLater(self, *args: object, **kwargs: object) -> object:  # noqa: N802
        return self.clock.callLater(*args, **kwargs)  # type: ignore[arg-type]

    def spawnProcess(self, proto: object, exe: str, argv: list[str], **kw: object  # noqa: N802
                     ) -> object:
        self.spawned.append(argv)

        class _Process:
            pid = 4242
        return _Process()


def test_a_running_relay_is_adopted_and_replaced_only_once_it_is_gone(tmp_path: object) -> None:
    import fcntl
    import os
    from pathlib import Path

    from softswitch.relay import child

    lock = Path(str(tmp_path)) / child.LOCK_FILE
    assert child.relay_holding(lock) is None  # no relay ever ran there
    holder = os.open(str(lock), os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as the running relay's store does
    assert child.relay_holding(lock) == os.getpid()

    reactor = _Reactor()
    relay = child.EmbeddedRelay(["relay"], reactor, lock=lock)
    relay.startService()
    assert reactor.spawned == [] and relay.adopted == os.getpid()
    reactor.clock.advance(child.ADOPTED_CHECK * 3)
    assert reactor.spawned == []  # still held: still adopted
    os.close(holder)  # the adopted relay dies: the kernel releases its flock
    reactor.clock.advance(child.ADOPTED_CHECK)
    assert reactor.spawned == [["relay"]] and relay.adopted is None
