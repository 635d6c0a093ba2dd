"""G.711 against the ITU reference algorithm: all 65,536 inputs and all 256 code words.

The oracle below is ITU-T G.191 (STL) `g711.c` rewritten sample by sample in
plain Python: a literal transcription (loops, shifts, one's complement) that
shares nothing with the numpy tables it checks.
"""

from __future__ import annotations

import numpy as np
import pytest

from rtpmedia.codecs import CodecError
from rtpmedia.codecs.g711 import G711, PCMA, PCMU


def alaw_compress(x: int) -> int:
    ix = (~x) >> 4 if x < 0 else x >> 4
    if ix > 15:
        iexp = 1
        while ix > 16 + 15:
            ix >>= 1
            iexp += 1
        ix -= 16
        ix += iexp << 4
    if x >= 0:
        ix |= 0x80
    return ix ^ 0x55


def alaw_expand(code: int) -> int:
    ix = (code ^ 0x55) & 0x7F
    iexp = ix >> 4
    mant = ix & 0x0F
    if iexp > 0:
        mant += 16
    mant = (mant << 4) + 8
    if iexp > 1:
        mant <<= iexp - 1
    return mant if code > 127 else -mant


def ulaw_compress(x: int) -> int:
    absno = ((~x) >> 2) + 33 if x < 0 else (x >> 2) + 33
    absno = min(absno, 0x1FFF)
    i = absno >> 6
    segno = 1
    while i != 0:
        segno += 1
        i >>= 1
    high_nibble = 0x08 - segno
    low_nibble = 0x0F - ((absno >> segno) & 0x0F)
    code = (high_nibble << 4) | low_nibble
    if x >= 0:
        code |= 0x80
    return code


def ulaw_expand(code: int) -> int:
    sign = -1 if code < 0x80 else 1
    mantissa = ~code
    exponent = (mantissa >> 4) & 0x07
    segment = exponent + 1
    mantissa &= 0x0F
    step = 4 << segment
    return sign * ((0x80 << exponent) + step * mantissa + step // 2 - 4 * 33)


ALL_SAMPLES = np.arange(-32768, 32768, dtype=np.int32).astype(np.int16)
ALL_CODES = np.arange(256, dtype=np.uint8)


@pytest.mark.parametrize(("codec", "compress", "expand"), [
    (PCMU, ulaw_compress, ulaw_expand), (PCMA, alaw_compress, alaw_expand)])
def test_tables_equal_the_reference(codec: G711, compress, expand) -> None:  # type: ignore[no-untyped-def]
    assert codec.encode(ALL_SAMPLES) == bytes(compress(x) for x in range(-32768, 32768))
    assert codec.decode(bytes(range(256))).tolist() == [expand(c) for c in range(256)]


@pytest.mark.parametrize(("codec", "code", "value"), [
    (PCMU, 0xFF, 0), (PCMU, 0x7F, 0), (PCMU, 0x00, -32124), (PCMU, 0x80, 32124),
    (PCMU, 0xFE, 8), (PCMU, 0x7E, -8),
    (PCMA, 0xD5, 8), (PCMA, 0x55, -8), (PCMA, 0xAA, 32256), (PCMA, 0x2A, -32256),
    (PCMA, 0x80, 5504), (PCMA, 0x00, -5504),
])
def test_known_code_words(codec: G711, code: int, value: int) -> None:
    assert codec.decode(bytes([code]))[0] == value


@pytest.mark.parametrize(("codec", "value", "code"), [
    (PCMU, 0, 0xFF), (PCMU, -1, 0x7F), (PCMU, 32767, 0x80), (PCMU, -32768, 0x00),
    (PCMA, 0, 0xD5), (PCMA, -1, 0x55), (PCMA, 32767, 0xAA), (PCMA, -32768, 0x2A),
])
def test_known_encodings(codec: G711, value: int, code: int) -> None:
    assert codec.encode(np.array([value], np.int16)) == bytes([code])


@pytest.mark.parametrize("codec", [PCMU, PCMA])
def test_decode_encode_decode_is_stable_for_every_code_word(codec: G711) -> None:
    decoded = codec.decode(bytes(range(256)))
    assert np.array_equal(codec.decode(codec.encode(decoded)), decoded)


@pytest.mark.parametrize("codec", [PCMU, PCMA])
def test_codes_are_distinct_except_the_two_zeros(codec: G711) -> None:
    # mu-law has +0 and -0; A-law has no zero code, so all 256 values differ.
    values = codec.decode(bytes(range(256)))
    assert len(set(values.tolist())) == (255 if codec is PCMU else 256)


@pytest.mark.parametrize("codec", [PCMU, PCMA])
def test_encoding_is_monotonic(codec: G711) -> None:
    decoded = codec.decode(codec.encode(ALL_SAMPLES)).astype(np.int32)
    assert np.all(np.diff(decoded) >= 0)


@pytest.mark.parametrize("codec", [PCMU, PCMA])
def test_many_frames_in_one_call(codec: G711) -> None:
    rng = np.random.default_rng(1)
    frames = rng.integers(-32768, 32768, size=(50, 160)).astype(np.int16)
    encoded = codec.encode_array(frames)
    assert encoded.shape == (50, 160) and encoded.dtype == np.uint8
    assert codec.encode(frames) == b"".join(codec.encode(row) for row in frames)
    decoded = codec.decode_array(encoded)
    assert decoded.shape == (50, 160) and decoded.dtype == np.int16
    assert all(np.array_equal(decoded[i], codec.decode(codec.encode(frames[i]))) for i in range(50))
    # A non-contiguous view (every other frame) is encoded as well.
    assert np.array_equal(codec.encode_array(frames[::2]), encoded[::2])


def test_codec_facts() -> None:
    assert (PCMU.rtpmap, PCMU.payload_type, PCMU.clock_rate) == ("PCMU/8000", 0, 8000)
    assert (PCMA.rtpmap, PCMA.payload_type, PCMA.clock_rate) == ("PCMA/8000", 8, 8000)
    assert PCMU.samples_per_frame == PCMU.bytes_per_frame == 160


@pytest.mark.parametrize("bad", [np.zeros(4, np.int32), np.zeros(4, np.float64), [0, 1]])
def test_only_int16_is_encoded(bad: object) -> None:
    with pytest.raises(CodecError):
        PCMU.encode(bad)  # type: ignore[arg-type]


def test_only_uint8_is_decoded() -> None:
    with pytest.raises(CodecError):
        PCMA.decode_array(np.zeros(4, np.int16))  # type: ignore[arg-type]
