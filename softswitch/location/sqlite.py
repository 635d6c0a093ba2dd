"""The single-node location store: bindings in memory, made durable in SQLite.

Implements `LocationStore` (RFC 3261 section 10 bindings, with RFC 3327 Path
and RFC 5626 instance/reg-id columns).

Reads are served from a dict on the reactor thread. Writes go through group
commit: one writer thread owns the only write connection, takes every write
queued so far, applies them in ONE transaction and commits, then hands the
results back to the reactor thread with `callFromThread`. N REGISTERs arriving
together cost one fsync, not N. Memory is updated when the commit lands, just
before each write's Deferred fires, so a lookup never returns a binding that a
crash could lose.

Durability: WAL with synchronous=FULL, so every commit fsyncs the WAL before
it returns. With synchronous=NORMAL a WAL commit survives kill -9 of this
process (the bytes are in the OS page cache) but not a power cut or kernel
panic, which could silently drop bindings we already answered 200 for. Group
commit makes the extra fsync cheap, so we pay it.
"""

from __future__ import annotations

import builtins
import heapq
import json
import os
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from twisted.internet import defer
from twisted.internet.defer import Deferred

from softswitch.location.binding import Binding
from softswitch.location.store import LocationStoreError

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
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

# Upper bound on one transaction, so the first writes of a flood are not held
# back behind an arbitrarily large batch.
MAX_BATCH = 5000


class ThreadCaller(Protocol):
    """The one reactor method the store needs (IReactorFromThreads)."""

    def callFromThread(  # noqa: N802 - Twisted's name
        self, f: Callable[..., Any], /, *args: Any, **kwargs: Any
    ) -> None: ...


@dataclass(slots=True)
class _Save:
    aor: str
    upserts: list[Binding]
    removes: list[str]
    deferred: Deferred[None]


@dataclass(slots=True)
class _RemoveAor:
    aor: str
    deferred: Deferred[None]


@dataclass(slots=True)
class _DeleteExpired:
    keys: list[tuple[str, str, float]] = field(default_factory=list)


_Op = _Save | _RemoveAor | _DeleteExpired
_STOP = object()


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


def _connect(path: str) -> sqlite3.Connection:
    # isolation_level=None: we issue BEGIN/COMMIT ourselves, one per batch.
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=True)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    # Another process (the CLI, a backup) may hold a read lock briefly.
    conn.execute("PRAGMA busy_timeout=5000")
    return conn


def read_bindings(path: str | os.PathLike[str]) -> builtins.list[Binding]:
    """Every binding stored in `path`, read from another process (the CLI).

    Opens the file read-only (a `mode=ro` URI), so it never creates a database
    nor writes one, and works while the server holds it open in WAL mode: the
    reader sees the last commit. Expired rows are included, since only the
    caller knows what "now" is. Raises LocationStoreError when the file is
    missing or is not a location database.
    """
    file = Path(path)
    if not file.is_file():
        raise LocationStoreError(f"{file}: no such database")
    uri = file.resolve().as_uri() + "?mode=ro"
    if not Path(f"{file}-wal").exists():
        # No server has it open (the last connection to close removes the
        # WAL), so the file is complete as it is. A plain read-only open would
        # create -wal and -shm owned by whoever runs the CLI (root, say),
        # which the server, running as another user, could then not open.
        uri += "&immutable=1"
    try:
        conn = sqlite3.connect(uri, uri=True)
    except sqlite3.Error as exc:
        raise LocationStoreError(f"{file}: {exc}") from exc
    try:
        # The server's writer may hold the lock for a commit or a checkpoint.
        conn.execute("PRAGMA busy_timeout=5000")
        rows = conn.execute(f"SELECT {_COLUMNS} FROM bindings").fetchall()
    except sqlite3.Error as exc:
        raise LocationStoreError(f"{file}: {exc}") from exc
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
        self._reactor = reactor
        self._bindings: dict[str, dict[str, Binding]] = {}
        # (expires_at, aor, contact), possibly outdated: checked against
        # _bindings when popped, so refreshes need no heap surgery.
        self._expiry: list[tuple[float, str, str]] = []
        self._queue: queue.SimpleQueue[_Op | object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._closed = False
        # Read by tests and benchmarks; written only by the writer thread.
        self.commits = 0
        self.failed_commits = 0

    # -- start and stop -----------------------------------------------------

    def load(self, now: float) -> None:
        if self._thread is not None or self._closed:
            raise LocationStoreError("location store already loaded or closed")
        conn = _connect(self.path)
        try:
            conn.executescript(_SCHEMA)
            row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
            version = row[0] if row else None
            if version is None:
                conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
            elif version > SCHEMA_VERSION:
                raise LocationStoreError(
                    f"{self.path}: schema version {version} is newer than this "
                    f"softswitch understands ({SCHEMA_VERSION})"
                )
            conn.execute("DELETE FROM bindings WHERE expires_at <= ?", (now,))
            for r in conn.execute(f"SELECT {_COLUMNS} FROM bindings"):
                self._put(_binding(r))
        except sqlite3.Error as exc:
            raise LocationStoreError(f"{self.path}: {exc}") from exc
        finally:
            conn.close()
        self._thread = threading.Thread(target=self._writer, name="location-writer", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Commit what is queued, stop the writer thread and wait for it.

        The Deferreds of the last writes fire on the reactor thread, so only
        once the reactor runs again (a normal shutdown keeps it running).
        """
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()

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

    def _writable(self) -> LocationStoreError | None:
        if self._closed:
            return LocationStoreError("location store is closed")
        if self._thread is None:
            return LocationStoreError("location store is not loaded")
        return None

    def save(
        self,
        aor: str,
        bindings_to_upsert: Iterable[Binding],
        contacts_to_remove: Iterable[str] = (),
    ) -> Deferred[None]:
        error = self._writable()
        if error is not None:
            return defer.fail(error)
        upserts = builtins.list(bindings_to_upsert)
        for b in upserts:
            if b.aor != aor:
                return defer.fail(LocationStoreError(f"binding of {b.aor} saved under {aor}"))
        d: Deferred[None] = Deferred()
        self._queue.put(_Save(aor, upserts, builtins.list(contacts_to_remove), d))
        return d

    def remove(self, aor: str) -> Deferred[None]:
        error = self._writable()
        if error is not None:
            return defer.fail(error)
        d: Deferred[None] = Deferred()
        self._queue.put(_RemoveAor(aor, d))
        return d

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
        if removed and self._writable() is None:
            # No Deferred: a lost delete is harmless, load() drops expired rows.
            self._queue.put(_DeleteExpired([(b.aor, b.contact, b.expires_at) for b in removed]))
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

    def _committed(self, ops: builtins.list[_Op], error: Exception | None) -> None:
        for op in ops:
            if isinstance(op, _DeleteExpired):
                continue
            if error is not None:
                op.deferred.errback(LocationStoreError(f"{self.path}: {error}"))
                continue
            if isinstance(op, _Save):
                for contact in op.removes:
                    self._drop(op.aor, contact)
                for b in op.upserts:
                    self._put(b)
            else:
                self._bindings.pop(op.aor, None)
            op.deferred.callback(None)

    # -- the writer thread ------------------------------------------------------

    def _writer(self) -> None:
        conn = _connect(self.path)
        try:
            stopping = False
            while not stopping:
                batch: builtins.list[_Op] = []
                item = self._queue.get()
                while True:
                    if item is _STOP:
                        stopping = True
                    else:
                        assert isinstance(item, _Save | _RemoveAor | _DeleteExpired)
                        batch.append(item)
                    if len(batch) >= MAX_BATCH:
                        break
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                if batch:
                    error = self._apply(conn, batch)
                    self._reactor.callFromThread(self._committed, batch, error)
        finally:
            conn.close()

    def _apply(self, conn: sqlite3.Connection, batch: builtins.list[_Op]) -> Exception | None:
        try:
            conn.execute("BEGIN IMMEDIATE")
            for op in batch:
                if isinstance(op, _Save):
                    conn.executemany(_DELETE_CONTACT, [(op.aor, c) for c in op.removes])
                    conn.executemany(_UPSERT, [_row(b) for b in op.upserts])
                elif isinstance(op, _RemoveAor):
                    conn.execute(_DELETE_AOR, (op.aor,))
                else:
                    conn.executemany(_DELETE_EXPIRED, op.keys)
            conn.execute("COMMIT")
        except Exception as exc:  # noqa: BLE001 - reported to every waiting Deferred
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass  # SQLite already rolled back (disk full, I/O error)
            self.failed_commits += 1
            return exc
        self.commits += 1
        return None
