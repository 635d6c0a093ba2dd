"""L16 (RFC 3551 4.5.11): big-endian 16-bit samples, channels interleaved."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from rtpmedia.codecs import CodecError
from rtpmedia.codecs.l16 import L16, L16_8000, L16_44100_STEREO


def test_network_byte_order() -> None:
    assert L16_8000.encode(np.array([1, -2, 0x1234], np.int16)) == bytes.fromhex("0001 fffe 1234")
    assert L16_8000.decode(bytes.fromhex("8000 7fff")).tolist() == [-32768, 32767]


def test_facts() -> None:
    assert (L16_8000.rtpmap, L16_8000.payload_type, L16_8000.bytes_per_frame) == ("L16/8000", None, 320)
    assert (L16_44100_STEREO.rtpmap, L16_44100_STEREO.payload_type) == ("L16/44100/2", 10)
    assert L16_44100_STEREO.samples_per_frame == 882
    assert L16_44100_STEREO.bytes_per_frame == 882 * 4


@given(hnp.arrays(np.int16, hnp.array_shapes(min_dims=1, max_dims=2, max_side=40)))
def test_round_trip_keeps_shape(pcm: np.ndarray) -> None:
    codec = L16(16000)
    encoded = codec.encode_array(pcm)
    assert encoded.shape == (*pcm.shape[:-1], 2 * pcm.shape[-1])
    assert np.array_equal(codec.decode_array(encoded), pcm)
    assert np.array_equal(codec.decode(codec.encode(pcm)), pcm.reshape(-1))


@given(st.binary(max_size=41))
def test_decode_bytes(data: bytes) -> None:
    if len(data) % 2:
        with pytest.raises(CodecError):
            L16_8000.decode(data)
    else:
        assert L16_8000.encode(L16_8000.decode(data)) == data
