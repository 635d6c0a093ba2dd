"""Codec registry of the media plane: one module per codec, looked up by rtpmap or payload type.

Names are the SDP rtpmap encodings (RFC 8866 6.6, RFC 3551 6): `PCMU/8000`,
`L16/44100/2`; encoding names are case-insensitive (RFC 4855 3) and a channel
count of 1 may be written or left out. Adding a codec is one module and one
`register` call here.
"""

from __future__ import annotations

from rtpmedia.codecs.base import FRAME_MS, Codec, CodecError
from rtpmedia.codecs.g711 import PCMA, PCMU
from rtpmedia.codecs.l16 import L16_8000, L16_16000, L16_44100, L16_44100_STEREO

__all__ = ["FRAME_MS", "Codec", "CodecError", "UnknownCodecError", "by_payload_type", "get",
           "names", "normalise", "register"]


class UnknownCodecError(LookupError):
    """No registered codec has that rtpmap name or static payload type."""


_BY_NAME: dict[str, Codec] = {}
_BY_PAYLOAD_TYPE: dict[int, Codec] = {}


def normalise(rtpmap: str) -> str:
    """`rtpmap` in the registry's spelling: `pcmu/8000/1` -> `PCMU/8000`."""
    parts = rtpmap.strip().split("/")
    if len(parts) == 3 and parts[2] == "1":
        parts.pop()
    return "/".join([parts[0].upper(), *parts[1:]])


def register(codec: Codec) -> None:
    """Make `codec` known under its rtpmap and, when it has one, its static payload type."""
    _BY_NAME[normalise(codec.rtpmap)] = codec
    if codec.payload_type is not None:
        _BY_PAYLOAD_TYPE[codec.payload_type] = codec


def get(rtpmap: str) -> Codec:
    """The codec for an rtpmap encoding such as `PCMU/8000`; raises UnknownCodecError."""
    try:
        return _BY_NAME[normalise(rtpmap)]
    except KeyError:
        raise UnknownCodecError(f"no codec {rtpmap!r}") from None


def by_payload_type(payload_type: int) -> Codec:
    """The codec of a static payload type (RFC 3551 table 4); raises UnknownCodecError."""
    try:
        return _BY_PAYLOAD_TYPE[payload_type]
    except KeyError:
        raise UnknownCodecError(f"no codec with static payload type {payload_type}") from None


def names() -> list[str]:
    """The rtpmap names of every registered codec."""
    return list(_BY_NAME)


for _codec in (PCMU, PCMA, L16_8000, L16_16000, L16_44100, L16_44100_STEREO):
    register(_codec)
