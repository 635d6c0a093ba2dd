"""The running server as Twisted services under one MultiService.

`build_application` wires the configured parts together: the transport
layer feeds the SIP core; later services (registrar, B2BUA, management)
attach their handlers to the core. Stopping the MultiService (SIGTERM,
SIGINT) drains the core first, so transactions in flight are answered or
finished, then closes the listeners and the stores.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import LoopingCall, deferLater
from twisted.python.failure import Failure

from softswitch.auth import Authenticator, load_secret
from softswitch.b2bua.b2bua import B2BUA
from softswitch.b2bua.records import snapshot_from_record
from softswitch.b2bua.snapshot import CallSnapshot, cdr_of
from softswitch.callstate import SQLiteCallStateStore
from softswitch.cdr import SQLiteCdrStore
from softswitch.config import Config, ListenAddress
from softswitch.core import SipCore
from softswitch.datadir import (
    DataDirLock,
    ReloadPart,
    ReloadStatus,
    write_reload_status,
)
from softswitch.directory import Directory, DirectoryError, load_directory
from softswitch.fraud.settings import make_policy
from softswitch.guard.service import GuardService
from softswitch.identity import CallerIdentity
from softswitch.location.sqlite import SQLiteLocationStore
from softswitch.logs import get_logger
from softswitch.management.service import ManagementService
from softswitch.mwi_service import MwiService
from softswitch.overload_monitor import build_overload
from softswitch.registrar import Registrar, RegistrarPolicy
from softswitch.relay.side import MediaSide, build_media_side
from softswitch.routing import DialplanService
from softswitch.sip.message import ParserLimits
from softswitch.sip.transaction import TimerSettings
from softswitch.tls_files import existing_default_files
from softswitch.tls_reload import CertificateReloader
from softswitch.transport.dns import DnsLocator
from softswitch.transport.layer import TransportLayer
from softswitch.trunk_registration import TrunkRegistrationService
from softswitch.trunk_tls import TrunkTlsPolicies


class SipService(Service):
    """Listeners plus the SIP core; the first to start and the last to stop."""

    def __init__(self, config: Config, listen: list[ListenAddress], reactor: Any) -> None:
        s = config.settings
        self.config = config
        self.reactor = reactor
        self.grace = s.sip.shutdown_grace
        limits = ParserLimits(s.sip.max_message_size, s.sip.max_headers, s.sip.max_header_line)
        tls = s.tls
        self.transports = TransportLayer(
            listen, sink=self._receive, limits=limits, idle_timeout=s.sip.idle_timeout,
            advertised=s.advertised_address,
            tls_certificate=config.resolve(tls.certificate) if tls.certificate else None,
            tls_private_key=config.resolve(tls.private_key) if tls.private_key else None,
            reactor=reactor, udp_receive_buffer=s.sip.udp_receive_buffer,
            max_connections_per_source=s.sip.max_connections_per_source,
            max_send_buffer=s.sip.max_send_buffer, partial_timeout=s.sip.partial_timeout)
        self.core = SipCore(reactor, self.transports.send, limits=limits,
                            timers=TimerSettings(t1=s.sip.t1, t2=s.sip.t2, t4=s.sip.t4),
                            user_agent=s.sip.user_agent)
        self.transports.connect_failed = self.core.transactions.connection_failed
        self.transports.tls_policy = TrunkTlsPolicies(s.trunks, config.resolve)
        for trunk in s.trunks:
            if not trunk.tls_verify and not trunk.tls_fingerprint:
                get_logger("softswitch.tls").warning(
                    "trunk_tls_not_verified", trunk=trunk.name,
                    hint="tls_verify is off: anyone on the path can pose as this trunk")
        # The brute-force guard's check of each message's source (guard/service.py).
        self.admit: Callable[[bytes, Any], bool] | None = None

    def _receive(self, data: bytes, peer: Any, datagram: bool) -> None:
        if self.admit is not None and not self.admit(data, peer):
            return
        self.core.receive(data, peer, datagram)

    def startService(self) -> None:  # noqa: N802
        self.transports.start()
        super().startService()

    def stopService(self) -> Deferred[Any]:  # noqa: N802
        super().stopService()
        return self.transports.stop_listening()


class RegistrarService(Service):
    """The directory, the location store and the REGISTER handler.

    The store is read into memory at start; expired bindings are swept every
    second. The directory is re-read on reload and when the file changes on
    disk (polled like the dialplan: hand edits count as much as the CLI's);
    a broken file is refused with its errors logged, and the accounts in
    force stay. Bindings of users no longer in the directory are removed.
    """

    def __init__(self, config: Config, data_dir: Path, core: SipCore, reactor: Any,
                 poll_interval: float = 2.0) -> None:
        self.config = config
        self.data_dir = data_dir
        self.core = core
        self.reactor = reactor
        self.directory_path = config.resolve(config.settings.directory)
        self.poll_interval = poll_interval
        self.log = get_logger("softswitch.registrar")
        self.store: SQLiteLocationStore | None = None
        self.registrar: Registrar | None = None
        self._sweeper: LoopingCall | None = None
        self._watcher: LoopingCall | None = None
        self._stamp: tuple[float, int] | None = None

    def _file_stamp(self) -> tuple[float, int] | None:
        try:
            st = self.directory_path.stat()
        except OSError:
            return None
        return (st.st_mtime, st.st_size)

    def startService(self) -> None:  # noqa: N802
        self._stamp = self._file_stamp()
        directory = load_directory(self.directory_path)  # DirectoryError stops the start
        self.store = SQLiteLocationStore(str(self.data_dir / "location.sqlite"), self.reactor)
        self.store.load(self.reactor.seconds())
        r = self.config.settings.registrar
        policy = RegistrarPolicy(r.min_expires, r.default_expires, r.max_expires)
        self.registrar = Registrar(directory, self.store, Authenticator(load_secret(self.data_dir)),
                                   self.reactor, policy)
        self.core.route("REGISTER", self.registrar.handle)
        if self.core.overload is not None:
            # Refreshes of live bindings pass even when new work is refused.
            self.core.overload.is_refresh = self.registrar.is_refresh
        if "path" not in self.core.supported:
            self.core.supported.append("path")
        self._sweeper = LoopingCall(self._sweep)
        self._sweeper.clock = self.reactor
        self._sweeper.start(1.0, now=False)
        self._watcher = LoopingCall(self._poll)
        self._watcher.clock = self.reactor
        self._watcher.start(self.poll_interval, now=False)
        # Users removed while the server was down leave bindings behind.
        self._remove_bindings_of_removed_users(directory)
        self.log.info("registrar_started", bindings=len(self.store),
                      accounts=sum(1 for _ in directory.accounts()))
        super().startService()

    def _poll(self) -> None:
        if self._file_stamp() != self._stamp:
            self.log.info("directory_changed_on_disk", path=str(self.directory_path))
            self.reload()

    def _remove_bindings_of_removed_users(self, directory: Directory) -> None:
        """Delete, durably through the store, the bindings no account owns any more."""
        assert self.store is not None
        known = {account.aor for account in directory.accounts()}
        for aor in sorted({b.aor for b in self.store.list()} - known):
            self.log.info("bindings_removed", aor=aor, reason="user not in the directory")
            self.store.remove(aor).addErrback(self._remove_failed, aor)

    def _remove_failed(self, failure: Failure, aor: str) -> None:
        self.log.error("bindings_remove_failed", aor=aor, error=str(failure.value))

    def _sweep(self) -> None:
        assert self.store is not None and self.registrar is not None
        now = self.reactor.seconds()
        for binding in self.store.expire(now):
            self.log.info("binding_expired", aor=binding.aor, contact=binding.contact)

    def reload(self) -> ReloadPart:
        self._stamp = self._file_stamp()
        try:
            directory = load_directory(self.directory_path)
        except DirectoryError as exc:
            for error in exc.errors:
                self.log.error("directory_refused", error=error)
            return ReloadPart("directory", False, "the accounts in force stay", tuple(exc.errors))
        accounts = sum(1 for _ in directory.accounts())
        if self.registrar is not None:
            self.registrar.directory = directory
            self._remove_bindings_of_removed_users(directory)
        self.log.info("directory_reloaded", accounts=accounts)
        return ReloadPart("directory", True, f"{accounts} account{'s' if accounts != 1 else ''}")

    def stopService(self) -> None:  # noqa: N802
        super().stopService()
        for loop in (self._sweeper, self._watcher):
            if loop is not None and loop.running:
                loop.stop()
        if self.store is not None:
            self.store.close()


class CallService(Service):
    """The B2BUA, its CDR store and the store of established calls."""

    def __init__(self, config: Config, data_dir: Path, sip: SipService,
                 registrar: RegistrarService, dialplan_service: DialplanService,
                 reactor: Any, media: MediaSide | None = None) -> None:
        self.config = config
        self.media = media
        self.data_dir = data_dir
        self.sip = sip
        self.registrar_service = registrar
        self.dialplan_service = dialplan_service
        self.reactor = reactor
        self.log = get_logger("softswitch.b2bua")
        self.cdrs: SQLiteCdrStore | None = None
        self.calls: SQLiteCallStateStore | None = None
        self.b2bua: B2BUA | None = None
        # Told of every ended call after its CDR is queued (the call inspection, metrics).
        self.end_hooks: list[Callable[[CallSnapshot], None]] = []

    def local_address(self, peer: Any) -> tuple[str, int]:
        """Our address and port on the path to `peer` (for Via, Contact, HEP capture)."""
        return self._local(peer)

    def _local(self, peer: Any) -> tuple[str, int]:
        return self.sip.transports.local(peer)

    def startService(self) -> None:  # noqa: N802
        registrar = self.registrar_service.registrar
        assert registrar is not None
        self.cdrs = SQLiteCdrStore(str(self.data_dir / "cdr.sqlite"), self.reactor)
        self.cdrs.open()
        self.calls = SQLiteCallStateStore(str(self.data_dir / "calls.sqlite"), self.reactor)
        self.calls.load()
        s = self.config.settings
        # Read through the registrar at each call: a reload replaces its directory.
        identity = CallerIdentity(lambda: registrar.directory, registrar.auth, list(s.trunks),
                                  local_names=registrar.local_names)
        self.b2bua = B2BUA(
            self.sip.core, registrar, lambda: self.dialplan_service.plan, self._local,
            list(s.trunks), self.reactor, timers=self.sip.core.timers,
            on_call_end=self._ended, on_call_changed=self._changed,
            max_duration=float(s.max_call_duration),
            session_expires=s.sip.session_expires, min_se=s.sip.min_se,
            dns=DnsLocator(servers=s.dns_server_addresses or None, reactor=self.reactor),
            identity=identity, media_choice=media.choice if (media := self.media) else None,
            policy=make_policy(s.toll, lambda: registrar.directory, lambda: s.trunks))
        if media is not None:
            media.on_teardown(self.b2bua.hang_up)
            media.on_media_event(self.b2bua.media_event)
        self.b2bua.install()
        for option in ("100rel", "timer"):  # RFC 3262, RFC 4028
            if option not in self.sip.core.supported:
                self.sip.core.supported.append(option)
        for document in self.calls.snapshots():
            try:
                snapshot = CallSnapshot.from_dict(document)
            except (KeyError, TypeError, ValueError) as exc:
                self.log.error("call_restore_failed", error=f"unreadable snapshot: {exc}")
                continue
            self.b2bua.restore(snapshot)
        for record in self.calls.list():  # saved by a version without snapshots
            self.b2bua.restore(snapshot_from_record(record))
        super().startService()

    def _changed(self, snapshot: CallSnapshot) -> None:
        assert self.calls is not None
        self.calls.save_snapshot(snapshot.uuid, snapshot.started, snapshot.as_dict()).addErrback(
            lambda f: self.log.error("call_state_save_failed", call=snapshot.uuid,
                                     call_id=snapshot.call_id, error=str(f.value)))

    def _ended(self, snapshot: CallSnapshot) -> None:
        assert self.cdrs is not None and self.calls is not None
        if snapshot.answered is None and is_emergency(snapshot):
            # An emergency call that failed is what an operator must hear
            # about first: error level, whatever the cause.
            code, _, reason = snapshot.hangup_cause.partition(" ")
            self.log.error("emergency_call_failed", call=snapshot.uuid, call_id=snapshot.call_id,
                           caller=snapshot.caller, dialled=snapshot.dialled,
                           dest=dict(snapshot.variables).get("dest", snapshot.dialled),
                           code=snapshot.sip_code, reason=reason if code.isdigit() else "",
                           cause=snapshot.hangup_cause,
                           b_legs=[leg.target for leg in snapshot.legs if not leg.caller_side])
        calls, cdrs = self.calls, self.cdrs
        record = cdr_of(snapshot)
        done: Deferred[Any]
        if self.media is not None:
            # The relay's last figures of the call (loss, jitter, MOS per leg) go in the
            # CDR; the relay answers within its timeout, or the columns stay empty.
            def write(columns: dict[str, float | None]) -> Deferred[None]:
                return cdrs.write(replace(record, **columns))  # type: ignore[arg-type]

            done = self.media.figures(snapshot).addCallback(write)
        else:
            done = cdrs.write(record)
        if snapshot.answered is not None:
            # The CDR first: a crash in between sends a BYE again on restart,
            # and the second CDR is ignored (written once per call uuid).
            done.addCallback(lambda _: calls.remove(snapshot.uuid).addErrback(
                lambda f: self.log.error("call_state_remove_failed", call=snapshot.uuid,
                                         call_id=snapshot.call_id, error=str(f.value))))
        done.addErrback(lambda f: self.log.error("cdr_write_failed", call=snapshot.uuid,
                                                 call_id=snapshot.call_id, error=str(f.value)))
        for hook in self.end_hooks:
            try:
                hook(snapshot)
            except Exception:  # noqa: BLE001 - inspection must never lose a CDR or a call
                self.log.exception("call_end_hook_failed", call=snapshot.uuid,
                                   call_id=snapshot.call_id)

    def stopService(self) -> Deferred[None]:  # noqa: N802
        if self.b2bua is not None:
            self.b2bua.stop()
        super().stopService()
        if self.cdrs is not None:
            self.cdrs.close()  # commits the last CDRs; their callbacks wait for the reactor
        # Those callbacks remove the ended calls from the call store: close it
        # only after them (thread calls run before the next timed call), or a
        # restart would find the calls again and BYE them a second time.
        return deferLater(self.reactor, 0, self._close_call_store)

    def _close_call_store(self) -> None:
        if self.calls is not None:
            self.calls.close()


EMERGENCY_NUMBERS = frozenset({"911", "112"})


def is_emergency(call: CallSnapshot) -> bool:
    """911/112 as dialled or after the dialplan's rewriting, or a rule's `set: {emergency: yes}`."""
    variables = dict(call.variables)
    flag = variables.get("emergency", "").strip().lower()
    return (flag in ("yes", "true", "1")
            or call.dialled in EMERGENCY_NUMBERS
            or variables.get("dest") in EMERGENCY_NUMBERS)


class PidFile(Service):
    """`DATA_DIR/softswitch.pid` and the data dir lock (see `softswitch.datadir`).

    The lock is taken by `build_application`, before anything opens a store;
    this service gives it back, last, when the server stops.
    """

    def __init__(self, lock: DataDirLock) -> None:
        self.lock = lock

    def stopService(self) -> None:  # noqa: N802
        super().stopService()
        self.lock.release()


class Application(MultiService):
    """Everything `softswitch run` runs, plus the reload hooks of SIGHUP."""

    def __init__(self, config: Config, data_dir: Path, listen: list[ListenAddress],
                 reactor: Any) -> None:
        super().__init__()
        self.config = config
        self.data_dir = data_dir
        self.log = get_logger("softswitch")
        self.reload_hooks: list[Callable[[], object]] = []
        self.reload_attempt = 0
        self.sip = SipService(config, listen, reactor)
        self.sip.setServiceParent(self)
        self.guard = GuardService(config.settings.guard, data_dir, self.sip.core,
                                  [a.port for a in listen], config.settings.trunks, reactor)
        self.guard.setServiceParent(self)
        self.sip.admit = self.guard.admit
        self.sip.transports.accepts_source = self.guard.accepts_connection
        self.guard.on_ban = self.sip.transports.close_connections_from
        self.overload = build_overload(config.settings.overload, self.sip.core,
                                       self.sip.transports, reactor)
        self.overload.setServiceParent(self)
        self.registrar = RegistrarService(config, data_dir, self.sip.core, reactor)
        self.registrar.setServiceParent(self)
        self.reload_hooks.append(self.registrar.reload)
        self.dialplan = DialplanService(
            config.resolve(config.settings.dialplan), reactor,
            known_users=self._known_users,
            known_trunks=lambda: [t.name for t in config.settings.trunks])
        self.dialplan.setServiceParent(self)
        self.reload_hooks.append(self._reload_dialplan)
        # Before the calls: restored calls may need their relay at once.
        self.media = build_media_side(config, data_dir, reactor)
        self.media.setServiceParent(self)
        self.calls = CallService(config, data_dir, self.sip, self.registrar, self.dialplan,
                                 reactor, media=self.media)
        self.calls.setServiceParent(self)
        self.trunk_registrations = TrunkRegistrationService(
            config.settings.trunks, self.sip.core, self.calls._local, reactor)
        self.trunk_registrations.setServiceParent(self)
        transports = self.sip.transports
        if transports.tls_certificate is None and transports.tls_private_key is None:
            # What `softswitch tls selfsigned` wrote, when the configuration names none.
            found = existing_default_files(data_dir)
            if found is not None:
                transports.tls_certificate = found.certificate
                transports.tls_private_key = found.private_key
        self.tls = CertificateReloader(self.sip.transports, reactor)
        self.tls.setServiceParent(self)
        self.reload_hooks.append(self.tls.reload)
        # Voicemail's message-waiting indication (SUBSCRIBE, NOTIFY, deposits).
        self.mwi = MwiService(data_dir, self.sip.core, lambda: self.registrar.registrar,
                              self.sip.transports.local,
                              reactor)
        self.mwi.setServiceParent(self)
        # After the calls: its observers and hooks need the core and the B2BUA.
        self.management = ManagementService(self, reactor, media=self.media.live)
        self.management.setServiceParent(self)
        if (live := self.media.live) is not None:
            # The relay's figures in /metrics, and leg names ("a", "b1") for its tags.
            self.management.sources.relay = live.totals
            live.leg_names = self._relay_leg_names
        self.lock = DataDirLock(data_dir)
        PidFile(self.lock).setServiceParent(self)

    def _relay_leg_names(self) -> list[tuple[str, dict[str, str]]]:
        b2bua = self.calls.b2bua
        if b2bua is None:
            return []
        return [(c.uuid, {str(leg.id): leg.name for leg in c.legs}) for c in b2bua.live_calls()]

    def _known_users(self) -> list[str] | None:
        registrar = self.registrar.registrar
        if registrar is None:
            return None
        return [account.user for account in registrar.directory.accounts()]

    def _reload_dialplan(self) -> ReloadPart:
        if self.dialplan.reload():
            return ReloadPart("dialplan", True, f"generation {self.dialplan.generation}")
        return ReloadPart("dialplan", False, f"generation {self.dialplan.generation} kept",
                          tuple(self.dialplan.refused))

    def startService(self) -> None:  # noqa: N802
        super().startService()
        self._write_reload_status([])
        for trunk in self.config.settings.trunks:
            if trunk.host.lower().rstrip(".").endswith(".invalid"):
                # The shipped example trunk: calls through it fail until it is filled in.
                self.log.warning("trunk_not_configured", trunk=trunk.name, host=trunk.host,
                                 hint="put your provider's details in the configuration, "
                                 "see docs/trunks.md")

    def reload(self) -> list[ReloadPart]:
        """Re-read what can change at run time (directory, dialplan); say how it went.

        The outcome goes to DATA_DIR/reload-status.json, where `softswitch
        reload` and `softswitch users` read what the server did.
        """
        self.log.info("reload")
        self.reload_attempt += 1
        parts: list[ReloadPart] = []
        for hook in self.reload_hooks:
            try:
                part = hook()
            except Exception as exc:  # noqa: BLE001 - one failed reload must not stop the others
                self.log.exception("reload_failed")
                part = ReloadPart(getattr(hook, "__name__", "reload"), False,
                                  errors=(f"internal error: {exc}",))
            if isinstance(part, ReloadPart):
                parts.append(part)
        self._write_reload_status(parts)
        return parts

    def _write_reload_status(self, parts: list[ReloadPart]) -> None:
        try:
            write_reload_status(self.data_dir, ReloadStatus(
                os.getpid(), self.reload_attempt, time.time(), tuple(parts)))
        except OSError as exc:
            self.log.error("reload_status_not_written", error=str(exc))

    @inlineCallbacks
    def stopService(self) -> Any:  # noqa: N802
        # Drain first, with every service still up: a REGISTER in flight
        # still reaches the store and gets its 200. Then stop them all.
        self.log.info("stopping", grace=self.sip.grace)
        # Unregister while the listeners still read the answers.
        yield self.trunk_registrations.unregister_all()
        yield self.sip.core.drain(self.sip.grace)
        yield super().stopService()
        self.log.info("stopped")


def build_application(config: Config, data_dir: Path, listen: list[ListenAddress] | None,
                      reactor: Any) -> Application:
    """The server's services; DataDirBusy if another server runs on `data_dir`."""
    data_dir.mkdir(parents=True, exist_ok=True)
    addresses = listen or config.settings.listen_addresses
    app = Application(config, data_dir, addresses, reactor)
    # Before any service opens a store in the data dir.
    app.lock.acquire()
    return app
