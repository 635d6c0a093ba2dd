"""The interface every codec of the media plane implements.

A codec turns 16-bit linear PCM (numpy int16) into RTP payload bytes and back.
Both directions are vectorised: `encode_array`/`decode_array` take one frame
(1-D) or many frames at once (2-D, frames x samples / frames x bytes), so a
relay can run all its streams of one 20 ms tick through a single call.
`encode`/`decode` are the bytes-in, bytes-out forms for a single payload.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import numpy.typing as npt

FRAME_MS = 20

Pcm = npt.NDArray[np.int16]
Payloads = npt.NDArray[np.uint8]


class CodecError(ValueError):
    """Input that a codec cannot take: wrong sample type or a partial sample."""


class Codec(ABC):
    """A payload format: its rtpmap name, static payload type and clock rate.

    `payload_type` is None for formats that only have dynamic payload types
    (RFC 3551 6): the SDP negotiation assigns one per session.
    """

    __slots__ = ("name", "payload_type", "clock_rate", "channels")

    def __init__(self, name: str, payload_type: int | None, clock_rate: int,
                 channels: int = 1) -> None:
        self.name = name
        self.payload_type = payload_type
        self.clock_rate = clock_rate
        self.channels = channels

    @property
    def rtpmap(self) -> str:
        """The encoding as in SDP `a=rtpmap` (RFC 8866 6.6): `PCMU/8000`, `L16/44100/2`."""
        base = f"{self.name}/{self.clock_rate}"
        return base if self.channels == 1 else f"{base}/{self.channels}"

    @property
    def samples_per_frame(self) -> int:
        """Samples per channel in one 20 ms frame (160 for an 8 kHz codec)."""
        return self.clock_rate * FRAME_MS // 1000

    @property
    @abstractmethod
    def bytes_per_frame(self) -> int:
        """Payload bytes of one 20 ms frame (all channels)."""

    @abstractmethod
    def encode_array(self, pcm: Pcm) -> Payloads:
        """Payload bytes of `pcm` as uint8, keeping the leading (frame) axes."""

    @abstractmethod
    def decode_array(self, payload: Payloads) -> Pcm:
        """Samples of `payload` (uint8) as int16, keeping the leading (frame) axes."""

    def encode(self, pcm: Pcm) -> bytes:
        """The payload of `pcm` (1-D; a 2-D array gives its frames back to back)."""
        return self.encode_array(pcm).tobytes()

    def decode(self, payload: bytes | bytearray | memoryview) -> Pcm:
        """The samples of one payload, as a 1-D int16 array."""
        return self.decode_array(np.frombuffer(payload, dtype=np.uint8))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.rtpmap} pt={self.payload_type}>"


def as_pcm(pcm: Pcm) -> Pcm:
    """`pcm` as an int16 array; anything else is refused rather than wrapped."""
    array = np.asarray(pcm)
    if array.dtype != np.int16:
        raise CodecError(f"expected int16 samples, got {array.dtype}")
    return array


def as_payload(payload: Payloads) -> Payloads:
    array = np.asarray(payload)
    if array.dtype != np.uint8:
        raise CodecError(f"expected uint8 payload bytes, got {array.dtype}")
    return array
