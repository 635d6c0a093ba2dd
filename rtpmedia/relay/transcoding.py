"""Which payloads the relay converts between two parties, decided from their offer and answer.

rtpengine's model (`codec: {transcode: [...]}` in an offer): the offer
forwarded to the other party gets the asked codecs it lacks appended *after*
its own (RFC 3264 5.1: order is preference), so an answerer that shares a
codec with the offerer picks it and nothing is converted. When the answer
picks only codecs the offerer did not offer, the offerer is answered with its
own codec (`codecs.transcode.negotiate`) and the relay converts both ways.

The outcome per media line is a pair of `Route` tables, one per direction:
for each payload type a party may send, the payload type the other party
gets and whether its payload is converted. RFC 4733 telephone-events pass
with their payload type mapped when both parties have them; when the relay
transcodes and only the sender has them, a DTMF event becomes its two tones
in the receiver's codec (a Route from telephone-event to that codec).
Otherwise they are dropped.
Everything here is pure: `control.py` calls it, `bridge.py` carries it out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rtpmedia.codecs import UnknownCodecError, get
from rtpmedia.codecs.transcode import (
    TELEPHONE_EVENT,
    Format,
    MediaPlan,
    NegotiationError,
    can_transcode,
    extend_offer,
    negotiate,
)
from softswitch.sip.sdp import MediaDescription

__all__ = ["Format", "MediaPlan", "NegotiationError", "Route", "Routes", "StreamPlan",
           "answer_formats", "formats_of", "offer_formats", "plan_streams"]


@dataclass(frozen=True, slots=True)
class Route:
    """Packets of payload type `source` leave as `target`, converted when the encodings differ."""

    source: int
    target: int
    source_encoding: str
    target_encoding: str

    @property
    def converts(self) -> bool:
        return self.source_encoding != self.target_encoding


Routes = tuple[Route, ...]


@dataclass(frozen=True, slots=True)
class StreamPlan:
    """One media line between an offerer and an answerer: how each direction is treated."""

    plan: MediaPlan
    offerer_to_answerer: Routes
    answerer_to_offerer: Routes


def formats_of(media: MediaDescription) -> list[Format]:
    """The payload types of an m= line that have a name and a clock rate, in its order."""
    out: list[Format] = []
    for codec in media.codecs:
        if not codec.name or not codec.clock_rate:
            continue
        encoding = f"{codec.name}/{codec.clock_rate}"
        if codec.channels and codec.channels > 1:
            encoding += f"/{codec.channels}"
        out.append(Format(codec.payload_type, encoding))
    return out


def offer_formats(offered: Sequence[Format], asked: Sequence[str]) -> list[Format]:
    """`offered`, then the codecs of `asked` (names such as PCMA) that the relay can convert to."""
    codecs = []
    for name in asked:
        try:
            codecs.append(get(name if "/" in name else f"{name}/8000"))
        except UnknownCodecError:
            continue
    return extend_offer(offered, codecs)


def answer_formats(offered: Sequence[Format], answered: Sequence[Format],
                   plan: MediaPlan) -> list[Format]:
    """What the offerer is answered: the answer's formats that it offered, in its numbering.

    When the relay converts, that is the offerer's codec of the plan alone,
    and its telephone-event if it offered one.
    """
    offered_by_encoding: dict[str, Format] = {}
    for f in offered:
        offered_by_encoding.setdefault(f.encoding, f)
    if plan.transcoding:
        out = [plan.offerer]
        # The offerer keeps its events even when the answerer has none: the
        # relay plays them to the answerer as tones (see `_routes`).
        if plan.offerer_events is not None:
            out.append(Format(plan.offerer_events, TELEPHONE_EVENT))
        return out
    return [offered_by_encoding[f.encoding] for f in answered if f.encoding in offered_by_encoding]


def plan_streams(offered: Sequence[Format], answered: Sequence[Format]) -> StreamPlan:
    """The routes of both directions; raises NegotiationError when nothing fits."""
    plan = negotiate(offered, answered)
    # The offerer sends what it was answered (RFC 3264 6.1); the answerer may
    # send any codec of its answer, one the offerer never offered included.
    to_offerer = answer_formats(offered, answered, plan)
    return StreamPlan(plan, _routes(to_offerer, answered, plan.answerer, plan.transcoding),
                      _routes(answered, to_offerer, plan.offerer, plan.transcoding))


def _routes(sent: Sequence[Format], received: Sequence[Format], fallback: Format,
            tones: bool = False) -> Routes:
    """For each format a party may send, what the receiving party accepts of it.

    Same encoding: passed, renumbered to the receiver's payload type. Audio
    the receiver lacks: converted to `fallback` (the receiver's codec of the
    plan) when possible, else dropped (no route). With `tones`, events the
    receiver lacks become tones in `fallback`.
    """
    by_encoding: dict[str, Format] = {}
    for f in received:
        by_encoding.setdefault(f.encoding, f)
    out: list[Route] = []
    for f in sent:
        same = by_encoding.get(f.encoding)
        if same is not None:
            out.append(Route(f.payload_type, same.payload_type, f.encoding, f.encoding))
        elif can_transcode(f.encoding, fallback.encoding) or \
                (tones and f.encoding == TELEPHONE_EVENT):
            out.append(Route(f.payload_type, fallback.payload_type, f.encoding,
                             fallback.encoding))
    return tuple(out)
