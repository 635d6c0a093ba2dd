"""Stream health as the relay answers it in `query`, and as the softswitch reads it back for the CDR."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtpmedia.relay import quality
from rtpmedia.relay.health import StreamHealth
from softswitch.relay.figures import leg_figures


def rtp(seq: int, timestamp: int, ssrc: int = 0x1234) -> memoryview:
    return memoryview(struct.pack("!BBHII", 0x80, 0, seq & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc)
                      + b"\xff" * 160)


def play(health: StreamHealth, count: int, dropped: set[int], jitter_s: float = 0.0,
         ssrc: int = 0x1234) -> None:
    """`count` packets of 20 ms PCMU, less `dropped`, every other one late by `jitter_s`."""
    for i in range(count):
        if i in dropped:
            continue
        health.rtp(rtp(1000 + i, 160 * i, ssrc), 100.0 + 0.02 * i + (jitter_s if i % 2 else 0.0))


def answer(a: StreamHealth, b: StreamHealth, codec: str = "PCMU") -> dict:
    """A query answer shaped as rtpmedia.relay.control builds it."""
    tags = {}
    ssrcs = {}
    for tag, health in (("from", a), ("to", b)):
        stream = {"stats": {"packets": 99, "bytes": 0, "errors": 0}, **health.as_ng(codec)}
        entry = health.ssrc_entry(codec)
        if entry is not None:
            ssrcs[str(health.ssrc)] = entry
        tags[tag] = {"medias": [{"streams": [stream, {"flags": ["RTCP"], "stats": {}}]}]}
    return {"result": "ok", "tags": tags, "SSRC": ssrcs}


def test_loss_jitter_and_mos_reach_the_leg_figures() -> None:
    a, b = StreamHealth(8000), StreamHealth(8000)
    play(a, 200, dropped={10, 11, 50, 120})  # 2 % lost, steady
    play(b, 200, dropped=set(), jitter_s=0.010)  # no loss, 10 ms late every other packet
    ng = a.as_ng("PCMU")
    assert ng["lost"] == 4 and ng["expected"] == 200 and ng["SSRC"] == 0x1234
    figures = leg_figures(answer(a, b))
    assert figures["from"].loss == pytest.approx(2.0)
    assert figures["from"].jitter == 0
    assert figures["to"].loss == 0.0
    assert 4 <= figures["to"].jitter <= 10  # RFC 3550 A.8 smooths 10 ms swings to ~5 ms
    # The E-model: loss costs more than this jitter; both below a clean stream.
    assert figures["from"].mos is not None and figures["to"].mos is not None
    assert 1.0 <= figures["from"].mos < figures["to"].mos < 4.5
    assert figures["from"].mos == pytest.approx(quality.mos("PCMU", 0.02, a.as_ng("PCMU")["jitter"], None),
                                                abs=0.06)


def test_a_worse_codec_scores_lower() -> None:
    health = StreamHealth(8000)
    play(health, 100, dropped={5})
    assert health.ssrc_entry("G729")["average MOS"]["MOS"] < health.ssrc_entry("PCMU")["average MOS"]["MOS"]


def test_nothing_received_gives_counts_but_no_mos() -> None:
    health = StreamHealth(8000)
    assert health.as_ng("PCMU") == {"lost": 0, "expected": 0, "jitter": 0}
    assert health.ssrc_entry("PCMU") is None
    assert leg_figures(answer(health, health))["from"].mos is None


def test_a_new_ssrc_starts_the_count_afresh() -> None:
    health = StreamHealth(8000)
    play(health, 50, dropped={3})
    play(health, 50, dropped=set(), ssrc=0x9999)  # same sequence numbers again: not duplicates
    ng = health.as_ng("PCMU")
    assert ng["SSRC"] == 0x9999 and ng["lost"] == 0 and ng["expected"] == 50


def test_rtt_from_the_reports_of_both_sides_lowers_the_score() -> None:
    a, b = StreamHealth(8000), StreamHealth(8000)
    a.pair(b)
    play(a, 50, dropped=set())
    before = a.mos("PCMU")
    # A's SR passes the relay at t=10; B echoes it 200 ms later, having held it 40 ms: 160 ms leg.
    sr = quality.RtcpReport(ssrc=0xA, blocks=(), ntp=(3_900_000_000 << 32) | 0x8000_0000)
    a.rtcp(sr.serialize(), 10.0, "from")
    block = quality.ReportBlock(0xA, 0, 0, 0, 0, sr.ntp_middle or 0, int(0.040 * 65536))
    b.rtcp(quality.RtcpReport(0xB, (block,)).serialize(), 10.2, "to")
    assert b.rtt_ms == pytest.approx(160.0, abs=0.1)
    assert a.rtt_ms == pytest.approx(160.0, abs=0.1)  # shared: one round trip for the stream
    entry = a.ssrc_entry("PCMU")
    assert entry["average MOS"]["round-trip time"] == pytest.approx(160_000, abs=100)  # microseconds
    assert a.as_ng("PCMU")["rtt_ms"] == 160  # what the live view reads
    assert a.mos("PCMU") < before


def test_in_the_kernel_the_receivers_rtcp_gives_loss_and_jitter() -> None:
    """Two packets seen in userspace, then the kernel forwards: B's receiver
    report about A's SSRC says what A's stream lost on the way."""
    a, b = StreamHealth(8000), StreamHealth(8000)
    a.pair(b)
    play(a, 2, dropped=set())
    assert a.ssrc is not None
    block = quality.ReportBlock(a.ssrc, 25, 10, 1000, 80, 0, 0)  # 10 lost, jitter 80 samples
    b.rtcp(quality.RtcpReport(0xB, (block,)).serialize(), 5.0, "to")
    figures = a.as_ng("PCMU", packets=990)
    assert figures["lost"] == 10 and figures["expected"] == 1000
    assert figures["jitter"] == 10  # 80 samples at 8 kHz
    assert 1.0 <= figures["MOS"] / 10 < 4.4


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF),
                          st.floats(0, 1e6, allow_nan=False)), max_size=60),
       st.binary(max_size=200))
def test_arbitrary_packets_never_raise_and_figures_stay_in_range(
        packets: list[tuple[int, int, float]], junk: bytes) -> None:
    health = StreamHealth(8000)
    for seq, ts, arrival in packets:
        health.rtp(rtp(seq, ts), arrival)
    health.rtcp(junk, 1.0, "from")
    ng = health.as_ng("PCMU")
    assert ng["lost"] >= 0 and ng["jitter"] >= 0
    if "MOS" in ng:
        assert 10 <= ng["MOS"] <= 45
