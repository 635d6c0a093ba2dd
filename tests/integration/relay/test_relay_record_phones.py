"""End to end: two pjsua2 phones talk through softswitch and its embedded relay, and a
dialplan rule's `set: {record_call: "yes"}` records the call.

After the call the CDR names the WAV (under the data dir), and the WAV holds
both voices: its left channel is what the caller sent, its right channel
what the callee sent (each compared with the phone's own signal).
"""

from __future__ import annotations

import json
import random
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from ruamel.yaml import YAML

from softswitch.cdr import read_cdrs
from tests.support.audio import read_wav, similarity, tone_sequence
from tests.support.phone import answered_call, registered_phones
from tests.support.server import ServerProcess, embedded_relay_config
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]
# What the phones hear of each other scores 0.99 or more (test_relay_phones.py);
# the recording goes through the relay's own jitter buffer and concealment.
INTACT = 0.95
# Another signal, or silence, scores well under this.
UNRELATED = 0.5


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    workdir = Path(tmp_path_factory.mktemp("record-phones"))
    yaml = YAML(typ="safe")
    plan = yaml.load((ROOT / "conf" / "dialplan.yaml").read_text())
    plan["contexts"]["internal"]["rules"][:0] = [
        {"name": "recorded", "match": "8002",
         "actions": [{"set": {"record_call": "yes"}}, {"dial": "user/1002"}]}]
    plan_path = workdir / "dialplan.yaml"
    yaml.dump(plan, plan_path)
    media, _ = embedded_relay_config()
    server = ServerProcess(
        workdir / "server", dialplan=plan_path,
        extra_config=media)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def channels(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with wave.open(str(path), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (2, 2, 8000)
        data = np.frombuffer(w.readframes(w.getnframes()), np.int16).reshape(-1, 2)
    return data[:, 0].copy(), data[:, 1].copy()


def test_a_recorded_calls_wav_holds_both_voices(server: ServerProcess, tmp_path: Path) -> None:
    a, b = registered_phones(server.udp_port, ["1001", "1002"], tmp_path)
    try:
        call, incoming = answered_call(a, b, f"sip:8002@127.0.0.1:{server.udp_port}")
        seed_a, seed_b = random.randrange(1 << 30), random.randrange(1 << 30)
        sig_a = tone_sequence(tmp_path / "a.wav", seed_a, seconds=3.0)
        sig_b = tone_sequence(tmp_path / "b.wav", seed_b, seconds=3.0)
        # What each phone hears is recorded too: the call itself is unharmed.
        b.record(incoming, tmp_path / "b-heard.wav")
        a.record(call, tmp_path / "a-heard.wav")
        since_a, since_b = a.play(call, tmp_path / "a.wav"), b.play(incoming, tmp_path / "b.wav")
        a.wait_played(call, since_a)
        b.wait_played(incoming, since_b)
        for phone, number in ((a, call), (b, incoming)):
            # The relay's jitter buffer still holds the last frames: let 10 more packets pass.
            count = phone.stats(number)["rx_packets"]
            wait_for(lambda p=phone, c=number, n=count: p.stats(c)["rx_packets"] > n + 10,
                     5, f"RTP at {phone.user} after the signal")
        heard_b = read_wav(b.stop_record(incoming, tmp_path / "b-heard.wav"))
        heard_a = read_wav(a.stop_record(call, tmp_path / "a-heard.wav"))
        assert similarity(sig_a, heard_b) > INTACT and similarity(sig_b, heard_a) > INTACT
        since = len(read_cdrs(server.data_dir / "cdr.sqlite"))
        a.hangup(call)
        [record] = wait_for(lambda: read_cdrs(server.data_dir / "cdr.sqlite")[since:], 10,
                            "the CDR")
    finally:
        a.close()
        b.close()
    assert record.recording is not None and record.recording.startswith("recordings/")
    wav = server.data_dir / record.recording
    wait_for(wav.exists, 10, "the recording in place")
    left, right = channels(wav)
    scores = {"left~caller": similarity(sig_a, left), "right~callee": similarity(sig_b, right),
              "left~callee": similarity(sig_b, left), "right~caller": similarity(sig_a, right)}
    assert scores["left~caller"] > INTACT and scores["right~callee"] > INTACT, scores
    assert scores["left~callee"] < UNRELATED and scores["right~caller"] < UNRELATED, scores
    meta = json.loads(wav.with_suffix(".json").read_text())
    assert meta["call-id"] == record.uuid and meta["sip-call-id"] == record.call_id
    assert 3.0 < meta["duration"] <= record.billsec + 1.0
