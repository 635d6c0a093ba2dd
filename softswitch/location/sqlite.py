"""The single-node location store: bindings in memory, made durable in SQLite.

Implements `LocationStore` (RFC 3261 section 10 bindings, with RFC 3327 Path
and RFC 5626 instance/reg-id columns).

Reads are served from a dict on the reactor thread. Writes go through the
group-commit writer of `softswitch.storage` (one writer thread, one
transaction and one fsync per batch of queued writes, WAL with
synchronous=FULL; see there for why). Memory is updated when the commit
lands, just before each write's Deferred fires, so a lookup never returns a
binding that a crash could lose.
"""

from __future__ import annotations

import builtins
import heapq
import json
import os
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import defer
from twisted.internet.defer import Deferred

from softswitch.location.binding import Binding
from softswitch.location.store import LocationStoreError
from softswitch.storage import MAX_BATCH, GroupCommitWriter, ThreadCaller, connect_readonly

__all__ = ["MAX_BATCH", "SCHEMA_VERSION", "SQLiteLocationStore", "ThreadCaller", "read_bindings"]

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS bindings (
    aor TEXT NOT NULL,
    contact TEXT NOT NULL,
    q REAL NOT NULL,
    expires_at REAL NOT NULL,
    call_id TEXT NOT NULL,
    cseq INTEGER NOT NULL,
    received TEXT NOT NULL,
    transport TEXT NOT NULL,
    path TEXT NOT NULL,
    instance TEXT,
    reg_id INTEGER,
    user_agent TEXT,
    registered_at REAL NOT NULL,
    PRIMARY KEY (aor, contact)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS bindings_expires_at ON bindings (expires_at);
"""

_COLUMNS = (
    "aor, contact, q, expires_at, call_id, cseq, received, transport, path, "
    "instance, reg_id, user_agent, registered_at"
)
_UPSERT = f"INSERT OR REPLACE INTO bindings ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"
_DELETE_CONTACT = "DELETE FROM bindings WHERE aor = ? AND contact = ?"
_DELETE_AOR = "DELETE FROM bindings WHERE aor = ?"
# Conditional on expires_at: a refresh queued before the expiry must survive it.
_DELETE_EXPIRED = "DELETE FROM bindings WHERE aor = ? AND contact = ? AND expires_at <= ?"


@dataclass(slots=True)
class _Save:
    aor: str
    upserts: list[Binding]
    removes: list[str]

    def apply(self, conn: sqlite3.Connection) -> None:
        conn.executemany(_DELETE_CONTACT, [(self.aor, c) for c in self.removes])
        conn.executemany(_UPSERT, [_row(b) for b in self.upserts])


@dataclass(slots=True)
class _RemoveAor:
    aor: str

    def apply(self, conn: sqlite3.Connection) -> None:
        conn.execute(_DELETE_AOR, (self.aor,))


@dataclass(slots=True)
class _DeleteExpired:
    keys: list[tuple[str, str, float]] = field(default_factory=list)

    def apply(self, conn: sqlite3.Connection) -> None:
        conn.executemany(_DELETE_EXPIRED, self.keys)


def _row(b: Binding) -> tuple[object, ...]:
    return (
        b.aor,
        b.contact,
        b.q,
        b.expires_at,
        b.call_id,
        b.cseq,
        b.received,
        b.transport,
        json.dumps(b.path),
        b.instance,
        b.reg_id,
        b.user_agent,
        b.registered_at,
    )


def _binding(row: tuple[Any, ...]) -> Binding:
    return Binding(
        aor=row[0],
        contact=row[1],
        q=row[2],
        expires_at=row[3],
        call_id=row[4],
        cseq=row[5],
        received=row[6],
        transport=row[7],
        path=list(json.loads(row[8])),
        instance=row[9],
        reg_id=row[10],
        user_agent=row[11],
        registered_at=row[12],
    )


def read_bindings(path: str | os.PathLike[str]) -> builtins.list[Binding]:
    """Every binding stored in `path`, read from another process (the CLI).

    Opens the file read-only (a `mode=ro` URI), so it never creates a database
    nor writes one, and works while the server holds it open in WAL mode: the
    reader sees the last commit. Expired rows are included, since only the
    caller knows what "now" is. Raises LocationStoreError when the file is
    missing or is not a location database.
    """
    conn = connect_readonly(path, LocationStoreError)
    try:
        rows = conn.execute(f"SELECT {_COLUMNS} FROM bindings").fetchall()
    except sqlite3.Error as exc:
        raise LocationStoreError(f"{path}: {exc}") from exc
    finally:
        conn.close()
    out = [_binding(r) for r in rows]
    # The order lookup() gives, AOR by AOR.
    out.sort(key=lambda b: (b.aor, -b.q, -b.registered_at))
    return out


class SQLiteLocationStore:
    """`LocationStore` on one SQLite file; see the module docstring."""

    def __init__(self, path: str, reactor: ThreadCaller) -> None:
        self.path = path
        self._bindings: dict[str, dict[str, Binding]] = {}
        # (expires_at, aor, contact), possibly outdated: checked against
        # _bindings when popped, so refreshes need no heap surgery.
        self._expiry: list[tuple[float, str, str]] = []
        self._writer = GroupCommitWriter(
            path, reactor, _SCHEMA, "location",
            schema_version=SCHEMA_VERSION, error=LocationStoreError,
        )

    @property
    def commits(self) -> int:
        """Transactions committed so far (tests and benchmarks)."""
        return self._writer.commits

    @property
    def failed_commits(self) -> int:
        return self._writer.failed_commits

    # -- start and stop -----------------------------------------------------

    def load(self, now: float) -> None:
        def prepare(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM bindings WHERE expires_at <= ?", (now,))
            for r in conn.execute(f"SELECT {_COLUMNS} FROM bindings"):
                self._put(_binding(r))

        self._writer.start(prepare)

    def close(self) -> None:
        """Commit what is queued, stop the writer thread and wait for it.

        The Deferreds of the last writes fire on the reactor thread, so only
        once the reactor runs again (a normal shutdown keeps it running).
        """
        self._writer.close()

    # -- reads (reactor thread, memory only) ----------------------------------

    def lookup(self, aor: str) -> builtins.list[Binding]:
        contacts = self._bindings.get(aor)
        if not contacts:
            return []
        return sorted(contacts.values(), key=lambda b: (-b.q, -b.registered_at))

    def list(self, aor_prefix: str | None = None) -> builtins.list[Binding]:
        out: builtins.list[Binding] = []
        for aor in sorted(self._bindings):
            if aor_prefix is None or aor.startswith(aor_prefix):
                out.extend(self.lookup(aor))
        return out

    def __len__(self) -> int:
        return sum(len(c) for c in self._bindings.values())

    # -- writes ---------------------------------------------------------------

    def save(
        self,
        aor: str,
        bindings_to_upsert: Iterable[Binding],
        contacts_to_remove: Iterable[str] = (),
    ) -> Deferred[None]:
        error = self._writer.refusal()
        if error is not None:
            return defer.fail(error)
        upserts = builtins.list(bindings_to_upsert)
        for b in upserts:
            if b.aor != aor:
                return defer.fail(LocationStoreError(f"binding of {b.aor} saved under {aor}"))
        op = _Save(aor, upserts, builtins.list(contacts_to_remove))
        # Added first, so memory changes before the caller's callbacks run.
        return self._writer.submit(op).addCallback(self._saved, op)

    def remove(self, aor: str) -> Deferred[None]:
        return self._writer.submit(_RemoveAor(aor)).addCallback(self._removed, aor)

    def expire(self, now: float) -> builtins.list[Binding]:
        removed: builtins.list[Binding] = []
        while self._expiry and self._expiry[0][0] <= now:
            _, aor, contact = heapq.heappop(self._expiry)
            contacts = self._bindings.get(aor)
            current = contacts.get(contact) if contacts else None
            if current is None or current.expires_at > now:
                continue  # removed or refreshed since this entry was pushed
            assert contacts is not None
            del contacts[contact]
            if not contacts:
                del self._bindings[aor]
            removed.append(current)
        if removed and self._writer.running:
            # Nobody waits: a lost delete is harmless, load() drops expired rows.
            op = _DeleteExpired([(b.aor, b.contact, b.expires_at) for b in removed])
            self._writer.submit(op).addErrback(lambda _: None)
        return removed

    # -- memory (reactor thread) ----------------------------------------------

    def _put(self, b: Binding) -> None:
        self._bindings.setdefault(b.aor, {})[b.contact] = b
        heapq.heappush(self._expiry, (b.expires_at, b.aor, b.contact))

    def _drop(self, aor: str, contact: str) -> None:
        contacts = self._bindings.get(aor)
        if contacts is not None:
            contacts.pop(contact, None)
            if not contacts:
                del self._bindings[aor]

    def _saved(self, _: None, op: _Save) -> None:
        for contact in op.removes:
            self._drop(op.aor, contact)
        for b in op.upserts:
            self._put(b)

    def _removed(self, _: None, aor: str) -> None:
        self._bindings.pop(aor, None)
