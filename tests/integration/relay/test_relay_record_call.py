"""A relay process records a call it forwards: real sockets as phones, the WAV read back.

Each party streams its own audio (different band-limited noise, PCMU, paced
at 20 ms); the forwarded packets must arrive byte for byte, and the
recording's left channel must follow the caller's audio, the right one the
callee's.
"""

from __future__ import annotations

import json
import socket
import time
import wave
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from rtpmedia.codecs import PCMU
from tests.integration.relay.test_relay_process import (
    HOST,
    Phone,
    RelayProcess,
    port_range,
    relay_port,
)
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration
FRAME = 160


def voice(seed: int, seconds: float) -> npt.NDArray[np.int16]:
    """Band-limited noise (a stand-in for speech whose correlation is unambiguous)."""
    rng = np.random.default_rng(seed)
    raw = rng.normal(0, 1, int(8000 * seconds) + 64)
    smooth = np.convolve(raw, np.ones(6) / 6, mode="same")[:int(8000 * seconds)]
    return (smooth / np.max(np.abs(smooth)) * 12000).astype(np.int16)


def packet(seq: int, ssrc: int, payload: bytes) -> bytes:
    return (bytes([0x80, 0]) + seq.to_bytes(2, "big") + (seq * FRAME).to_bytes(4, "big")
            + ssrc.to_bytes(4, "big") + payload)


def best_correlation(recorded: npt.NDArray[np.int16], sent: npt.NDArray[np.int16]) -> float:
    """The normalised cross-correlation of the two at the best lag (the recording may lag)."""
    r = recorded.astype(np.float64)
    s = sent.astype(np.float64)
    n = len(r) + len(s)
    size = 1 << (n - 1).bit_length()
    xc = np.fft.irfft(np.fft.rfft(r, size) * np.conj(np.fft.rfft(s, size)), size)
    lag = int(np.argmax(np.abs(xc)))
    shift = lag if lag < size // 2 else lag - size
    if shift >= 0:
        a, b = r[shift:shift + len(s)], s[:len(r) - shift]
    else:
        a, b = r[:len(s) + shift], s[-shift:]
    m = min(len(a), len(b))
    a, b = a[:m], b[:m]
    denominator = float(np.sqrt(np.dot(a, a) * np.dot(b, b)))
    return 0.0 if denominator == 0 else float(np.dot(a, b) / denominator)


def stream(a: Phone, to_a: int, b: Phone, to_b: int, pcm_a: npt.NDArray[np.int16],
           pcm_b: npt.NDArray[np.int16], first_seq: int = 1,
           wire: tuple[Callable[[bytes], bytes], Callable[[bytes], bytes]] | None = None
           ) -> tuple[list[bytes], list[bytes], list[bytes], list[bytes]]:
    """Both parties send at once, paced as phones (ptime 20); what each sent and received.

    `wire`: what each party does to a packet before sending it (SRTP's protect).
    """
    to_wire_a, to_wire_b = wire or (bytes, bytes)
    sent_a, sent_b, got_a, got_b = [], [], [], []
    for s in (a.sock, b.sock):
        s.setblocking(False)
    start = time.monotonic()
    frames = min(len(pcm_a), len(pcm_b)) // FRAME
    for i in range(frames):
        # Pacing the sender to the media clock (not a wait for a result).
        delay = start + i * 0.020 - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        pa = to_wire_a(packet(first_seq + i, 0x1111,
                              PCMU.encode(pcm_a[i * FRAME:(i + 1) * FRAME])))
        pb = to_wire_b(packet(first_seq + i, 0x2222,
                              PCMU.encode(pcm_b[i * FRAME:(i + 1) * FRAME])))
        a.sock.sendto(pa, (HOST, to_a))
        b.sock.sendto(pb, (HOST, to_b))
        sent_a.append(pa)
        sent_b.append(pb)
        drain(a.sock, got_a)
        drain(b.sock, got_b)
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline and (len(got_a) < len(sent_b) or len(got_b) < len(sent_a)):
        drain(a.sock, got_a)
        drain(b.sock, got_b)
        time.sleep(0.01)
    for s in (a.sock, b.sock):
        s.settimeout(0.2)
    return sent_a, sent_b, got_a, got_b


def drain(sock: socket.socket, into: list[bytes]) -> None:
    while True:
        try:
            data, _ = sock.recvfrom(2048)
        except (BlockingIOError, TimeoutError):
            return
        into.append(data)


def offer_answer(relay: RelayProcess, a: Phone, b: Phone, call_id: str) -> tuple[int, int]:
    out = relay.command({"command": "offer", "call-id": call_id, "from-tag": "A", "to-tag": "B",
                         "via-branch": "B", "sdp": a.sdp(), "record-call": "yes",
                         "sip-call-id": f"{call_id}@phones"})
    assert out["result"] == "ok", out
    back = relay.command({"command": "answer", "call-id": call_id, "from-tag": "A",
                          "to-tag": "B", "sdp": b.sdp()})
    assert back["result"] == "ok", back
    return relay_port(back["sdp"]), relay_port(out["sdp"])


def read_wav(path: Path) -> tuple[npt.NDArray[np.int16], npt.NDArray[np.int16]]:
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (2, 2, 8000)
        data = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, 2)
    return data[:, 0].copy(), data[:, 1].copy()


@pytest.fixture
def phones() -> Iterator[tuple[Phone, Phone]]:
    pair = (Phone(), Phone())
    yield pair
    for p in pair:
        p.close()


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[RelayProcess]:
    low, high = port_range(20)
    (tmp_path / "media").mkdir()
    proc = RelayProcess(tmp_path, low, high, "--media-dir", str(tmp_path / "media"))
    proc.start()
    yield proc
    proc.stop()


def recordings(media: Path) -> list[Path]:
    return sorted(media.glob("recordings/*/*.wav"))


def test_recorded_call_forwards_unchanged_and_each_channel_holds_its_party(
        relay: RelayProcess, phones: tuple[Phone, Phone]) -> None:
    a, b = phones
    to_a, to_b = offer_answer(relay, a, b, "rec1")
    pcm_a, pcm_b = voice(1, 3.0), voice(2, 3.0)
    sent_a, sent_b, got_a, got_b = stream(a, to_a, b, to_b, pcm_a, pcm_b)
    # The forwarded audio is the very packets sent (a few may be lost on a busy machine).
    assert len(got_b) >= 0.95 * len(sent_a) and set(got_b) <= set(sent_a)
    assert len(got_a) >= 0.95 * len(sent_b) and set(got_a) <= set(sent_b)
    q = relay.command({"command": "query", "call-id": "rec1"})
    assert q["recording"] == 1
    streams = [q["tags"][t]["medias"][0]["streams"][0] for t in ("A", "B")]
    assert all(s["kernelized"] == 0 for s in streams)  # recorded: in userspace
    gone = relay.command({"command": "delete", "call-id": "rec1"})
    assert gone["result"] == "ok"
    media = relay.data_dir / "media"
    [wav] = wait_for(lambda: recordings(media), 5, "the recording in place")
    assert wav.name == "rec1.wav" and wav.parent.name == time.strftime("%Y-%m-%d", time.gmtime())
    assert gone["recording-file"] == str(wav.relative_to(media))
    assert not list(wav.parent.glob(".*.part"))
    left, right = read_wav(wav)
    assert 2.5 < len(left) / 8000 < 4.0
    assert best_correlation(left, pcm_a) > 0.9
    assert best_correlation(right, pcm_b) > 0.9
    assert abs(best_correlation(left, pcm_b)) < 0.3
    assert abs(best_correlation(right, pcm_a)) < 0.3
    meta = json.loads(wav.with_suffix(".json").read_text())
    assert meta["call-id"] == "rec1" and meta["sip-call-id"] == "rec1@phones"
    assert meta["parties"] == {"left": "A", "right": "B"}
    assert abs(meta["duration"] - len(left) / 8000) < 0.05


def test_a_recorded_call_that_is_also_transcoded_is_converted_and_recorded(
        relay: RelayProcess, phones: tuple[Phone, Phone]) -> None:
    """The recording taps the streams; the transcoding bridge still forwards them."""
    from rtpmedia.codecs import PCMA

    a, b = phones

    def pcma(packet_: bytes) -> bytes:  # B speaks PCMA only
        return packet_[:1] + bytes([8]) + packet_[2:12] + PCMA.encode(PCMU.decode(packet_[12:]))

    b_sdp = (f"v=0\r\no=- 1 1 IN IP4 {HOST}\r\ns=-\r\nc=IN IP4 {HOST}\r\nt=0 0\r\n"
             f"m=audio {b.port} RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n")
    out = relay.command({"command": "offer", "call-id": "rec-tc", "from-tag": "A",
                         "to-tag": "B", "via-branch": "B", "sdp": a.sdp(), "record-call": "yes",
                         "codec": {"transcode": ["PCMU", "PCMA"]}})
    assert out["result"] == "ok", out
    back = relay.command({"command": "answer", "call-id": "rec-tc", "from-tag": "A",
                          "to-tag": "B", "sdp": b_sdp})
    assert back["result"] == "ok", back
    assert " 0\r\n" in back["sdp"] or "RTP/AVP 0" in back["sdp"]  # A is answered in PCMU
    pcm_a, pcm_b = voice(7, 3.0), voice(8, 3.0)
    sent_a, sent_b, got_a, got_b = stream(a, relay_port(back["sdp"]), b, relay_port(out["sdp"]),
                                          pcm_a, pcm_b, wire=(bytes, pcma))
    assert len(got_b) >= 0.95 * len(sent_a) and len(got_a) >= 0.95 * len(sent_b)
    assert {p[1] & 0x7F for p in got_b} == {8} and {p[1] & 0x7F for p in got_a} == {0}
    heard_by_b = np.concatenate([PCMA.decode(p[12:]) for p in got_b])
    heard_by_a = np.concatenate([PCMU.decode(p[12:]) for p in got_a])
    assert best_correlation(heard_by_b, pcm_a) > 0.95
    assert best_correlation(heard_by_a, pcm_b) > 0.95
    gone = relay.command({"command": "delete", "call-id": "rec-tc"})
    wav = relay.data_dir / "media" / gone["recording-file"]
    wait_for(wav.exists, 5, "the recording in place")
    left, right = read_wav(wav)
    assert best_correlation(left, pcm_a) > 0.9
    assert best_correlation(right, pcm_b) > 0.9


def test_relay_restart_keeps_the_finished_part_and_goes_on_into_the_next(
        relay: RelayProcess, phones: tuple[Phone, Phone]) -> None:
    a, b = phones
    to_a, to_b = offer_answer(relay, a, b, "rec2")
    pcm_a, pcm_b = voice(3, 3.0), voice(4, 3.0)
    half = 8000 * 3 // 2
    stream(a, to_a, b, to_b, pcm_a[:half], pcm_b[:half])
    assert relay.process is not None
    relay.process.terminate()
    relay.process.wait(10)
    media = relay.data_dir / "media"
    [first] = recordings(media)  # the part before the restart is finished and kept
    assert best_correlation(read_wav(first)[0], pcm_a[:half]) > 0.9
    relay.start()
    stream(a, to_a, b, to_b, pcm_a[half:], pcm_b[half:], first_seq=1000)
    assert relay.command({"command": "delete", "call-id": "rec2"})["result"] == "ok"
    second = first.with_name("rec2.2.wav")
    wait_for(second.exists, 5, "the second part")
    left, right = read_wav(second)
    assert best_correlation(left, pcm_a[half:]) > 0.9
    assert best_correlation(right, pcm_b[half:]) > 0.9
    meta = json.loads(first.with_suffix(".json").read_text())
    assert [p["file"] for p in meta["parts"]] == ["rec2.wav", "rec2.2.wav"]


def test_after_kill_9_the_half_written_part_is_recovered_and_recording_goes_on(
        relay: RelayProcess, phones: tuple[Phone, Phone]) -> None:
    a, b = phones
    to_a, to_b = offer_answer(relay, a, b, "rec3")
    pcm_a, pcm_b = voice(5, 4.0), voice(6, 4.0)
    half = 8000 * 2
    stream(a, to_a, b, to_b, pcm_a[:half], pcm_b[:half])
    relay.kill()
    media = relay.data_dir / "media"
    day = next((media / "recordings").iterdir())
    assert (day / ".rec3.wav.part").exists() and not (day / "rec3.wav").exists()
    relay.start()
    first = day / "rec3.wav"
    assert first.exists()  # recovered as the call was restored
    left, right = read_wav(first)
    assert len(left) >= 8000 // 2  # the audio written before the kill
    assert best_correlation(left, pcm_a[:half]) > 0.9
    assert best_correlation(right, pcm_b[:half]) > 0.9
    stream(a, to_a, b, to_b, pcm_a[half:], pcm_b[half:], first_seq=1000)
    assert relay.command({"command": "delete", "call-id": "rec3"})["result"] == "ok"
    second = day / "rec3.2.wav"
    wait_for(second.exists, 5, "the second part")
    assert best_correlation(read_wav(second)[0], pcm_a[half:]) > 0.9
    meta = json.loads(first.with_suffix(".json").read_text())
    assert [(p["file"], p.get("recovered", False)) for p in meta["parts"]] == [
        ("rec3.wav", True), ("rec3.2.wav", False)]


def test_an_sdes_srtp_call_is_forwarded_encrypted_and_recorded_decrypted(
        relay: RelayProcess, phones: tuple[Phone, Phone]) -> None:
    import base64
    import os

    import pylibsrtp

    a, b = phones
    key_a, key_a2, key_b = os.urandom(30), os.urandom(30), os.urandom(30)

    def sdp(phone: Phone, *keys: tuple[int, bytes]) -> str:
        lines = "".join(f"a=crypto:{tag} AES_CM_128_HMAC_SHA1_80 "
                        f"inline:{base64.b64encode(k).decode()}\r\n" for tag, k in keys)
        return (f"v=0\r\no=- 1 1 IN IP4 {HOST}\r\ns=-\r\nc=IN IP4 {HOST}\r\nt=0 0\r\n"
                f"m=audio {phone.port} RTP/SAVP 0\r\na=rtpmap:0 PCMU/8000\r\n{lines}")

    # A offers two keys; B accepts the second (tag 2): A sends with key_a2.
    out = relay.command({"command": "offer", "call-id": "srtp", "from-tag": "A", "to-tag": "B",
                         "via-branch": "B", "sdp": sdp(a, (1, key_a), (2, key_a2)),
                         "record-call": "yes"})
    assert out["result"] == "ok" and "RTP/SAVP" in out["sdp"] and "a=crypto:2" in out["sdp"]
    back = relay.command({"command": "answer", "call-id": "srtp", "from-tag": "A",
                          "to-tag": "B", "sdp": sdp(b, (2, key_b))})
    assert back["result"] == "ok"
    to_a, to_b = relay_port(back["sdp"]), relay_port(out["sdp"])

    def session(key: bytes) -> pylibsrtp.Session:
        return pylibsrtp.Session(policy=pylibsrtp.Policy(
            key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND))

    protect_a, protect_b = session(key_a2), session(key_b)
    pcm_a, pcm_b = voice(7, 2.5), voice(8, 2.5)

    sent_a, sent_b, got_a, got_b = stream(a, to_a, b, to_b, pcm_a, pcm_b,
                                          wire=(protect_a.protect, protect_b.protect))
    # What arrives is the encrypted packets as sent: forwarding does not touch them.
    assert len(got_b) >= 0.95 * len(sent_a) and set(got_b) <= set(sent_a)
    assert len(got_a) >= 0.95 * len(sent_b) and set(got_a) <= set(sent_b)
    # Three packets under a key A never declared: forwarded, but left out of
    # the recording, and counted on A's stream.
    forged = session(os.urandom(30))
    for seq in range(3):
        a.sock.sendto(forged.protect(packet(60000 + seq, 0xBAD, b"\xff" * FRAME)), (HOST, to_a))

    def failed() -> dict | None:
        q = relay.command({"command": "query", "call-id": "srtp"})
        a_rec = q["tags"]["A"]["medias"][0]["streams"][0].get("recording", {})
        return q if a_rec.get("SRTP failed", 0) >= 3 else None

    q = wait_for(failed, 5, "the forged packets counted")
    assert q["tags"]["A"]["medias"][0]["streams"][0]["recording"] == {"SRTP failed": 3}
    assert q["tags"]["B"]["medias"][0]["streams"][0]["recording"] == {"SRTP failed": 0}
    gone = relay.command({"command": "delete", "call-id": "srtp"})
    wav = relay.data_dir / "media" / gone["recording-file"]
    wait_for(wav.exists, 5, "the recording in place")
    left, right = read_wav(wav)
    assert best_correlation(left, pcm_a) > 0.9
    assert best_correlation(right, pcm_b) > 0.9

