"""A call as the management API shows it: a summary line, or the detail.

Everything comes from the call's `CallSnapshot` (legs, dialogs, timings,
routing), the `MessageLog` (ringing time, user agents, the ladder) and one
source of media figures, `MediaFigures`: until the relay reports per-stream
figures, `NoMedia` gives none and the figures are null in JSON and "-" in
the CLI. Wiring the relay is one class with `streams(uuid)`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Protocol

from softswitch.b2bua.snapshot import CallSnapshot, LegSnapshot
from softswitch.management.messages import Captured, MessageLog
from softswitch.sip.errors import MessageError
from softswitch.sip.message import Response
from softswitch.sip.sdp import SessionDescription


@dataclass(frozen=True, slots=True)
class StreamFigures:
    """What the relay measured of one stream (one leg's RTP towards us)."""

    leg: str  # the leg's name in the snapshot: "a", "b1"...
    packets: int | None = None
    lost: int | None = None
    loss: float | None = None  # fraction 0..1
    jitter_ms: float | None = None
    rtt_ms: float | None = None
    mos: float | None = None  # E-model, ITU-T G.107
    kernel: bool | None = None  # forwarded in the kernel


class MediaFigures(Protocol):
    """Where per-stream media figures come from (the relay, once it is there)."""

    def streams(self, uuid: str) -> list[StreamFigures]: ...

    def relays(self) -> list[dict[str, Any]]: ...


class NoMedia:
    """Direct media: the softswitch sees no RTP, so there are no figures."""

    def streams(self, uuid: str) -> list[StreamFigures]:
        return []

    def relays(self) -> list[dict[str, Any]]:
        return []


def codecs_of(sdp: str) -> list[str]:
    """The codecs of the first active audio stream of an SDP body, as NAME/RATE."""
    if not sdp:
        return []
    try:
        session = SessionDescription.parse(sdp.encode("latin-1", "replace"))
    except MessageError:
        return []
    for media in session.media:
        if media.media == "audio" and media.port != 0:
            return [f"{c.name}/{c.clock_rate}" if c.clock_rate else str(c.name)
                    for c in media.codecs if c.name]
    return []


def _worst(values: list[float | None], highest: bool) -> float | None:
    known = [v for v in values if v is not None]
    if not known:
        return None
    return max(known) if highest else min(known)


def summary(call: CallSnapshot, streams: list[StreamFigures], now: float) -> dict[str, Any]:
    """One line of `softswitch calls`: who, state, how long, codecs, the worst quality."""
    bridged = call.leg(call.bridge[1]) or call.leg(call.bridge[0])
    codecs = codecs_of(bridged.sdp_sent) if bridged is not None else []
    end = call.ended if call.ended is not None else now
    return {
        "id": call.uuid,
        "call_id": call.call_id,
        "caller": call.caller,
        "callee": call.callee or call.dialled,
        "dialled": call.dialled,
        "state": call.state,
        "started": call.started,
        "answered": call.answered,
        "ended": call.ended,
        "duration": round(end - call.started, 3),
        "talking": round(end - call.answered, 3) if call.answered is not None else None,
        "codecs": [c for c in codecs if not c.startswith("telephone-event")],
        # RTP packets the relay received from all legs (None without relay figures).
        "packets": sum(s.packets or 0 for s in streams) if streams else None,
        "loss": _worst([s.loss for s in streams], highest=True),
        "jitter_ms": _worst([s.jitter_ms for s in streams], highest=True),
        "mos": _worst([s.mos for s in streams], highest=False),
        "hangup_cause": call.hangup_cause or None,
    }


def _leg(leg: LegSnapshot, log: MessageLog) -> dict[str, Any]:
    dialog = leg.dialog
    return {
        "name": leg.name,
        "caller_side": leg.caller_side,
        "state": leg.state,
        "target": leg.target,
        "call_id": leg.id.call_id,
        "local_tag": leg.id.local_tag,
        "remote_tag": dialog.remote_tag if dialog is not None else leg.id.remote_tag,
        "remote": f"{leg.host}:{leg.port}",
        "transport": leg.transport,
        "remote_target": dialog.remote_target if dialog is not None else None,
        "user_agent": log.first_header(leg.id.call_id, ("user-agent", "server")),
        "codecs": codecs_of(leg.sdp_sent),
        "session_interval": leg.session_interval or None,
        "final_status": leg.final_status,
    }


def _ringing(call: CallSnapshot, messages: list[Captured]) -> float | None:
    """When the caller was first told the call rings: our first 180/183 on its Call-ID."""
    for captured in messages:
        message = captured.message
        if (not captured.received and isinstance(message, Response)
                and message.status in (180, 183) and message.get("call-id") == call.call_id):
            return captured.time
    return None


def detail(call: CallSnapshot, log: MessageLog, streams: list[StreamFigures],
           now: float, finished: bool) -> dict[str, Any]:
    """Everything about one call: legs, timings, routing, streams and its messages."""
    messages = log.messages_of(call)
    ringing = _ringing(call, messages)
    end = call.ended if call.ended is not None else now
    out = summary(call, streams, now)
    out.update({
        "finished": finished,
        "context": call.context,
        "rule": call.rule,
        "trunk": call.trunk,
        "caller_name": call.caller_name,
        "sip_code": call.sip_code,
        "disposition": call.disposition,
        "hangup_side": call.hangup_side or None,
        "timings": {
            "started": call.started,
            "ringing": ringing,
            "answered": call.answered,
            "ended": call.ended,
            # Post-dial delay: until it rang, or was answered without ringing.
            "setup": round(next(t for t in (ringing, call.answered, end) if t is not None)
                           - call.started, 3),
            "answer_delay": round(call.answered - call.started, 3)
            if call.answered is not None else None,
            "duration": round(end - call.started, 3),
        },
        "bridge": list(call.bridge),
        "legs": [_leg(leg, log) for leg in call.legs],
        "streams": [asdict(s) for s in streams],
        "messages": [m.as_dict() for m in messages],
    })
    return out
