"""Recording a whole call (issue 15): the `record-call` flag and `start/stop recording`.

The decisions only: *that* a call is recorded (asked by an offer or answer
with `record-call`, or by `start recording` without a `from-tag`), which
file (recordings/<UTC date>/<call-id>.wav unless `recording-file` names
one inside the media dir), and which pair of ends, once both parties have
answered. They come out as `effects.Record`/`StopRecording`; the tap that
writes the file is `recording.py`. With a `from-tag`, `start/stop
recording` concern one party the relay hosts (`hosting_commands`).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from rtpmedia.relay.calls import Call
from rtpmedia.relay.commands import CallTable, CommandError, Options, text
from rtpmedia.relay.effects import Effect, Record, Save, StopRecording
from rtpmedia.relay.hosting_commands import media_command

RECORDINGS = "recordings"
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._@+=-]")


def default_recording_file(call_id: str, started: float) -> str:
    """`recordings/YYYY-MM-DD/<call-id>.wav` (UTC date), the call-id made a safe file name."""
    day = time.strftime("%Y-%m-%d", time.gmtime(started))
    name = _UNSAFE_NAME.sub("_", call_id).lstrip(".") or "call"
    return f"{RECORDINGS}/{day}/{name}.wav"


def checked_recording_file(path: str) -> str:
    """A file a command names: relative to the media dir, no `..`, `.wav` added if missing."""
    p = PurePosixPath(path)
    if not path or p.is_absolute() or "\\" in path or any(part == ".." for part in p.parts):
        raise CommandError(f"recording-file {path!r} must be a relative path inside the media dir")
    return str(p) if p.suffix.lower() == ".wav" else f"{p}.wav"


@dataclass(frozen=True, slots=True)
class RecordingAsk:
    """What a command asks of the call's recording."""

    file: str  # "" for the default name
    sip_call_id: str


def recording_asked(msg: dict[str, Any], opts: Options) -> RecordingAsk | None:
    """What an offer, answer or `start recording` asks of the call's recording (None: nothing).

    `recording-file` (a path relative to the media dir) names the file; by
    default it is recordings/<UTC date>/<call-id>.wav, fixed when recording
    starts. `sip-call-id` goes into the metadata (the ng call-id may be the
    B2BUA's own id). A file outside the media dir is refused here, before
    the command changes anything.
    """
    if not opts.record_call:
        return None
    file = text(msg, "recording-file")
    return RecordingAsk(checked_recording_file(file) if file else "", text(msg, "sip-call-id"))


def want_recording(call: Call, ask: RecordingAsk | None) -> None:
    """The call is to be recorded (from now on), to the file asked if it has none yet."""
    if ask is None:
        return
    call.record_call = True
    if ask.file and not call.recording_file:
        call.recording_file = ask.file
    if ask.sip_call_id:
        call.sip_call_id = ask.sip_call_id


def record_if_paired(call: Call, now: float, effects: list[Effect]) -> None:
    """A recorded call whose two parties are paired: record (or keep recording) their audio.

    The left channel is the caller: the call's first monologue (created by
    the first offer, never renamed); the right one its peer. Early media
    before an answer is not recorded (forks come and go until then).
    """
    if not call.record_call:
        return
    monos = list(call.monologues.values())
    left = next((m for m in monos if m.peer is not None and m.peer in call.monologues), None)
    if left is None:
        return
    right = call.monologues[left.peer]  # type: ignore[index]
    if not (left.answered and right.answered):
        return
    pair = next(((a, b) for a, b in zip(left.ends, right.ends, strict=False)
                 if a.media == "audio" and b.media == "audio"), None)
    if pair is None:
        return
    if not call.recording_file:
        call.recording_file = default_recording_file(call.call_id, now)
    effects.append(Record(call.call_id, call.recording_file, pair[0], pair[1], call.sip_call_id))


def start_recording(table: CallTable, msg: dict[str, Any], now: float,
                    effects: list[Effect]) -> dict[str, Any]:
    """rtpengine's `start recording`: the whole call from now (a hosted party's with a from-tag)."""
    if "from-tag" in msg:  # one party the relay hosts (issue 15)
        return media_command(table, msg, now, effects)
    ask = recording_asked(msg, Options(record_call=True))
    call = table.find_call(msg)
    want_recording(call, ask)
    record_if_paired(call, now, effects)
    effects.append(Save(call))
    return {"result": "ok"}


def stop_recording(table: CallTable, msg: dict[str, Any], now: float,
                   effects: list[Effect]) -> dict[str, Any]:
    """`stop recording`: the call's recording ends (its file is kept); a hosted party's with a from-tag."""
    if "from-tag" in msg:  # one party the relay hosts (issue 15)
        return media_command(table, msg, now, effects)
    call = table.find_call(msg)
    if call.record_call:
        call.record_call = False
        effects.append(StopRecording(call.call_id))
        effects.append(Save(call))
    return {"result": "ok"}
