"""HEP v3 encoding: round trips, the chunk layout Homer expects, and bad bytes."""

from __future__ import annotations

import socket
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtpmedia.hep import MAGIC, HepError, HepPacket, decode, decode_chunks, encode

ports = st.integers(min_value=0, max_value=65535)
v4 = st.ip_addresses(v=4).map(str)
v6 = st.ip_addresses(v=6).map(str)


@st.composite
def packets(draw: st.DrawFn) -> HepPacket:
    family = draw(st.sampled_from([v4, v6]))
    return HepPacket(
        protocol=draw(st.sampled_from([socket.IPPROTO_UDP, socket.IPPROTO_TCP])),
        source=(draw(family), draw(ports)), destination=(draw(family), draw(ports)),
        time=draw(st.integers(min_value=0, max_value=2**32 - 1)) + draw(
            st.integers(min_value=0, max_value=999999)) / 1e6,
        payload=draw(st.binary(max_size=2000)), payload_type=draw(st.sampled_from([1, 5])),
        correlation_id=draw(st.text(max_size=80)), agent_id=draw(
            st.integers(min_value=0, max_value=2**32 - 1)),
        auth_key=draw(st.text(max_size=20)))


@given(packets())
def test_round_trip(packet: HepPacket) -> None:
    back = decode(encode(packet))
    assert back.source == packet.source and back.destination == packet.destination
    assert back.payload == packet.payload and back.correlation_id == packet.correlation_id
    assert back.protocol == packet.protocol and back.agent_id == packet.agent_id
    assert back.payload_type == packet.payload_type and back.auth_key == packet.auth_key
    assert abs(back.time - packet.time) < 2e-6


@given(st.binary(max_size=300))
def test_arbitrary_bytes_are_a_packet_or_hep_error(data: bytes) -> None:
    try:
        decode(data)
    except HepError:
        pass


@given(packets(), st.integers(min_value=1, max_value=40))
def test_truncated_packets_are_refused(packet: HepPacket, cut: int) -> None:
    data = encode(packet)
    with pytest.raises(HepError):
        decode(data[:-cut])


def test_chunk_layout_is_what_homer_reads() -> None:
    data = encode(HepPacket(socket.IPPROTO_UDP, ("192.0.2.1", 5060), ("192.0.2.2", 5062),
                            1700000000.25, b"OPTIONS sip:x SIP/2.0\r\n\r\n",
                            correlation_id="abc@host", agent_id=9))
    assert data[:4] == MAGIC and struct.unpack("!H", data[4:6])[0] == len(data)
    # The first chunk: vendor 0, type 1 (IP family), length 7, AF_INET.
    assert data[6:13] == struct.pack("!HHH", 0, 1, 7) + bytes([socket.AF_INET])
    chunks = decode_chunks(data)
    assert chunks[3] == bytes([192, 0, 2, 1]) and chunks[4] == bytes([192, 0, 2, 2])
    assert struct.unpack("!H", chunks[7]) == (5060,) and struct.unpack("!I", chunks[9]) == (
        1700000000,)
    assert struct.unpack("!I", chunks[10]) == (250000,)
    assert chunks[11] == b"\x01" and chunks[17] == b"abc@host"


def test_mixed_families_are_refused() -> None:
    with pytest.raises(ValueError):
        encode(HepPacket(socket.IPPROTO_UDP, ("192.0.2.1", 1), ("::1", 2), 0.0, b""))
