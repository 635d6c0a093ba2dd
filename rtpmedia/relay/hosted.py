"""One party whose far end is the relay itself (issue 15): what it hears, what it says.

`HostedParty` is the `engine.Processor` on a hosted party's `MediaEnd`:

- what the party sends goes, packet by packet, straight into a `Receiver`
  (jitter buffer, decode, concealment: the relay's one receive pipeline);
  RFC 4733 telephone-events are set aside for the tick;
- every 20 ms of the engine's tick it takes one frame of the party's audio
  out of the Receiver, finds the digits in it (RFC 4733, else in-band tones
  with Goertzel), lets the current activity turn it into the frame to send,
  and sends that as one RTP packet of its own stream: its own SSRC, sequence
  and timestamp (RFC 3550 5.1), the marker bit on the first packet, the
  party's codec; telephone-events are never sent to the party.
  A late tick sends what is due, at most `CATCH_UP` frames at once; frames
  older than that are skipped (their timestamps too), never burst out.

Activities: silence, a prompt (`play`, repeated), echo (`echo`: the party's
own audio after the jitter buffer and concealment), a recording of the
party (`record`, after a beep) beside any of those, and a voicemail flow
(`voicemail`: an `IvrSession`, which plays and records by itself).
What ends on its own is told through `notify` (the `media event`s of
docs/relay.md: played, recorded, ended, dtmf).
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import structlog

from rtpmedia import codecs
from rtpmedia.codecs.base import Codec
from rtpmedia.goertzel import DtmfDetector, feed_many
from rtpmedia.prompts import FRAME, RATE, Player, PromptCache, PromptError, beep, load_narrowband
from rtpmedia.receiver import Receiver
from rtpmedia.recorder import Recorder
from rtpmedia.relay.calls import Hosting, MediaEnd
from rtpmedia.relay.engine import TICK, Emit
from rtpmedia.relay.hosting import Voicemail
from rtpmedia.rtp import RtpSource
from rtpmedia.telephone_event import TelephoneEventReceiver
from rtpmedia.voicemail_ivr import File, LeaveMessage, MailboxMenu, MessageRef, Prompt
from rtpmedia.voicemail_session import IvrSession

log = structlog.get_logger("relay")
Samples = npt.NDArray[np.int16]
Notify = Callable[[dict[str, Any]], None]
SILENCE: Samples = np.zeros(FRAME, np.int16)
#: At most this many frames go out on one tick when the tick was late.
CATCH_UP = 3
GREETINGS = "greetings"
#: Voicemail recordings in progress; a finished one is moved to voicemail/incoming/.
RECORDING_DIR = Path("voicemail") / "recording"


class MediaError(Exception):
    """A file a command named that cannot be played; the text is the ng error-reason."""


class MediaFiles:
    """The media dir: prompts by name or path, recordings, the voicemail store.

    File I/O happens here, called from the glue when a command arrives
    (prompts are converted once and cached by `PromptCache`).
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.prompts = PromptCache(root)

    def prompt(self, name: str) -> Samples:
        """A prompt NAME (shipped, or the operator's prompts/NAME.wav) or a relative path."""
        from rtpmedia.prompts import SHIPPED

        try:
            if "/" not in name:
                own = self.prompts.root / f"{name}.wav"
                if own.exists():
                    return load_narrowband(self.prompts.converted(own))
                if name in SHIPPED:
                    return load_narrowband(self.prompts.shipped(name).path)
                raise MediaError(f"Unknown prompt {name!r}")
            path = self.root / name
            if not path.is_file():
                raise MediaError(f"No file {name!r} in the media dir")
            return load_narrowband(self.prompts.converted(path))
        except PromptError as exc:
            raise MediaError(str(exc)) from None

    def path(self, relative: str) -> Path:
        return self.root / relative

    def voicemail_session(self, command: Voicemail) -> IvrSession:
        """The voicemail flow a `voicemail` command asks for, on this dir's mailboxes."""
        from softswitch.voicemail import MailboxAccess, VoicemailError, VoicemailStore

        try:
            access = MailboxAccess(self.root, command.mailbox, caller=command.caller,
                                   caller_name=command.caller_name,
                                   call_id=command.sip_call_id)
            flow: LeaveMessage | MailboxMenu
            if command.mode == "leave":
                # The owner's greeting, recorded with *97 (start recording greetings/USER).
                own = self.root / GREETINGS / f"{command.mailbox.split('@', 1)[0]}.wav"
                flow = LeaveMessage(greeting=File(str(own)) if own.is_file()
                                    else Prompt("vm-greeting"))
            else:
                messages = VoicemailStore(self.root).messages(command.mailbox)
                flow = MailboxMenu([MessageRef(m.id, m.heard) for m in messages])
        except VoicemailError as exc:
            raise MediaError(str(exc)) from None
        return IvrSession(flow, self.prompts, access, self.root / RECORDING_DIR)


class ToneScanner:
    """In-band DTMF of every hosted party, found in one Goertzel pass per engine tick.

    Parties queue their frame during their own tick; `run` (an engine stage,
    after all processors) classifies every queued block at once, which costs
    a fraction of one call per party (the per-call overhead dominates at
    two 80-sample blocks a frame). A digit so found acts on the party's next
    frame, 20 ms later; detection needs two blocks anyway.
    """

    def __init__(self) -> None:
        self._queue: list[tuple[HostedParty, DtmfDetector, Samples]] = []

    def queue(self, party: HostedParty, detector: DtmfDetector, frame: Samples) -> None:
        self._queue.append((party, detector, frame))

    def run(self, now: float) -> None:
        queue, self._queue = self._queue, []
        if not queue:
            return
        found = feed_many([d for _, d, _ in queue], [f for _, _, f in queue])
        for (party, _, _), digits in zip(queue, found, strict=True):
            for digit in digits:
                party.digit(digit, now)


# -- activities ------------------------------------------------------------------------------


@dataclass(slots=True)
class _Playback:
    player: Player
    repeat: int  # plays left after this one


@dataclass(slots=True)
class _Recording:
    recorder: Recorder
    file: str  # as the command named it
    stop_digit: str
    max_frames: int
    beep: Player | None  # plays before the recording starts
    frames: int = 0
    timestamp: int = 0


class HostedParty:
    """The `Processor` of one hosted party (see the module docstring)."""

    def __init__(self, end: MediaEnd, hosting: Hosting, notify: Notify, *,
                 ssrc: int | None = None, scanner: ToneScanner | None = None) -> None:
        """`scanner`: the relay's shared in-band digit scan (None: scan each frame here)."""
        self.end = end
        self.scanner = scanner
        self.notify = notify
        self.source = RtpSource(ssrc)
        self._first = True
        self._due: float | None = None
        self._clock = time.time()  # the time of the last frame (the flows' clock)
        self.hosting = hosting
        self.codec: Codec = codecs.get(f"{hosting.codec}/8000")
        self.receiver = Receiver({hosting.payload_type: self.codec})
        self._events: list[bytes] = []
        self._event_receiver = TelephoneEventReceiver()
        self._inband = DtmfDetector()
        self._rfc4733 = False  # once the party sends telephone-events, tones are not looked for
        self.playback: _Playback | None = None
        self.echo = False
        self.recording: _Recording | None = None
        self.ivr: IvrSession | None = None
        self.pending: IvrSession | None = None  # a voicemail starting in a thread
        self.sent = 0  # packets sent (tests, stats)
        self.skipped = 0  # frames a late tick did not send
        self.closed = False

    # -- what the glue asks --------------------------------------------------------------

    def update(self, hosting: Hosting) -> None:
        """A new offer or answer (hold, resume, another codec): keep what plays and records."""
        if hosting.codec != self.hosting.codec or hosting.payload_type != \
                self.hosting.payload_type:
            self.codec = codecs.get(f"{hosting.codec}/8000")
            self.receiver = Receiver({hosting.payload_type: self.codec})
        self.hosting = hosting

    def play(self, samples: Samples, repeat: int) -> None:
        self._stop_ivr()
        self.echo = False
        self.playback = _Playback(Player(samples), repeat - 1)

    def start_echo(self) -> None:
        self._stop_ivr()
        self.playback = None
        self.echo = True

    def stop_media(self) -> None:
        self.playback = None
        self.echo = False

    def record(self, recorder: Recorder, file: str, *, max_seconds: int, with_beep: bool,
               stop_digit: str) -> None:
        self._stop_ivr()
        self.stop_recording("stopped")
        self.recording = _Recording(recorder, file, stop_digit,
                                    max_seconds * RATE // FRAME,
                                    Player(beep()) if with_beep else None)

    def stop_recording(self, reason: str) -> None:
        recording, self.recording = self.recording, None
        if recording is None:
            return
        duration = recording.recorder.close()
        self.notify({"event": "recorded", "file": recording.file,
                     "duration": f"{duration:.2f}", "reason": reason})

    def voicemail(self, session: IvrSession, now: float) -> None:
        """Host `session` (an `IvrSession` not started yet): it plays and records by itself."""
        self.prepare_voicemail(session)
        session.start(now)
        self.adopt_voicemail(session)

    def prepare_voicemail(self, session: IvrSession) -> None:
        """Stop what plays and records: `session` is being started (its prompts made)."""
        self._stop_ivr()
        self.stop_recording("stopped")
        self.stop_media()
        self.pending = session

    def adopt_voicemail(self, session: IvrSession) -> bool:
        """`session` has started: host it, unless another command or the hang-up came first."""
        if self.closed or self.pending is not session:
            return False
        self.pending = None
        self.ivr = session
        return True

    # -- engine.Processor ----------------------------------------------------------------

    def rtp(self, end: MediaEnd, packet: memoryview, now: float) -> None:
        if self.hosting.event_type is not None and len(packet) > 1 \
                and packet[1] & 0x7F == self.hosting.event_type:
            self._events.append(bytes(packet))
            return
        self.receiver.put_packet(packet, now)

    def tick(self, now: float, emit: Emit) -> None:
        if self._due is None:
            self._due = now
        # A frame is due when its time is nearer this tick than the next: the
        # engine's timer fires a few ms late, by amounts that vary tick to tick.
        late = now - self._due + TICK / 2
        if late < 0:
            return
        count = int(late // TICK) + 1
        if count > CATCH_UP:
            skip = count - CATCH_UP
            self.skipped += skip
            self.source.skip(skip * FRAME)
            self._due += skip * TICK
            count = CATCH_UP
        for _ in range(count):
            # The frame's own time, not the tick's: the jitter buffer sees a
            # steady playout clock even when a late tick sends two frames.
            self._frame(self._due, emit)
            self._due += TICK

    def close(self) -> None:
        """The call is deleted (or the relay stops): a recording is kept, a voicemail ends."""
        if self.closed:
            return
        self.closed = True
        stats = self.receiver.stats()
        log.info("hosted party closed", call_id=self.end.call_id, tag=self.end.tag,
                 sent=self.sent, skipped=self.skipped, received=stats.packets_received,
                 discarded=stats.packets_discarded, concealed=stats.concealed_samples,
                 stretched=stats.inserted_samples_for_deceleration,
                 compressed=stats.removed_samples_for_acceleration,
                 delay_ms=round(stats.current_delay_ms),
                 # (received counts 20 ms frames: reframed packets give several)
                 reframed=self.receiver.counts.reframed,
                 other_duration=self.receiver.counts.other_duration)
        self.stop_recording("hangup")
        if self.ivr is not None:
            ivr, self.ivr = self.ivr, None
            ivr.hangup(self._clock)
            self.notify({"event": "ended", "reason": "hangup"})

    # -- one frame -------------------------------------------------------------------------

    def _frame(self, now: float, emit: Emit) -> None:
        self._clock = now
        heard = self.receiver.frame(now)
        for digit in self._digits(heard):
            self.digit(digit, now)
        out = self._output(heard, now)
        datagram = self.source.packet(self.hosting.payload_type, self.codec.encode(out),
                                      marker=self._first, samples=FRAME)
        if not self.end.on_hold:  # RFC 3264 8.4: a party that only sends gets nothing
            emit(self.end, datagram)
            self._first = False
            self.sent += 1

    def _digits(self, heard: Samples | None) -> str:
        found = ""
        if self._events:
            self._rfc4733 = True
            for packet in self._events:
                if len(packet) < 12 + 4:
                    continue
                ssrc, = struct.unpack_from("!I", packet, 8)
                timestamp, = struct.unpack_from("!I", packet, 4)
                start = 12 + 4 * (packet[0] & 0x0F)
                digit = self._event_receiver.receive_payload(
                    ssrc, timestamp, packet[start:], bool(packet[1] & 0x80))
                if digit is not None:
                    found += digit.digit
            self._events.clear()
        elif heard is not None and not self._rfc4733:
            if self.scanner is None:
                found = self._inband.feed(heard)
            else:
                self.scanner.queue(self, self._inband, heard)
        return found

    def digit(self, digit: str, now: float) -> None:
        """A digit the party sent (RFC 4733, or in-band as `ToneScanner` found it)."""
        if self.closed:
            return
        self.notify({"event": "dtmf", "digit": digit})
        if self.ivr is not None:
            ivr = self.ivr
            try:
                ivr.digit(digit, now)  # may start a playback: read a prompt, a message
            except Exception as exc:  # noqa: BLE001 - whatever broke, the call must end
                self._ivr_failed(ivr, exc, now)
        elif self.recording is not None and digit == self.recording.stop_digit \
                and self.recording.beep is None:
            self.stop_recording("digit")

    def _output(self, heard: Samples | None, now: float) -> Samples:
        if self.ivr is not None:
            return self._ivr_frame(heard, now)
        recording = self.recording
        if recording is not None:
            if recording.beep is not None:
                frame = recording.beep.next_frame()
                if frame is not None:
                    return frame
                recording.beep = None
            recording.recorder.add(0, recording.timestamp, now,
                                   SILENCE if heard is None else heard)
            recording.timestamp += FRAME
            recording.frames += 1
            if recording.frames >= recording.max_frames:
                self.stop_recording("max")
        if self.echo:
            return SILENCE if heard is None else heard
        playback = self.playback
        if playback is not None:
            frame = playback.player.next_frame()
            if frame is None and playback.repeat > 0:
                playback.repeat -= 1
                playback.player.rewind()
                frame = playback.player.next_frame()
            if frame is not None:
                return frame
            self.playback = None
            self.notify({"event": "played"})
        return SILENCE

    def _ivr_frame(self, heard: Samples | None, now: float) -> Samples:
        ivr = self.ivr
        assert ivr is not None
        try:
            ivr.receive(self.source.timestamp, now, SILENCE if heard is None else heard)
            ivr.tick(now)
            out: Samples = ivr.next_frame(now)
        except Exception as exc:  # noqa: BLE001 - whatever broke, the call must end
            self._ivr_failed(ivr, exc, now)
            return SILENCE
        if ivr.ended:
            self.ivr = None
            self.notify({"event": "ended", "reason": "done"})
        return out

    def _ivr_failed(self, ivr: IvrSession, exc: Exception, now: float) -> None:
        # A prompt or message that cannot be read (deleted meanwhile, a bad
        # WAV, a mailbox gone): the softswitch ends the call with BYE rather
        # than leave the caller listening to silence.
        log.error("voicemail failed", call_id=self.end.call_id, tag=self.end.tag,
                  error=repr(exc))
        self.ivr = None
        try:
            ivr.hangup(now)
        except Exception:  # noqa: BLE001
            log.exception("voicemail hang-up failed", call_id=self.end.call_id)
        self.notify({"event": "ended", "reason": "failed"})

    def _stop_ivr(self) -> None:
        self.pending = None
        if self.ivr is not None:
            ivr, self.ivr = self.ivr, None
            ivr.hangup(self._clock)
            self.notify({"event": "ended", "reason": "stopped"})
