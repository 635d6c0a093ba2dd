"""L16: uncompressed 16-bit signed linear audio in network byte order (RFC 3551 4.5.11).

Payload types 10 (44.1 kHz stereo) and 11 (44.1 kHz mono) are static; other
rates (8 and 16 kHz are the useful ones for telephony) take dynamic payload
types. Channels are interleaved sample by sample, as RFC 3551 4.1 says.
"""

from __future__ import annotations

import numpy as np

from rtpmedia.codecs.base import Codec, CodecError, Payloads, Pcm, as_payload, as_pcm

_NETWORK_INT16 = np.dtype(">i2")


class L16(Codec):
    __slots__ = ()

    def __init__(self, clock_rate: int, channels: int = 1, payload_type: int | None = None) -> None:
        super().__init__("L16", payload_type, clock_rate, channels)

    @property
    def bytes_per_frame(self) -> int:
        return 2 * self.channels * self.samples_per_frame

    def encode_array(self, pcm: Pcm) -> Payloads:
        samples = as_pcm(pcm).astype(_NETWORK_INT16)
        return samples.view(np.uint8)

    def decode_array(self, payload: Payloads) -> Pcm:
        data = np.ascontiguousarray(as_payload(payload))
        if data.shape[-1] % 2:
            raise CodecError("L16 payload with an odd number of bytes")
        return data.view(_NETWORK_INT16).astype(np.int16)


L16_8000 = L16(8000)
L16_16000 = L16(16000)
L16_44100 = L16(44100, payload_type=11)
L16_44100_STEREO = L16(44100, channels=2, payload_type=10)
