"""The voicemail store on real files: deposits filed, listing, heard, delete, rejects."""

from __future__ import annotations

import json
import wave
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from softswitch.voicemail import (
    INCOMING,
    REJECTED,
    VOICEMAIL_DIR,
    MailboxCounts,
    VoicemailError,
    VoicemailStore,
    deposit,
    valid_mailbox,
)

BOX = "1001@pbx.example.com"
ZONE = timezone(timedelta(hours=2))


def recording(folder: Path, seconds: float = 0.5) -> Path:
    path = folder / "rec.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x01\x00" * int(8000 * seconds))
    return path


def test_a_deposit_is_filed_once_with_its_metadata(tmp_path: Path) -> None:
    at = datetime(2026, 12, 5, 18, 30, tzinfo=ZONE)
    message = deposit(tmp_path, BOX, recording(tmp_path), caller="1002", caller_name="Bob",
                      received_at=at, duration=0.5, call_id="abc")
    store = VoicemailStore(tmp_path)
    assert store.messages(BOX) == []  # not filed until the server ingests it
    filed, problems = store.ingest()
    assert filed == [message] and problems == []
    assert store.ingest() == ([], [])
    [listed] = store.messages(BOX)
    assert listed.caller == "1002" and listed.received == at
    assert listed.received_at.endswith("+02:00")
    with wave.open(str(store.wav_path(BOX, listed.id))) as w:
        assert w.getnframes() == 4000
    assert store.counts(BOX) == MailboxCounts(new=1)
    assert not (tmp_path / "rec.wav").exists()  # moved, not copied
    assert list((tmp_path / VOICEMAIL_DIR / INCOMING).iterdir()) == []


def test_heard_and_delete_change_counts_and_the_folder_stamp(tmp_path: Path) -> None:
    store = VoicemailStore(tmp_path)
    for _ in range(2):
        deposit(tmp_path, BOX, recording(tmp_path), caller="1002", duration=0.5, urgent=True)
    store.ingest()
    first, second = store.messages(BOX)
    assert first.id < second.id
    stamp = store.stamp(BOX)
    store.mark_heard(BOX, first.id)
    assert store.counts(BOX) == MailboxCounts(new=1, old=1, new_urgent=1, old_urgent=1)
    assert store.stamp(BOX) != stamp
    store.delete(BOX, second.id)
    assert [m.id for m in store.messages(BOX)] == [first.id]
    with pytest.raises(VoicemailError):
        store.delete(BOX, second.id)
    with pytest.raises(VoicemailError):
        store.message(BOX, "../../etc/passwd")


def test_a_deposit_with_bad_metadata_goes_to_rejected(tmp_path: Path) -> None:
    message = deposit(tmp_path, BOX, recording(tmp_path), caller="x", duration=1)
    meta = tmp_path / VOICEMAIL_DIR / INCOMING / f"{message.id}.json"
    meta.write_text(json.dumps({"id": message.id, "mailbox": "../x", "received_at": "no"}))
    filed, problems = VoicemailStore(tmp_path).ingest()
    assert filed == [] and len(problems) == 1
    assert sorted(p.suffix for p in (tmp_path / VOICEMAIL_DIR / REJECTED).iterdir()) == \
        [".json", ".wav"]


def test_a_crash_between_the_two_renames_is_finished_by_the_next_ingest(tmp_path: Path) -> None:
    message = deposit(tmp_path, BOX, recording(tmp_path), caller="x", duration=1)
    incoming = tmp_path / VOICEMAIL_DIR / INCOMING
    box = tmp_path / VOICEMAIL_DIR / BOX
    box.mkdir(parents=True)
    (incoming / f"{message.id}.wav").rename(box / f"{message.id}.wav")
    store = VoicemailStore(tmp_path)
    assert store.messages(BOX) == []
    assert store.ingest()[0] == [message]
    assert store.messages(BOX) == [message]


@pytest.mark.parametrize("name", ["", "1001", "../1001@x", "a/b@x", ".hidden@x", "1001@",
                                  "incoming", "x@-bad/"])
def test_mailbox_names_that_are_not_user_at_domain_are_refused(name: str) -> None:
    assert not valid_mailbox(name)


def test_deposit_refuses_a_time_without_zone_and_a_bad_mailbox(tmp_path: Path) -> None:
    with pytest.raises(VoicemailError):
        deposit(tmp_path, BOX, recording(tmp_path), caller="x", duration=1,
                received_at=datetime(2026, 1, 1))
    with pytest.raises(VoicemailError):
        deposit(tmp_path, "../etc", recording(tmp_path), caller="x", duration=1)
