"""Per-leg media figures (packets, loss, jitter, MOS) from an ng `query` answer. Pure.

Two shapes are read. rtpengine puts packet counts on each stream
(`tags.T.medias[].streams[].stats`) and quality per SSRC in the call's
`SSRC` table (`"average MOS": {"MOS": 10x the score, "jitter": ms,
"packet loss": %}`), the stream naming its SSRC. Our relay puts them on
the stream itself: `MOS` (tenths), `jitter_ms`, `lost` and `expected`
(bencode has no floats; `loss`, `jitter` and `mos` are read too). Figures of a tag
are those of the media the relay received from that leg; anything missing
stays None. Junk never raises: the answer comes from another process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class LegFigures:
    packets: int = 0
    loss: float | None = None  # percent of the packets expected
    jitter: float | None = None  # ms
    mos: float | None = None  # 1.0 to 4.5


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _mos(value: Any) -> float | None:
    score = _number(value)
    if score is None:
        return None
    if score > 5:  # rtpengine sends ten times the score as an integer
        score /= 10
    return round(score, 2) if 1.0 <= score <= 5.0 else None


def _quality(stream: dict[str, Any], ssrcs: dict[str, Any]) -> tuple[Any, Any, Any]:
    loss = stream.get("loss")
    if loss is None:
        lost, expected = _number(stream.get("lost")), _number(stream.get("expected"))
        if lost is not None and expected is not None and expected > 0:
            loss = round(100.0 * max(0.0, lost) / expected, 2)
    jitter = stream.get("jitter", stream.get("jitter_ms"))
    mos = stream.get("mos", stream.get("MOS"))
    ssrc = ssrcs.get(str(stream.get("SSRC", stream.get("ssrc", ""))))
    if isinstance(ssrc, dict):
        average = ssrc.get("average MOS")
        if isinstance(average, dict):
            loss = loss if loss is not None else average.get("packet loss")
            jitter = jitter if jitter is not None else average.get("jitter")
            mos = mos if mos is not None else average.get("MOS")
    return loss, jitter, mos


def leg_figures(answer: dict[str, Any]) -> dict[str, LegFigures]:
    """Figures by tag (the leg names the softswitch gave the relay)."""
    tags = answer.get("tags")
    ssrcs = answer.get("SSRC")
    if not isinstance(tags, dict):
        return {}
    if not isinstance(ssrcs, dict):
        ssrcs = {}
    out: dict[str, LegFigures] = {}
    for tag, monologue in tags.items():
        if not isinstance(monologue, dict) or not isinstance(monologue.get("medias"), list):
            continue
        packets = 0
        loss: float | None = None
        jitter: float | None = None
        mos: float | None = None
        for media in monologue["medias"]:
            streams = media.get("streams") if isinstance(media, dict) else None
            for stream in streams if isinstance(streams, list) else ():
                if not isinstance(stream, dict):
                    continue
                flags = stream.get("flags")
                if isinstance(flags, list) and "RTCP" in flags:
                    continue
                stats = stream.get("stats")
                if isinstance(stats, dict):
                    packets += int(_number(stats.get("packets")) or 0)
                s_loss, s_jitter, s_mos = _quality(stream, ssrcs)
                # The worst stream speaks for the leg.
                if (value := _number(s_loss)) is not None:
                    loss = value if loss is None else max(loss, value)
                if (value := _number(s_jitter)) is not None:
                    jitter = value if jitter is None else max(jitter, value)
                if (value := _mos(s_mos)) is not None:
                    mos = value if mos is None else min(mos, value)
        out[str(tag)] = LegFigures(packets, loss, jitter, mos)
    return out
