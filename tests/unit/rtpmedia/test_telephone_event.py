"""RFC 4733 telephone-events: payload, the packets of a digit, and the receiver under loss."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtpmedia.rtp import RtpPacket
from rtpmedia.telephone_event import (
    DTMF_DIGITS,
    Digit,
    TelephoneEvent,
    TelephoneEventError,
    TelephoneEventReceiver,
    digit_packets,
    event_code,
)

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_known_payload() -> None:
    # RFC 4733 figure 1: event 5, E set, volume 10, duration 800 (100 ms at 8 kHz).
    data = bytes.fromhex("05 8a 0320")
    event = TelephoneEvent.parse(data)
    assert event == TelephoneEvent(5, True, 10, 800)
    assert event.digit == "5"
    assert event.serialize() == data


def test_reserved_bit_is_ignored() -> None:
    assert TelephoneEvent.parse(bytes.fromhex("0b 4a 00a0")) == TelephoneEvent(11, False, 10, 160)


@pytest.mark.parametrize("data", [b"", b"\x01\x02\x03", b"\x01\x02\x03\x04\x05", bytes(8)])
def test_wrong_sizes_raise(data: bytes) -> None:
    with pytest.raises(TelephoneEventError):
        TelephoneEvent.parse(data)


@pytest.mark.parametrize("event", [TelephoneEvent(256), TelephoneEvent(1, volume=64),
                                   TelephoneEvent(1, duration=0x10000), TelephoneEvent(-1)])
def test_out_of_range_fields_are_refused(event: TelephoneEvent) -> None:
    with pytest.raises(TelephoneEventError):
        event.serialize()


def test_event_codes() -> None:
    assert [event_code(d) for d in DTMF_DIGITS] == list(range(16))
    assert event_code("*") == 10 and event_code("#") == 11 and event_code("d") == 15
    assert TelephoneEvent(16).digit is None
    for bad in ("", "E", "12", "x"):
        with pytest.raises(TelephoneEventError):
            event_code(bad)


events = st.builds(TelephoneEvent, st.integers(0, 255), st.booleans(), st.integers(0, 63),
                   st.integers(0, 0xFFFF))


@SETTINGS
@given(events)
def test_round_trip(event: TelephoneEvent) -> None:
    assert TelephoneEvent.parse(event.serialize()) == event


@SETTINGS
@given(st.binary(max_size=8))
def test_arbitrary_bytes_give_an_event_or_the_error(data: bytes) -> None:
    try:
        event = TelephoneEvent.parse(data)
    except TelephoneEventError:
        return
    assert TelephoneEvent.parse(event.serialize()) == event


def test_packets_of_one_digit() -> None:
    sent = list(digit_packets("#", ssrc=7, sequence_number=65534, timestamp=1000,
                              duration_ms=200, volume=12))
    assert [offset for offset, _ in sent] == [0, 50, 100, 150, 200, 250]
    packets = [p for _, p in sent]
    assert [p.marker for p in packets] == [True, False, False, False, False, False]
    assert [p.sequence_number for p in packets] == [65534, 65535, 0, 1, 2, 3]
    assert {(p.timestamp, p.ssrc, p.payload_type) for p in packets} == {(1000, 7, 101)}
    events = [TelephoneEvent.parse(p.payload) for p in packets]
    assert [e.duration for e in events] == [400, 800, 1200, 1600, 1600, 1600]
    assert [e.end for e in events] == [False, False, False, True, True, True]
    assert {(e.event, e.volume) for e in events} == {(11, 12)}


def test_short_digit_and_uneven_duration() -> None:
    sent = [p for _, p in digit_packets("1", ssrc=1, sequence_number=0, timestamp=0,
                                        duration_ms=70, interval_ms=50)]
    assert [TelephoneEvent.parse(p.payload).duration for p in sent] == [400, 560, 560, 560]
    with pytest.raises(TelephoneEventError):
        list(digit_packets("1", ssrc=1, sequence_number=0, timestamp=0, duration_ms=9000))


def stream(digits: str, ssrc: int = 0x1234, start_ts: int = 0xFFFFF000) -> list[RtpPacket]:
    """The packets of `digits` pressed one after another, 300 ms apart, seq continuing."""
    packets: list[RtpPacket] = []
    seq = 100
    for i, digit in enumerate(digits):
        ts = (start_ts + i * 2400) & 0xFFFFFFFF
        for _, packet in digit_packets(digit, ssrc=ssrc, sequence_number=seq, timestamp=ts,
                                       duration_ms=120):
            packets.append(packet)
            seq = (seq + 1) & 0xFFFF
    return packets


def run(receiver: TelephoneEventReceiver, packets: list[RtpPacket]) -> str:
    return "".join(d.digit for p in packets if (d := receiver.receive(p)) is not None)


def test_clean_stream_reports_each_digit_once_at_its_start() -> None:
    receiver = TelephoneEventReceiver()
    packets = stream("0123456789*#ABCD")
    reported = [(i, d) for i, p in enumerate(packets) if (d := receiver.receive(p)) is not None]
    assert "".join(d.digit for _, d in reported) == "0123456789*#ABCD"
    assert all(packets[i].marker for i, _ in reported)
    assert reported[0][1] == Digit("0", 0x1234, 0xFFFFF000)
    assert receiver.duplicates == len(packets) - 16


def test_lost_start_and_lost_end() -> None:
    packets = stream("12")
    # Digit 1 loses its start packets, digit 2 all its end packets.
    kept = [p for p in packets
            if not (p.timestamp == packets[0].timestamp and not TelephoneEvent.parse(p.payload).end)
            and not (p.timestamp == packets[-1].timestamp and TelephoneEvent.parse(p.payload).end)]
    assert run(TelephoneEventReceiver(), kept) == "12"


def test_same_digit_twice_is_two_digits() -> None:
    assert run(TelephoneEventReceiver(), stream("55")) == "55"


def test_streams_are_told_apart_by_ssrc() -> None:
    a, b = stream("1", ssrc=1, start_ts=0), stream("1", ssrc=2, start_ts=0)
    assert run(TelephoneEventReceiver(), [a[0], b[0], *a[1:], *b[1:]]) == "11"


def test_non_dtmf_events_and_garbage_are_counted_not_reported() -> None:
    receiver = TelephoneEventReceiver()
    flash = RtpPacket(payload_type=101, timestamp=5, payload=TelephoneEvent(16).serialize())
    assert receiver.receive(flash) is None
    assert receiver.receive(RtpPacket(payload_type=101, timestamp=9, payload=b"\x01")) is None
    assert (receiver.ignored, receiver.malformed) == (1, 1)


def test_long_event_in_segments_is_one_digit() -> None:
    # RFC 4733 2.5.1.3: past 0xFFFF the next segment starts at ts + duration, no marker.
    receiver = TelephoneEventReceiver()
    first = [RtpPacket(timestamp=1000, payload=TelephoneEvent(9, d == 0xFFFF, 10, d).serialize(),
                       marker=d == 400) for d in (400, 30000, 0xFFFF, 0xFFFF)]
    second = [RtpPacket(timestamp=1000 + 0xFFFF, payload=TelephoneEvent(9, e, 10, d).serialize())
                for d, e in ((400, False), (800, True))]
    assert run(receiver, first + second) == "9"


@st.composite
def impaired(draw: st.DrawFn) -> tuple[str, list[RtpPacket]]:
    """A digit stream after duplication, loss (at least one packet per digit kept) and reordering."""
    digits = draw(st.text(DTMF_DIGITS, min_size=1, max_size=8))
    packets = stream(digits, start_ts=draw(st.integers(0, 0xFFFFFFFF)))
    survivors: list[RtpPacket] = []
    by_ts: dict[int, list[RtpPacket]] = {}
    for p in packets:
        by_ts.setdefault(p.timestamp, []).append(p)
    for group in by_ts.values():
        keep = draw(st.lists(st.sampled_from(["drop", "keep", "twice"]), min_size=len(group),
                             max_size=len(group)))
        keep[draw(st.integers(0, len(group) - 1))] = "keep"
        for p, k in zip(group, keep, strict=True):
            survivors.extend([p] * {"drop": 0, "keep": 1, "twice": 2}[k])
    # Reorder: swap some neighbours, possibly across digits.
    for i in draw(st.lists(st.integers(0, max(len(survivors) - 2, 0)), max_size=10)):
        if i + 1 < len(survivors):
            survivors[i], survivors[i + 1] = survivors[i + 1], survivors[i]
    return digits, survivors


@SETTINGS
@given(impaired())
def test_receiver_reports_every_digit_exactly_once_in_order_of_first_arrival(
        case: tuple[str, list[RtpPacket]]) -> None:
    digits, packets = case
    first_arrival: list[int] = []
    for p in packets:
        if p.timestamp not in first_arrival:
            first_arrival.append(p.timestamp)
    expected = "".join(TelephoneEvent.parse(next(p for p in packets if p.timestamp == ts).payload)
                       .digit or "" for ts in first_arrival)
    assert sorted(expected) == sorted(digits)
    assert run(TelephoneEventReceiver(), packets) == expected
