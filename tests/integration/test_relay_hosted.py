"""The dialplan's media actions end to end: `softswitch run` with its embedded relay,
the shipped dialplan, pjsua2 phones.

- 9196: the caller hears the intro, then itself (PESQ of the speech that comes back);
- *97: the caller's greeting lands in the data dir, where voicemail plays it from;
- a busy callee sends the caller to voicemail: the message lands in the mailbox, the
  owner's phone lights (message-summary NOTIFY), the owner calls *98, listens by
  DTMF, and the light goes out.
"""

from __future__ import annotations

import json
import shutil
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from softswitch.cdr import read_cdrs
from softswitch.voicemail import VoicemailStore
from tests.support.audio import pesq_score, read_wav, similarity, speech_wav, tone_sequence
from tests.support.phone import Phone, registered_phones
from tests.support.server import ServerProcess, embedded_relay_config
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

SENTENCE = "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background."


def relayed_server(workdir: Path) -> ServerProcess:
    """A server with its embedded relay (which hosts the media actions)."""
    if shutil.which("espeak-ng") is None or shutil.which("sox") is None:
        pytest.skip("needs espeak-ng and sox (Debian packages; .ci/run installs them)")
    media, _ = embedded_relay_config()
    return ServerProcess(
        workdir,
        extra_config=media)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = relayed_server(tmp_path_factory.mktemp("hosted"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def log_events(server: ServerProcess, name: str, **fields: Any) -> list[dict[str, Any]]:
    """The server's JSON log lines of event `name` whose fields include `fields`."""
    found = []
    for line in server.log_path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if entry.get("event") == name and all(entry.get(k) == v for k, v in fields.items()):
            found.append(entry)
    return found


def media_action(server: ServerProcess, action: str, since: int = 0) -> bool:
    return len(log_events(server, "media_action", action=action)) > since


def test_the_echo_test_plays_its_intro_then_returns_the_callers_speech(
        server: ServerProcess, tmp_path: Path) -> None:
    speech = speech_wav(tmp_path / "speech.wav", SENTENCE)
    (phone,) = registered_phones(server.udp_port, ["1001"], tmp_path)
    try:
        echoes = len(log_events(server, "media_action", action="echo"))
        call = phone.call(f"sip:9196@127.0.0.1:{server.udp_port}")
        phone.wait_call_state(call, "CONFIRMED", 10)
        # The intro plays first; the echo starts when the relay says it was played.
        wait_for(lambda: media_action(server, "echo", echoes), 30, "the echo after the intro")
        phone.record(call, tmp_path / "back.wav")
        since = phone.play(call, tmp_path / "speech.wav")
        phone.wait_played(call, since, 20)
        received = phone.stats(call)["rx_packets"]
        # What it said last comes back through the relay's jitter buffer: 0.6 s more.
        wait_for(lambda: phone.stats(call)["rx_packets"] > received + 30, 10, "the echo's tail")
        back = read_wav(phone.stop_record(call, tmp_path / "back.wav"))
        score = pesq_score(speech, back)
        print(f"echo test: PESQ {score:.2f} of the caller's speech returned by 9196")
        # Twice through PCMU, once through the relay's jitter buffer: near the
        # G.711 ceiling (4.5) on loopback.
        assert score > 3.0, score
        phone.hangup(call)
        record = wait_for(lambda: [r for r in read_cdrs(server.data_dir / "cdr.sqlite")
                                   if r.dialled == "9196"], 10, "the CDR")[-1]
        assert record.disposition.value == "ANSWERED" and record.answer is not None
        assert record.start <= record.answer < record.end and record.sip_code == 200
        assert record.hangup_side.value == "caller"
    finally:
        phone.close()


def test_star97_records_the_callers_greeting_where_voicemail_plays_it(
        server: ServerProcess, tmp_path: Path) -> None:
    said = tone_sequence(tmp_path / "tones.wav", seed=97, seconds=3.0)
    # A second of silence first: the relay beeps before it records (as a
    # person waits for the beep).
    with wave.open(str(tmp_path / "greeting.wav"), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\x00\x00" * 8000 + said.tobytes())
    greeting = server.data_dir / "greetings" / "1002.wav"
    (phone,) = registered_phones(server.udp_port, ["1002"], tmp_path)
    try:
        recordings = len(log_events(server, "media_action", action="start recording"))
        call = phone.call(f"sip:*97@127.0.0.1:{server.udp_port}")
        phone.wait_call_state(call, "CONFIRMED", 10)
        wait_for(lambda: media_action(server, "start recording", recordings), 10,
                 "the recording to start")
        since = phone.play(call, tmp_path / "greeting.wav")
        phone.wait_played(call, since, 20)
        phone.dtmf(call, "#")  # ends the recording; the plan then hangs up
        phone.wait_call_state(call, "DISCONNECTED", 15)
        wait_for(greeting.exists, 10, "the greeting WAV")
        recorded = read_wav(greeting)
        score = similarity(said, recorded)
        print(f"*97: greeting of {len(recorded) / 8000:.1f} s, similarity {score:.2f}")
        assert score > 0.8, score
    finally:
        phone.close()


def test_a_busy_callee_sends_the_caller_to_voicemail_and_the_owner_listens_by_dtmf(
        server: ServerProcess, tmp_path: Path) -> None:
    speech_wav(tmp_path / "message.wav", SENTENCE)
    store = VoicemailStore(server.data_dir)
    mailbox = "1003@pbx.example.com"
    # The owner's phone subscribes to its mailbox (see test_mwi.py for why its
    # URI names the server's address).
    owner = Phone.start("1003", "1003pass", server.udp_port, log_dir=tmp_path, mwi=True,
                        domain=f"127.0.0.1:{server.udp_port}")
    (caller,) = registered_phones(server.udp_port, ["1004"], tmp_path)
    try:
        since = owner.mark()
        assert owner.register() == 200
        owner.wait_event("mwi", 10, since=since,
                         where=lambda e: "Messages-Waiting: no" in str(e.get("body")))

        # The owner is busy: the caller leaves a message.
        rang = owner.mark()
        call = caller.call(f"sip:1003@127.0.0.1:{server.udp_port}")
        incoming = int(owner.wait_event("incoming_call", 10, since=rang)["call"])
        owner.answer(incoming, 486)
        caller.wait_call_state(call, "CONFIRMED", 10)
        lit = owner.mark()
        # The greeting (the default: 1003 recorded none) and the beep come first.
        wait_for(lambda: log_events(server, "media_action", action="voicemail"), 10,
                 "voicemail to start")
        wait_for(lambda: caller.stats(call)["rx_packets"] > 150, 20, "the greeting")
        played = caller.play(call, tmp_path / "message.wav")
        caller.wait_played(call, played, 20)
        caller.hangup(call)
        message = wait_for(lambda: store.messages(mailbox), 20, "the message in the mailbox")[0]
        assert message.caller == "1004" and not message.heard and message.duration > 2
        assert store.wav_path(mailbox, message.id).exists()
        owner.wait_event("mwi", 10, since=lit,
                         where=lambda e: "Messages-Waiting: yes" in str(e.get("body")))

        # The owner calls *98 and listens: 1 plays the new message, which
        # counts as heard once played (or on a key during it).
        dark = owner.mark()
        menu = owner.call(f"sip:*98@127.0.0.1:{server.udp_port}")
        owner.wait_call_state(menu, "CONFIRMED", 10)
        wait_for(lambda: len(log_events(server, "media_action", action="voicemail")) >= 2, 10,
                 "the menu to start")
        owner.dtmf(menu, "1")
        wait_for(lambda: store.messages(mailbox)[0].heard, 40, "the message heard")
        owner.wait_event("mwi", 10, since=dark,
                         where=lambda e: "Messages-Waiting: no" in str(e.get("body")))
        # * back to the main menu, # goodbye: the relay ends the menu, the server sends BYE.
        owner.dtmf(menu, "*#")
        owner.wait_call_state(menu, "DISCONNECTED", 20)
    finally:
        owner.close()
        caller.close()


def test_a_restart_during_the_echo_test_ends_the_call_with_bye(tmp_path: Path) -> None:
    server = relayed_server(tmp_path / "restarted")
    server.start()
    try:
        (phone,) = registered_phones(server.udp_port, ["1001"], tmp_path)
        try:
            call = phone.call(f"sip:9196@127.0.0.1:{server.udp_port}")
            phone.wait_call_state(call, "CONFIRMED", 10)
            wait_for(lambda: log_events(server, "media_action", action="play media"), 10,
                     "the intro to start")
            server.stop()  # established calls stay in the store for the restart
            server.start()
            # The relay's side of the call did not survive: the call ends, cleanly.
            # (Generous: a restart under a loaded CI machine once took longer than 15 s.)
            ended = phone.wait_call_state(call, "DISCONNECTED", 40)
            assert log_events(server, "call_restored", hosted=True), ended
            record = wait_for(lambda: [r for r in read_cdrs(server.data_dir / "cdr.sqlite")
                                       if r.dialled == "9196"], 20, "the CDR")[-1]
            assert record.disposition.value == "ANSWERED"
            assert record.hangup_cause == "restarted during hosted media"
        finally:
            phone.close()
    finally:
        server.stop()
