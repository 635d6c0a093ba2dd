"""Voicemail's two call flows as pure state machines, for the relay to host.

`LeaveMessage` is what a caller gets: the greeting, the beep, then the
recording until hang-up, `#` or the maximum length (a recording shorter
than `min_length` is dropped, as Asterisk's `minsecs`). `MailboxMenu` is
the owner's menu, with the keys Asterisk users know:

    main menu      1 listen to the messages (new first)   # goodbye
    after/while a message
                   4 previous   5 repeat   6 or # next   7 delete   9 save
                   * back to the main menu

A key pressed during a prompt stops it (barge-in). A menu left without a
key for `timeout` seconds is offered again, `retries` times, then the
machine says goodbye and hangs up.

Both are fed events (`PlaybackDone`, `Digit` from RFC 4733 or Goertzel
detection, `Hangup`, `Tick` for the time) with the current time, and
return effects: `Play` a playlist (prompts by name, spoken text, a
recorded file, a message, the beep), `StopPlayback`, `StartRecording`,
`StopRecording(keep)`, `MarkHeard`, `DeleteMessage`, `HangUp`. The host
(the relay) owns the audio, the timers (`next_deadline`) and the
mailbox (`softswitch.voicemail`); nothing here does I/O or reads a clock.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

# -- playlist items ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Prompt:
    name: str  # a prompt of rtpmedia.prompts.SHIPPED, or the operator's file of that name


@dataclass(frozen=True, slots=True)
class Speech:
    text: str  # spoken with espeak-ng (PromptCache.say), e.g. counts


@dataclass(frozen=True, slots=True)
class File:
    path: str  # a recorded greeting


@dataclass(frozen=True, slots=True)
class Message:
    id: str  # a message of the mailbox


@dataclass(frozen=True, slots=True)
class Beep:
    pass


Item = Prompt | Speech | File | Message | Beep

# -- events --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlaybackDone:
    """The last `Play` finished (not sent after `StopPlayback`)."""


@dataclass(frozen=True, slots=True)
class Digit:
    digit: str  # 0-9, *, #, A-D


@dataclass(frozen=True, slots=True)
class Hangup:
    pass


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passed: sent at `next_deadline` (sending it more often is harmless)."""


Event = PlaybackDone | Digit | Hangup | Tick

# -- effects -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Play:
    items: tuple[Item, ...]  # replaces whatever plays


@dataclass(frozen=True, slots=True)
class StopPlayback:
    pass


@dataclass(frozen=True, slots=True)
class StartRecording:
    pass


@dataclass(frozen=True, slots=True)
class StopRecording:
    keep: bool  # True: deposit the recording (softswitch.voicemail.deposit); False: drop it
    duration: float


@dataclass(frozen=True, slots=True)
class MarkHeard:
    id: str


@dataclass(frozen=True, slots=True)
class DeleteMessage:
    id: str


@dataclass(frozen=True, slots=True)
class HangUp:
    pass


Effect = Play | StopPlayback | StartRecording | StopRecording | MarkHeard | DeleteMessage | HangUp


class IvrStateError(Exception):
    """A transition the table does not allow (a bug, not bad input)."""


# -- leaving a message -----------------------------------------------------------------------

class LeaveState(enum.Enum):
    GREETING = "greeting"
    BEEP = "beep"
    RECORDING = "recording"
    GOODBYE = "goodbye"
    DONE = "done"


_L = LeaveState
_LEAVE_TRANSITIONS: dict[LeaveState, frozenset[LeaveState]] = {
    _L.GREETING: frozenset({_L.BEEP, _L.DONE}),
    _L.BEEP: frozenset({_L.RECORDING, _L.DONE}),
    _L.RECORDING: frozenset({_L.GOODBYE, _L.DONE}),
    _L.GOODBYE: frozenset({_L.DONE}),
    _L.DONE: frozenset(),
}


class LeaveMessage:
    """Greeting, beep, recording. `greeting` is the owner's recorded one, or the default."""

    def __init__(self, *, greeting: Item = Prompt("vm-greeting"), max_length: float = 180.0,
                 min_length: float = 1.0) -> None:
        self.greeting = greeting
        self.max_length = max_length
        self.min_length = min_length
        self.state = _L.GREETING
        self.recording_started: float | None = None
        self.kept: bool | None = None  # once the recording ended: deposited or not

    def _go(self, new: LeaveState) -> None:
        if new not in _LEAVE_TRANSITIONS[self.state]:
            raise IvrStateError(f"{self.state.value} -> {new.value}")
        self.state = new

    @property
    def next_deadline(self) -> float | None:
        if self.state is _L.RECORDING and self.recording_started is not None:
            return self.recording_started + self.max_length
        return None

    def start(self, now: float) -> list[Effect]:
        return [Play((self.greeting,))]

    def handle(self, event: Event, now: float) -> list[Effect]:
        state = self.state
        if state is _L.DONE:
            return []
        if isinstance(event, Hangup):
            effects = self._stop_recording(now) if state is _L.RECORDING else []
            self._go(_L.DONE)
            return effects
        if state is _L.GREETING:
            # "#" skips the greeting, as callers expect from Asterisk.
            if isinstance(event, PlaybackDone) or event == Digit("#"):
                self._go(_L.BEEP)
                stop: list[Effect] = [StopPlayback()] if isinstance(event, Digit) else []
                return [*stop, Play((Beep(),))]
            return []
        if state is _L.BEEP:
            if isinstance(event, PlaybackDone):
                self._go(_L.RECORDING)
                self.recording_started = now
                return [StartRecording()]
            return []
        if state is _L.RECORDING:
            deadline = self.next_deadline
            if event == Digit("#") or (deadline is not None and now >= deadline):
                effects = self._stop_recording(now)
                self._go(_L.GOODBYE)
                items: tuple[Item, ...] = (Prompt("vm-goodbye"),) if self.kept \
                    else (Prompt("vm-too-short"), Prompt("vm-goodbye"))
                return [*effects, Play(items)]
            return []
        # GOODBYE
        if isinstance(event, PlaybackDone):
            self._go(_L.DONE)
            return [HangUp()]
        return []

    def _stop_recording(self, now: float) -> list[Effect]:
        assert self.recording_started is not None
        duration = min(now - self.recording_started, self.max_length)
        self.kept = duration >= self.min_length
        return [StopRecording(self.kept, duration)]


# -- the owner's menu ------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class MessageRef:
    id: str
    heard: bool


class MenuState(enum.Enum):
    MAIN_MENU = "main_menu"  # the intro or the menu plays, or waits for a key
    PLAYING = "playing"  # a message plays
    MESSAGE_MENU = "message_menu"  # after a message: its options play, or wait for a key
    GOODBYE = "goodbye"
    DONE = "done"


_M = MenuState
_MENU_TRANSITIONS: dict[MenuState, frozenset[MenuState]] = {
    _M.MAIN_MENU: frozenset({_M.MAIN_MENU, _M.PLAYING, _M.GOODBYE, _M.DONE}),
    _M.PLAYING: frozenset({_M.PLAYING, _M.MESSAGE_MENU, _M.MAIN_MENU, _M.GOODBYE, _M.DONE}),
    _M.MESSAGE_MENU: frozenset({_M.MESSAGE_MENU, _M.PLAYING, _M.MAIN_MENU, _M.GOODBYE,
                                _M.DONE}),
    _M.GOODBYE: frozenset({_M.DONE}),
    _M.DONE: frozenset(),
}


def _count(n: int, what: str) -> str:
    return f"{'no' if n == 0 else n} {what}{'' if n == 1 else 's'}"


class MailboxMenu:
    """The owner's menu over the mailbox as it was when the call began (new messages first)."""

    def __init__(self, messages: Sequence[MessageRef], *, timeout: float = 10.0,
                 retries: int = 3) -> None:
        self.messages = [m for m in messages if not m.heard] + [m for m in messages if m.heard]
        self.timeout = timeout
        self.retries = retries
        self.state = _M.MAIN_MENU
        self.current = 0
        self.playing = False
        self._waiting_since: float | None = None
        self._tries = 0

    def _go(self, new: MenuState) -> None:
        if new not in _MENU_TRANSITIONS[self.state]:
            raise IvrStateError(f"{self.state.value} -> {new.value}")
        self.state = new

    @property
    def next_deadline(self) -> float | None:
        if self._waiting_since is None or self.state not in (_M.MAIN_MENU, _M.MESSAGE_MENU):
            return None
        return self._waiting_since + self.timeout

    def _play(self, items: tuple[Item, ...]) -> list[Effect]:
        self.playing = True
        self._waiting_since = None
        return [Play(items)]

    def start(self, now: float) -> list[Effect]:
        new = sum(not m.heard for m in self.messages)
        old = len(self.messages) - new
        intro: Item = Prompt("vm-no-messages") if not self.messages else Speech(
            f"You have {_count(new, 'new message')} and {_count(old, 'saved message')}.")
        return self._play((intro, Prompt("vm-main-menu")))

    def handle(self, event: Event, now: float) -> list[Effect]:
        if self.state is _M.DONE:
            return []
        if isinstance(event, Hangup):
            self._go(_M.DONE)
            return []
        if isinstance(event, PlaybackDone):
            return self._playback_done(now)
        if self.state is _M.GOODBYE:
            return []
        if isinstance(event, Tick):
            deadline = self.next_deadline
            if deadline is None or now < deadline:
                return []
            self._tries += 1
            if self._tries >= self.retries:
                return self._goodbye([])
            menu = "vm-main-menu" if self.state is _M.MAIN_MENU else "vm-message-menu"
            return self._play((Prompt(menu),))
        self._tries = 0
        # A key stops what plays (barge-in); the key then acts.
        stop: list[Effect] = [StopPlayback()] if self.playing else []
        self.playing = False
        if self.state is _M.MAIN_MENU:
            return stop + self._main_key(event.digit)
        return stop + self._message_key(event.digit)

    def _playback_done(self, now: float) -> list[Effect]:
        self.playing = False
        if self.state is _M.GOODBYE:
            self._go(_M.DONE)
            return [HangUp()]
        if self.state is _M.PLAYING:
            effects = self._heard()
            self._go(_M.MESSAGE_MENU)
            return effects + self._play((Prompt("vm-message-menu"),))
        self._waiting_since = now
        return []

    def _heard(self) -> list[Effect]:
        message = self.messages[self.current]
        if message.heard:
            return []
        self.messages[self.current] = MessageRef(message.id, True)
        return [MarkHeard(message.id)]

    def _main_key(self, digit: str) -> list[Effect]:
        if digit == "1":
            if not self.messages:
                return self._play((Prompt("vm-no-messages"), Prompt("vm-main-menu")))
            self.current = 0
            return self._play_current(())
        if digit in ("#", "*"):
            return self._goodbye([])
        return self._play((Prompt("vm-main-menu"),))  # a key with no meaning here

    def _message_key(self, digit: str) -> list[Effect]:
        # A key during a message counts as having heard it, as in Asterisk.
        heard = self._heard() if self.state is _M.PLAYING else []
        if digit == "5":
            return heard + self._play_current(())
        if digit in ("6", "#"):
            return heard + self._next(())
        if digit == "4":
            if self.current == 0:
                return heard + self._play_current((Prompt("vm-first"),))
            self.current -= 1
            return heard + self._play_current(())
        if digit == "9":
            return heard + self._next((Prompt("vm-saved"),))
        if digit == "7":
            message = self.messages.pop(self.current)
            effects: list[Effect] = [*heard, DeleteMessage(message.id)]
            self.current -= 1  # _next moves on to the one after the deleted message
            return effects + self._next((Prompt("vm-deleted"),))
        if digit == "*":
            self._go(_M.MAIN_MENU)
            return heard + self._play((Prompt("vm-main-menu"),))
        self._go(_M.MESSAGE_MENU)
        return heard + self._play((Prompt("vm-message-menu"),))

    def _next(self, before: tuple[Item, ...]) -> list[Effect]:
        if self.current + 1 >= len(self.messages):
            self.current = max(0, min(self.current, len(self.messages) - 1))
            self._go(_M.MAIN_MENU)
            return self._play((*before, Prompt("vm-no-more"), Prompt("vm-main-menu")))
        self.current += 1
        return self._play_current(before)

    def _play_current(self, before: tuple[Item, ...]) -> list[Effect]:
        self._go(_M.PLAYING)
        message = self.messages[self.current]
        return self._play((*before, Speech(f"Message {self.current + 1}."), Message(message.id)))

    def _goodbye(self, effects: list[Effect]) -> list[Effect]:
        self._go(_M.GOODBYE)
        return effects + self._play((Prompt("vm-goodbye"),))
