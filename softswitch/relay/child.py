"""The embedded relay: `softswitch run` starts `softswitch relay` as a child process.

Restarted when it dies, after a wait that doubles from 0.5 s to 30 s and
starts over once a child has stayed up for a minute (a relay that crashes
at once must not spin); every exit and restart is logged. Stopped on exit:
SIGTERM, then SIGKILL if it lingers. The relay keeps its allocations in
DATA/relay, so a restarted child forwards the same calls again.

The relay does not depend on the softswitch being alive (issue 17): when
the softswitch is killed with SIGKILL the relay keeps forwarding (its log
lines to the broken output pipe are dropped, softswitch.logs tolerates
EPIPE; they were to be passed on by the dead parent anyway). A softswitch started again over the same data dir
adopts the relay it finds running (the relay's store lock is held) rather
than start a second one that would fail on the lock: it watches the lock
and starts its own child only once the adopted relay is gone, and on stop
ends the adopted relay as it would its own child.
"""

from __future__ import annotations

import fcntl
import os
import signal
import sys
from pathlib import Path
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ProcessDone, ProcessExitedAlready
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure

from softswitch.logs import get_logger

FIRST_WAIT = 0.5
LONGEST_WAIT = 30.0
STABLE_AFTER = 60.0
STOP_GRACE = 5.0
ADOPTED_CHECK = 1.0  # how often an adopted relay is looked for
# The relay's store lock (rtpmedia.relay.service.STORE_FILE + ".lock"; not
# imported: the signalling process stays numpy-free).
LOCK_FILE = "relay-calls.sqlite.lock"
# Where the relay reads the HEP collector's auth key (softswitch.cli.relay_cmd's --hep-auth-key).
HEP_AUTH_KEY_ENV = "SOFTSWITCH_HEP_AUTH_KEY"


def relay_holding(lock: Path) -> int | None:
    """The pid of a relay holding `lock` (0 if held by an unknown pid), or None if free."""
    try:
        fd = os.open(str(lock), os.O_RDONLY)
    except OSError:
        return None  # no lock file: no relay ever ran here
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return _flock_owner(os.fstat(fd).st_ino) or 0
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _flock_owner(inode: int) -> int | None:
    """Who holds a flock on `inode`, from /proc/locks ("1: FLOCK ADVISORY WRITE PID MAJ:MIN:INODE ...")."""
    try:
        text = Path("/proc/locks").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5].endswith(f":{inode}"):
            try:
                return int(fields[4])
            except ValueError:
                return None
    return None


def relay_command(control: str, ports: str, advertise: str, data_dir: str, notify: str,
                  *, listen_address: str | None = None,
                  silence_timeout: float | None = None,
                  media_dir: str | None = None, hep: str | None = None,
                  hep_id: int = 0) -> list[str]:
    """The command line of our relay (its options are the relay's, see docs/relay.md).

    `hep` is the softswitch's `hep: collector`, so one setting captures SIP
    and RTCP; its auth key goes in the environment (HEP_AUTH_KEY_ENV), not
    on a command line that ps shows.
    """
    argv = [sys.executable, "-m", "softswitch", "relay", "--control", control,
            "--ports", ports, "--advertise", advertise, "--data-dir", data_dir,
            "--notify", notify]
    if listen_address:
        argv += ["--listen-address", listen_address]
    if silence_timeout is not None:
        argv += ["--silence-timeout", f"{silence_timeout:g}"]
    if media_dir is not None:
        argv += ["--media-dir", media_dir]
    # The relay outlives a softswitch killed with SIGKILL: its log must not
    # depend on the parent's pipes alone.
    if hep:
        argv += ["--hep", hep, "--hep-id", str(hep_id)]
    argv += ["--log-file", os.path.join(data_dir, "relay.log")]
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
    def __init__(self, argv: list[str], reactor: Any, *, env: dict[str, str] | None = None,
                 lock: Path | None = None) -> None:
        self.argv = argv
        self.lock = lock  # the relay's store lock: a relay holding it is adopted
        self.adopted: int | None = None  # pid of a relay we found running (0: unknown)
        self._watch: LoopingCall | None = None
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
        holder = relay_holding(self.lock) if self.lock is not None else None
        if holder is None:
            self._spawn()
            return
        # A relay left running by a softswitch that was killed: it still
        # forwards our calls, and a second one would fail on its lock.
        self.adopted = holder
        self.log.warning("relay_adopted", pid=holder or None)
        self._watch = LoopingCall(self._check_adopted)
        self._watch.clock = self.reactor
        self._watch.start(ADOPTED_CHECK, now=False)

    def _check_adopted(self) -> None:
        assert self.lock is not None
        if relay_holding(self.lock) is not None:
            return
        self.log.error("adopted_relay_gone", pid=self.adopted or None)
        self._stop_watch()
        self.adopted = None
        self._spawn()

    def _stop_watch(self) -> None:
        if self._watch is not None and self._watch.running:
            self._watch.stop()
        self._watch = None

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
        self._stop_watch()
        if self.adopted:
            self._end_adopted(self.adopted)
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

    def _end_adopted(self, pid: int) -> None:
        # Not our child: no processEnded to wait for; SIGTERM lets it save and go.
        try:
            os.kill(pid, signal.SIGTERM)
            self.log.info("adopted_relay_stopped", pid=pid)
        except OSError:
            pass
