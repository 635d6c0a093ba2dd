"""Netlink packing for the kernel fast path: attributes, set keys, counter replies; junk never raises."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from rtpmedia.relay.netlink import NLA_F_NESTED, attr, attr_list, attrs, nested, strz
from rtpmedia.relay.nftsets import (
    NFTA_COUNTER_BYTES,
    NFTA_COUNTER_PACKETS,
    NFTA_EXPR_DATA,
    NFTA_EXPR_NAME,
    NFTA_LIST_ELEM,
    NFTA_SET_ELEM_EXPR,
    NFTA_SET_ELEM_EXPRESSIONS,
    NFTA_SET_ELEM_KEY,
    NFTA_SET_ELEM_LIST_ELEMENTS,
    element_counter,
    key_bytes,
)


def test_attributes_are_padded_and_parse_back() -> None:
    packed = attr(1, b"abc") + strz(2, "table") + nested(3, attr(4, b"\x01"))
    assert len(attr(1, b"abc")) == 8  # 4 header + 3 + 1 padding
    parsed = attrs(packed)
    assert parsed[1] == b"abc"
    assert parsed[2] == b"table\0"
    assert attrs(parsed[3]) == {4: b"\x01"}
    assert struct.unpack_from("=H", nested(3, b""), 2)[0] == 3 | NLA_F_NESTED


def test_key_layout_pads_ports_to_registers() -> None:
    key = key_bytes(("127.0.0.1", 5004), ("10.0.0.2", 30000))
    assert key == bytes([127, 0, 0, 1, 0x13, 0x8C, 0, 0, 10, 0, 0, 2, 0x75, 0x30, 0, 0])
    assert len(key_bytes(("::1", 1), ("::2", 2))) == 40


def counter_expr(packets: int, octets: int) -> bytes:
    data = attr(NFTA_COUNTER_BYTES, struct.pack("!Q", octets)) + attr(NFTA_COUNTER_PACKETS, struct.pack("!Q", packets))
    return strz(NFTA_EXPR_NAME, "counter") + nested(NFTA_EXPR_DATA, data)


def test_counter_of_an_element_with_one_expression() -> None:
    element = attr(NFTA_SET_ELEM_KEY, b"k" * 16) + nested(NFTA_SET_ELEM_EXPR, counter_expr(7, 1204))
    message = strz(1, "t") + strz(2, "s") + nested(NFTA_SET_ELEM_LIST_ELEMENTS, nested(NFTA_LIST_ELEM, element))
    assert element_counter(message) == (7, 1204)


def test_counter_among_several_expressions() -> None:
    other = strz(NFTA_EXPR_NAME, "limit") + nested(NFTA_EXPR_DATA, attr(1, b"\0" * 8))
    exprs = nested(NFTA_SET_ELEM_EXPRESSIONS, nested(NFTA_LIST_ELEM, other), nested(NFTA_LIST_ELEM, counter_expr(3, 9)))
    message = nested(NFTA_SET_ELEM_LIST_ELEMENTS, nested(NFTA_LIST_ELEM, exprs))
    assert element_counter(message) == (3, 9)


def test_an_element_without_counter() -> None:
    message = nested(NFTA_SET_ELEM_LIST_ELEMENTS, nested(NFTA_LIST_ELEM, attr(NFTA_SET_ELEM_KEY, b"k" * 16)))
    assert element_counter(message) is None


@given(st.binary(max_size=300))
def test_junk_never_raises(data: bytes) -> None:
    attrs(data)
    attr_list(data)
    assert element_counter(data) is None or isinstance(element_counter(data), tuple)
