"""The relay process's Twisted glue: the ng control socket, the forwarder, the store, the timers.

It carries out what `control.Control` decides, in order, and only then
sends the answer: ports are bound and the call is stored before the
softswitch (or Kamailio) learns about them. Once a second it polls the
kernel's counters and lets the control expire silent calls; a call ended
that way is reported to the `--notify` address (see `Notifier`), as is what
the media of a party the relay hosts did (`hosted.py`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import structlog
from twisted.application.service import Service
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import LoopingCall

from rtpmedia import ng
from rtpmedia.hep import HepSender
from rtpmedia.prompts import RATE
from rtpmedia.recorder import Recorder
from rtpmedia.relay.bridge import Bridge, Repairs
from rtpmedia.relay.calls import Call, MediaEnd
from rtpmedia.relay.control import (
    NOT_PROCESSED,
    Bind,
    BridgeMedia,
    CommandError,
    Control,
    Effect,
    Forget,
    ProcessedCounts,
    Record,
    Save,
    StopRecording,
    Teardown,
    Unbind,
    Unkernel,
)
from rtpmedia.relay.engine import MediaEngine, Processor
from rtpmedia.relay.fastpath import FastPath, NoFastPath
from rtpmedia.relay.forwarder import Forwarder
from rtpmedia.relay.hosted import HostedParty, MediaError, MediaFiles, ToneScanner
from rtpmedia.relay.hosting import (
    Echo,
    Host,
    MediaEffect,
    PlayMedia,
    StartPartyRecording,
    StopMedia,
    StopPartyRecording,
    Unhost,
    Voicemail,
)
from rtpmedia.relay.ports import PortPool, ephemeral_overlap, read_ephemeral
from rtpmedia.relay.recording import CallRecording, RecordingInfo, Recordings
from rtpmedia.relay.rtcp_capture import RtcpCapture
from rtpmedia.relay.store import CallStore
from rtpmedia.voicemail_session import IvrSession

log = structlog.get_logger("relay")
MEDIA_EFFECTS = (PlayMedia, StopMedia, Echo, StartPartyRecording, StopPartyRecording, Voicemail)

Address = tuple[str, int]
STORE_FILE = "relay-calls.sqlite"
TICK = 1.0
#: Teardown datagrams: first retry after this, doubling, for at most NOTIFY_FOR seconds.
NOTIFY_FIRST = 0.5
NOTIFY_FOR = 30.0


@dataclass(frozen=True, slots=True)
class RelaySettings:
    control: Address
    ports: tuple[int, int]
    advertise: str
    listen: str
    data_dir: Path
    notify: Address | None = None
    #: Prompts, greetings, voicemail and recordings: files named in commands are relative to it.
    media_dir: Path | None = None
    silence_timeout: float = 60.0
    hold_timeout: float = 3600.0
    hep: Address | None = None  # a Homer collector: RTCP reports go there over HEP v3
    hep_id: int = 0
    hep_auth_key: str = ""


def probe_fastpath() -> tuple[FastPath, str | None]:
    """The kernel fast path if its module is there and works here; else userspace and why."""
    try:
        from rtpmedia.relay import kernel  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        return NoFastPath(), "rtpmedia.relay.kernel is not installed"
    try:
        fastpath, reason = kernel.probe()
    except Exception as exc:  # noqa: BLE001 - a broken probe means userspace, said once
        return NoFastPath(), f"kernel probe failed: {exc}"
    return fastpath, reason


class ControlProtocol(DatagramProtocol):
    transport: Any  # a zope interface mypy cannot follow

    def __init__(self, relay: Relay) -> None:
        self.relay = relay

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:  # noqa: N802
        reply = self.relay.on_command(datagram)
        if reply is not None and self.transport is not None:
            self.transport.write(reply, addr)


class Notifier(DatagramProtocol):
    """Tells the softswitch what happened on the relay's side, until it says ok.

    Extensions of ng (docs/relay.md): cookie + {"command": "teardown",
    "call-id", "reason"} when the relay ends a call, and {"command": "media
    event", ...} for what a hosted party's media did (played, recorded,
    ended, dtmf). Each is repeated with doubling intervals until a datagram
    with the same cookie and {"result": "ok"} comes back, for NOTIFY_FOR s.
    """

    transport: Any

    def __init__(self, reactor: Any, target: Address) -> None:
        self.reactor = reactor
        self.target = target
        self.pending: dict[bytes, tuple[bytes, float, Any]] = {}
        self._counter = 0
        self._stopped = False

    def send(self, message: dict[str, Any]) -> None:
        if self._stopped:
            return
        self._counter += 1
        cookie = f"n{os.getpid()}_{self._counter}".encode()
        datagram = ng.encode(cookie, message)
        self.pending[cookie] = (datagram, self.reactor.seconds(), None)
        self._transmit(cookie, NOTIFY_FIRST)

    def teardown(self, call_id: str, reason: str) -> None:
        self.send({"command": "teardown", "call-id": call_id, "reason": reason})

    def _transmit(self, cookie: bytes, interval: float) -> None:
        entry = self.pending.get(cookie)
        if entry is None:
            return
        datagram, started, _ = entry
        if self.reactor.seconds() - started > NOTIFY_FOR:
            log.warning("notice not acknowledged", cookie=cookie.decode())
            del self.pending[cookie]
            return
        if self.transport is not None:
            self.transport.write(datagram, self.target)
        timer = self.reactor.callLater(interval, self._transmit, cookie, interval * 2)
        self.pending[cookie] = (datagram, started, timer)

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:  # noqa: N802
        try:
            cookie, message = ng.decode(datagram)
        except ng.NgError:
            return
        entry = self.pending.get(cookie)
        if entry is not None and message.get("result") == "ok":
            del self.pending[cookie]
            if entry[2] is not None and entry[2].active():
                entry[2].cancel()

    def stop(self) -> None:
        self._stopped = True
        for _, _, timer in self.pending.values():
            if timer is not None and timer.active():
                timer.cancel()
        self.pending.clear()


class Relay(Service):
    """The relay process: start restores stored calls, then listens for ng commands."""

    def __init__(self, settings: RelaySettings, reactor: Any,
                 fastpath: tuple[FastPath, str | None] | None = None) -> None:
        self.settings = settings
        self.reactor = reactor
        self.fastpath, self.fastpath_reason = fastpath or probe_fastpath()
        self._hep_sender: HepSender | None = None
        self.hep: RtcpCapture | None = None
        if settings.hep is not None:
            try:
                self.hep = self._hep_capture()
            except OSError as exc:
                # Capture is an extra: a collector's name that does not resolve
                # must not keep the relay (and every call's media) from starting.
                log.error("hep collector unusable; no RTCP capture",
                          collector=_text(settings.hep), error=str(exc))
        self.forwarder = Forwarder(reactor, settings.listen, self.fastpath, self._latched,
                                   capture=self.hep)
        self.engine = MediaEngine(reactor, self.forwarder.emit)
        self.tones = ToneScanner()
        self._warmed = False
        self.engine.stages.append(self.tones.run)
        self.repairs = Repairs(self.engine.emit)
        self.engine.stages.append(self.repairs.run)
        self.recordings = Recordings(settings.media_dir or settings.data_dir, self.tap,
                                     self.engine.detach)
        self.control = Control(PortPool(*settings.ports), settings.advertise,
                               silence_timeout=settings.silence_timeout,
                               hold_timeout=settings.hold_timeout,
                               kernel_counts=self.forwarder.kernel_counts,
                               processed_counts=processed_counts)
        self.store = CallStore(settings.data_dir / STORE_FILE)
        self.notifier = Notifier(reactor, settings.notify) if settings.notify else None
        self.media = MediaFiles(settings.media_dir or settings.data_dir)
        self._ports: list[Any] = []
        self._tick = LoopingCall(self.tick)
        self._tick.clock = reactor

    def _hep_capture(self) -> RtcpCapture:
        assert self.settings.hep is not None
        send = self._hep_sender = HepSender(*self.settings.hep)

        def correlation(call_id: str) -> str:
            call = self.control.calls.get(call_id)
            return call.sip_call_id if call is not None and call.sip_call_id else call_id

        listen = self.settings.listen
        wildcard = listen in ("0.0.0.0", "::")
        return RtcpCapture(send, correlation, agent_id=self.settings.hep_id,
                           auth_key=self.settings.hep_auth_key,
                           local_host=self.settings.advertise if wildcard else None)

    # -- start and stop --------------------------------------------------------------

    def startService(self) -> None:  # noqa: N802
        super().startService()
        if self.fastpath_reason is None:
            log.info("forwarding path", path=self.fastpath.name)
        else:
            log.warning("forwarding path", path=self.fastpath.name, reason=self.fastpath_reason)
        ephemeral = read_ephemeral()
        overlap = ephemeral_overlap(*self.settings.ports, ephemeral) if ephemeral else None
        if overlap is not None:
            # Another program's outgoing socket may then hold a relay port.
            log.warning("port range overlaps the ephemeral ports",
                        overlap=f"{overlap[0]}-{overlap[1]}", see="docs/relay.md")
        self._restore()
        host, port = self.settings.control
        self._ports.append(self.reactor.listenUDP(port, ControlProtocol(self), interface=host))
        if self.notifier is not None:
            interface = "::" if ":" in self.settings.notify[0] else ""  # type: ignore[index]
            self._ports.append(self.reactor.listenUDP(0, self.notifier, interface=interface))
        self._tick.start(TICK, now=False)
        if self.hep is not None:
            log.info("hep capture", collector=_text(self.settings.hep), agent_id=self.settings.hep_id)
        log.info("relay started", control=f"{host}:{port}", advertise=self.settings.advertise,
                 ports=f"{self.settings.ports[0]}-{self.settings.ports[1]}",
                 calls=len(self.control.calls))

    def stopService(self) -> None:  # noqa: N802
        super().stopService()
        if self._tick.running:
            self._tick.stop()
        # Processors first, while the notify socket is open: a recording that
        # the stop finishes is reported (once: no repeats outlive the process).
        self.engine.close()
        for port in self._ports:
            port.stopListening()
        self._ports.clear()
        if self.notifier is not None:
            self.notifier.stop()
        # Calls stay in the store: a relay started again forwards them again.
        self.forwarder.close()
        self.fastpath.close()
        self.store.close()
        if self._hep_sender is not None:
            self._hep_sender.close()

    def _restore(self) -> None:
        calls, bad = self.store.load()
        for call_id in bad:
            log.error("stored call unreadable; dropped", call_id=call_id)
        dropped: list[str] = list(bad)
        for call in calls:
            try:
                effects = self.control.restore(call, time.time())
            except CommandError as exc:
                log.error("stored call not restored", call_id=call.call_id, error=str(exc))
                dropped.append(call.call_id)
                continue
            for end in self.apply(effects):
                log.error("stored call's port taken by another program", port=end.port)
        self.store.apply([], dropped)
        if calls:
            log.info("calls restored", calls=len(self.control.calls))

    # -- commands and time -----------------------------------------------------------

    def on_command(self, datagram: bytes) -> bytes | None:
        now = time.time()
        reply, effects = self.control.datagram(datagram, now)
        unbound = self.apply(effects)
        if unbound:
            # Another program holds a port of the range: the answer must not name it.
            ports = sorted(end.port for end in unbound)
            for call_id in {end.call_id for end in unbound}:
                self.apply(self.control.abandon(call_id, ports))
            return self.control.refuse(datagram, f"Cannot bind relay ports {ports}", now)
        media = [e for e in effects if isinstance(e, MEDIA_EFFECTS)]
        if media:
            try:
                extra = self._media(media, now)
            except MediaError as exc:
                return self.control.refuse(datagram, str(exc), now)
            if extra:
                return self.control.reanswer(datagram, {"result": "ok", **extra}, now)
        return reply

    def tick(self) -> None:
        now = time.time()
        self.forwarder.poll_kernel(now)
        self.apply(self.control.expire(now))

    def apply(self, effects: Sequence[Effect]) -> list[MediaEnd]:
        """Carry out a decision's effects: sockets first, then the store, then the notices.

        Returns the ends whose ports could not be bound.
        """
        saves: dict[str, Call] = {}
        forgets: list[str] = []
        unbound: list[MediaEnd] = []
        for effect in effects:
            if isinstance(effect, Bind):
                try:
                    self.forwarder.bind(effect.end)
                except OSError as exc:
                    log.error("cannot bind relay port", port=effect.end.port, error=str(exc))
                    unbound.append(effect.end)
            elif isinstance(effect, Unbind):
                self.engine.forget(effect.end)
                self.forwarder.unbind(effect.end)
            elif isinstance(effect, Unkernel):
                self.forwarder.unkernel(effect.end)
            elif isinstance(effect, Unhost):
                if isinstance(effect.end.processor, HostedParty):
                    self.engine.detach(effect.end.processor)
            elif isinstance(effect, BridgeMedia):
                self._bridge(effect)
            elif isinstance(effect, Save):
                saves[effect.call.call_id] = effect.call
            elif isinstance(effect, Forget):
                saves.pop(effect.call_id, None)
                forgets.append(effect.call_id)
            elif isinstance(effect, Record):  # before the kernel would take the stream
                self.recordings.start(effect.call_id, effect.file, RecordingInfo(
                    effect.call_id, effect.sip_call_id, effect.left.tag, effect.right.tag),
                    effect.left, effect.right, time.time())
            elif isinstance(effect, StopRecording):
                self.recordings.stop(effect.call_id)
        self.recordings.forget_closed()
        self.store.apply(saves.values(), forgets)
        for call_id in forgets:
            log.info("call deleted", call_id=call_id)
        for call in saves.values():
            for end in call.ends():  # streams still latched go back to the kernel
                self.forwarder.refresh(end)
                self.forwarder.kernelize(end)
        for effect in effects:
            if isinstance(effect, Teardown):
                log.info("call ended by the relay", call_id=effect.call_id, reason=effect.reason)
                if self.notifier is not None:
                    self.notifier.teardown(effect.call_id, effect.reason)
            elif isinstance(effect, Host):
                self._host(effect)
        return unbound

    def tap(self, processor: Processor, ends: list[MediaEnd]) -> None:
        """From now on `processor` sees a copy of what `ends`' parties send (out of the kernel)."""
        for end in ends:
            self.forwarder.unkernel(end)
        self.engine.attach_tap(processor, ends)

    def process(self, processor: Processor, ends: list[MediaEnd]) -> None:
        """From now on `processor` takes what `ends`' parties send (out of the kernel if there)."""
        for end in ends:
            self.forwarder.unkernel(end)
        self.engine.attach(processor, ends)

    # -- hosted media (hosted.py) ------------------------------------------------------

    def _host(self, effect: Host) -> None:
        self._warm_prompts()
        processor = effect.end.processor
        if isinstance(processor, HostedParty):
            processor.update(effect.hosting)
            return
        end = effect.end
        self.process(HostedParty(end, effect.hosting, lambda event: self._media_event(end, event),
                                 scanner=self.tones), [end])
        self.forwarder.stamp(end)  # what it echoes goes through a jitter buffer

    def _media(self, effects: Sequence[MediaEffect], now: float) -> dict[str, Any]:
        """Carry out media commands on their hosted parties; what the answer adds."""
        extra: dict[str, Any] = {}
        for effect in effects:
            party = effect.end.processor
            if not isinstance(party, HostedParty):
                raise MediaError("from-tag is not hosted by the relay")
            if isinstance(effect, PlayMedia):
                samples = self.media.prompt(effect.file)
                party.play(samples, effect.repeat)
                extra["duration"] = len(samples) * effect.repeat * 1000 // RATE
            elif isinstance(effect, Echo):
                party.start_echo()
            elif isinstance(effect, StopMedia):
                party.stop_media()
            elif isinstance(effect, StartPartyRecording):
                try:
                    recorder = Recorder(self.media.path(effect.file), parties=1)
                except OSError as exc:
                    raise MediaError(f"Cannot record to {effect.file}: {exc.strerror}") from None
                party.record(recorder, effect.file, max_seconds=effect.max_seconds,
                             with_beep=effect.beep, stop_digit=effect.stop_digit)
            elif isinstance(effect, StopPartyRecording):
                party.stop_recording("stopped")
            elif isinstance(effect, Voicemail):
                self._voicemail(party, self.media.voicemail_session(effect), now)
        return extra

    def _voicemail(self, party: HostedParty, session: IvrSession, now: float) -> None:
        """Start `session` in a thread (its first prompt may be spoken by espeak-ng), then host it.

        The party hears silence meanwhile; a command or hang-up that comes
        first wins (`adopt_voicemail` refuses a stale session).
        """
        from twisted.internet.threads import deferToThreadPool

        party.prepare_voicemail(session)
        end = party.end

        def started(_: Any) -> None:
            if party.adopt_voicemail(session):
                log.info("voicemail started", call_id=end.call_id, tag=end.tag)

        def failed(failure: Any) -> None:
            log.error("voicemail did not start", call_id=end.call_id, tag=end.tag,
                      error=failure.getErrorMessage())
            if party.pending is session:
                party.pending = None
                self._media_event(end, {"event": "ended", "reason": "failed"})

        d = deferToThreadPool(self.reactor, self.reactor.getThreadPool(), session.start, now)
        d.addCallbacks(started, failed)

    def _warm_prompts(self) -> None:
        """Speak the shipped prompts that are missing, in a thread, at the first hosted call.

        A prompt is otherwise generated when a call first needs it, on the
        reactor thread (espeak-ng takes a few hundred ms: every stream would
        stall); `softswitch media prompts` at install makes this a no-op.
        Not at start: most relays (and test servers) never host a call.
        """
        if self._warmed:
            return
        self._warmed = True
        from twisted.internet.threads import deferToThreadPool

        def report(prompts: list[Any]) -> None:
            made = [p.name for p in prompts if p.generated]
            if made:
                log.info("prompts generated", prompts=",".join(made))

        def failed(failure: Any) -> None:
            log.warning("prompts not generated; calls will generate them at first use",
                        error=failure.getErrorMessage())

        pool = self.reactor.getThreadPool()
        d = deferToThreadPool(self.reactor, pool, self.media.prompts.all_shipped)
        d.addCallbacks(report, failed)

    def _media_event(self, end: MediaEnd, event: dict[str, Any]) -> None:
        message = {"command": "media event", "call-id": end.call_id, "from-tag": end.tag,
                   **event}
        log.info("media event", call_id=end.call_id, tag=end.tag,
                 **{k.replace("-", "_"): v for k, v in event.items() if k != "event"},
                 kind=event.get("event"))
        if self.notifier is not None:
            self.notifier.send(message)

    def _bridge(self, effect: BridgeMedia) -> None:
        """Transcoding or media repair starts (or stops) between two ends."""
        ends = [effect.offerer, effect.answerer]
        if effect.plan is None:
            for end in ends:
                if isinstance(end.processor, Bridge):
                    self.engine.detach(end.processor)
                    self.forwarder.stamp(end, False)
            return
        self.process(Bridge(effect.offerer, effect.answerer, effect.plan, effect.repair,
                            self.engine.emit, self.repairs), ends)
        for end, repaired in zip(ends, effect.repair, strict=True):
            self.forwarder.stamp(end, repaired)  # its packets go through a jitter buffer
        log.info("media bridged", call_id=effect.offerer.call_id, index=effect.offerer.index,
                 offerer=f"{effect.offerer.tag} {effect.plan.plan.offerer}",
                 answerer=f"{effect.answerer.tag} {effect.plan.plan.answerer}",
                 transcoding=effect.plan.plan.transcoding,
                 repair=[e.tag for e, r in zip(ends, effect.repair, strict=True) if r])

    def _latched(self, end: MediaEnd) -> None:
        call = self.control.calls.get(end.call_id)
        if call is not None:
            log.info("latched", call_id=end.call_id, tag=end.tag, index=end.index,
                     rtp=_text(end.latched), rtcp=_text(end.latched_rtcp))
            self.store.apply([call], [])


def processed_counts(end: MediaEnd) -> ProcessedCounts:
    """What the processor and taps on `end` counted of its party's packets (for `query`)."""
    bridge = None
    processor = end.processor
    if isinstance(processor, Bridge) and (end is processor.offerer or end is processor.answerer):
        from_offerer, from_answerer = processor.counts()
        bridge = asdict(from_offerer if end is processor.offerer else from_answerer)
    srtp_failed = None
    for tap in end.taps:
        if isinstance(tap, CallRecording):
            srtp_failed = tap.srtp_failed(end)
    if bridge is None and srtp_failed is None:
        return NOT_PROCESSED
    return ProcessedCounts(bridge, srtp_failed)


def _text(address: Address | None) -> str:
    return "" if address is None else f"{address[0]}:{address[1]}"
