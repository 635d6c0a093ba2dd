"""Stream health: RFC 3550 reception statistics, RTCP report parsing, RTT and the G.107 E-model."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtpmedia.relay.quality import (
    ReceptionStats,
    ReportBlock,
    RoundTrip,
    RtcpReport,
    mos,
    parse_rtcp,
    r_factor,
)

RATE = 8000
PTIME = 0.020
STEP = 160


def feed(stats: ReceptionStats, seqs: list[int], jitter: list[float] | None = None,
         seq0: int = 1000, ts0: int = 5000) -> None:
    """Packets numbered seq0 + i (mod 2^16), sent every 20 ms, arriving with the given extra delays."""
    for n, i in enumerate(seqs):
        extra = jitter[n] if jitter else 0.0
        stats.update((seq0 + i) & 0xFFFF, (ts0 + i * STEP) & 0xFFFFFFFF, 100.0 + i * PTIME + extra)


# -- ReceptionStats --------------------------------------------------------------


def test_a_clean_stream_counts_every_packet_and_no_loss() -> None:
    s = ReceptionStats(RATE)
    feed(s, list(range(100)))
    assert (s.packets, s.expected, s.lost) == (100, 100, 0)
    assert s.fraction_lost == 0.0
    assert s.jitter_ms == pytest.approx(0.0, abs=1e-6)
    assert s.last_arrival == pytest.approx(100.0 + 99 * PTIME)


def test_loss_is_expected_minus_received() -> None:
    s = ReceptionStats(RATE)
    sent = [i for i in range(200) if i % 10 != 5]  # every tenth packet lost
    feed(s, sent)
    assert s.expected == 200
    assert s.lost == 20
    assert s.fraction_lost == pytest.approx(0.1)


def test_sequence_wrap_is_not_loss() -> None:
    s = ReceptionStats(RATE)
    feed(s, list(range(300)), seq0=65500)
    assert (s.packets, s.expected, s.lost) == (300, 300, 0)
    assert s.extended_max_seq == 65536 + (65500 + 299 - 65536)


def test_timestamp_wrap_is_not_jitter() -> None:
    s = ReceptionStats(RATE)
    feed(s, list(range(50)), ts0=0xFFFFFFFF - 10 * STEP)
    assert s.jitter_ms == pytest.approx(0.0, abs=1e-6)


def test_duplicates_and_reordering() -> None:
    s = ReceptionStats(RATE)
    feed(s, [0, 1, 2, 4, 3, 5, 5, 6])
    assert s.expected == 7
    assert s.packets == 8
    assert s.lost == -1  # A.3: a duplicate makes lost negative...
    assert s.fraction_lost == 0.0  # ...but never a negative fraction


def test_a_stray_packet_far_away_is_ignored_but_two_in_a_row_restart() -> None:
    s = ReceptionStats(RATE)
    feed(s, list(range(10)))
    s.update(30000, 1, 101.0)  # one stray packet: not counted
    assert (s.packets, s.expected) == (10, 10)
    feed(s, [10, 11], seq0=1000)
    assert (s.packets, s.expected, s.lost) == (12, 12, 0)
    # The source restarts at a new sequence: the second packet confirms it.
    s.update(40000, 1, 102.0)
    s.update(40001, 161, 102.02)
    assert (s.packets, s.expected, s.lost) == (1, 1, 0)


def test_probation_drops_packets_until_two_are_in_sequence() -> None:
    s = ReceptionStats(RATE)
    s.update(10, 0, 0.0)
    assert s.packets == 0
    s.update(50, 0, 0.02)  # not in sequence: probation starts again
    assert s.packets == 0
    s.update(51, 160, 0.04)
    assert (s.packets, s.expected) == (2, 2)


def test_jitter_of_alternating_delay_converges_to_rfc_value() -> None:
    # Delays alternating 0 / 10 ms: |D| is 10 ms per packet, so J -> 10 ms (A.8).
    s = ReceptionStats(RATE)
    feed(s, list(range(500)), jitter=[0.010 * (i % 2) for i in range(500)])
    assert s.jitter_ms == pytest.approx(10.0, rel=0.01)
    assert s.jitter == pytest.approx(80, abs=1)
    assert s.as_dict()["jitter_ms"] == pytest.approx(10.0, rel=0.01)


def test_one_late_packet_moves_jitter_by_one_sixteenth() -> None:
    s = ReceptionStats(RATE)
    feed(s, [0, 1, 2], jitter=[0.0, 0.0, 0.016])
    assert s.jitter_ms == pytest.approx(1.0)


def test_bad_clock_rate() -> None:
    with pytest.raises(ValueError):
        ReceptionStats(0)


@given(st.lists(st.tuples(st.integers(-10, 70000), st.integers(-10, 1 << 33),
                          st.floats(0, 1e6, allow_nan=False)), max_size=60))
def test_any_input_keeps_figures_sane(packets: list[tuple[int, int, float]]) -> None:
    s = ReceptionStats(RATE)
    for seq, ts, arrival in packets:
        s.update(seq, ts, arrival)
    assert s.packets >= 0 and s.expected >= 0
    assert 0.0 <= s.fraction_lost <= 1.0
    assert s.jitter_ms >= 0.0


# -- RTCP ------------------------------------------------------------------------

BLOCK = ReportBlock(ssrc=0x1234, fraction_lost=25, cumulative_lost=-3, highest_seq=70000,
                    jitter=42, lsr=0xABCD0001, dlsr=65536)
SR = RtcpReport(ssrc=0xCAFE, blocks=(BLOCK,), ntp=0x83AA7E80_00000000 | 0x12345678,
                rtp_timestamp=160, packet_count=10, octet_count=1600)
RR = RtcpReport(ssrc=0xBEEF, blocks=(BLOCK, BLOCK))


def sdes(ssrc: int, cname: bytes) -> bytes:
    item = bytes([1, len(cname)]) + cname + b"\x00"
    item += b"\x00" * (-len(item) % 4)
    body = struct.pack("!I", ssrc) + item
    return struct.pack("!BBH", 0x81, 202, len(body) // 4) + body


def test_sender_report_fields() -> None:
    data = bytes.fromhex(
        "81c8000c" "0000cafe" "83aa7e80" "12345678" "000000a0" "0000000a" "00000640"
        "00001234" "19fffffd" "00011170" "0000002a" "abcd0001" "00010000")
    assert parse_rtcp(data) == [SR]
    assert SR.ntp_middle == 0x7E801234
    assert BLOCK.cumulative_lost == -3


def test_compound_with_sdes_and_bye_yields_the_reports() -> None:
    bye = struct.pack("!BBHI", 0x81, 203, 1, 0xCAFE)
    data = SR.serialize() + sdes(0xCAFE, b"phone@host") + RR.serialize() + bye
    assert parse_rtcp(data) == [SR, RR]


def test_padding_on_the_last_packet() -> None:
    rr = bytearray(RtcpReport(7, ()).serialize() + b"\x00\x00\x00\x04")
    rr[0] |= 0x20
    rr[2:4] = struct.pack("!H", 2)
    assert parse_rtcp(bytes(rr)) == [RtcpReport(7, ())]


@pytest.mark.parametrize("data", [
    b"",
    b"\x80",
    b"\x00\xc9\x00\x01\x00\x00\x00\x07",  # version 0
    b"\x81\xc9\x00\x01\x00\x00\x00\x07",  # RR claims a block it does not carry
    b"\x80\xc9\x00\x05\x00\x00\x00\x07",  # length beyond the datagram
    RR.serialize() + b"\x80",  # trailing garbage
    b"\xa0\xc9\x00\x01\x00\x00\x00\x00",  # padding byte of zero
])
def test_junk_is_not_rtcp(data: bytes) -> None:
    assert parse_rtcp(data) == []


def report_blocks() -> st.SearchStrategy[ReportBlock]:
    u32 = st.integers(0, 0xFFFFFFFF)
    return st.builds(ReportBlock, u32, st.integers(0, 255), st.integers(-(1 << 23), (1 << 23) - 1),
                     u32, u32, u32, u32)


def reports() -> st.SearchStrategy[RtcpReport]:
    u32 = st.integers(0, 0xFFFFFFFF)
    blocks = st.lists(report_blocks(), max_size=31).map(tuple)
    rr = st.builds(RtcpReport, u32, blocks)
    sr = st.builds(RtcpReport, u32, blocks, st.integers(0, (1 << 64) - 1), u32, u32, u32)
    return st.one_of(rr, sr)


@given(st.lists(reports(), min_size=1, max_size=4))
def test_round_trip(items: list[RtcpReport]) -> None:
    assert parse_rtcp(b"".join(r.serialize() for r in items)) == items


@settings(max_examples=500)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    result = parse_rtcp(data)
    assert isinstance(result, list)


@given(st.lists(reports(), min_size=1, max_size=3), st.data())
def test_corrupted_reports_never_raise(items: list[RtcpReport], data: st.DataObject) -> None:
    raw = bytearray(b"".join(r.serialize() for r in items))
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    assert isinstance(parse_rtcp(bytes(raw[:cut])), list)


# -- round-trip time -----------------------------------------------------------------


def test_rtt_from_lsr_and_dlsr_on_the_relay_clock() -> None:
    rt = RoundTrip()
    sr_a = RtcpReport(ssrc=0xA, blocks=(), ntp=(3_900_000_000 << 32) | 0x8000_0000)
    assert rt.feed("a", sr_a, arrival=10.000) is None
    # B held the SR 0.5 s and its report reached the relay 0.560 s after the SR did: 60 ms.
    block = ReportBlock(0xA, 0, 0, 0, 0, lsr=sr_a.ntp_middle or 0, dlsr=32768)
    assert rt.feed("b", RtcpReport(0xB, (block,)), arrival=10.560) == pytest.approx(60.0)
    assert rt.leg_ms("b") == pytest.approx(60.0)
    assert rt.rtt_ms is None  # the other leg is unknown yet

    sr_b = RtcpReport(ssrc=0xB, blocks=(), ntp=(3_900_000_001 << 32))
    rt.feed("b", sr_b, arrival=11.0)
    back = ReportBlock(0xB, 0, 0, 0, 0, lsr=sr_b.ntp_middle or 0, dlsr=6554)  # 0.1 s
    assert rt.feed("a", RtcpReport(0xA, (back,)), arrival=11.120) == pytest.approx(20.0, abs=0.01)
    assert rt.rtt_ms == pytest.approx(80.0, abs=0.01)


def test_rtt_ignores_unknown_sr_and_lsr_zero() -> None:
    rt = RoundTrip()
    rt.feed("a", RtcpReport(0xA, (), ntp=1 << 40), arrival=1.0)
    unknown = ReportBlock(0xA, 0, 0, 0, 0, lsr=0x1234, dlsr=0)
    none_yet = ReportBlock(0xA, 0, 0, 0, 0, lsr=0, dlsr=0)
    assert rt.feed("b", RtcpReport(0xB, (unknown, none_yet)), arrival=2.0) is None
    assert rt.leg_ms("b") is None


# -- E-model --------------------------------------------------------------------------


def test_perfect_g711_is_4_41() -> None:
    assert r_factor("PCMU", 0.0, 0.0, 0.0) == pytest.approx(93.2)
    # 1 + 0.035*93.2 + 7e-6*93.2*33.2*6.8 = 4.4093
    assert mos("PCMU", 0.0, 0.0, 0.0) == pytest.approx(4.409, abs=0.001)
    assert mos("PCMA", 0.0, 0.0, None) == mos("PCMU", 0.0, 0.0, 0.0)


@pytest.mark.parametrize("loss, expected_r, expected_mos", [
    # Ie_eff = 95 * Ppl / (Ppl + 25.1) (G.711 with PLC, random loss)
    (0.01, 93.2 - 95 / 26.1, 4.328),
    (0.05, 93.2 - 95 * 5 / 30.1, 3.923),
    (0.20, 93.2 - 95 * 20 / 45.1, 2.631),
])
def test_g711_loss_points(loss: float, expected_r: float, expected_mos: float) -> None:
    assert r_factor("PCMU", loss, 0.0, None) == pytest.approx(expected_r)
    assert mos("PCMU", loss, 0.0, None) == pytest.approx(expected_mos, abs=0.002)


def test_delay_impairment_above_177_ms() -> None:
    # d = 360/2 + 20 = 200 ms: Id = 0.024*200 + 0.11*(200-177.3) = 7.297
    assert r_factor("PCMU", 0.0, 20.0, 360.0) == pytest.approx(93.2 - 7.297, abs=1e-3)
    assert r_factor("PCMU", 0.0, 0.0, 100.0) == pytest.approx(93.2 - 1.2)


def test_codec_and_burst_matter() -> None:
    assert mos("G729", 0.0, 0.0, None) < mos("PCMU", 0.0, 0.0, None)
    assert mos("PCMU", 0.05, 0.0, None, burst_ratio=2.0) < mos("PCMU", 0.05, 0.0, None)
    assert mos("opus", 0.0, 0.0, None) == mos("PCMU", 0.0, 0.0, None)  # the default


def test_mos_is_clamped_and_bad_figures_refused() -> None:
    assert mos("PCMU", 1.0, 500.0, 2000.0) == 1.0
    for bad in (dict(loss=-0.1), dict(loss=1.5), dict(loss=float("nan")), dict(jitter_ms=-1.0),
                dict(rtt_ms=float("inf")), dict(burst_ratio=0.0)):
        args = dict(codec="PCMU", loss=0.0, jitter_ms=0.0, rtt_ms=None, burst_ratio=1.0) | bad
        with pytest.raises(ValueError):
            mos(**args)  # type: ignore[arg-type]


@given(st.floats(0, 1), st.floats(0, 1000), st.one_of(st.none(), st.floats(0, 5000)),
       st.floats(0.1, 10))
def test_mos_is_always_in_range(loss: float, jitter: float, rtt: float | None, burst: float) -> None:
    assert 1.0 <= mos("PCMU", loss, jitter, rtt, burst) <= 4.5
