"""The voicemail store: mailboxes of WAV messages in the data dir.

Layout (DATA = the server's data dir):

    DATA/voicemail/<mailbox>/<id>.wav     the message, 8 kHz mono 16-bit
    DATA/voicemail/<mailbox>/<id>.json    its metadata (`VoiceMessage`)
    DATA/voicemail/incoming/              deposits waiting to be filed
    DATA/voicemail/rejected/              deposits that could not be filed

A mailbox is named by its owner's address of record, `user@domain`.

Metadata is a JSON sidecar per message, not a SQLite table: three parties
touch a mailbox (the relay that records, the server that notifies, the CLI
of an operator), and a pair of files that appears and disappears by
`rename` needs no shared writer, no lock and no schema migration; an
operator can copy, inspect or back up a mailbox with plain tools, as
Asterisk's `msg0000.txt` sidecars allow. Mailboxes hold tens of messages,
so listing a folder is cheap.

Every write is durable before it counts: the data goes to a temporary file
that is fsynced, renamed into place, and the folder is fsynced.

The seam with the media relay is `deposit`: the relay (another process)
writes the finished recording and its metadata into `incoming/` (the JSON
last, by rename, so a half-written deposit is never seen), and the server's
poll (`VoicemailStore.ingest`) files it into the mailbox and notifies the
owner's phones. Either process may be restarted at any point: a deposit is
filed once, whatever happened in between.

Standard library only (with `rtpmedia.durable`, which is too): the signalling
process imports this module.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rtpmedia.durable import fsync_dir

VOICEMAIL_DIR = "voicemail"
INCOMING = "incoming"
REJECTED = "rejected"

# user@domain, with the user characters of RFC 3261 25.1 except "/" (a path
# separator) and a host name; never "." or ".." or a name starting with one.
_MAILBOX = re.compile(r"[A-Za-z0-9\-_!~*'()&=+$,;?%][A-Za-z0-9\-_.!~*'()&=+$,;?%]*"
                      r"@[A-Za-z0-9][A-Za-z0-9.\-]*")
_MESSAGE_ID = re.compile(r"[0-9]{8}T[0-9]{9}Z-[0-9a-f]{6}")


class VoicemailError(Exception):
    """A mailbox or message that does not exist or cannot be read or written."""


def valid_mailbox(name: str) -> bool:
    return _MAILBOX.fullmatch(name) is not None and len(name) <= 255


@dataclass(frozen=True, slots=True)
class VoiceMessage:
    """One message's metadata; `received_at` is ISO 8601 with its zone."""

    id: str
    mailbox: str
    caller: str  # the caller's number or user ("" if unknown)
    caller_name: str
    received_at: str
    duration: float  # seconds of audio
    heard: bool = False
    urgent: bool = False
    call_id: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: Any) -> VoiceMessage:
        """Read metadata; VoicemailError if it is not a message's."""
        try:
            if not isinstance(data, dict):
                raise TypeError("not an object")
            message = cls(
                id=str(data["id"]), mailbox=str(data["mailbox"]),
                caller=str(data.get("caller", "")), caller_name=str(data.get("caller_name", "")),
                received_at=str(data["received_at"]), duration=float(data["duration"]),
                heard=bool(data.get("heard", False)), urgent=bool(data.get("urgent", False)),
                call_id=str(data.get("call_id", "")))
            datetime.fromisoformat(message.received_at)
        except (KeyError, TypeError, ValueError) as exc:
            raise VoicemailError(f"bad message metadata: {exc}") from None
        if not _MESSAGE_ID.fullmatch(message.id) or not valid_mailbox(message.mailbox):
            raise VoicemailError(f"bad message id or mailbox: {message.id!r} {message.mailbox!r}")
        if message.duration < 0:
            raise VoicemailError("negative duration")
        return message

    @property
    def received(self) -> datetime:
        return datetime.fromisoformat(self.received_at)


@dataclass(frozen=True, slots=True)
class MailboxCounts:
    new: int = 0
    old: int = 0
    new_urgent: int = 0
    old_urgent: int = 0


def new_message_id(at: datetime) -> str:
    """Sortable by time of receipt, unique by a random suffix."""
    utc = at.astimezone(UTC)
    return f"{utc:%Y%m%dT%H%M%S}{utc.microsecond // 1000:03d}Z-{secrets.token_hex(3)}"


# -- durable file operations --------------------------------------------------------------

def _write_durably(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def _copy_durably(source: Path, path: Path, *, move: bool) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    if move:
        try:
            os.replace(source, tmp)  # same file system: no copy
        except OSError:
            shutil.copyfile(source, tmp)
            source.unlink()
    else:
        shutil.copyfile(source, tmp)
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


# -- the relay's side of the seam ----------------------------------------------------------

def deposit(data_dir: Path, mailbox: str, wav: Path, *, caller: str, caller_name: str = "",
            received_at: datetime | None = None, duration: float, call_id: str = "",
            urgent: bool = False, move: bool = True) -> VoiceMessage:
    """Leave a finished recording for `mailbox`; the server files it and lights the phones.

    `wav` is the recording (8 kHz mono 16-bit, as the relay's recorder
    writes it); it is moved (or copied with `move=False`) into
    DATA/voicemail/incoming/. Returns the message as it will be filed.
    VoicemailError for a mailbox name that cannot be one.
    """
    if not valid_mailbox(mailbox):
        raise VoicemailError(f"not a mailbox name: {mailbox!r}")
    at = received_at or datetime.now().astimezone()
    if at.tzinfo is None:
        raise VoicemailError("received_at needs a time zone")
    message = VoiceMessage(id=new_message_id(at), mailbox=mailbox, caller=caller,
                           caller_name=caller_name, received_at=at.isoformat(),
                           duration=round(duration, 3), urgent=urgent, call_id=call_id)
    incoming = data_dir / VOICEMAIL_DIR / INCOMING
    incoming.mkdir(parents=True, exist_ok=True)
    _copy_durably(wav, incoming / f"{message.id}.wav", move=move)
    # The JSON last: the server files only deposits whose JSON is there.
    _write_durably(incoming / f"{message.id}.json", message.to_json().encode())
    return message


# -- the store ----------------------------------------------------------------------------

class VoicemailStore:
    """The mailboxes under DATA/voicemail; each call reads the files as they are now."""

    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir / VOICEMAIL_DIR

    def folder(self, mailbox: str) -> Path:
        if not valid_mailbox(mailbox):
            raise VoicemailError(f"not a mailbox name: {mailbox!r}")
        return self.root / mailbox

    def mailboxes(self) -> list[str]:
        """Every mailbox that has a folder, sorted."""
        try:
            names = [p.name for p in self.root.iterdir() if p.is_dir()]
        except FileNotFoundError:
            return []
        return sorted(n for n in names if valid_mailbox(n))

    def stamps(self) -> dict[str, int]:
        """Every mailbox with its folder's `stamp`, from one scan of DATA/voicemail.

        What the server polls every second: one directory read and one stat
        per mailbox, nothing per message.
        """
        found: dict[str, int] = {}
        try:
            with os.scandir(self.root) as entries:
                for entry in entries:
                    if entry.name in (INCOMING, REJECTED) or not valid_mailbox(entry.name):
                        continue
                    try:
                        if entry.is_dir():
                            found[entry.name] = entry.stat().st_mtime_ns
                    except FileNotFoundError:
                        continue  # deleted while we looked
        except FileNotFoundError:
            pass
        return found

    def messages(self, mailbox: str) -> list[VoiceMessage]:
        """The messages of `mailbox`, oldest first; unreadable sidecars are skipped."""
        return sorted(self._read_all(mailbox), key=lambda m: m.id)

    def _read_all(self, mailbox: str) -> Iterator[VoiceMessage]:
        folder = self.folder(mailbox)
        try:
            entries = list(folder.iterdir())
        except FileNotFoundError:
            return
        for path in entries:
            if path.suffix != ".json" or path.name.startswith("."):
                continue
            try:
                message = VoiceMessage.from_dict(json.loads(path.read_text()))
            except (OSError, ValueError, VoicemailError):
                continue
            if message.id == path.stem and path.with_suffix(".wav").exists():
                yield message

    def message(self, mailbox: str, message_id: str) -> VoiceMessage:
        path = self.folder(mailbox) / f"{message_id}.json"
        if not _MESSAGE_ID.fullmatch(message_id) or not path.exists():
            raise VoicemailError(f"no message {message_id} in mailbox {mailbox}")
        try:
            return VoiceMessage.from_dict(json.loads(path.read_text()))
        except (OSError, ValueError) as exc:
            raise VoicemailError(f"{path}: {exc}") from None

    def wav_path(self, mailbox: str, message_id: str) -> Path:
        return self.folder(mailbox) / f"{self.message(mailbox, message_id).id}.wav"

    def counts(self, mailbox: str) -> MailboxCounts:
        new = old = new_urgent = old_urgent = 0
        for m in self._read_all(mailbox):
            if m.heard:
                old += 1
                old_urgent += m.urgent
            else:
                new += 1
                new_urgent += m.urgent
        return MailboxCounts(new, old, new_urgent, old_urgent)

    def mark_heard(self, mailbox: str, message_id: str, heard: bool = True) -> VoiceMessage:
        message = replace(self.message(mailbox, message_id), heard=heard)
        _write_durably(self.folder(mailbox) / f"{message_id}.json", message.to_json().encode())
        return message

    def delete(self, mailbox: str, message_id: str) -> VoiceMessage:
        """Remove a message: the JSON first, so a crash never leaves a message without audio."""
        message = self.message(mailbox, message_id)
        folder = self.folder(mailbox)
        (folder / f"{message_id}.json").unlink()
        try:
            (folder / f"{message_id}.wav").unlink()
        except FileNotFoundError:
            pass
        fsync_dir(folder)
        return message

    def stamp(self, mailbox: str) -> int | None:
        """Changes when the folder's entries change (a message filed, renamed, deleted)."""
        try:
            return self.folder(mailbox).stat().st_mtime_ns
        except FileNotFoundError:
            return None

    def ingest(self) -> tuple[list[VoiceMessage], list[str]]:
        """File the complete deposits of incoming/; return them and the problems met.

        A deposit whose metadata is unreadable goes to rejected/ (with its
        audio), so it is not retried for ever and an operator can look.
        """
        incoming = self.root / INCOMING
        try:
            entries = sorted(incoming.glob("*.json"))
        except FileNotFoundError:
            return [], []
        filed: list[VoiceMessage] = []
        problems: list[str] = []
        for meta in entries:
            if meta.name.startswith("."):
                continue
            wav = meta.with_suffix(".wav")
            try:
                message = VoiceMessage.from_dict(json.loads(meta.read_text()))
                if message.id != meta.stem:
                    raise VoicemailError("file name and id differ")
            except (OSError, ValueError, VoicemailError) as exc:
                problems.append(f"{meta.name}: {exc}")
                self._reject(meta, wav)
                continue
            folder = self.folder(message.mailbox)
            folder.mkdir(parents=True, exist_ok=True)
            target_wav = folder / wav.name
            if wav.exists():
                os.replace(wav, target_wav)
            elif not target_wav.exists():
                problems.append(f"{meta.name}: no audio")
                self._reject(meta, wav)
                continue
            # Audio first, then the metadata that makes it a message.
            fsync_dir(folder)
            os.replace(meta, folder / meta.name)
            fsync_dir(folder)
            fsync_dir(incoming)
            filed.append(message)
        return filed, problems

    def _reject(self, meta: Path, wav: Path) -> None:
        rejected = self.root / REJECTED
        rejected.mkdir(parents=True, exist_ok=True)
        for path in (wav, meta):
            if path.exists():
                os.replace(path, rejected / path.name)
        fsync_dir(rejected)


class MailboxAccess:
    """One voicemail call's view of one mailbox: what `rtpmedia.voicemail_session` needs.

    For a caller leaving a message, `caller`/`caller_name`/`call_id` go into
    the deposited message's metadata; for the owner's menu, `mark_heard`,
    `delete` and `audio` work on the mailbox directly.
    """

    def __init__(self, data_dir: Path, mailbox: str, *, caller: str = "", caller_name: str = "",
                 call_id: str = "") -> None:
        if not valid_mailbox(mailbox):
            raise VoicemailError(f"not a mailbox name: {mailbox!r}")
        self.data_dir = data_dir
        self.mailbox = mailbox
        self.caller = caller
        self.caller_name = caller_name
        self.call_id = call_id
        self.store = VoicemailStore(data_dir)

    def deposit(self, recording: Path, duration: float) -> None:
        deposit(self.data_dir, self.mailbox, recording, caller=self.caller,
                caller_name=self.caller_name, duration=duration, call_id=self.call_id)

    def mark_heard(self, message_id: str) -> None:
        self.store.mark_heard(self.mailbox, message_id)

    def delete(self, message_id: str) -> None:
        self.store.delete(self.mailbox, message_id)

    def audio(self, message_id: str) -> Path:
        return self.store.wav_path(self.mailbox, message_id)
