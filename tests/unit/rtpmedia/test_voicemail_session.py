"""A voicemail call simulated 20 ms at a time: the flow, prompts, recorder and real mailbox.

The caller's side is played by the test: it pulls the frames the session
sends, sends a tone while recording, and presses keys. Prompts are spoken
by espeak-ng into the temporary data dir.
"""

from __future__ import annotations

import shutil
import wave
from pathlib import Path

import numpy as np
import pytest

from rtpmedia.prompts import FRAME, RATE, PromptCache
from rtpmedia.voicemail_ivr import LeaveMessage, MailboxMenu, MessageRef
from rtpmedia.voicemail_session import IvrSession
from softswitch.voicemail import MailboxAccess, VoicemailStore

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                reason="espeak-ng not installed")
BOX = "1001@pbx.example.com"


def tone_frames(frequency: float, seconds: float) -> list[np.ndarray]:
    t = np.arange(int(seconds * RATE)) / RATE
    audio = np.round(6000 * np.sin(2 * np.pi * frequency * t)).astype(np.int16)
    return [audio[i:i + FRAME] for i in range(0, len(audio) - FRAME + 1, FRAME)]


def run_until(session: IvrSession, clock: list[float], condition: object,
              limit: float = 30.0, sent: list[np.ndarray] | None = None) -> None:
    deadline = clock[0] + limit
    while not condition() and clock[0] < deadline:  # type: ignore[operator]
        clock[0] += 0.02
        frame = session.next_frame(clock[0])
        if sent is not None:
            sent.append(frame)
        session.tick(clock[0])
    assert condition(), "the session did not get there in time"  # type: ignore[operator]


def test_a_caller_leaves_a_message_that_lands_in_the_mailbox(tmp_path: Path) -> None:
    data = tmp_path / "data"
    prompts = PromptCache(data)
    mailbox = MailboxAccess(data, BOX, caller="1002", caller_name="Bob", call_id="call-1")
    session = IvrSession(LeaveMessage(), prompts, mailbox, data / "voicemail" / "recording")
    clock = [0.0]
    sent: list[np.ndarray] = []
    session.start(clock[0])
    run_until(session, clock, lambda: session.recorder is not None, sent=sent)
    heard = np.concatenate(sent)
    assert np.abs(heard).max() > 3000  # the greeting and the beep were sent
    # The caller speaks (a 700 Hz tone) for 3 s, then presses #.
    for i, frame in enumerate(tone_frames(700, 3.0)):
        clock[0] += 0.02
        session.receive(5000 + i * FRAME, clock[0], frame)
        session.next_frame(clock[0])
    session.digit("#", clock[0])
    assert session.recorder is None
    run_until(session, clock, lambda: session.ended)  # goodbye, then the flow hangs up
    store = VoicemailStore(data)
    filed, problems = store.ingest()
    assert problems == [] and len(filed) == 1
    message = filed[0]
    assert (message.caller, message.caller_name, message.call_id) == ("1002", "Bob", "call-1")
    assert abs(message.duration - 3.0) < 0.1
    with wave.open(str(store.wav_path(BOX, message.id))) as w:
        assert (w.getnchannels(), w.getframerate()) == (1, RATE)
        audio = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    assert abs(len(audio) / RATE - 3.0) < 0.05
    spectrum = np.abs(np.fft.rfft(audio.astype(np.float64)))
    assert abs(np.fft.rfftfreq(len(audio), 1 / RATE)[np.argmax(spectrum)] - 700) < 5


def test_the_owner_listens_and_deletes_by_dtmf(tmp_path: Path) -> None:
    data = tmp_path / "data"
    recording = tmp_path / "m.wav"
    with wave.open(str(recording), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(np.concatenate(tone_frames(1200, 1.0)).astype("<i2").tobytes())
    MailboxAccess(data, BOX, caller="1002").deposit(recording, 1.0)
    store = VoicemailStore(data)
    store.ingest()
    [message] = store.messages(BOX)
    menu = MailboxMenu([MessageRef(message.id, message.heard)])
    session = IvrSession(menu, PromptCache(data), MailboxAccess(data, BOX),
                         data / "voicemail" / "recording")
    clock = [0.0]
    session.start(clock[0])
    clock[0] += 0.5
    session.digit("1", clock[0])  # barge into the intro: listen
    sent: list[np.ndarray] = []
    run_until(session, clock, lambda: store.counts(BOX).old == 1, sent=sent)
    audio = np.concatenate(sent).astype(np.float64)
    # The message's 1.2 kHz tone was played to the owner, after "Message 1.".
    t = np.arange(len(audio)) / RATE
    assert np.abs(np.dot(audio, np.exp(-2j * np.pi * 1200 * t))) > 1e6
    session.digit("7", clock[0])
    assert store.messages(BOX) == []
    session.digit("#", clock[0] + 1)  # at the main menu again: goodbye
    run_until(session, clock, lambda: session.ended)
