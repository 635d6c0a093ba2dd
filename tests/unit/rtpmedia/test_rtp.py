"""RTP packets (RFC 3550 5.1): known bytes, round trips, and "a packet or RtpError"."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtpmedia.rtp import RtpError, RtpPacket, payload_bounds, peek_header

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)

packets = st.builds(
    RtpPacket,
    payload_type=st.integers(0, 127),
    sequence_number=u16,
    timestamp=u32,
    ssrc=u32,
    payload=st.binary(max_size=200),
    marker=st.booleans(),
    csrc=st.lists(u32, max_size=15),
    extension_profile=st.none() | u16,
    extension=st.binary(max_size=40).map(lambda b: b[:len(b) - len(b) % 4]),
    padding_size=st.integers(0, 255),
).map(lambda p: p if p.extension_profile is not None else RtpPacket(
    p.payload_type, p.sequence_number, p.timestamp, p.ssrc, p.payload, p.marker, p.csrc,
    padding_size=p.padding_size))


def test_known_packet() -> None:
    # V=2, no padding/extension, CC=0, M=1, PT=0, seq 0x1234, ts 0xDEADBEEF, ssrc 0x01020304.
    data = bytes.fromhex("8080 1234 deadbeef 01020304") + b"\xff" * 160
    packet = RtpPacket.parse(data)
    assert packet == RtpPacket(payload_type=0, sequence_number=0x1234, timestamp=0xDEADBEEF,
                               ssrc=0x01020304, payload=b"\xff" * 160, marker=True)
    assert packet.serialize() == data
    assert peek_header(data) == (0, True, 0x1234, 0xDEADBEEF, 0x01020304)
    assert payload_bounds(data) == (12, 172)


def test_csrc_extension_and_padding() -> None:
    data = (bytes.fromhex("b2 08 0001 00000002 00000003")      # P, X, CC=2, PT 8
            + bytes.fromhex("0000000a 0000000b")               # two CSRCs
            + bytes.fromhex("bede 0001 10ff0000")              # one-byte-header extension
            + b"abc" + bytes.fromhex("000003"))                # payload, 3 octets of padding
    packet = RtpPacket.parse(data)
    assert packet.csrc == [10, 11]
    assert packet.extension_profile == 0xBEDE and packet.extension == bytes.fromhex("10ff0000")
    assert packet.payload == b"abc" and packet.padding_size == 3
    assert packet.payload_type == 8 and not packet.marker
    assert packet.serialize() == data
    assert payload_bounds(data) == (28, 31)


@pytest.mark.parametrize("data", [
    b"",
    b"\x80" * 11,                                              # short header
    bytes.fromhex("4000 0001 00000002 00000003"),              # version 1
    bytes.fromhex("8100 0001 00000002 00000003"),              # CC=1 but no CSRC
    bytes.fromhex("9000 0001 00000002 00000003 bede"),         # truncated extension header
    bytes.fromhex("9000 0001 00000002 00000003 bede0002 00000000"),  # extension longer than packet
    bytes.fromhex("a000 0001 00000002 00000003 00"),           # padding count 0
    bytes.fromhex("a000 0001 00000002 00000003 0103"),         # padding longer than payload
])
def test_malformed_packets_raise_rtp_error(data: bytes) -> None:
    with pytest.raises(RtpError):
        RtpPacket.parse(data)
    with pytest.raises(RtpError):
        payload_bounds(data)


def test_peek_checks_only_the_fixed_header() -> None:
    with pytest.raises(RtpError):
        peek_header(bytes.fromhex("0000 0001 00000002 00000003"))
    with pytest.raises(RtpError):
        peek_header(b"\x80\x00")
    view = memoryview(bytearray(bytes.fromhex("80e0 ffff ffffffff 00000000")))
    assert peek_header(view) == (96, True, 0xFFFF, 0xFFFFFFFF, 0)


@pytest.mark.parametrize("packet", [
    RtpPacket(payload_type=128),
    RtpPacket(sequence_number=0x10000),
    RtpPacket(timestamp=-1),
    RtpPacket(csrc=[0] * 16),
    RtpPacket(extension_profile=1, extension=b"abc"),
    RtpPacket(extension=b"abcd"),                      # extension bytes without a profile
    RtpPacket(padding_size=256),
])
def test_serialize_rejects_out_of_range_fields(packet: RtpPacket) -> None:
    with pytest.raises(RtpError):
        packet.serialize()


@SETTINGS
@given(packets)
def test_round_trip(packet: RtpPacket) -> None:
    data = packet.serialize()
    assert RtpPacket.parse(data) == packet
    assert RtpPacket.parse(memoryview(data)) == packet
    assert peek_header(data) == (packet.payload_type, packet.marker, packet.sequence_number,
                                 packet.timestamp, packet.ssrc)
    start, end = payload_bounds(data)
    assert data[start:end] == packet.payload


@SETTINGS
@given(st.binary(max_size=120) | packets.map(RtpPacket.serialize).map(lambda b: b[:len(b) // 2]))
def test_arbitrary_bytes_give_a_packet_or_rtp_error(data: bytes) -> None:
    try:
        packet = RtpPacket.parse(data)
    except RtpError:
        return
    # What parses serialises to bytes that parse to the same packet (padding octets zeroed).
    assert RtpPacket.parse(packet.serialize()) == packet


@SETTINGS
@given(st.binary(min_size=12, max_size=40).map(lambda b: bytes([0x80 | b[0] & 0x3F]) + b[1:]))
def test_version_2_headers_always_peek(data: bytes) -> None:
    pt, marker, seq, ts, ssrc = peek_header(data)
    assert (pt, marker) == (data[1] & 0x7F, bool(data[1] & 0x80))
    assert (seq, ts, ssrc) == (int.from_bytes(data[2:4], "big"), int.from_bytes(data[4:8], "big"),
                               int.from_bytes(data[8:12], "big"))


def test_an_rtp_source_numbers_its_packets_and_wraps() -> None:
    from rtpmedia.rtp import RtpPacket, RtpSource

    source = RtpSource(ssrc=0xABCD)
    source.seq, source.timestamp = 0xFFFF, 0xFFFFFF00
    first = RtpPacket.parse(source.packet(0, b"\xff" * 160, marker=True))
    second = RtpPacket.parse(source.packet(0, b"\xff" * 160))
    event = RtpPacket.parse(source.packet(101, b"\x01\x0a\x00\xa0", timestamp=5))
    assert (first.sequence_number, first.timestamp, first.marker, first.ssrc) == \
        (0xFFFF, 0xFFFFFF00, True, 0xABCD)
    assert (second.sequence_number, second.timestamp, second.marker) == (0, 0xFFFFFFA0, False)
    # An event keeps its own timestamp and leaves the stream's where it was.
    assert (event.sequence_number, event.timestamp) == (1, 5) and source.timestamp == 0x40
    source.skip(320)
    assert source.timestamp == 0x180
