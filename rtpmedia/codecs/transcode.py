"""Transcoding between payload formats, and the offer/answer decision to transcode.

PCMU <-> PCMA goes code word to code word through the conversion tables of
ITU-T G.711 (tables 3 and 4, here in the 128-entry form of the Sun/CCITT
reference `g711.c`): one 256-entry look-up, no detour through linear PCM, and
the sign of a zero survives. Other pairs of the same clock rate decode and
re-encode.

`negotiate` reads the formats of an offer and of the answer given to it
(RFC 3264 6.1: the answer lists the offered formats it accepts, most preferred
first) and says whether the relay passes media through or which pair it
transcodes; `extend_offer` adds what the relay can transcode to before it
forwards an offer to the other leg.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from rtpmedia.codecs import UnknownCodecError, get, normalise
from rtpmedia.codecs.base import Codec, Payloads, as_payload
from rtpmedia.codecs.g711 import PCMA, PCMU

# G.711 table 3 (mu-law to A-law) and table 4 (A-law to mu-law) on magnitudes:
# index = mu-law (or A-law) magnitude rank 0..127 from the smallest; value =
# A-law rank + 1 (table 3) or mu-law rank (table 4), as the Sun reference has them.
_MU_TO_A_RANK_PLUS_1 = (
    1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8,
    9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24,
    25, 27, 29, 31, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44,
    46, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62,
    64, 65, 66, 67, 68, 69, 70, 71, 72, 73, 74, 75, 76, 77, 78, 79,
    81, 82, 83, 84, 85, 86, 87, 88, 89, 90, 91, 92, 93, 94, 95, 96,
    97, 98, 99, 100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111, 112,
    113, 114, 115, 116, 117, 118, 119, 120, 121, 122, 123, 124, 125, 126, 127, 128,
)
_A_TO_MU_RANK = (
    1, 3, 5, 7, 9, 11, 13, 15, 16, 17, 18, 19, 20, 21, 22, 23,
    24, 25, 26, 27, 28, 29, 30, 31, 32, 32, 33, 33, 34, 34, 35, 35,
    36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 48, 49, 49,
    50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 64,
    65, 66, 67, 68, 69, 70, 71, 72, 73, 74, 75, 76, 77, 78, 79, 79,
    80, 81, 82, 83, 84, 85, 86, 87, 88, 89, 90, 91, 92, 93, 94, 95,
    96, 97, 98, 99, 100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111,
    112, 113, 114, 115, 116, 117, 118, 119, 120, 121, 122, 123, 124, 125, 126, 127,
)


def _code_tables() -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
    codes = np.arange(256, dtype=np.int32)
    positive = codes >= 0x80
    # A mu-law code is the bitwise complement of its rank; A-law inverts the even bits.
    mu_rank = np.where(positive, 0xFF ^ codes, 0x7F ^ codes)
    a_rank = np.where(positive, 0xD5 ^ codes, 0x55 ^ codes)
    a_of_mu = np.asarray(_MU_TO_A_RANK_PLUS_1, np.int32)[mu_rank] - 1
    mu_of_a = np.asarray(_A_TO_MU_RANK, np.int32)[a_rank]
    to_alaw = np.where(positive, 0xD5 ^ a_of_mu, 0x55 ^ a_of_mu).astype(np.uint8)
    to_ulaw = np.where(positive, 0xFF ^ mu_of_a, 0x7F ^ mu_of_a).astype(np.uint8)
    to_alaw.setflags(write=False)
    to_ulaw.setflags(write=False)
    return to_alaw, to_ulaw


ULAW_TO_ALAW, ALAW_TO_ULAW = _code_tables()


class TranscodeError(ValueError):
    """The two formats cannot be converted into each other here."""


class Transcoder:
    """Converts payloads of `source` into payloads of `target`, one or many frames a call."""

    __slots__ = ("source", "target", "_table")

    def __init__(self, source: Codec, target: Codec) -> None:
        if (source.clock_rate, source.channels) != (target.clock_rate, target.channels):
            raise TranscodeError(f"{source.rtpmap} -> {target.rtpmap} needs resampling")
        self.source = source
        self.target = target
        self._table: npt.NDArray[np.uint8] | None = None
        if source is PCMU and target is PCMA:
            self._table = ULAW_TO_ALAW
        elif source is PCMA and target is PCMU:
            self._table = ALAW_TO_ULAW

    def convert_array(self, payload: Payloads) -> Payloads:
        """`payload` (uint8, 1-D or frames x bytes) in the target format."""
        if self._table is not None:
            return self._table[as_payload(payload)]
        return self.target.encode_array(self.source.decode_array(payload))

    def translation(self) -> bytes | None:
        """The code-word table as `bytes.translate` takes it, when the pair has one (G.711).

        The relay converts one packet at a time with it: for a 160-byte
        payload `bytes.translate` is several times faster than a numpy
        look-up, whose call overhead dominates at that size.
        """
        return None if self._table is None else self._table.tobytes()

    def convert(self, payload: bytes | bytearray | memoryview) -> bytes:
        return self.convert_array(np.frombuffer(payload, dtype=np.uint8)).tobytes()

    def __repr__(self) -> str:
        return f"<Transcoder {self.source.rtpmap} -> {self.target.rtpmap}>"


def transcoder(source: Codec | str, target: Codec | str) -> Transcoder:
    """A Transcoder between two codecs, given as objects or rtpmap names."""
    return Transcoder(get(source) if isinstance(source, str) else source,
                      get(target) if isinstance(target, str) else target)


TELEPHONE_EVENT = "TELEPHONE-EVENT/8000"
COMFORT_NOISE = "CN/8000"
_NOT_AUDIO = (TELEPHONE_EVENT, COMFORT_NOISE)


@dataclass(frozen=True, slots=True)
class Format:
    """One payload type of an m= line: `0 PCMU/8000` (encoding in registry spelling)."""

    payload_type: int
    encoding: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "encoding", normalise(self.encoding))

    @classmethod
    def parse(cls, rtpmap: str) -> Format:
        """From an `a=rtpmap` value, `96 telephone-event/8000`; raises ValueError."""
        pt, _, encoding = rtpmap.strip().partition(" ")
        if not (pt.isascii() and pt.isdigit() and int(pt) <= 127) or "/" not in encoding:
            raise ValueError(f"not an rtpmap: {rtpmap!r}")
        return cls(int(pt), encoding.strip())

    def __str__(self) -> str:
        return f"{self.payload_type} {self.encoding}"


class NegotiationError(ValueError):
    """The answer shares no codec with the offer and none can be transcoded."""


@dataclass(frozen=True, slots=True)
class MediaPlan:
    """What the relay does with the audio between an offerer's leg and an answerer's leg.

    `offerer` and `answerer` are the codecs each leg sends and receives, with
    that leg's payload type; `*_events` the telephone-event payload type of
    each leg (None when that leg did not offer or accept RFC 4733 events).
    """

    offerer: Format
    answerer: Format
    offerer_events: int | None = None
    answerer_events: int | None = None

    @property
    def transcoding(self) -> bool:
        return self.offerer.encoding != self.answerer.encoding

    @property
    def passthrough(self) -> bool:
        return not self.transcoding


def can_transcode(source: str, target: str) -> bool:
    """Whether audio in encoding `source` can be converted to `target` (rtpmap names)."""
    try:
        a, b = get(source), get(target)
    except UnknownCodecError:
        return False
    return a is not b and (a.clock_rate, a.channels) == (b.clock_rate, b.channels)


def _audio(formats: Sequence[Format]) -> list[Format]:
    return [f for f in formats if f.encoding not in _NOT_AUDIO]


def _events(formats: Sequence[Format]) -> int | None:
    return next((f.payload_type for f in formats if f.encoding == TELEPHONE_EVENT), None)


def extend_offer(offered: Sequence[Format],
                 transcodable: Sequence[Codec] = (PCMU, PCMA)) -> list[Format]:
    """The offer to forward to the other leg: `offered`, then the codecs of
    `transcodable` that it lacks but the relay can convert to one it has.

    Added codecs go last (RFC 3264 5.1: the order is a preference) so that an
    answerer able to pass media through picks an offered one; a codec without a
    static payload type gets the first dynamic number (96-127) not in use.
    """
    out = list(offered)
    present = {f.encoding for f in out}
    used = {f.payload_type for f in out}
    for codec in transcodable:
        encoding = normalise(codec.rtpmap)
        if encoding in present or not any(can_transcode(f.encoding, encoding)
                                          for f in _audio(offered)):
            continue
        pt = codec.payload_type
        if pt is None or pt in used:
            pt = next((n for n in range(96, 128) if n not in used), None)
            if pt is None:
                continue
        out.append(Format(pt, encoding))
        present.add(encoding)
        used.add(pt)
    return out


def negotiate(offered: Sequence[Format], answered: Sequence[Format]) -> MediaPlan:
    """Pass-through or the transcoding pair for an offer and its answer.

    The answerer's first audio format that the offerer also offered wins
    (pass-through); failing that, its first format that one of the offerer's
    codecs converts to (the offerer's most preferred such codec). Raises
    NegotiationError when neither exists: answer the offerer 488.
    """
    offered_audio = _audio(offered)
    answered_audio = _audio(answered)
    offerer_events, answerer_events = _events(offered), _events(answered)
    by_encoding: dict[str, Format] = {}
    for f in offered_audio:
        by_encoding.setdefault(f.encoding, f)
    for answer in answered_audio:
        if answer.encoding in by_encoding:
            return MediaPlan(by_encoding[answer.encoding], answer, offerer_events,
                             answerer_events)
    for answer in answered_audio:
        for offer in offered_audio:
            if can_transcode(offer.encoding, answer.encoding):
                return MediaPlan(offer, answer, offerer_events, answerer_events)
    raise NegotiationError(
        f"no common or transcodable codec: offered {[str(f) for f in offered_audio]}, "
        f"answered {[str(f) for f in answered_audio]}")
