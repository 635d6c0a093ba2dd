"""The embedded relay: `softswitch run` starts `softswitch relay` as a child process.

Restarted when it dies, after a wait that doubles from 0.5 s to 30 s and
starts over once a child has stayed up for a minute (a relay that crashes
at once must not spin); every exit and restart is logged. Stopped on exit:
SIGTERM, then SIGKILL if it lingers. The relay keeps its allocations in
DATA/relay, so a restarted child forwards the same calls again.
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ProcessDone, ProcessExitedAlready
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure

from softswitch.logs import get_logger

FIRST_WAIT = 0.5
LONGEST_WAIT = 30.0
STABLE_AFTER = 60.0
STOP_GRACE = 5.0


def relay_command(control: str, ports: str, advertise: str, data_dir: str, notify: str,
                  *, listen_address: str | None = None,
                  silence_timeout: float | None = None) -> list[str]:
    """The command line of our relay (its options are the relay's, see docs/relay.md)."""
    argv = [sys.executable, "-m", "softswitch", "relay", "--control", control,
            "--ports", ports, "--advertise", advertise, "--data-dir", data_dir,
            "--notify", notify]
    if listen_address:
        argv += ["--listen-address", listen_address]
    if silence_timeout is not None:
        argv += ["--silence-timeout", f"{silence_timeout:g}"]
    return argv


class _Child(ProcessProtocol):
    def __init__(self, owner: EmbeddedRelay) -> None:
        self.owner = owner
        self.ended: Deferred[None] = Deferred()

    def outReceived(self, data: bytes) -> None:  # noqa: N802
        self.owner.output(data)

    def errReceived(self, data: bytes) -> None:  # noqa: N802
        self.owner.output(data)

    def processEnded(self, reason: Failure) -> None:  # noqa: N802
        self.owner.ended(self, reason)
        self.ended.callback(None)


class EmbeddedRelay(Service):
    def __init__(self, argv: list[str], reactor: Any, *, env: dict[str, str] | None = None
                 ) -> None:
        self.argv = argv
        self.reactor = reactor
        self.env = env
        self.process: Any = None
        self.child: _Child | None = None
        self.child_pid: int | None = None  # Twisted forgets the pid once the process ends
        self.started_at = 0.0
        self.wait = FIRST_WAIT
        self.restarts = 0
        self._restart: Any = None
        self.log = get_logger("softswitch.relay")

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def startService(self) -> None:  # noqa: N802
        super().startService()
        self._spawn()

    def _spawn(self) -> None:
        self._restart = None
        self.child = _Child(self)
        self.started_at = self.reactor.seconds()
        self.process = self.reactor.spawnProcess(self.child, self.argv[0], self.argv,
                                                 env=self.env, childFDs={0: "w", 1: "r", 2: "r"})
        self.child_pid = self.process.pid
        self.log.info("relay_started", pid=self.child_pid)

    def output(self, data: bytes) -> None:
        # The relay logs on its own; pass its lines on so the operator sees them.
        for line in data.decode("utf-8", "replace").splitlines():
            if line.strip():
                sys.stderr.write(line + "\n")

    def ended(self, child: _Child, reason: Failure) -> None:
        if child is not self.child:
            return
        pid = self.child_pid
        self.process = None
        if not self.running:
            return
        code = getattr(reason.value, "exitCode", None)
        sig = getattr(reason.value, "signal", None)
        if self.reactor.seconds() - self.started_at >= STABLE_AFTER:
            self.wait = FIRST_WAIT
        self.log.error("relay_died", pid=pid, exit_code=code, signal=sig,
                       clean=isinstance(reason.value, ProcessDone), restart_in=self.wait)
        self.restarts += 1
        self._restart = self.reactor.callLater(self.wait, self._spawn)
        self.wait = min(self.wait * 2, LONGEST_WAIT)

    def stopService(self) -> Deferred[None]:  # noqa: N802
        super().stopService()
        if self._restart is not None and self._restart.active():
            self._restart.cancel()
        self._restart = None
        child, process = self.child, self.process
        if child is None or process is None:
            return succeed(None)
        try:
            process.signalProcess("TERM")
        except ProcessExitedAlready:
            return succeed(None)

        def kill() -> None:
            try:
                process.signalProcess("KILL")
            except ProcessExitedAlready:
                pass

        killer = self.reactor.callLater(STOP_GRACE, kill)

        def done(_: None) -> None:
            if killer.active():
                killer.cancel()
            self.log.info("relay_stopped")

        return child.ended.addCallback(done)
