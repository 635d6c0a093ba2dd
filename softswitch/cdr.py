"""Call detail records: one row per call, written when the call ends.

`CdrRecord` is the row (fields after Asterisk's CDR, with the SIP codes kept);
`CdrStore` the interface the B2BUA writes through; `SQLiteCdrStore` keeps
them in DATA_DIR/cdr.sqlite on the group-commit writer of
`softswitch.storage`, and `read_cdrs` reads that file read-only for the CLI.

Writing a record is idempotent on its call uuid: after a crash the call
state store may still hold a call whose CDR was already written, and the
restart writes it again (see `softswitch.callstate`); the second write is
ignored.
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from twisted.internet.defer import Deferred

from softswitch.storage import GroupCommitWriter, StorageError, ThreadCaller, connect_readonly

SCHEMA_VERSION = 3  # 2: media figures per leg (loss, jitter, MOS); 3: the recording's file
DATABASE = "cdr.sqlite"


class CdrStoreError(StorageError):
    """The CDR store cannot take or give records (closed, not open, disk failure)."""


class Disposition(StrEnum):
    """How the call ended for the caller, with Asterisk's words."""

    ANSWERED = "ANSWERED"
    NO_ANSWER = "NO ANSWER"
    BUSY = "BUSY"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @classmethod
    def of(cls, sip_code: int, cancelled: bool = False) -> Disposition:
        """The disposition of a call whose caller got final response `sip_code`.

        `cancelled`: the caller sent CANCEL (or hung up) before an answer; the
        487 it then gets is its own doing, not a failure.
        """
        if 200 <= sip_code < 300:
            return cls.ANSWERED
        if cancelled:
            return cls.CANCELLED
        if sip_code in (486, 600):  # Busy Here, Busy Everywhere
            return cls.BUSY
        # Request Timeout, Temporarily Unavailable (no answer, DND), and a 487
        # the softswitch caused itself (ring timeout).
        if sip_code in (408, 480, 487):
            return cls.NO_ANSWER
        return cls.FAILED


class HangupSide(StrEnum):
    """Who ended the call."""

    CALLER = "caller"
    CALLEE = "callee"
    SYSTEM = "system"  # the softswitch: timeout, shutdown, no route, error


@dataclass(slots=True)
class CdrRecord:
    """One call, as billed and as an operator reads it afterwards.

    Times are Unix seconds (floats). `duration` and `billsec` are derived so
    they can never disagree with the times.
    """

    call_id: str  # the A-leg Call-ID
    uuid: str  # unique per call, also the key of its call state record
    caller: str  # user or number
    dialled: str  # the number as dialled
    context: str
    start: float  # INVITE received
    end: float
    disposition: Disposition
    hangup_cause: str  # SIP code and reason, e.g. "486 Busy Here" or "BYE"
    hangup_side: HangupSide
    sip_code: int  # final response sent to the caller
    caller_name: str = ""
    callee: str | None = None  # who answered: user, or number on a trunk
    trunk: str | None = None  # source or destination trunk
    answer: float | None = None
    b_leg_codes: list[int] = field(default_factory=list)  # final codes of the B-legs tried
    # The media relay's last figures of what it received from the caller (a_)
    # and from the callee (b_): loss in %, jitter in ms, E-model MOS; None
    # when the call had no relayed media or the relay did not say.
    a_loss: float | None = None
    a_jitter: float | None = None
    a_mos: float | None = None
    b_loss: float | None = None
    b_jitter: float | None = None
    b_mos: float | None = None
    # The relay's recording of the call (docs/relay.md), relative to the relay's
    # media dir (the data dir for the embedded relay); None when not recorded.
    recording: str | None = None

    @property
    def duration(self) -> float:
        """Seconds from the INVITE to the end."""
        return max(0.0, self.end - self.start)

    @property
    def billsec(self) -> float:
        """Seconds from the answer to the end; 0 when never answered."""
        return 0.0 if self.answer is None else max(0.0, self.end - self.answer)

    def as_dict(self) -> dict[str, Any]:
        """Plain values (for JSON and CSV), with `duration` and `billsec`."""
        return {
            "call_id": self.call_id,
            "uuid": self.uuid,
            "caller": self.caller,
            "caller_name": self.caller_name,
            "callee": self.callee,
            "dialled": self.dialled,
            "context": self.context,
            "trunk": self.trunk,
            "start": self.start,
            "answer": self.answer,
            "end": self.end,
            "duration": round(self.duration, 3),
            "billsec": round(self.billsec, 3),
            "disposition": self.disposition.value,
            "hangup_cause": self.hangup_cause,
            "hangup_side": self.hangup_side.value,
            "sip_code": self.sip_code,
            "b_leg_codes": list(self.b_leg_codes),
            **{name: getattr(self, name) for name in MEDIA_COLUMNS},
            "recording": self.recording,
        }


class CdrStore(Protocol):
    """Where finished calls go. `write` fires once the record is durable."""

    def open(self) -> None:
        """Prepare the store; called once at start, before any write."""
        ...

    def write(self, record: CdrRecord) -> Deferred[None]:
        """Keep `record`; errbacks with CdrStoreError if it cannot be kept.

        A second record with the same uuid is ignored (see the module doc).
        """
        ...

    def close(self) -> None:
        """Flush pending writes and release resources; later writes fail."""
        ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS cdr (
    uuid TEXT NOT NULL UNIQUE,
    call_id TEXT NOT NULL,
    caller TEXT NOT NULL,
    caller_name TEXT NOT NULL,
    callee TEXT,
    dialled TEXT NOT NULL,
    context TEXT NOT NULL,
    trunk TEXT,
    start_time REAL NOT NULL,
    answer_time REAL,
    end_time REAL NOT NULL,
    duration REAL NOT NULL,
    billsec REAL NOT NULL,
    disposition TEXT NOT NULL,
    hangup_cause TEXT NOT NULL,
    hangup_side TEXT NOT NULL,
    sip_code INTEGER NOT NULL,
    b_leg_codes TEXT NOT NULL,
    a_loss REAL, a_jitter REAL, a_mos REAL, b_loss REAL, b_jitter REAL, b_mos REAL,
    recording TEXT
);
CREATE INDEX IF NOT EXISTS cdr_start_time ON cdr (start_time);
"""

# duration and billsec are stored too, for whoever queries the file with SQL,
# but read back from the times.
MEDIA_COLUMNS = ("a_loss", "a_jitter", "a_mos", "b_loss", "b_jitter", "b_mos")
_BASE_COLUMNS = (
    "uuid, call_id, caller, caller_name, callee, dialled, context, trunk, start_time, "
    "answer_time, end_time, duration, billsec, disposition, hangup_cause, hangup_side, "
    "sip_code, b_leg_codes"
)
# Columns added after version 1, with their SQL types: older files get them empty.
LATER_COLUMNS = (*((name, "REAL") for name in MEDIA_COLUMNS), ("recording", "TEXT"))
_COLUMNS = _BASE_COLUMNS + ", " + ", ".join(name for name, _ in LATER_COLUMNS)
_INSERT = f"INSERT OR IGNORE INTO cdr ({_COLUMNS}) VALUES ({', '.join('?' * 25)})"


def _migrate(conn: sqlite3.Connection) -> None:
    """Older files (before the media columns, before the recording) get them, empty."""
    have = {row[1] for row in conn.execute("PRAGMA table_info(cdr)")}
    added = False
    for name, kind in LATER_COLUMNS:
        if name not in have:
            conn.execute(f"ALTER TABLE cdr ADD COLUMN {name} {kind}")
            added = True
    if added:
        conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))


def _row(r: CdrRecord) -> tuple[object, ...]:
    return (
        r.uuid, r.call_id, r.caller, r.caller_name, r.callee, r.dialled, r.context, r.trunk,
        r.start, r.answer, r.end, r.duration, r.billsec, r.disposition.value, r.hangup_cause,
        r.hangup_side.value, r.sip_code, json.dumps(r.b_leg_codes),
        r.a_loss, r.a_jitter, r.a_mos, r.b_loss, r.b_jitter, r.b_mos, r.recording,
    )


def _record(row: tuple[Any, ...]) -> CdrRecord:
    return CdrRecord(
        uuid=row[0], call_id=row[1], caller=row[2], caller_name=row[3], callee=row[4],
        dialled=row[5], context=row[6], trunk=row[7], start=row[8], answer=row[9],
        end=row[10], disposition=Disposition(row[13]), hangup_cause=row[14],
        hangup_side=HangupSide(row[15]), sip_code=row[16],
        b_leg_codes=[int(c) for c in json.loads(row[17])],
        a_loss=row[18], a_jitter=row[19], a_mos=row[20],
        b_loss=row[21], b_jitter=row[22], b_mos=row[23], recording=row[24],
    )


@dataclass(slots=True)
class _Insert:
    row: tuple[object, ...]  # built on the reactor thread, at write time

    def apply(self, conn: sqlite3.Connection) -> None:
        conn.execute(_INSERT, self.row)


class SQLiteCdrStore:
    """`CdrStore` on one SQLite file (DATA_DIR/cdr.sqlite). Keeps nothing in memory."""

    def __init__(self, path: str, reactor: ThreadCaller) -> None:
        self.path = path
        self._writer = GroupCommitWriter(
            path, reactor, _SCHEMA, "cdr", schema_version=SCHEMA_VERSION, error=CdrStoreError
        )

    @property
    def commits(self) -> int:
        """Transactions committed so far (tests and benchmarks)."""
        return self._writer.commits

    def open(self) -> None:
        self._writer.start(_migrate)

    def write(self, record: CdrRecord) -> Deferred[None]:
        return self._writer.submit(_Insert(_row(record)))

    def close(self) -> None:
        self._writer.close()


def read_cdrs(
    path: str | os.PathLike[str],
    since: float | None = None,
    until: float | None = None,
    limit: int | None = None,
) -> list[CdrRecord]:
    """The records in `path` that started in [since, until), oldest first.

    With `limit`, the latest `limit` of them. Opens the file read-only, so it
    can run beside the server (see `connect_readonly`). Raises CdrStoreError
    when the file is missing or is not a CDR database.
    """
    where: list[str] = []
    args: list[object] = []
    if since is not None:
        where.append("start_time >= ?")
        args.append(since)
    if until is not None:
        where.append("start_time < ?")
        args.append(until)
    conn = connect_readonly(path, CdrStoreError)
    try:
        # An older file (read-only here, so not migrated) lacks the later columns.
        have = {row[1] for row in conn.execute("PRAGMA table_info(cdr)")}
    except sqlite3.Error as exc:
        conn.close()
        raise CdrStoreError(f"{path}: {exc}") from exc
    columns = _BASE_COLUMNS + "".join(
        f", {name}" if name in have else ", NULL" for name, _ in LATER_COLUMNS)
    sql = f"SELECT {columns} FROM cdr"
    if where:
        sql += " WHERE " + " AND ".join(where)
    # rowid breaks ties between calls that started in the same instant.
    sql += " ORDER BY start_time DESC, rowid DESC"
    if limit is not None:
        sql += " LIMIT ?"
        args.append(max(0, limit))
    try:
        rows = conn.execute(sql, args).fetchall()
    except sqlite3.Error as exc:
        raise CdrStoreError(f"{path}: {exc}") from exc
    finally:
        conn.close()
    try:
        records = [_record(r) for r in rows]
    except (ValueError, TypeError) as exc:
        raise CdrStoreError(f"{path}: unreadable record: {exc}") from exc
    records.reverse()
    return records
