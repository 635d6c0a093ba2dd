"""Speed of the media codecs: one 20 ms frame per call against 1,000 frames in one call.

Run `python bench/codecs.py` for frames per second of G.711 encode and decode,
PCMU -> PCMA transcoding, RTP header peek/parse and in-band DTMF detection.
The gap between the two columns is why the relay processes all streams of a
20 ms tick in one vectorised call. Figures only: nothing here asserts on time.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from rtpmedia.codecs.g711 import PCMA, PCMU  # noqa: E402
from rtpmedia.codecs.transcode import transcoder  # noqa: E402
from rtpmedia.goertzel import DtmfDetector, feed_many  # noqa: E402
from rtpmedia.rtp import RtpPacket, peek_header  # noqa: E402

BATCH = 1000


def rate(call: Callable[[], object], frames: int, seconds: float = 0.3) -> float:
    """Frames per second of `call`, which handles `frames` frames each time."""
    calls = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(10):
            call()
        calls += 10
    return calls * frames / elapsed


def main() -> None:
    rng = np.random.default_rng(0)
    pcm = rng.integers(-20000, 20000, size=(BATCH, 160)).astype(np.int16)
    ulaw = PCMU.encode_array(pcm)
    to_alaw = transcoder(PCMU, PCMA)
    one_pcm, one_bytes = pcm[0], ulaw[0].tobytes()
    packet = RtpPacket(payload_type=0, sequence_number=1, timestamp=160, ssrc=7,
                       payload=one_bytes).serialize()
    detectors = [DtmfDetector() for _ in range(BATCH)]
    one_detector = detectors[0]
    frames = list(pcm)
    rows = [
        ("PCMU encode", lambda: PCMU.encode(one_pcm), lambda: PCMU.encode_array(pcm)),
        ("PCMU decode", lambda: PCMU.decode(one_bytes), lambda: PCMU.decode_array(ulaw)),
        ("PCMA encode", lambda: PCMA.encode(one_pcm), lambda: PCMA.encode_array(pcm)),
        ("PCMU->PCMA", lambda: to_alaw.convert(one_bytes), lambda: to_alaw.convert_array(ulaw)),
        ("DTMF detect", lambda: one_detector.feed(one_pcm), lambda: feed_many(detectors, frames)),
    ]
    print(f"{'operation':<14}{'1 frame/call':>16}{f'{BATCH} frames/call':>20}   frames/s")
    for name, single, batch in rows:
        print(f"{name:<14}{rate(single, 1):>16,.0f}{rate(batch, BATCH):>20,.0f}")
    print(f"{'RTP peek':<14}{rate(lambda: peek_header(packet), 1):>16,.0f}{'':>20}   packets/s")
    print(f"{'RTP parse':<14}{rate(lambda: RtpPacket.parse(packet), 1):>16,.0f}{'':>20}   packets/s")


if __name__ == "__main__":
    main()
