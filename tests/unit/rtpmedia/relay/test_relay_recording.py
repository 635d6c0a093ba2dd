"""A call's recording processor without sockets: forwarding first, frames per tick, files."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np

from rtpmedia.codecs import PCMU
from rtpmedia.relay.calls import MediaEnd
from rtpmedia.relay.recording import CallRecording, RecordingInfo, recover_parts

INFO = RecordingInfo("c1", "sip-c1@x", "A", "B")


def pair() -> tuple[MediaEnd, MediaEnd]:
    a, b = MediaEnd("c1", "A", 0, 30000), MediaEnd("c1", "B", 0, 30002)
    a.sink, b.sink = b, a
    return a, b


def packet(seq: int, level: int) -> bytes:
    pcm = np.full(160, level, np.int16)
    return (bytes([0x80, 0]) + seq.to_bytes(2, "big") + (seq * 160).to_bytes(4, "big")
            + (7).to_bytes(4, "big") + PCMU.encode(pcm))


def test_a_recording_taps_the_packets_and_forwards_nothing(tmp_path: Path) -> None:
    from twisted.internet.task import Clock

    from rtpmedia.relay.engine import MediaEngine

    a, b = pair()
    sent: list[tuple[MediaEnd, bytes]] = []
    engine = MediaEngine(Clock(), lambda end, data: sent.append((end, data)))
    rec = CallRecording(tmp_path / "r" / "c1.wav", INFO, a, b, 0.0)
    engine.attach_tap(rec, [a, b])
    assert a.taps == (rec,) and b.taps == (rec,) and a.processor is None
    rec.rtp(a, memoryview(bytearray(packet(1, 1000))), 0.0)
    engine.tick(0.02)
    assert sent == []  # whoever forwards the stream (plain, or a bridge) still does
    assert rec.receivers[0].counts.packets == 1
    engine.detach(rec)
    assert a.taps == () and b.taps == () and rec.closed


def test_left_is_a_and_right_is_b_and_the_file_appears_only_when_done(tmp_path: Path) -> None:
    a, b = pair()
    path = tmp_path / "r" / "c1.wav"
    rec = CallRecording(path, INFO, a, b, 100.0)
    for i in range(100):
        now = 100.0 + i * 0.02
        rec.rtp(a, memoryview(packet(i, 4000)), now)
        rec.rtp(b, memoryview(packet(i, -2000)), now)
        rec.tick(now + 0.001, lambda end, data: None)
    assert not path.exists()  # still being written under its .part name
    rec.close()
    with wave.open(str(path)) as w:
        data = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, 2)
    assert w.getnchannels() == 2 and w.getframerate() == 8000
    assert 1.9 <= len(data) / 8000 <= 2.0
    played = data[len(data) // 2:]  # past the jitter buffer's start
    assert abs(played[:, 0].mean() - 4000) < 200 and abs(played[:, 1].mean() + 2000) < 200
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["sip-call-id"] == "sip-c1@x" and meta["start"] == 100.0
    assert meta["parties"] == {"left": "A", "right": "B"}
    # Recording the call again (after stop/start, or a restart): the next part.
    again = CallRecording(path, INFO, a, b, 200.0)
    assert again.path.name == "c1.2.wav"
    again.close()
    meta = json.loads(path.with_suffix(".json").read_text())
    assert [p["file"] for p in meta["parts"]] == ["c1.wav", "c1.2.wav"]


def test_a_party_sending_30_ms_packets_is_recorded_not_silent(tmp_path: Path) -> None:
    a, b = pair()
    path = tmp_path / "r" / "c30.wav"
    rec = CallRecording(path, INFO, a, b, 100.0)
    sent = 0
    for i in range(100):
        now = 100.0 + i * 0.02
        while sent * 0.03 <= i * 0.02:  # A: a=ptime:30; B: 20 ms
            pcm = np.full(240, 4000, np.int16)
            rec.rtp(a, memoryview(bytes([0x80, 0]) + sent.to_bytes(2, "big")
                                  + (sent * 240).to_bytes(4, "big") + (8).to_bytes(4, "big")
                                  + PCMU.encode(pcm)), now)
            sent += 1
        rec.rtp(b, memoryview(packet(i, -2000)), now)
        rec.tick(now + 0.001, lambda end, data: None)
    rec.close()
    with wave.open(str(path)) as w:
        data = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, 2)
    played = data[len(data) // 2:]
    assert abs(played[:, 0].mean() - 4000) < 200 and abs(played[:, 1].mean() + 2000) < 200
    assert rec.receivers[0].counts.reframed == sent and rec.receivers[0].counts.concealed_frames == 0


def test_a_half_written_part_is_recovered(tmp_path: Path) -> None:
    day = tmp_path / "recordings" / "2026-12-06"
    day.mkdir(parents=True)
    stale = day / ".c1.wav.part"
    with wave.open(str(stale), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(np.ones((8000, 2), "<i2").tobytes())
    raw = bytearray(stale.read_bytes())
    raw[4:8] = raw[40:44] = bytes(4)  # the header of a process killed before it was fixed up
    stale.write_bytes(bytes(raw) + b"\x01\x02")  # and half a frame at the end
    [part] = recover_parts(day / "c1.wav", INFO)
    assert part == day / "c1.wav" and not stale.exists()
    with wave.open(str(part)) as w:
        assert w.getnframes() == 8000
    meta = json.loads((day / "c1.json").read_text())
    assert meta["parts"][0]["recovered"] is True and meta["duration"] == 1.0
