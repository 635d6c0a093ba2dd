"""Asking the running server to reload, and reporting what it did.

The server is found through its data dir (see `softswitch.datadir`): only a
server that holds the data dir's lock is signalled, so a pid file left by a
crash never makes us signal a process that reused the pid. After SIGHUP we
wait for the server's reload-status file to show a new attempt, and report
that: in force again, or refused with the errors and their positions.
"""

from __future__ import annotations

import enum
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import click

from softswitch.cli import exitcodes
from softswitch.datadir import PID_FILE, ReloadStatus, read_reload_status, running_server

WAIT = 10.0  # seconds for the server to reload: parsing two files takes milliseconds


class Result(enum.Enum):
    RELOADED = "reloaded"
    REFUSED = "refused"
    NO_SERVER = "no server"
    NO_ANSWER = "no answer"
    DENIED = "denied"


@dataclass(frozen=True, slots=True)
class ReloadOutcome:
    result: Result
    message: str
    status: ReloadStatus | None = None

    @property
    def exit_code(self) -> int:
        if self.result is Result.RELOADED:
            return exitcodes.OK
        if self.result is Result.NO_SERVER:
            return exitcodes.NO_SERVER
        return exitcodes.FAILED


def reload_server(data_dir: Path, timeout: float = WAIT) -> ReloadOutcome:
    """SIGHUP the server running on `data_dir` and wait for what it did."""
    pid = running_server(data_dir)
    if pid is None:
        stale = (data_dir / PID_FILE).exists()
        return ReloadOutcome(Result.NO_SERVER, "no running server"
                             + (" (a stale pid file was ignored)" if stale else ""))
    before = read_reload_status(data_dir)
    seen = before.attempt if before is not None and before.pid == pid else 0
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        return ReloadOutcome(Result.NO_SERVER, "no running server")
    except PermissionError:
        return ReloadOutcome(Result.DENIED, f"could not signal the server (pid {pid}): "
                             "permission denied; run as the server's user")
    deadline = time.monotonic() + timeout
    while True:
        status = read_reload_status(data_dir)
        if status is not None and status.pid == pid and status.attempt > seen:
            break
        if time.monotonic() >= deadline:
            return ReloadOutcome(Result.NO_ANSWER, f"the server (pid {pid}) was signalled but "
                                 f"reported no reload within {timeout:g} s; see its log")
        time.sleep(0.05)
    parts = ", ".join(f"{p.name} ({p.detail})" if p.detail else p.name for p in status.parts)
    if status.ok:
        return ReloadOutcome(Result.RELOADED, f"server reloaded: {parts}", status)
    return ReloadOutcome(Result.REFUSED, "the server refused the change", status)


def report(outcome: ReloadOutcome, data_dir_where: str) -> int:
    """Print the outcome (errors to stderr) and return the exit code."""
    if outcome.result is Result.RELOADED:
        click.echo(outcome.message)
    elif outcome.result is Result.NO_SERVER:
        click.echo(f"{outcome.message} on data dir {data_dir_where}: nothing was reloaded",
                   err=True)
    elif outcome.result is Result.REFUSED:
        assert outcome.status is not None
        click.echo(f"refused: {outcome.message} (pid {outcome.status.pid}); "
                   "what it had stays in force:", err=True)
        for part in outcome.status.parts:
            state = "reloaded" if part.ok else "refused"
            detail = f" ({part.detail})" if part.detail else ""
            click.echo(f"  {part.name}: {state}{detail}", err=True)
            for error in part.errors:
                click.echo(f"    {error}", err=True)
    else:
        click.echo(f"error: {outcome.message}", err=True)
    return outcome.exit_code
