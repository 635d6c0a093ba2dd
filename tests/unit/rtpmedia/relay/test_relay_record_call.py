"""The control's decisions about recording a whole call (issue 15): when, which ends, which file."""

from __future__ import annotations

import pytest

from rtpmedia.relay.calls import Call
from rtpmedia.relay.control import (
    Record,
    Save,
    StopRecording,
    Unbind,
    checked_recording_file,
    default_recording_file,
)
from tests.unit.rtpmedia.relay.test_relay_control import answer, control, offer

NOW = 1_780_000_000.0  # 2026-05-28 (UTC)
DAY = "2026-05-28"


def records(effects: list) -> list[Record]:
    return [e for e in effects if isinstance(e, Record)]


def test_record_call_flag_records_from_the_answer_caller_left() -> None:
    c = control()
    out, effects = offer(c, to="B", now=NOW, **{"record-call": "yes", "sip-call-id": "abc@x"})
    assert out["result"] == "ok" and records(effects) == []  # no pair answered yet: no file
    out, effects = answer(c, now=NOW + 5)
    [rec] = records(effects)
    call = c.calls["c1"]
    assert rec.left is call.monologues["A"].ends[0] and rec.right is call.monologues["B"].ends[0]
    assert rec.file == f"recordings/{DAY}/c1.wav" == call.recording_file
    assert rec.sip_call_id == "abc@x"
    # Before Save, so that the glue attaches the processor before the kernel takes the stream.
    assert effects.index(rec) < next(i for i, e in enumerate(effects) if isinstance(e, Save))


def test_flag_in_the_flags_list_or_on_the_answer_also_counts() -> None:
    c = control()
    offer(c, to="B", now=NOW)
    _, effects = answer(c, now=NOW, flags=["record-call"])
    assert len(records(effects)) == 1
    c2 = control()
    offer(c2, to="B", now=NOW)
    _, effects = answer(c2, now=NOW)
    assert records(effects) == [] and not c2.calls["c1"].record_call


def test_re_invite_from_the_callee_keeps_the_caller_on_the_left_and_the_same_file() -> None:
    c = control()
    offer(c, to="B", now=NOW, **{"record-call": "yes"})
    answer(c, now=NOW)
    # A re-INVITE from B, the next day: B offers, A answers.
    _, effects = offer(c, frm="B", to="A", now=NOW + 86400)
    [rec] = records(effects)
    assert rec.left.tag == "A" and rec.right.tag == "B"
    assert rec.file == f"recordings/{DAY}/c1.wav"


def test_start_and_stop_recording_without_from_tag() -> None:
    c = control()
    offer(c, to="B", now=NOW)
    answer(c, now=NOW)
    out, effects = c.handle({"command": "start recording", "call-id": "c1",
                             "recording-file": "calls/mine"}, NOW)
    assert out == {"result": "ok"}
    [rec] = records(effects)
    assert rec.file == "calls/mine.wav"
    assert c.handle({"command": "query", "call-id": "c1"}, NOW)[0]["recording"] == 1
    out, effects = c.handle({"command": "stop recording", "call-id": "c1"}, NOW)
    assert out == {"result": "ok"}
    assert any(isinstance(e, StopRecording) for e in effects)
    assert any(isinstance(e, Save) for e in effects) and not c.calls["c1"].record_call
    # One party's recording (a hosted party) is the other command's job.
    out, _ = c.handle({"command": "start recording", "call-id": "c1", "from-tag": "A"}, NOW)
    assert out["result"] == "error"


@pytest.mark.parametrize("bad", ["/etc/passwd", "../x.wav", "a/../../b", "", "a\\b.wav"])
def test_a_file_outside_the_media_dir_is_refused(bad: str) -> None:
    c = control()
    out, effects = offer(c, to="B", now=NOW, **{"record-call": "yes", "recording-file": bad})
    if bad == "":
        assert out["result"] == "ok"  # no name: the default one
    else:
        assert out["result"] == "error" and "relative path" in out["error-reason"]
        assert c.calls == {} and effects == []  # refused before anything was allocated


def test_default_file_is_dated_in_utc_and_a_safe_name() -> None:
    assert default_recording_file("../x/y z", NOW) == f"recordings/{DAY}/_x_y_z.wav"
    assert checked_recording_file("a/b.WAV") == "a/b.WAV"


def test_delete_unbinds_the_recorded_ends_and_answers_the_file() -> None:
    c = control()
    offer(c, to="B", now=NOW, **{"record-call": "yes"})
    answer(c, now=NOW)
    ends = c.calls["c1"].ends()
    out, effects = c.handle({"command": "delete", "call-id": "c1"}, NOW + 60)
    assert out["recording-file"] == f"recordings/{DAY}/c1.wav"
    # The glue's engine closes (and so finishes) the recording with the ends' Unbind.
    assert {e.end for e in effects if isinstance(e, Unbind)} == set(ends)


def test_restore_goes_on_recording_a_stored_recorded_call() -> None:
    c = control()
    offer(c, to="B", now=NOW, **{"record-call": "yes", "sip-call-id": "abc@x"})
    answer(c, now=NOW)
    stored = Call.from_record(c.calls["c1"].record())
    fresh = control()
    effects = fresh.restore(stored, NOW + 100)
    [rec] = records(effects)
    assert rec.file == f"recordings/{DAY}/c1.wav" and rec.sip_call_id == "abc@x"
    assert (rec.left.tag, rec.right.tag) == ("A", "B")


def test_cancelled_fork_is_never_recorded() -> None:
    c = control()
    offer(c, via="b1", now=NOW, **{"record-call": "yes"})
    offer(c, via="b2", now=NOW, **{"record-call": "yes"})
    _, effects = answer(c, to="B2", via="b2", now=NOW)
    [rec] = records(effects)
    assert rec.right.tag == "B2"

