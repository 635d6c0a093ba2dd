"""G.711 mu-law (PCMU, payload type 0) and A-law (PCMA, payload type 8).

Exact to ITU-T G.711 as its reference implementation in ITU-T G.191 (the STL,
`g711.c`) computes it: 16-bit linear samples, of which A-law uses the 13 and
mu-law the 14 most significant bits; decoding gives the middle of each
quantisation interval. Both directions are table look-ups built once with
numpy: a 256-entry decode table and a 65,536-entry encode table indexed by the
int16 sample read as uint16, so a whole tick of frames is one `take`.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from rtpmedia.codecs.base import Codec, Payloads, Pcm, as_payload, as_pcm

# Every int16 value, in the order of its uint16 bit pattern (the encode index).
_ALL_SAMPLES = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.int16).astype(np.int32)
_ALL_CODES = np.arange(256, dtype=np.int32)


def _bit_length(values: npt.NDArray[np.int32]) -> npt.NDArray[np.int32]:
    bounds = 1 << np.arange(16, dtype=np.int32)
    return np.searchsorted(bounds, values, side="right").astype(np.int32)


def _alaw_encode_table() -> npt.NDArray[np.uint8]:
    x = _ALL_SAMPLES
    # G.191 uses the one's complement for negatives: -1 and 0 share a magnitude.
    magnitude = np.where(x < 0, ~x, x) >> 4                     # 0..2047
    exponent = np.maximum(_bit_length(magnitude) - 4, 0)        # segment 0..7
    mantissa = np.where(exponent > 0, (magnitude >> np.maximum(exponent - 1, 0)) - 16, magnitude)
    code = (exponent << 4) | mantissa
    code = np.where(x >= 0, code | 0x80, code)
    return (code ^ 0x55).astype(np.uint8)                       # even bits inverted


def _alaw_decode_table() -> npt.NDArray[np.int16]:
    ix = (_ALL_CODES ^ 0x55) & 0x7F
    exponent = ix >> 4
    mantissa = np.where(exponent > 0, (ix & 0x0F) + 16, ix & 0x0F)
    value = ((mantissa << 4) + 8) << np.maximum(exponent - 1, 0)
    return np.where(_ALL_CODES > 127, value, -value).astype(np.int16)


def _ulaw_encode_table() -> npt.NDArray[np.uint8]:
    x = _ALL_SAMPLES
    biased = np.minimum(np.where(x < 0, ~x, x) >> 2, 0x1FFF - 33) + 33   # 33..8191
    segment = _bit_length(biased >> 6) + 1                               # 1..8
    low = 0x0F - ((biased >> segment) & 0x0F)
    code = ((8 - segment) << 4) | low
    return np.where(x >= 0, code | 0x80, code).astype(np.uint8)


def _ulaw_decode_table() -> npt.NDArray[np.int16]:
    inverted = ~_ALL_CODES & 0xFF
    exponent = (inverted >> 4) & 0x07
    mantissa = inverted & 0x0F
    step = 4 << (exponent + 1)
    value = (0x80 << exponent) + step * mantissa + step // 2 - 4 * 33
    return np.where(_ALL_CODES < 0x80, -value, value).astype(np.int16)


ALAW_ENCODE: npt.NDArray[np.uint8] = _alaw_encode_table()
ALAW_DECODE: npt.NDArray[np.int16] = _alaw_decode_table()
ULAW_ENCODE: npt.NDArray[np.uint8] = _ulaw_encode_table()
ULAW_DECODE: npt.NDArray[np.int16] = _ulaw_decode_table()
for _table in (ALAW_ENCODE, ALAW_DECODE, ULAW_ENCODE, ULAW_DECODE):
    _table.setflags(write=False)


class G711(Codec):
    """One of the two G.711 laws, as a pair of lookup tables."""

    __slots__ = ("encode_table", "decode_table")

    def __init__(self, name: str, payload_type: int, encode_table: npt.NDArray[np.uint8],
                 decode_table: npt.NDArray[np.int16]) -> None:
        super().__init__(name, payload_type, 8000)
        self.encode_table = encode_table
        self.decode_table = decode_table

    @property
    def bytes_per_frame(self) -> int:
        return self.samples_per_frame

    def encode_array(self, pcm: Pcm) -> Payloads:
        return self.encode_table[as_pcm(pcm).view(np.uint16)]

    def decode_array(self, payload: Payloads) -> Pcm:
        return self.decode_table[as_payload(payload)]


PCMU = G711("PCMU", 0, ULAW_ENCODE, ULAW_DECODE)
PCMA = G711("PCMA", 8, ALAW_ENCODE, ALAW_DECODE)
