"""Media the relay hosts itself (issue 15), against the real relay process on loopback.

A UDP socket stands for the phone (it sends paced RTP and collects what
comes back), another for the softswitch's notify address (it receives the
`media event`s and acknowledges them, or not). Audio is espeak-ng speech;
what returns is compared by correlation or PESQ.
"""

from __future__ import annotations

import shutil
import socket
import struct
import threading
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rtpmedia import codecs, ng
from rtpmedia.prompts import PromptCache, load_narrowband, write_wav
from rtpmedia.telephone_event import digit_packets
from softswitch.voicemail import VoicemailStore
from tests.integration.relay.test_relay_process import HOST, RelayProcess, port_range
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")]

PCMU = codecs.get("PCMU/8000")
PCMA = codecs.get("PCMA/8000")
MAILBOX = "1001@pbx.example.com"


class Softswitch:
    """The notify address: collects media events; acknowledges them when told to."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, 0))
        self.sock.settimeout(0.1)
        self.port = int(self.sock.getsockname()[1])
        self.acknowledge = True
        self.received: list[tuple[bytes, dict[str, Any]]] = []
        self.arrivals: list[tuple[float, bytes]] = []
        self.acked: dict[bytes, float] = {}
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                data, addr = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            cookie, message = ng.decode(data)
            self.received.append((cookie, message))
            self.arrivals.append((time.monotonic(), cookie))
            if self.acknowledge:
                self.acked.setdefault(cookie, time.monotonic())
                self.sock.sendto(ng.encode(cookie, {"result": "ok"}), addr)

    def events(self, call_id: str, kind: str | None = None) -> list[dict[str, Any]]:
        """Each event once (a repeat of one not acknowledged has the same cookie)."""
        seen: dict[bytes, dict[str, Any]] = {}
        for cookie, message in list(self.received):
            if message.get("command") == "media event" and message.get("call-id") == call_id \
                    and (kind is None or message.get("event") == kind):
                seen.setdefault(cookie, message)
        return list(seen.values())

    def wait(self, call_id: str, kind: str, timeout: float = 10.0) -> dict[str, Any]:
        found = wait_for(lambda: self.events(call_id, kind), timeout=timeout,
                         what=f"a {kind} event")
        return found[0]

    def close(self) -> None:
        self._stop = True
        self._thread.join()
        self.sock.close()


class Phone:
    """A party: sends 20 ms RTP packets on schedule, records every packet that arrives."""

    def __init__(self, codec: Any = PCMU) -> None:
        self.codec = codec
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, 0))
        self.sock.settimeout(0.1)
        self.port = int(self.sock.getsockname()[1])
        self.arrived: list[tuple[float, bytes, tuple[str, int]]] = []
        self.relay_port = 0
        self._seq = 1000
        self._ts = 50000
        self._stop = False
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def sdp(self, payload_types: str = "0 101", extra: str = "") -> str:
        lines = [f"m=audio {self.port} RTP/AVP {payload_types}"]
        for pt in payload_types.split():
            lines.append({"0": "a=rtpmap:0 PCMU/8000", "8": "a=rtpmap:8 PCMA/8000",
                          "18": "a=rtpmap:18 G729/8000",
                          "101": "a=rtpmap:101 telephone-event/8000"}[pt])
        return (f"v=0\r\no=- 1 1 IN IP4 {HOST}\r\ns=-\r\nc=IN IP4 {HOST}\r\nt=0 0\r\n"
                + "\r\n".join(lines) + "\r\n" + extra)

    def _receive(self) -> None:
        while not self._stop:
            try:
                data, source = self.sock.recvfrom(2048)
            except TimeoutError:
                continue
            except OSError:
                return
            self.arrived.append((time.monotonic(), data, source))

    def _packet(self, payload_type: int, payload: bytes, marker: bool = False,
                timestamp: int | None = None) -> bytes:
        header = struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | payload_type,
                             self._seq & 0xFFFF, self._ts if timestamp is None else timestamp,
                             0xCAFE)
        self._seq += 1
        return header + payload

    def send_audio(self, samples: np.ndarray, ptime: int = 20) -> None:
        """`samples` as `ptime` ms packets, paced on the clock (not by sleeping a fixed time)."""
        pt = 0 if self.codec is PCMU else 8
        size = ptime * 8
        start = time.monotonic()
        for i in range(len(samples) // size):
            due = start + i * ptime / 1000
            while (delay := due - time.monotonic()) > 0:
                time.sleep(min(delay, 0.005))
            frame = samples[i * size:(i + 1) * size]
            self.sock.sendto(self._packet(pt, self.codec.encode(frame)),
                             (HOST, self.relay_port))
            self._ts += size

    def send_digit(self, digit: str) -> None:
        """One RFC 4733 digit (payload type 101), its packets paced as a phone does."""
        start = time.monotonic()
        for offset, packet in digit_packets(digit, ssrc=0xCAFE, sequence_number=self._seq,
                                            timestamp=self._ts):
            while (delay := start + offset / 1000 - time.monotonic()) > 0:
                time.sleep(min(delay, 0.005))
            packet.sequence_number = self._seq & 0xFFFF
            self._seq += 1
            self.sock.sendto(packet.serialize(), (HOST, self.relay_port))
        self._ts += 800

    def rtp(self, since: float = 0.0) -> list[tuple[float, bytes]]:
        return [(t, d) for t, d, _ in list(self.arrived) if t >= since]

    def audio(self, since: float = 0.0) -> np.ndarray:
        """The decoded audio of what arrived since `since`, in arrival order."""
        packets = self.rtp(since)
        if not packets:
            return np.zeros(0, np.int16)
        return np.concatenate([self.codec.decode(d[12:]) for _, d in packets])

    def close(self) -> None:
        self._stop = True
        self._thread.join()
        self.sock.close()


def correlation(sent: np.ndarray, heard: np.ndarray) -> float:
    """The peak of the normalised cross-correlation of `sent` within `heard`."""
    loud = np.flatnonzero(np.abs(sent.astype(int)) > 300)  # espeak's leading, trailing quiet
    a = sent[loud[0]:loud[-1] + 1].astype(float)
    b = heard.astype(float)
    if len(b) < len(a):
        return 0.0
    n = 1 << int(np.ceil(np.log2(len(a) + len(b))))
    xc = np.fft.irfft(np.fft.rfft(b, n) * np.conj(np.fft.rfft(a, n)), n)[:len(b) - len(a) + 1]
    # Energy of each window of b, for normalisation.
    c = np.concatenate([[0.0], np.cumsum(b * b)])
    windows = c[len(a):] - c[:len(b) - len(a) + 1]
    norm = np.sqrt(np.maximum(windows, 1e-9) * float(np.dot(a, a)))
    return float(np.max(xc / norm))


def resemblance(sent: np.ndarray, heard: np.ndarray) -> float:
    """The median, over the loud 250 ms pieces of `sent`, of how well each is found in `heard`.

    Robust to what the jitter buffer does to timing (a few ms stretched or
    compressed between pieces), which a single global correlation is not.
    """
    piece = 2000
    scores = []
    for start in range(0, len(sent) - piece + 1, piece):
        chunk = sent[start:start + piece]
        if np.sqrt(np.mean(chunk.astype(float) ** 2)) < 500:
            continue
        scores.append(correlation(chunk, heard))
    return float(np.median(scores)) if scores else 0.0


def aligned(sent: np.ndarray, heard: np.ndarray) -> np.ndarray:
    """The part of `heard` that lines up with `sent` (by the cross-correlation's peak)."""
    a, b = sent.astype(float), heard.astype(float)
    n = 1 << int(np.ceil(np.log2(len(a) + len(b))))
    xc = np.fft.irfft(np.fft.rfft(b, n) * np.conj(np.fft.rfft(a, n)), n)[:len(b) - len(a) + 1]
    lag = int(np.argmax(xc))
    return heard[lag:lag + len(sent)]


def beeped(phone: Phone, since: float = 0.0) -> bool:
    """The 1 kHz beep before a recording has arrived (in the last 100 ms that did)."""
    audio = phone.audio(since)
    if len(audio) < 800:
        return False
    tail = audio[-800:].astype(float)
    spectrum = np.abs(np.fft.rfft(tail))
    return bool(abs(np.argmax(spectrum) * 8000 / len(tail) - 1000) <= 20)


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    cache = PromptCache(tmp_path_factory.mktemp("speech"))
    samples = load_narrowband(cache.say("The quick brown fox jumps over the lazy dog."))
    return samples[:len(samples) // 160 * 160]


@pytest.fixture(scope="module")
def softswitch() -> Iterator[Softswitch]:
    s = Softswitch()
    yield s
    s.close()


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory, softswitch: Softswitch
          ) -> Iterator[RelayProcess]:
    low, high = port_range(40)
    data = Path(tmp_path_factory.mktemp("hosted"))
    media = data / "media"
    media.mkdir()
    proc = RelayProcess(data, low, high, "--media-dir", str(media),
                        "--notify", f"udp:{HOST}:{softswitch.port}")
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture
def phone() -> Iterator[Phone]:
    p = Phone()
    yield p
    p.close()


def host(relay: RelayProcess, phone: Phone, call_id: str, **extra: Any) -> str:
    answer = relay.command({"command": "host", "call-id": call_id, "from-tag": "a",
                            "sdp": phone.sdp(**extra)}, timeout=5)
    assert answer["result"] == "ok", answer
    phone.relay_port = int(next(x for x in answer["sdp"].split("\r\n")
                                if x.startswith("m=audio")).split()[1])
    return str(answer["sdp"])


def media_dir(relay: RelayProcess) -> Path:
    return relay.data_dir / "media"


# -- host -----------------------------------------------------------------------------------


def test_host_answers_g711_and_telephone_event_and_rejects_video(relay: RelayProcess,
                                                                 phone: Phone) -> None:
    offer = (f"v=0\r\no=- 1 1 IN IP4 {HOST}\r\ns=-\r\nc=IN IP4 {HOST}\r\nt=0 0\r\n"
             f"m=audio {phone.port} RTP/AVP 18 8 0 101\r\na=rtpmap:18 G729/8000\r\n"
             "a=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n"
             "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n"
             f"m=video {phone.port + 2} RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n")
    answer = relay.command({"command": "host", "call-id": "h-sdp", "from-tag": "a",
                            "sdp": offer})
    assert answer["result"] == "ok", answer
    lines = answer["sdp"].split("\r\n")
    audio = next(x for x in lines if x.startswith("m=audio"))
    port = int(audio.split()[1])
    assert relay.low <= port <= relay.high
    assert audio.split()[3:] == ["8", "101"]  # PCMA: offered before PCMU
    assert "a=rtpmap:101 telephone-event/8000" in lines
    assert f"c=IN IP4 {HOST}" in lines
    assert next(x for x in lines if x.startswith("m=video")).split()[1] == "0"

    no_g711 = offer.replace(" 18 8 0 101", " 18 101")
    refused = relay.command({"command": "host", "call-id": "h-sdp2", "from-tag": "a",
                             "sdp": no_g711})
    assert refused == {"result": "error", "error-reason": "no codec in common"}
    relay.command({"command": "delete", "call-id": "h-sdp"})


def test_files_outside_the_media_dir_are_refused(relay: RelayProcess, phone: Phone) -> None:
    host(relay, phone, "h-paths")
    for bad in ("/etc/passwd", "../x.wav", "prompts/../../x"):
        answer = relay.command({"command": "play media", "call-id": "h-paths",
                                "from-tag": "a", "file": bad})
        assert answer["result"] == "error", (bad, answer)
    unknown = relay.command({"command": "play media", "call-id": "h-paths", "from-tag": "a",
                             "file": "no-such-prompt"})
    assert unknown["result"] == "error" and "no-such-prompt" in unknown["error-reason"]
    relay.command({"command": "delete", "call-id": "h-paths"})


# -- play media -----------------------------------------------------------------------------


def test_play_media_sends_the_prompt_paced_and_reports_played_until_acknowledged(
        relay: RelayProcess, phone: Phone, softswitch: Softswitch, speech: np.ndarray) -> None:
    # The operator's prompt at another rate: converted to 8 kHz by the relay.
    import soxr

    wide = soxr.resample(speech.astype(np.float32) / 32768, 8000, 16000)
    write_wav(media_dir(relay) / "prompts" / "fox.wav",
              np.round(wide * 32767).astype(np.int16), rate=16000)
    host(relay, phone, "h-play")
    softswitch.acknowledge = False
    try:
        started = time.monotonic()
        answer = relay.command({"command": "play media", "call-id": "h-play",
                                "from-tag": "a", "file": "fox"}, timeout=10)
        assert answer["result"] == "ok", answer
        assert abs(answer["duration"] - len(speech) / 8) <= 25
        wait_for(lambda: len([m for _, m in softswitch.received
                              if m.get("call-id") == "h-play"]) >= 2,
                 timeout=len(speech) / 8000 + 5, what="the played event, twice")
    finally:
        softswitch.acknowledge = True
    played = softswitch.events("h-play", "played")
    assert len(played) == 1 and played[0]["from-tag"] == "a"
    repeats = [c for c, m in softswitch.received if m.get("call-id") == "h-play"]
    assert len(repeats) >= 2 and len(set(repeats)) == 1  # the same notice, repeated
    # Acknowledged at the next repeat (test_acknowledged_events_are_not_repeated checks
    # that the repeats then stop).
    wait_for(lambda: repeats[0] in softswitch.acked, timeout=5, what="a repeat acknowledged")
    packets = phone.rtp(started)
    heard = phone.audio(started)
    assert correlation(speech, heard) > 0.9
    # One stream: same SSRC, consecutive seq and timestamps, marker on the first only.
    assert phone.rtp()[0][1][1] & 0x80  # the stream's first packet (silence, before play)
    headers = [struct.unpack("!BBHII", d[:12]) for _, d in packets]
    assert len({h[4] for h in headers}) == 1
    for (_, _, s1, t1, _), (_, m2, s2, t2, _) in zip(headers, headers[1:], strict=False):
        assert (s2 - s1) & 0xFFFF == 1 and (t2 - t1) & 0xFFFFFFFF == 160
        assert m2 & 0x80 == 0
    # Paced: about 50 packets a second, not in bursts.
    times = np.array([t for t, _ in packets])
    rate = (len(times) - 1) / (times[-1] - times[0])
    assert 45 < rate < 55, rate
    gaps = np.diff(times)
    assert np.median(gaps) == pytest.approx(0.02, abs=0.004)
    assert np.mean(gaps < 0.002) < 0.2  # few back-to-back packets
    relay.command({"command": "delete", "call-id": "h-play"})


# -- echo ------------------------------------------------------------------------------------


def test_echo_returns_what_the_party_says(relay: RelayProcess, phone: Phone,
                                         speech: np.ndarray) -> None:
    pesq = pytest.importorskip("pesq").pesq
    host(relay, phone, "h-echo")
    assert relay.command({"command": "echo", "call-id": "h-echo",
                          "from-tag": "a"})["result"] == "ok"
    started = time.monotonic()
    phone.send_audio(np.concatenate([speech, np.zeros(8000, np.int16)]))
    heard = phone.audio(started)
    back = aligned(speech, heard)
    reference = PCMU.decode(PCMU.encode(speech))
    score = pesq(8000, reference.astype(float), back.astype(float), "nb")
    # A PCMU round trip through the jitter buffer: about 4.4 on a quiet machine, lower when
    # a loaded one makes the buffer grow and compress (seen: 3.1);
    # silence or noise would score about 1.
    assert score > 3.0, score
    relay.command({"command": "delete", "call-id": "h-echo"})


def test_echo_returns_what_a_party_sending_30_ms_packets_says(relay: RelayProcess, phone: Phone,
                                                               speech: np.ndarray) -> None:
    # a=ptime:30 (or a trunk that sends 30 ms anyway): the receiver cuts the
    # packets into 20 ms frames, and the echo comes back as 20 ms packets.
    host(relay, phone, "h-echo30", extra="a=ptime:30\r\n")
    assert relay.command({"command": "echo", "call-id": "h-echo30",
                          "from-tag": "a"})["result"] == "ok"
    started = time.monotonic()
    speech30 = speech[:len(speech) // 240 * 240]
    phone.send_audio(np.concatenate([speech30, np.zeros(8000, np.int16)]), ptime=30)
    packets = phone.rtp(started)
    assert packets and {len(d) - 12 for _, d in packets} == {160}
    heard = phone.audio(started)
    # Silence (what the echo sent before) would not resemble it at all.
    assert resemblance(PCMU.decode(PCMU.encode(speech30)), heard) > 0.9
    relay.command({"command": "delete", "call-id": "h-echo30"})


# -- recording -------------------------------------------------------------------------------


def _wav(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
        return np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.int16)


def test_record_stops_on_rfc4733_hash(relay: RelayProcess, phone: Phone,
                                      softswitch: Softswitch, speech: np.ndarray) -> None:
    host(relay, phone, "h-rec")
    answer = relay.command({"command": "start recording", "call-id": "h-rec",
                            "from-tag": "a", "file": "greetings/1001", "beep": "no"})
    assert answer["result"] == "ok", answer
    phone.send_audio(speech)
    phone.send_digit("#")
    event = softswitch.wait("h-rec", "recorded")
    assert event["reason"] == "digit" and event["file"] == "greetings/1001.wav"
    duration = float(event["duration"])
    # From the command to the digit, less what the jitter buffer still held (espeak's
    # trailing quiet is longer than that).
    assert len(speech) / 8000 - 0.3 < duration < len(speech) / 8000 + 1.0
    recorded = _wav(media_dir(relay) / "greetings" / "1001.wav")
    assert resemblance(speech, recorded) > 0.9
    assert [e["digit"] for e in softswitch.events("h-rec", "dtmf")] == ["#"]
    relay.command({"command": "delete", "call-id": "h-rec"})


def test_record_stops_on_an_in_band_hash_and_on_hang_up(
        relay: RelayProcess, phone: Phone, softswitch: Softswitch, speech: np.ndarray) -> None:
    # A phone without telephone-event: "#" is a tone in the audio (941 + 1477 Hz).
    host(relay, phone, "h-rec2", payload_types="0")
    asked = time.monotonic()
    relay.command({"command": "start recording", "call-id": "h-rec2", "from-tag": "a",
                   "file": "recordings/in-band.wav"})
    wait_for(lambda: beeped(phone, asked), timeout=5, what="the beep")
    t = np.arange(800) / 8000
    tone = (6000 * (np.sin(2 * np.pi * 941 * t) + np.sin(2 * np.pi * 1477 * t)) / 2)
    phone.send_audio(np.concatenate([speech, tone.astype(np.int16),
                                     np.zeros(1600, np.int16)]))
    event = softswitch.wait("h-rec2", "recorded")
    assert event["reason"] == "digit"
    recorded = _wav(media_dir(relay) / "recordings" / "in-band.wav")
    assert resemblance(speech, recorded) > 0.9

    # Hang-up (delete) while recording: the WAV is kept, the event says why.
    relay.command({"command": "start recording", "call-id": "h-rec2", "from-tag": "a",
                   "file": "recordings/hangup.wav", "beep": "no"})
    phone.send_audio(speech[:8000])
    relay.command({"command": "delete", "call-id": "h-rec2"})
    event = wait_for(lambda: [e for e in softswitch.events("h-rec2", "recorded")
                              if e["reason"] == "hangup"], timeout=5, what="hangup")[0]
    assert event["file"] == "recordings/hangup.wav"
    assert (media_dir(relay) / "recordings" / "hangup.wav").exists()


# -- voicemail -------------------------------------------------------------------------------


def test_voicemail_leave_then_the_owner_listens(relay: RelayProcess, phone: Phone,
                                               softswitch: Softswitch,
                                               speech: np.ndarray) -> None:
    host(relay, phone, "h-vm")
    answer = relay.command({"command": "voicemail", "call-id": "h-vm", "from-tag": "a",
                            "mailbox": MAILBOX, "mode": "leave", "caller": "1002",
                            "caller-name": "Bob"}, timeout=20)
    assert answer["result"] == "ok", answer
    # The greeting plays, then the beep: the caller speaks after it.
    wait_for(lambda: beeped(phone), timeout=20, what="the greeting and the beep")
    phone.send_audio(speech)
    phone.send_digit("#")
    softswitch.wait("h-vm", "ended", timeout=15)
    relay.command({"command": "delete", "call-id": "h-vm"})
    store = VoicemailStore(media_dir(relay))
    filed, problems = store.ingest()
    assert not problems and len(filed) == 1
    message = filed[0]
    assert message.mailbox == MAILBOX and message.caller == "1002"
    assert message.caller_name == "Bob"
    left = _wav(store.wav_path(MAILBOX, message.id))
    assert resemblance(speech, left) > 0.9

    # The owner's menu: 1 plays the message.
    owner = Phone()
    try:
        host(relay, owner, "h-vm-menu")
        relay.command({"command": "voicemail", "call-id": "h-vm-menu", "from-tag": "a",
                       "mailbox": MAILBOX, "mode": "menu"}, timeout=20)
        wait_for(lambda: len(owner.rtp()) > 50, timeout=10, what="the menu playing")
        pressed = time.monotonic()
        owner.send_digit("1")
        wait_for(lambda: resemblance(speech, owner.audio(pressed)) > 0.9,
                 timeout=len(speech) / 8000 + 10, what="the message heard")
        owner.send_digit("#")  # next: no more messages
        assert [e["digit"] for e in softswitch.events("h-vm-menu", "dtmf")][:2] == ["1", "#"]
        relay.command({"command": "delete", "call-id": "h-vm-menu"})
        assert store.message(MAILBOX, message.id).heard
    finally:
        owner.close()


def test_acknowledged_events_are_not_repeated(softswitch: Softswitch) -> None:
    """Runs after the tests above (tens of seconds): nothing came again once acknowledged."""
    assert softswitch.acked
    late = [(t, c) for t, c in softswitch.arrivals
            if c in softswitch.acked and t > softswitch.acked[c] + 0.2]
    assert not late


# -- restart ---------------------------------------------------------------------------------


def test_a_restarted_relay_keeps_the_hosted_call(tmp_path: Path, phone: Phone,
                                                 speech: np.ndarray) -> None:
    low, high = port_range(10)
    proc = RelayProcess(tmp_path, low, high, "--media-dir", str(tmp_path))
    proc.start()
    try:
        host(proc, phone, "h-restart")
        port = phone.relay_port
        wait_for(lambda: len(phone.rtp()) > 5, timeout=5, what="the relay's stream")
        proc.stop()
        proc.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        proc.sock.bind((HOST, 0))
        proc.start()
        restarted = time.monotonic()
        wait_for(lambda: len(phone.rtp(restarted)) > 5, timeout=5,
                 what="the stream again, from the same port")
        assert {s for t, _, s in phone.arrived if t >= restarted} == {(HOST, port)}
        assert proc.command({"command": "echo", "call-id": "h-restart",
                             "from-tag": "a"})["result"] == "ok"
        started = time.monotonic()
        phone.send_audio(np.concatenate([speech[:16000], np.zeros(4000, np.int16)]))
        assert resemblance(speech[:16000], phone.audio(started)) > 0.9
    finally:
        proc.stop()
