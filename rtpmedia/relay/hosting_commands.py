"""The ng commands for media the relay hosts itself (issue 15): `host` and the media commands.

`host` makes the relay the far end of party `from-tag` (it answers that
party's offer, or offers when it sent none); `play media`, `stop media`,
`echo`, `voicemail` and `start/stop recording` with a `from-tag` then tell
it what that party hears. The codec choice, the SDP and the media effects
are `hosting.py`'s; this module applies them to the control's calls through
`commands.CallTable`. An offer or answer that pairs a hosted party with
another party again ends the hosting (`unhost`).
"""

from __future__ import annotations

from typing import Any

from rtpmedia.relay import hosting, sdprewrite
from rtpmedia.relay.calls import Call, Hosting, MediaEnd, Monologue, link
from rtpmedia.relay.commands import CallTable, CommandError, Options, required, text
from rtpmedia.relay.effects import Bind, Effect, Save
from rtpmedia.relay.hosting import Host


def host(table: CallTable, msg: dict[str, Any], now: float,
         effects: list[Effect]) -> dict[str, Any]:
    """The relay answers party `from-tag` itself (or offers, when it sent no SDP)."""
    call_id, tag = required(msg, "call-id"), required(msg, "from-tag")
    body = text(msg, "sdp")
    late_answer = text(msg, "sdp-type").lower() == "answer"
    call = table.calls.get(call_id) or Call(call_id, now, now)
    mono = call.monologues.get(tag) or Monologue(tag, now)
    if late_answer and (mono.hosting is None or tag not in call.monologues):
        raise CommandError("An answer to host, but the relay made no offer to from-tag")
    if body:
        sdp = sdprewrite.parse(body)
        lines = sdprewrite.read(sdp)
        index, chosen = hosting.choose(sdp)
    else:
        sdp, lines, index = None, [], 0
        chosen = Hosting(0, "PCMU", hosting.STATIC["PCMU"], hosting.EVENT_TYPE)
    new_ends = table.allocate(call, [mono], max(len(lines), 1))
    # The callee it had offered to (busy, unanswered) is no longer its peer.
    for other in list(call.monologues.values()):
        if other is not mono and (other.peer == mono.key or mono.peer == other.key):
            table.drop_monologue(call, other, effects)
    mono.peer = None
    call.monologues.setdefault(mono.key, mono)
    table.calls.setdefault(call_id, call)
    effects += [Bind(end) for end in new_ends]
    call.last_signal = now
    version = mono.hosting.version + (0 if late_answer else 1) if mono.hosting else 1
    mono.hosting = Hosting(index, chosen.codec, chosen.payload_type, chosen.event_type,
                           version)
    if lines:
        opts = Options.parse(msg)
        table.learn(mono, lines, opts, effects, offer=not late_answer)
        table.set_strictness(mono, mono, opts)
        mono.answered = True
    end = mono.ends[index]
    end.mux = False  # the relay's SDP never offers or accepts rtcp-mux
    link(call)
    effects += [Host(end, mono.hosting), Save(call)]
    if late_answer:
        return {"result": "ok"}
    if sdp is None:
        return {"result": "ok", "sdp": hosting.offer(table.advertise, end.port, version)}
    return {"result": "ok",
            "sdp": hosting.answer(sdp, mono.hosting, table.advertise, end.port, version)}


def unhost(mono: Monologue, effects: list[Effect]) -> None:
    """An offer or answer pairs a hosted party with another: forwarding again."""
    if mono.hosting is not None:
        effects += [hosting.Unhost(end) for end in mono.ends]
        mono.hosting = None


def hosted_end(table: CallTable, msg: dict[str, Any]) -> MediaEnd:
    """The end of the hosted party `from-tag` (CommandError if the relay does not host it)."""
    call = table.find_call(msg)
    mono = call.monologues.get(required(msg, "from-tag"))
    if mono is None:
        raise CommandError("Unknown from-tag")
    if mono.hosting is None:
        raise CommandError("from-tag is not hosted by the relay")
    return mono.ends[mono.hosting.index]


def media_command(table: CallTable, msg: dict[str, Any], now: float,
                  effects: list[Effect]) -> dict[str, Any]:
    """play media, stop media, echo, start/stop recording, voicemail: for a hosted party."""
    effects.append(hosting.media_effect(msg, hosted_end(table, msg)))
    return {"result": "ok"}  # the glue adds what it learns (a prompt's duration)
