"""Hosting a voicemail flow on one call leg's audio, 20 ms at a time.

`IvrSession` is the few lines the relay needs per voicemail call: it
carries out the effects of a `LeaveMessage` or `MailboxMenu`
(`voicemail_ivr.py`) on audio. Per 20 ms tick the relay hands it the
caller's decoded frame (`receive`, with the RTP timestamp and arrival
time) and takes the frame to send (`next_frame`); DTMF digits (RFC 4733
or Goertzel), the hang-up and the time go to `digit`, `hangup`, `tick`.
When `ended` turns true the relay ends the call (BYE).

Prompts come from `PromptCache` (spoken by espeak-ng at first use: run
`softswitch media prompts` at install so that no caller waits for it;
`Speech` items with counts are generated once per text and cached), the
recording goes through `Recorder` (one channel: the caller), and the
mailbox is reached through the `MailboxPort` protocol, which
`softswitch.voicemail.MailboxAccess` implements on the data dir (deposit
through the `incoming/` seam, mark heard, delete, a message's audio).
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from rtpmedia.prompts import FRAME, RATE, Player, PromptCache, beep, load_narrowband
from rtpmedia.recorder import Recorder
from rtpmedia.voicemail_ivr import (
    Beep,
    DeleteMessage,
    Digit,
    Effect,
    Event,
    File,
    HangUp,
    Hangup,
    Item,
    LeaveMessage,
    MailboxMenu,
    MarkHeard,
    Message,
    Play,
    PlaybackDone,
    Prompt,
    Speech,
    StartRecording,
    StopPlayback,
    StopRecording,
    Tick,
)

Samples = npt.NDArray[np.int16]
SILENCE = np.zeros(FRAME, np.int16)
GAP = np.zeros(int(0.3 * RATE), np.int16)  # between the items of a playlist


class MailboxPort(Protocol):
    """What a voicemail call needs of the mailbox (see softswitch.voicemail.MailboxAccess)."""

    def deposit(self, recording: Path, duration: float) -> None: ...

    def mark_heard(self, message_id: str) -> None: ...

    def delete(self, message_id: str) -> None: ...

    def audio(self, message_id: str) -> Path: ...


class IvrSession:
    def __init__(self, flow: LeaveMessage | MailboxMenu, prompts: PromptCache,
                 mailbox: MailboxPort, recording_dir: Path) -> None:
        self.flow = flow
        self.prompts = prompts
        self.mailbox = mailbox
        self.recording_dir = recording_dir
        self.player: Player | None = None
        self.recorder: Recorder | None = None
        self.recording_path: Path | None = None
        self.ended = False

    # -- what the relay calls --------------------------------------------------------------

    def start(self, now: float) -> None:
        self._carry_out(self.flow.start(now))

    def digit(self, digit: str, now: float) -> None:
        self._feed(Digit(digit), now)

    def hangup(self, now: float) -> None:
        self._feed(Hangup(), now)
        self.player = None
        if self.recorder is not None:  # the flow kept or dropped it already
            self.recorder.abort()
            self.recorder = None

    def tick(self, now: float) -> None:
        deadline = self.flow.next_deadline
        if deadline is not None and now >= deadline:
            self._feed(Tick(), now)

    def receive(self, timestamp: int, arrival: float, samples: Samples) -> None:
        """The caller's decoded audio: recorded while the flow records."""
        if self.recorder is not None:
            self.recorder.add(0, timestamp, arrival, samples)

    def next_frame(self, now: float) -> Samples:
        """The 20 ms to send to the caller: the playlist, or silence."""
        if self.player is None:
            return SILENCE
        frame = self.player.next_frame()
        if frame is None:
            self.player = None
            self._feed(PlaybackDone(), now)
            return SILENCE if self.player is None else self.next_frame(now)
        return frame

    # -- effects ------------------------------------------------------------------------------

    def _feed(self, event: Event, now: float) -> None:
        if not self.ended:
            self._carry_out(self.flow.handle(event, now))

    def _carry_out(self, effects: list[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, Play):
                self.player = Player(self._playlist(effect.items))
            elif isinstance(effect, StopPlayback):
                self.player = None
            elif isinstance(effect, StartRecording):
                self.recording_dir.mkdir(parents=True, exist_ok=True)
                self.recording_path = self.recording_dir / f"rec-{secrets.token_hex(6)}.wav"
                self.recorder = Recorder(self.recording_path, parties=1)
            elif isinstance(effect, StopRecording):
                self._stop_recording(effect)
            elif isinstance(effect, MarkHeard):
                self.mailbox.mark_heard(effect.id)
            elif isinstance(effect, DeleteMessage):
                self.mailbox.delete(effect.id)
            elif isinstance(effect, HangUp):
                self.ended = True
                self.player = None

    def _stop_recording(self, effect: StopRecording) -> None:
        recorder, self.recorder = self.recorder, None
        if recorder is None or self.recording_path is None:
            return
        if effect.keep:
            recorder.close()
            self.mailbox.deposit(self.recording_path, effect.duration)
        else:
            recorder.abort()

    def _playlist(self, items: tuple[Item, ...]) -> Samples:
        parts: list[Samples] = []
        for item in items:
            if parts:
                parts.append(GAP)
            parts.append(self._audio(item))
        return np.concatenate(parts) if parts else np.zeros(0, np.int16)

    def _audio(self, item: Item) -> Samples:
        if isinstance(item, Prompt):
            return load_narrowband(self.prompts.shipped(item.name).path)
        if isinstance(item, Speech):
            return load_narrowband(self.prompts.say(item.text))
        if isinstance(item, File):
            return load_narrowband(self.prompts.converted(Path(item.path)))
        if isinstance(item, Message):
            return load_narrowband(self.mailbox.audio(item.id))
        assert isinstance(item, Beep)
        return beep()
