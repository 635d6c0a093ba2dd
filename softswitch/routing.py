"""The dialplan in force: loaded at start, replaced on reload, never broken.

`DialplanService` compiles `conf/dialplan.yaml` at start (errors stop the
start) and again on SIGHUP, on `softswitch reload`, and when the file changes
on disk (polled: a stat every two seconds costs nothing and needs no inotify).
A new plan that has errors is refused with every error logged, and the
running plan stays. A call takes `service.plan` once when it starts, so a
reload never changes the routing of calls in progress.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from twisted.application.service import Service
from twisted.internet.task import LoopingCall

import dialplan
from softswitch.logs import get_logger


class DialplanError(Exception):
    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


class DialplanService(Service):
    def __init__(self, path: Path, reactor: Any,
                 known_users: Callable[[], Collection[str] | None] = lambda: None,
                 known_trunks: Callable[[], Collection[str] | None] = lambda: None,
                 poll_interval: float = 2.0) -> None:
        self.path = path
        self.reactor = reactor
        self.known_users = known_users
        self.known_trunks = known_trunks
        self.poll_interval = poll_interval
        self.log = get_logger("softswitch.dialplan")
        self.plan: dialplan.Plan | None = None
        self.generation = 0
        self.refused: list[str] = []  # the errors of the last refused reload
        self._stamp: tuple[float, int] | None = None
        self._watcher: LoopingCall | None = None

    def _file_stamp(self) -> tuple[float, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_mtime, st.st_size)

    def _compile(self) -> dialplan.CheckResult:
        self._stamp = self._file_stamp()
        return dialplan.load_file(self.path, self.known_users(), self.known_trunks())

    def startService(self) -> None:  # noqa: N802
        result = self._compile()
        if result.plan is None:
            raise DialplanError([d.format() for d in result.errors])
        self._install(result, "loaded")
        self._watcher = LoopingCall(self._poll)
        self._watcher.clock = self.reactor
        self._watcher.start(self.poll_interval, now=False)
        super().startService()

    def stopService(self) -> None:  # noqa: N802
        super().stopService()
        if self._watcher is not None and self._watcher.running:
            self._watcher.stop()

    def _poll(self) -> None:
        if self._file_stamp() != self._stamp:
            self.log.info("dialplan_changed_on_disk", path=str(self.path))
            self.reload()

    def reload(self) -> bool:
        """Compile the file again; install it only if it has no errors."""
        result = self._compile()
        if result.plan is None:
            self.refused = [d.format() for d in result.errors]
            for diagnostic in result.errors:
                self.log.error("dialplan_refused", error=diagnostic.format())
            self.log.warning("dialplan_kept", generation=self.generation)
            return False
        self._install(result, "reloaded")
        return True

    def _install(self, result: dialplan.CheckResult, what: str) -> None:
        assert result.plan is not None
        self.plan = result.plan
        self.generation += 1
        for diagnostic in result.warnings:
            self.log.warning("dialplan_warning", warning=diagnostic.format())
        self.log.info(f"dialplan_{what}", path=str(self.path), rules=result.plan.rule_count,
                      generation=self.generation)
