"""Hosted media without sockets: what `host` answers, the media commands' effects, the pacing.

The decisions (control.py + hosting.py) are fed commands; the processor
(hosted.py) is fed packets and ticks with an explicit clock, and what it
emits is parsed back.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import pytest

from rtpmedia import codecs
from rtpmedia.relay import hosting
from rtpmedia.relay.calls import Call, Hosting, MediaEnd
from rtpmedia.relay.control import Bind, Control, Save, Unbind
from rtpmedia.relay.hosted import CATCH_UP, HostedParty
from rtpmedia.relay.ports import PortPool
from rtpmedia.telephone_event import digit_packets

RELAY = "203.0.113.1"
PHONE = "192.0.2.10"


def sdp(formats: str = "0 8 101", extra: str = "", port: int = 4000) -> str:
    maps = {"0": "a=rtpmap:0 PCMU/8000", "8": "a=rtpmap:8 PCMA/8000",
            "9": "a=rtpmap:9 G722/8000", "101": "a=rtpmap:101 telephone-event/8000"}
    lines = "".join(maps[f] + "\r\n" for f in formats.split())
    return (f"v=0\r\no=- 1 1 IN IP4 {PHONE}\r\ns=-\r\nc=IN IP4 {PHONE}\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP {formats}\r\n{lines}{extra}")


def control() -> Control:
    return Control(PortPool(30000, 30099), RELAY)


def host(c: Control, call: str = "c1", tag: str = "A", **extra: Any) -> tuple[dict[str, Any], list]:
    msg: dict[str, Any] = {"command": "host", "call-id": call, "from-tag": tag, "sdp": sdp()}
    msg.update(extra)
    return c.handle({k: v for k, v in msg.items() if v is not None}, 0.0)


def audio_line(body: str) -> list[str]:
    return next(x for x in body.split("\r\n") if x.startswith("m=audio")).split()


# -- host ---------------------------------------------------------------------------------


def test_host_answers_with_the_partys_first_g711_and_its_telephone_event() -> None:
    c = control()
    answer, effects = host(c, sdp=sdp("9 8 0 101"))
    assert answer["result"] == "ok"
    line = audio_line(answer["sdp"])
    assert line[3:] == ["8", "101"]
    assert f"c=IN IP4 {RELAY}" in answer["sdp"] and "a=sendrecv" in answer["sdp"]
    end = c.calls["c1"].monologues["A"].ends[0]
    assert int(line[1]) == end.port and end.expected == (PHONE, 4000)
    assert [type(e) for e in effects] == [Bind, hosting.Host, Save]
    assert effects[1].hosting == Hosting(0, "PCMA", 8, 101, 1)


def test_no_g711_is_refused_and_changes_nothing() -> None:
    c = control()
    answer, effects = host(c, sdp=sdp("9"))
    assert answer == {"result": "error", "error-reason": "no codec in common"}
    assert effects == [] and c.calls == {}


def test_srtp_is_not_answered_and_avpf_keeps_its_profile() -> None:
    c = control()
    srtp, _ = host(c, sdp=sdp().replace("RTP/AVP", "RTP/SAVP"))
    assert srtp == {"result": "error", "error-reason": "no codec in common"}
    avpf, _ = host(c, sdp=sdp().replace("RTP/AVP", "RTP/AVPF"))
    assert audio_line(avpf["sdp"])[2] == "RTP/AVPF"


def test_hold_is_mirrored_and_a_new_offer_keeps_the_port() -> None:
    c = control()
    first, _ = host(c)
    held, effects = host(c, sdp=sdp(extra="a=sendonly\r\n"))
    assert "a=recvonly" in held["sdp"]
    assert audio_line(held["sdp"])[1] == audio_line(first["sdp"])[1]
    assert not any(isinstance(e, Bind) for e in effects)
    assert c.calls["c1"].monologues["A"].ends[0].on_hold
    assert "o=- 2 2 IN IP4" in held["sdp"]  # a new version of the relay's description


def test_host_drops_the_callee_the_caller_had_offered_to() -> None:
    c = control()
    c.handle({"command": "offer", "call-id": "c1", "from-tag": "A", "via-branch": "z9",
              "sdp": sdp()}, 0.0)
    callee = c.calls["c1"].monologues["branch:z9"]
    _, effects = host(c)
    assert list(c.calls["c1"].monologues) == ["A"]
    assert Unbind(callee.ends[0]) in effects
    assert c.calls["c1"].monologues["A"].peer is None


def test_an_offer_from_a_hosted_party_makes_it_forwarded_again() -> None:
    c = control()
    host(c)
    _, effects = c.handle({"command": "offer", "call-id": "c1", "from-tag": "A", "to-tag": "B",
                           "sdp": sdp()}, 1.0)
    mono = c.calls["c1"].monologues["A"]
    assert mono.hosting is None and mono.peer == "B"
    assert hosting.Unhost(mono.ends[0]) in effects
    echo, _ = c.handle({"command": "echo", "call-id": "c1", "from-tag": "A"}, 1.0)
    assert echo["result"] == "error"


def test_late_offer_then_answer() -> None:
    c = control()
    offer, _ = c.handle({"command": "host", "call-id": "c1", "from-tag": "A"}, 0.0)
    assert audio_line(offer["sdp"])[3:] == ["0", "8", "101"]
    answer, effects = c.handle({"command": "host", "call-id": "c1", "from-tag": "A",
                                "sdp": sdp("8 101"), "sdp-type": "answer"}, 1.0)
    assert answer == {"result": "ok"}
    hosted = next(e for e in effects if isinstance(e, hosting.Host))
    assert hosted.hosting.codec == "PCMA" and hosted.end.expected == (PHONE, 4000)
    stray, _ = c.handle({"command": "host", "call-id": "c2", "from-tag": "A", "sdp": sdp(),
                         "sdp-type": "answer"}, 1.0)
    assert stray["result"] == "error"


def test_media_commands_name_a_hosted_party_and_files_inside_the_media_dir() -> None:
    c = control()
    host(c)
    c.handle({"command": "offer", "call-id": "c2", "from-tag": "X", "sdp": sdp()}, 0.0)
    cases: list[tuple[dict[str, Any], Any]] = [
        ({"command": "play media", "file": "vm-greeting", "repeat-times": 2},
         hosting.PlayMedia),
        ({"command": "echo"}, hosting.Echo),
        ({"command": "stop media"}, hosting.StopMedia),
        ({"command": "start recording", "file": "greetings/1001"}, hosting.StartPartyRecording),
        ({"command": "stop recording"}, hosting.StopPartyRecording),
        ({"command": "voicemail", "mailbox": "1001@pbx.example.com", "mode": "menu"},
         hosting.Voicemail),
    ]
    for msg, kind in cases:
        answer, effects = c.handle({"call-id": "c1", "from-tag": "A", **msg}, 0.0)
        assert answer == {"result": "ok"} and [type(e) for e in effects] == [kind], msg
    _, effects = c.handle({"command": "start recording", "call-id": "c1", "from-tag": "A",
                           "file": "greetings/1001", "max-seconds": 5, "beep": "no"}, 0.0)
    assert effects[0] == hosting.StartPartyRecording(effects[0].end, "greetings/1001.wav", 5,
                                                False, "#")
    refused = [
        {"call-id": "c1", "from-tag": "A", "command": "play media", "file": "/etc/passwd"},
        {"call-id": "c1", "from-tag": "A", "command": "play media", "file": "a/../../b"},
        {"call-id": "c1", "from-tag": "A", "command": "play media", "file": "x",
         "repeat-times": 0},
        {"call-id": "c1", "from-tag": "A", "command": "start recording", "file": "r",
         "stop-digit": "x"},
        {"call-id": "c1", "from-tag": "A", "command": "voicemail", "mailbox": "../x"},
        {"call-id": "c1", "from-tag": "B", "command": "echo"},
        {"call-id": "c2", "from-tag": "X", "command": "echo"},  # forwarded, not hosted
        {"call-id": "c9", "from-tag": "A", "command": "echo"},
    ]
    for msg in refused:
        answer, effects = c.handle(msg, 0.0)
        assert answer["result"] == "error" and effects == [], msg


def test_a_stored_hosted_call_is_hosted_again_after_a_restart() -> None:
    c = control()
    host(c)
    record = c.calls["c1"].record()
    again = control()
    effects = again.restore(Call.from_record(record), 5.0)
    hosted = [e for e in effects if isinstance(e, hosting.Host)]
    assert len(hosted) == 1 and hosted[0].hosting == Hosting(0, "PCMU", 0, 101, 1)
    assert hosted[0].end.port == c.calls["c1"].monologues["A"].ends[0].port


# -- the processor ------------------------------------------------------------------------


class Sent:
    def __init__(self) -> None:
        self.packets: list[bytes] = []

    def __call__(self, end: MediaEnd, datagram: bytes) -> None:
        self.packets.append(datagram)

    def headers(self) -> list[tuple[int, int, int, int, int]]:
        return [struct.unpack("!BBHII", p[:12]) for p in self.packets]


def party(events: list[dict[str, Any]] | None = None) -> HostedParty:
    end = MediaEnd("c1", "A", 0, 30000, expected=(PHONE, 4000))
    notices = events if events is not None else []
    return HostedParty(end, Hosting(0, "PCMU", 0, 101), notices.append, ssrc=1234)


def test_one_packet_per_tick_in_sequence_with_the_marker_first() -> None:
    p, sent = party(), Sent()
    for i in range(10):
        p.tick(100.0 + i * 0.02 + (0.004 if i % 2 else 0.0), sent)  # a timer a bit late, unevenly
    headers = sent.headers()
    assert len(headers) == 10
    assert headers[0][1] == 0x80 and all(h[1] == 0 for h in headers[1:])
    assert {h[4] for h in headers} == {1234}
    for a, b in zip(headers, headers[1:], strict=False):
        assert (b[2] - a[2]) & 0xFFFF == 1 and (b[3] - a[3]) & 0xFFFFFFFF == 160
    assert all(len(x) == 12 + 160 for x in sent.packets)


def test_a_late_tick_sends_at_most_catch_up_frames_and_skips_the_rest_of_the_time() -> None:
    p, sent = party(), Sent()
    p.tick(100.0, sent)
    p.tick(100.2, sent)  # 200 ms late: ten frames due
    headers = sent.headers()
    assert len(headers) == 1 + CATCH_UP
    assert p.skipped == 10 - CATCH_UP
    # The timestamps follow the clock: the skipped frames' time is not compressed.
    assert (headers[-1][3] - headers[0][3]) & 0xFFFFFFFF == 10 * 160
    p.tick(100.22, sent)
    assert len(sent.packets) == 2 + CATCH_UP


def test_playback_then_played_and_echo_of_what_arrived() -> None:
    events: list[dict[str, Any]] = []
    p, sent = party(events), Sent()
    tone = (np.sin(np.arange(480) * 0.3) * 8000).astype(np.int16)
    p.play(tone, repeat=2)
    for i in range(8):
        p.tick(i * 0.02, sent)
    pcmu = codecs.get("PCMU/8000")
    heard = np.concatenate([pcmu.decode(x[12:]) for x in sent.packets])
    assert np.corrcoef(heard[:960], np.tile(tone, 2))[0, 1] > 0.99
    assert events == [{"event": "played"}]
    assert not heard[960:].any()

    p.start_echo()
    start = 1.0
    for i in range(20):
        frame = (np.sin(np.arange(160) * 0.2 + i) * 6000).astype(np.int16)
        packet = struct.pack("!BBHII", 0x80, 0, i, i * 160, 99) + pcmu.encode(frame)
        p.rtp(p.end, memoryview(packet), start + i * 0.02)
        p.tick(start + i * 0.02, sent)
    echoed = np.concatenate([pcmu.decode(x[12:]) for x in sent.packets[-10:]])
    assert np.abs(echoed.astype(int)).max() > 3000


def test_telephone_events_become_digits_and_are_never_sent_to_the_party() -> None:
    events: list[dict[str, Any]] = []
    p, sent = party(events), Sent()
    for n, (_, packet) in enumerate(digit_packets("5", ssrc=99, sequence_number=1,
                                                  timestamp=0)):
        p.rtp(p.end, memoryview(packet.serialize()), n * 0.02)
        p.tick(n * 0.02, sent)
    assert events == [{"event": "dtmf", "digit": "5"}]
    assert all(h[1] & 0x7F == 0 for h in sent.headers())


def test_a_party_on_hold_is_sent_nothing() -> None:
    p, sent = party(), Sent()
    p.end.on_hold = True
    p.tick(0.0, sent)
    p.tick(0.02, sent)
    assert sent.packets == []


@pytest.mark.parametrize("text", ["", "/abs", "a/../b", "..", "a\\b", "a\x00b"])
def test_relative_path_refuses(text: str) -> None:
    with pytest.raises(hosting.HostingError):
        hosting.relative_path(text)


def test_voicemail_hang_up_while_recording_deposits_the_message(tmp_path: Any) -> None:
    """The owner's greeting is used; the caller hangs up (delete) instead of pressing #."""
    from rtpmedia.prompts import write_wav
    from rtpmedia.relay.hosted import MediaFiles
    from softswitch.voicemail import VoicemailStore

    greeting = (np.sin(np.arange(2400) * 0.1) * 5000).astype(np.int16)  # 0.3 s
    write_wav(tmp_path / "greetings" / "1001.wav", greeting)
    files = MediaFiles(tmp_path)
    events: list[dict[str, Any]] = []
    p, sent = party(events), Sent()
    command = hosting.Voicemail(p.end, "1001@pbx.example.com", "leave", "1002", "Bob", "sip-1")
    p.voicemail(files.voicemail_session(command), 0.0)
    pcmu = codecs.get("PCMU/8000")
    voice = (np.sin(np.arange(160) * 0.25) * 7000).astype(np.int16)
    for i in range(200):  # 4 s: greeting, beep, then about 3 s recorded
        now = i * 0.02
        packet = struct.pack("!BBHII", 0x80, 0, i, i * 160, 99) + pcmu.encode(voice)
        p.rtp(p.end, memoryview(packet), now)
        p.tick(now, sent)
    heard = np.concatenate([pcmu.decode(x[12:]) for x in sent.packets[:15]])
    assert np.corrcoef(heard[:2400], greeting)[0, 1] > 0.99  # the owner's greeting first
    p.close()
    assert events[-1] == {"event": "ended", "reason": "hangup"}
    filed, problems = VoicemailStore(tmp_path).ingest()
    assert not problems and len(filed) == 1
    assert filed[0].caller == "1002" and filed[0].call_id == "sip-1"
    assert 2.5 < filed[0].duration < 3.6


def test_a_voicemail_message_gone_mid_call_ends_the_flow_with_failed(tmp_path: Any) -> None:
    from rtpmedia.prompts import write_wav
    from rtpmedia.relay.hosted import MediaFiles
    from softswitch.voicemail import VoicemailStore, deposit

    wav = tmp_path / "m.wav"
    write_wav(wav, np.zeros(8000, np.int16))
    deposit(tmp_path, "1001@pbx.example.com", wav, caller="1002", duration=1.0)
    VoicemailStore(tmp_path).ingest()
    files = MediaFiles(tmp_path)
    events: list[dict[str, Any]] = []
    p, sent = party(events), Sent()
    command = hosting.Voicemail(p.end, "1001@pbx.example.com", "menu", "", "", "")
    session = files.voicemail_session(command)
    for path in (tmp_path / "voicemail" / "1001@pbx.example.com").glob("*.wav"):
        path.unlink()  # deleted by the owner's other phone, say
    p.voicemail(session, 0.0)
    p.digit("1", 0.0)  # listen: the message's audio is gone
    p.tick(0.0, sent)
    assert {"event": "ended", "reason": "failed"} in events
    assert p.ivr is None and len(sent.packets) == 1
