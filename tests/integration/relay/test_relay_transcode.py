"""The relay process transcodes PCMU<->PCMA and repairs a lossy leg, on loopback sockets."""

from __future__ import annotations

import socket
import time
from collections.abc import Collection, Iterator
from pathlib import Path

import numpy as np
import pytest

from rtpmedia.codecs.g711 import PCMA, PCMU
from rtpmedia.rtp import RtpPacket
from tests.integration.relay.test_relay_process import HOST, RelayProcess, port_range, relay_port
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration
TRANSCODE = {"codec": {"transcode": ["PCMU", "PCMA"]}}


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayProcess]:
    low, high = port_range(40)
    proc = RelayProcess(Path(tmp_path_factory.mktemp("relay")), low, high)
    proc.start()
    yield proc
    proc.stop()


class Party:
    """A phone that speaks one G.711 law: sends 20 ms frames, collects what arrives."""

    def __init__(self, codec: str) -> None:
        self.codec = PCMU if codec == "PCMU" else PCMA
        self.pt = 0 if codec == "PCMU" else 8
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, 0))
        self.sock.setblocking(False)
        self.port = int(self.sock.getsockname()[1])
        self.received: list[RtpPacket] = []

    def sdp(self) -> str:
        name = "PCMU" if self.pt == 0 else "PCMA"
        return (f"v=0\r\no=- 1 1 IN IP4 {HOST}\r\ns=-\r\nc=IN IP4 {HOST}\r\nt=0 0\r\n"
                f"m=audio {self.port} RTP/AVP {self.pt} 101\r\na=rtpmap:{self.pt} {name}/8000\r\n"
                "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n")

    def send(self, seq: int, pcm: np.ndarray, to: int) -> None:
        """Packet `seq` of `pcm` (its duration: len(pcm) samples, as for every packet)."""
        packet = RtpPacket(payload_type=self.pt, sequence_number=seq, timestamp=seq * len(pcm),
                           ssrc=0x5150 + self.pt, payload=self.codec.encode(pcm))
        self.sock.sendto(packet.serialize(), (HOST, to))

    def drain(self) -> int:
        while True:
            try:
                data, _ = self.sock.recvfrom(2048)
            except BlockingIOError:
                return len(self.received)
            self.received.append(RtpPacket.parse(data))

    def close(self) -> None:
        self.sock.close()


def speech_like(seconds: float, seed: int) -> np.ndarray:
    """A voiced, amplitude-modulated signal with harmonics: correlates badly if mangled."""
    t = np.arange(int(8000 * seconds)) / 8000
    rng = np.random.default_rng(seed)
    f0 = 120 + 40 * seed
    tone = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6)) / k for k in range(1, 6))
    envelope = 0.6 + 0.4 * np.sin(2 * np.pi * 3 * t)
    return (6000 * tone * envelope).astype(np.int16)


def establish(relay: RelayProcess, a: Party, b: Party, call_id: str,
              offer_extra: dict | None = None, answer_extra: dict | None = None) -> tuple[int, int]:
    out = relay.command({"command": "offer", "call-id": call_id, "from-tag": "A", "to-tag": "B",
                         "sdp": a.sdp(), **(offer_extra or {})})
    assert out["result"] == "ok", out
    back = relay.command({"command": "answer", "call-id": call_id, "from-tag": "A",
                          "to-tag": "B", "sdp": b.sdp(), **(answer_extra or {})})
    assert back["result"] == "ok", back
    return relay_port(back["sdp"]), relay_port(out["sdp"])


def best_match(heard: np.ndarray, piece: np.ndarray) -> float:
    """The highest normalised correlation of `piece` with any stretch of `heard`."""
    dots = np.correlate(heard, piece, mode="valid")
    energy = np.convolve(heard * heard, np.ones(len(piece)), mode="valid")
    return float(np.max(dots / np.sqrt(np.maximum(energy, 1e-9) * np.dot(piece, piece))))


def correlation(x: np.ndarray, y: np.ndarray) -> float:
    x, y = x.astype(float), y.astype(float)
    return float(np.dot(x, y) / np.sqrt(np.dot(x, x) * np.dot(y, y)))


def test_pcmu_only_and_pcma_only_hear_each_other_transcoded(relay: RelayProcess) -> None:
    a, b = Party("PCMU"), Party("PCMA")
    try:
        to_a, to_b = establish(relay, a, b, "tc1", TRANSCODE)
        voice_a, voice_b = speech_like(1.0, 1), speech_like(1.0, 2)
        frames = len(voice_a) // 160
        deadline = time.monotonic() + 10
        for seq in range(frames):
            a.send(seq, voice_a[seq * 160:(seq + 1) * 160], to_a)
            b.send(seq, voice_b[seq * 160:(seq + 1) * 160], to_b)
            if seq % 10 == 9:  # do not overrun the socket buffers
                a.drain(), b.drain()
        while (a.drain() < frames or b.drain() < frames) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(a.received) == frames and len(b.received) == frames
        assert {p.payload_type for p in b.received} == {8}  # B hears PCMA only
        assert {p.payload_type for p in a.received} == {0}
        b.received.sort(key=lambda p: p.sequence_number)
        a.received.sort(key=lambda p: p.sequence_number)
        heard_by_b = np.concatenate([PCMA.decode(p.payload) for p in b.received])
        heard_by_a = np.concatenate([PCMU.decode(p.payload) for p in a.received])
        assert correlation(heard_by_b, voice_a[:len(heard_by_b)]) > 0.999
        assert correlation(heard_by_a, voice_b[:len(heard_by_a)]) > 0.999
        # The stream's identity is the sender's: seq, timestamp and SSRC kept.
        assert [p.sequence_number for p in b.received] == list(range(frames))
        assert {p.ssrc for p in b.received} == {0x5150}
    finally:
        a.close()
        b.close()


def send_paced(a: Party, b: Party, to_a: int, voice: np.ndarray, samples: int,
               lost: Collection[int] = ()) -> None:
    """A sends `voice` in packets of `samples` (but those numbered in `lost`), paced at
    the sender's clock as a phone sends; B's socket is drained meanwhile."""
    start = time.monotonic()
    for seq in range(len(voice) // samples):
        if seq not in lost:
            a.send(seq, voice[seq * samples:(seq + 1) * samples], to_a)
        b.drain()
        pause = start + (seq + 1) * samples / 8000 - time.monotonic()
        if pause > 0:
            time.sleep(pause)


def rtp_stream(answer: dict, tag: str) -> dict:
    """The RTP stream of party `tag`'s first media line in a query answer."""
    return answer["tags"][tag]["medias"][0]["streams"][0]


def test_query_gives_the_bridge_counters_of_each_direction(relay: RelayProcess) -> None:
    a, b = Party("PCMU"), Party("PCMA")
    try:
        to_a, to_b = establish(relay, a, b, "tcq", TRANSCODE)
        voice = speech_like(0.5, 3)
        frames = len(voice) // 160  # 25 from A
        for seq in range(frames):
            a.send(seq, voice[seq * 160:(seq + 1) * 160], to_a)
            if seq < 10:
                b.send(seq, voice[seq * 160:(seq + 1) * 160], to_b)
        # A payload type neither party offered: the bridge has no route for it.
        for seq in range(frames, frames + 3):
            packet = RtpPacket(payload_type=99, sequence_number=seq, timestamp=seq * 160,
                               ssrc=0x5150, payload=b"\xff" * 160)
            a.sock.sendto(packet.serialize(), (HOST, to_a))

        def counted() -> dict | None:
            a.drain(), b.drain()
            q = relay.command({"command": "query", "call-id": "tcq"})
            from_a, from_b = rtp_stream(q, "A").get("bridge"), rtp_stream(q, "B").get("bridge")
            done = from_a and from_b and from_a["forwarded"] + from_a["dropped"] >= frames + 3 \
                and from_b["forwarded"] >= 10
            return q if done else None

        q = wait_for(counted, 10, "the bridge to count every packet")
        assert rtp_stream(q, "A")["bridge"] == {
            "forwarded": frames, "converted": frames, "dropped": 3, "frames": 0, "concealed": 0,
            "shed": 0, "restored": 0}
        assert rtp_stream(q, "B")["bridge"] == {
            "forwarded": 10, "converted": 10, "dropped": 0, "frames": 0, "concealed": 0,
            "shed": 0, "restored": 0}
        assert "recording" not in rtp_stream(q, "A")  # not recorded
    finally:
        a.close()
        b.close()


def test_a_repaired_leg_with_ten_percent_loss_arrives_without_missing_frames(
        relay: RelayProcess) -> None:
    a, b = Party("PCMU"), Party("PCMU")
    try:
        to_a, _ = establish(relay, a, b, "rp1", {"flags": ["media-repair"]})
        voice = speech_like(3.0, 1)
        frames = len(voice) // 160
        rng = np.random.default_rng(7)
        lost = set(int(i) for i in rng.choice(np.arange(1, frames - 1), frames // 10,
                                              replace=False))
        send_paced(a, b, to_a, voice, 160, lost)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and b.drain() < frames:
            time.sleep(0.02)
        got = b.received
        assert len(got) >= frames, (len(got), frames)
        seqs = [p.sequence_number for p in got]
        assert all((y - x) % 65536 == 1 for x, y in zip(seqs, seqs[1:], strict=False))
        stamps = [p.timestamp for p in got]
        assert all((y - x) % 2**32 == 160 for x, y in zip(stamps, stamps[1:], strict=False))
        assert len({p.ssrc for p in got}) == 1 and got[0].ssrc != 0x5150  # the relay's stream
        # One talkspurt: no tick went by without a frame while A was sending.
        assert [p.marker for p in got[:frames]] == [True] + [False] * (frames - 1)
        # What B hears follows what A said, delayed by the jitter buffer by an
        # amount that depends on the arrivals (and stretching shifts it by any
        # number of samples): search every lag.
        heard = np.concatenate([PCMU.decode(p.payload) for p in got]).astype(float)
        assert best_match(heard, voice[1600:3600].astype(float)) > 0.95
        # The query shows the repair: every frame sent on a tick, the lost ones made up.
        counts = rtp_stream(relay.command({"command": "query", "call-id": "rp1"}), "A")["bridge"]
        assert counts["frames"] >= frames and counts["concealed"] >= len(lost)
        assert counts["dropped"] == 0
    finally:
        a.close()
        b.close()


def test_a_repaired_leg_of_30_ms_packets_arrives_as_20_ms_frames_of_the_same_audio(
        relay: RelayProcess) -> None:
    # a=ptime is what the receiver would like (RFC 3264 6.1); a sender may send
    # 30 ms anyway. The relay cuts them into 20 ms frames and repair goes on.
    a, b = Party("PCMU"), Party("PCMU")
    try:
        to_a, _ = establish(relay, a, b, "rp30", {"flags": ["media-repair"]})
        voice = speech_like(3.0, 2)
        packets = len(voice) // 240
        send_paced(a, b, to_a, voice, 240)
        frames = packets * 240 // 160
        wait_for(lambda: b.drain() >= frames, timeout=5)
        got = b.received
        assert {len(p.payload) for p in got} == {160}
        assert len({p.ssrc for p in got}) == 1 and got[0].ssrc != 0x5150  # the relay's stream
        stamps = [p.timestamp for p in got]
        assert all((y - x) % 2**32 == 160 for x, y in zip(stamps, stamps[1:], strict=False))
        heard = np.concatenate([PCMU.decode(p.payload) for p in got]).astype(float)
        for piece in range(1600, len(voice) - 2000, 4000):
            assert best_match(heard, voice[piece:piece + 2000].astype(float)) > 0.95
        counts = rtp_stream(relay.command({"command": "query", "call-id": "rp30"}), "A")["bridge"]
        assert counts["frames"] >= frames and counts["dropped"] == 0
        # No more concealed than for 20 ms packets: the stream's end (6 frames
        # here in either case), and what a busy machine's late packets ask for.
        assert counts["concealed"] < frames // 10, counts
    finally:
        a.close()
        b.close()
