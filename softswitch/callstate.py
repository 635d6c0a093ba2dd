"""The established calls, kept durable so a restart can still end them.

When the softswitch restarts in the middle of calls, the phones and trunks
still think they are talking. With this store the new process knows every
established call: it can send a BYE on both legs (an in-dialog request,
RFC 3261 section 12.2.1.1, needs only the dialog state kept in `LegState`)
and write the call's CDR from the fields kept in `CallRecord`.

The dialog state is plain strings, ints and lists, not SIP objects, so this
store knows nothing of the SIP layer. `SQLiteCallStateStore` keeps it in
DATA_DIR/calls.sqlite on the group-commit writer of `softswitch.storage`,
and serves `get` and `list` from memory.

What the B2BUA is expected to do with it (the contract the store relies on):
- `save` once a call is answered (both dialogs confirmed), and again when the
  dialog state changes (a re-INVITE moves the remote target or uses a CSeq).
- At hangup, write the CDR first and `remove` the call once the CDR is
  durable. A crash in between leaves the call here; the restart sends its
  BYEs (the peers answer 481, harmless) and writes the CDR again, which the
  CDR store ignores as a duplicate of the same uuid.
- After a restart, send the BYE with a CSeq well above `local_cseq` (CSeq
  must only grow, gaps are allowed, RFC 3261 12.2.1.1): a request sent after
  the last `save` may have used the next numbers.
- On TCP/TLS the connection died with the old process; the BYE goes on a new
  connection to host:port, which reaches a trunk but not a phone behind NAT
  (that one learns of the end through its session timer or RTP timeout).
"""

from __future__ import annotations

import builtins
import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from twisted.internet.defer import Deferred

from softswitch.cdr import CdrRecord, Disposition, HangupSide
from softswitch.storage import GroupCommitWriter, StorageError, ThreadCaller

SCHEMA_VERSION = 1
DATABASE = "calls.sqlite"


class CallStateError(StorageError):
    """The call state store cannot take the request (closed, not loaded, disk failure)."""


@dataclass(slots=True)
class LegState:
    """One confirmed dialog, from the softswitch's side (RFC 3261 section 12)."""

    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: str  # From of the requests we send on this dialog
    remote_uri: str  # To of the requests we send
    local_cseq: int  # the last CSeq we sent
    remote_target: str  # Request-URI: the peer's Contact
    transport: str  # where to send: udp, tcp or tls
    host: str
    port: int
    route_set: list[str] = field(default_factory=list)  # Route values, in order


@dataclass(slots=True)
class CallRecord:
    """An established call: its two dialogs and the CDR fields known so far."""

    uuid: str
    a_leg: LegState  # the caller's dialog; its call_id is the CDR's call_id
    b_leg: LegState  # the dialog with whoever answered
    start: float  # INVITE received, Unix seconds
    answer: float
    caller: str
    callee: str
    dialled: str
    context: str
    caller_name: str = ""
    trunk: str | None = None
    b_leg_codes: list[int] = field(default_factory=list)

    def cdr(self, end: float, hangup_cause: str, hangup_side: HangupSide) -> CdrRecord:
        """The CDR of this call, ended at `end`."""
        return CdrRecord(
            call_id=self.a_leg.call_id, uuid=self.uuid, caller=self.caller,
            caller_name=self.caller_name, callee=self.callee, dialled=self.dialled,
            context=self.context, trunk=self.trunk, start=self.start, answer=self.answer,
            end=end, disposition=Disposition.ANSWERED, hangup_cause=hangup_cause,
            hangup_side=hangup_side, sip_code=200, b_leg_codes=list(self.b_leg_codes),
        )


class CallStateStore(Protocol):
    """Established calls: reads from memory, writes fire once durable."""

    def load(self) -> builtins.list[CallRecord]:
        """Read the calls left by the previous run into memory and return them.

        Called once at start, before any other method.
        """
        ...

    def save(self, record: CallRecord) -> Deferred[None]:
        """Insert or replace the call `record.uuid`; errbacks with CallStateError."""
        ...

    def remove(self, uuid: str) -> Deferred[None]:
        """Forget the call `uuid` (no error if unknown)."""
        ...

    def get(self, uuid: str) -> CallRecord | None:
        ...

    def list(self) -> builtins.list[CallRecord]:
        """Every call, oldest first."""
        ...

    def close(self) -> None:
        """Flush pending writes and release resources; later writes fail."""
        ...


# Two tables, one row per leg: a transfer or a conference may later hold more
# than two legs per call without a schema change.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    uuid TEXT PRIMARY KEY,
    start_time REAL NOT NULL,
    answer_time REAL NOT NULL,
    caller TEXT NOT NULL,
    caller_name TEXT NOT NULL,
    callee TEXT NOT NULL,
    dialled TEXT NOT NULL,
    context TEXT NOT NULL,
    trunk TEXT,
    b_leg_codes TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS call_legs (
    uuid TEXT NOT NULL,
    side TEXT NOT NULL,
    call_id TEXT NOT NULL,
    local_tag TEXT NOT NULL,
    remote_tag TEXT NOT NULL,
    local_uri TEXT NOT NULL,
    remote_uri TEXT NOT NULL,
    local_cseq INTEGER NOT NULL,
    remote_target TEXT NOT NULL,
    route_set TEXT NOT NULL,
    transport TEXT NOT NULL,
    host TEXT NOT NULL,
    port INTEGER NOT NULL,
    PRIMARY KEY (uuid, side)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS call_snapshots (
    uuid TEXT PRIMARY KEY,
    start_time REAL NOT NULL,
    snapshot TEXT NOT NULL
);
"""

_CALL_COLUMNS = (
    "uuid, start_time, answer_time, caller, caller_name, callee, dialled, context, trunk, "
    "b_leg_codes"
)
_LEG_COLUMNS = (
    "uuid, side, call_id, local_tag, remote_tag, local_uri, remote_uri, local_cseq, "
    "remote_target, route_set, transport, host, port"
)
_UPSERT_CALL = f"INSERT OR REPLACE INTO calls ({_CALL_COLUMNS}) VALUES ({', '.join('?' * 10)})"
_UPSERT_LEG = f"INSERT OR REPLACE INTO call_legs ({_LEG_COLUMNS}) VALUES ({', '.join('?' * 13)})"
_DELETE_CALL = "DELETE FROM calls WHERE uuid = ?"
_UPSERT_SNAPSHOT = "INSERT OR REPLACE INTO call_snapshots (uuid, start_time, snapshot) VALUES (?, ?, ?)"
_DELETE_SNAPSHOT = "DELETE FROM call_snapshots WHERE uuid = ?"
_DELETE_LEGS = "DELETE FROM call_legs WHERE uuid = ?"

_Row = tuple[Any, ...]


def _call_row(r: CallRecord) -> _Row:
    return (r.uuid, r.start, r.answer, r.caller, r.caller_name, r.callee, r.dialled,
            r.context, r.trunk, json.dumps(r.b_leg_codes))


def _leg_row(uuid: str, side: str, leg: LegState) -> _Row:
    return (uuid, side, leg.call_id, leg.local_tag, leg.remote_tag, leg.local_uri,
            leg.remote_uri, leg.local_cseq, leg.remote_target, json.dumps(leg.route_set),
            leg.transport, leg.host, leg.port)


def _leg(row: _Row) -> LegState:
    return LegState(call_id=row[2], local_tag=row[3], remote_tag=row[4], local_uri=row[5],
                    remote_uri=row[6], local_cseq=row[7], remote_target=row[8],
                    route_set=[str(r) for r in json.loads(row[9])], transport=row[10],
                    host=row[11], port=row[12])


def _record(call: _Row, a_leg: _Row, b_leg: _Row) -> CallRecord:
    return CallRecord(uuid=call[0], start=call[1], answer=call[2], caller=call[3],
                      caller_name=call[4], callee=call[5], dialled=call[6], context=call[7],
                      trunk=call[8], b_leg_codes=[int(c) for c in json.loads(call[9])],
                      a_leg=_leg(a_leg), b_leg=_leg(b_leg))


@dataclass(slots=True)
class _Save:
    # Rows built on the reactor thread when saved: the B2BUA may go on
    # changing its CallRecord while the writer thread works.
    call: _Row
    legs: tuple[_Row, _Row]

    def apply(self, conn: sqlite3.Connection) -> None:
        conn.execute(_UPSERT_CALL, self.call)
        conn.executemany(_UPSERT_LEG, self.legs)

    def record(self) -> CallRecord:
        return _record(self.call, *self.legs)


@dataclass(slots=True)
class _Remove:
    uuid: str
    legacy: bool  # saved as rows of calls/call_legs (an older version), not as a snapshot

    def apply(self, conn: sqlite3.Connection) -> None:
        if self.legacy:
            conn.execute(_DELETE_LEGS, (self.uuid,))
            conn.execute(_DELETE_CALL, (self.uuid,))
        conn.execute(_DELETE_SNAPSHOT, (self.uuid,))


@dataclass(slots=True)
class _SaveSnapshot:
    uuid: str
    start: float
    text: str  # JSON, made on the reactor thread

    def apply(self, conn: sqlite3.Connection) -> None:
        conn.execute(_UPSERT_SNAPSHOT, (self.uuid, self.start, self.text))


def _by_start(records: Iterable[CallRecord]) -> builtins.list[CallRecord]:
    return sorted(records, key=lambda r: (r.start, r.uuid))


class SQLiteCallStateStore:
    """`CallStateStore` on one SQLite file (DATA_DIR/calls.sqlite)."""

    def __init__(self, path: str, reactor: ThreadCaller) -> None:
        self.path = path
        self._calls: dict[str, CallRecord] = {}
        # The snapshots the previous run left, as JSON text (parsed when read),
        # and the calls saved since: a running server never reads its own
        # snapshots back, so only their uuids stay in memory.
        self._snapshots: dict[str, tuple[float, str]] = {}
        self._saved_uuids: set[str] = set()
        self._writer = GroupCommitWriter(
            path, reactor, _SCHEMA, "call state",
            schema_version=SCHEMA_VERSION, error=CallStateError,
        )

    @property
    def commits(self) -> int:
        """Transactions committed so far (tests and benchmarks)."""
        return self._writer.commits

    def load(self) -> builtins.list[CallRecord]:
        def prepare(conn: sqlite3.Connection) -> None:
            legs: dict[tuple[str, str], _Row] = {
                (row[0], row[1]): row
                for row in conn.execute(f"SELECT {_LEG_COLUMNS} FROM call_legs")
            }
            for call in conn.execute(f"SELECT {_CALL_COLUMNS} FROM calls"):
                a_leg, b_leg = legs.get((call[0], "a")), legs.get((call[0], "b"))
                # Both legs are written with the call in one transaction; a
                # row without them was edited by hand and cannot be ended.
                if a_leg is not None and b_leg is not None:
                    self._calls[call[0]] = _record(call, a_leg, b_leg)
            for uuid, start, text in conn.execute(
                    "SELECT uuid, start_time, snapshot FROM call_snapshots"):
                self._snapshots[uuid] = (start, text)

        try:
            self._writer.start(prepare)
        except (ValueError, TypeError) as exc:  # a hand-edited route_set or b_leg_codes
            raise CallStateError(f"{self.path}: unreadable call: {exc}") from exc
        return self.list()

    def close(self) -> None:
        """Commit what is queued, stop the writer thread and wait for it."""
        self._writer.close()

    # -- reads (reactor thread, memory only) ----------------------------------

    def get(self, uuid: str) -> CallRecord | None:
        return self._calls.get(uuid)

    def list(self) -> builtins.list[CallRecord]:
        return _by_start(self._calls.values())

    def snapshots(self) -> builtins.list[dict[str, Any]]:
        """The calls the previous run left as snapshots (JSON documents), oldest first."""
        return [json.loads(text)
                for _, text in sorted(self._snapshots.values(), key=lambda e: e[0])]

    def __len__(self) -> int:
        return len(self._calls) + len(self._snapshots.keys() | self._saved_uuids)

    # -- writes -----------------------------------------------------------------

    def save(self, record: CallRecord) -> Deferred[None]:
        op = _Save(_call_row(record), (_leg_row(record.uuid, "a", record.a_leg),
                                       _leg_row(record.uuid, "b", record.b_leg)))
        # Memory holds what was written, not the caller's object, which it may
        # change later; and only once durable, like the location store.
        return self._writer.submit(op).addCallback(self._saved, op)

    def save_snapshot(self, uuid: str, start: float,
                      document: dict[str, Any]) -> Deferred[None]:
        """Insert or replace call `uuid` as a JSON document (a call snapshot)."""
        text = json.dumps(document, separators=(",", ":"))
        op = _SaveSnapshot(uuid, start, text)
        return self._writer.submit(op).addCallback(self._snapshot_saved, op)

    def _snapshot_saved(self, _: None, op: _SaveSnapshot) -> None:
        self._saved_uuids.add(op.uuid)

    def remove(self, uuid: str) -> Deferred[None]:
        return self._writer.submit(_Remove(uuid, uuid in self._calls)).addCallback(self._removed, uuid)

    def _saved(self, _: None, op: _Save) -> None:
        record = op.record()
        self._calls[record.uuid] = record

    def _removed(self, _: None, uuid: str) -> None:
        self._calls.pop(uuid, None)
        self._snapshots.pop(uuid, None)
        self._saved_uuids.discard(uuid)
