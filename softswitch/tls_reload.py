"""Reloading the TLS listener's certificate while the server runs.

The certificate and key are read again on `softswitch reload` (SIGHUP) and
when either file changes on disk (polled, like the directory and the
dialplan, so that a renewal by certbot or an operator's copy needs no
command). A file that cannot be used is refused with its reason and the
certificate in force stays; connections already open keep theirs.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.internet.task import LoopingCall

from softswitch.datadir import ReloadPart
from softswitch.logs import get_logger
from softswitch.transport.layer import TransportLayer
from softswitch.transport.tls import TlsFilesError


class CertificateReloader(Service):
    def __init__(self, transports: TransportLayer, reactor: Any, poll_interval: float = 2.0) -> None:
        self.transports = transports
        self.reactor = reactor
        self.poll_interval = poll_interval
        self.log = get_logger("softswitch.tls")
        self._watcher: LoopingCall | None = None

    def startService(self) -> None:  # noqa: N802
        server = self.transports.tls_server
        if server is not None:
            summary = server.summary
            self.log.info("tls_certificate", subject=summary.subject, not_after=summary.not_after,
                          fingerprint=summary.fingerprint)
            self._watcher = LoopingCall(self._poll)
            self._watcher.clock = self.reactor
            self._watcher.start(self.poll_interval, now=False)
        super().startService()

    def _poll(self) -> None:
        server = self.transports.tls_server
        if server is not None and server.changed_on_disk():
            self.log.info("tls_certificate_changed_on_disk", path=str(server.certificate))
            self.reload()

    def reload(self) -> ReloadPart | None:
        """Swap in the certificate on disk; None when no TLS listener runs."""
        server = self.transports.tls_server
        if server is None:
            return None
        try:
            summary = server.reload()
        except TlsFilesError as exc:
            self.log.error("tls_certificate_refused", error=str(exc))
            return ReloadPart("tls", False, "the certificate in force stays", (str(exc),))
        self.log.info("tls_certificate_reloaded", subject=summary.subject,
                      not_after=summary.not_after, fingerprint=summary.fingerprint)
        return ReloadPart("tls", True, f"certificate {summary.fingerprint[:11]}... "
                          f"until {summary.not_after}")

    def stopService(self) -> None:  # noqa: N802
        super().stopService()
        if self._watcher is not None and self._watcher.running:
            self._watcher.stop()
