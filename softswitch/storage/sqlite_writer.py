"""Group commit on one SQLite file, for the stores that must be durable.

A `GroupCommitWriter` owns the only write connection to its file and a writer
thread that uses it. Stores `submit` write operations from the reactor thread;
the writer takes every operation queued so far, applies them in ONE
transaction, commits, and fires their Deferreds back on the reactor thread
with `callFromThread`, in submission order. N writes arriving together cost
one fsync, not N.

Durability: WAL with synchronous=FULL, so every commit fsyncs the WAL before
it returns. With synchronous=NORMAL a WAL commit survives kill -9 of this
process (the bytes are in the OS page cache) but not a power cut or kernel
panic, which could silently drop a write whose Deferred already fired (a
binding answered 200 for, a CDR). Group commit makes the extra fsync cheap,
so we pay it.

`connect_readonly` is the other side: how a CLI reads such a file beside a
running server without ever writing to it.
"""

from __future__ import annotations

import os
import queue
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

from twisted.internet import defer
from twisted.internet.defer import Deferred

# Upper bound on one transaction, so the first writes of a flood are not held
# back behind an arbitrarily large batch.
MAX_BATCH = 5000

_SCHEMA_VERSION_TABLE = "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);"

_T = TypeVar("_T")


class StorageError(Exception):
    """A store cannot take the request (closed, not started, disk failure)."""


class ThreadCaller(Protocol):
    """The one reactor method the writer needs (IReactorFromThreads)."""

    def callFromThread(  # noqa: N802 - Twisted's name
        self, f: Callable[..., Any], /, *args: Any, **kwargs: Any
    ) -> None: ...


class WriteOp(Protocol):
    """One store write; runs on the writer thread inside the batch's transaction.

    `apply` must only touch `conn` and data the op owns: the reactor thread
    may change the store's objects meanwhile, so build rows at submit time.
    Raising fails the whole batch (every op in it errbacks, nothing is kept).
    """

    def apply(self, conn: sqlite3.Connection) -> None: ...


_Pending = tuple[WriteOp, Deferred[None]]
_STOP = object()


def _connect(path: str) -> sqlite3.Connection:
    # isolation_level=None: we issue BEGIN/COMMIT ourselves, one per batch.
    # check_same_thread=False: opened here, then handed to the writer thread,
    # which is from then on its only user.
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    # Another process (the CLI, a backup) may hold a read lock briefly.
    conn.execute("PRAGMA busy_timeout=5000")
    return conn


class GroupCommitWriter:
    """One SQLite file, one writer thread, one transaction per batch of writes.

    `name` names the store in errors ("location store is closed") and the
    thread ("location-writer"). `error` builds the exception every failure is
    reported with, so a store keeps its own error type. `schema` is run at
    start (CREATE ... IF NOT EXISTS); `schema_version` is recorded in a
    `schema_version` table, and a file written by a newer softswitch is
    refused rather than misread.
    """

    def __init__(
        self,
        path: str,
        reactor: ThreadCaller,
        schema: str,
        name: str,
        *,
        schema_version: int = 1,
        error: Callable[[str], Exception] = StorageError,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self.path = path
        self.name = name
        self._reactor = reactor
        self._schema = schema
        self._schema_version = schema_version
        self._error = error
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[_Pending | object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._closed = False
        # Read by tests and benchmarks; written only by the writer thread.
        self.commits = 0
        self.failed_commits = 0

    # -- start and stop -----------------------------------------------------

    def start(self, prepare: Callable[[sqlite3.Connection], _T]) -> _T:
        """Open the file, create the schema, run `prepare`, start the writer thread.

        `prepare` runs on the calling thread before any write is taken: the
        store reads its rows into memory there, and may drop stale ones (in
        autocommit mode). Its result is returned. sqlite3 errors raised while
        starting are reported with the store's error type.
        """
        if self._thread is not None or self._closed:
            raise self._error(f"{self.name} store already loaded or closed")
        try:
            conn = _connect(self.path)
        except sqlite3.Error as exc:
            raise self._error(f"{self.path}: {exc}") from exc
        try:
            conn.executescript(_SCHEMA_VERSION_TABLE + self._schema)
            row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
            version = row[0] if row else None
            if version is None:
                conn.execute(
                    "INSERT INTO schema_version (version) VALUES (?)", (self._schema_version,)
                )
            elif version > self._schema_version:
                raise self._error(
                    f"{self.path}: schema version {version} is newer than this "
                    f"softswitch understands ({self._schema_version})"
                )
            result = prepare(conn)
        except sqlite3.Error as exc:
            conn.close()
            raise self._error(f"{self.path}: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        self._thread = threading.Thread(
            target=self._run, args=(conn,), name=f"{self.name}-writer", daemon=True
        )
        self._thread.start()
        return result

    def close(self) -> None:
        """Commit what is queued, stop the writer thread and wait for it.

        The Deferreds of the last writes fire on the reactor thread, so only
        once the reactor runs again (a normal shutdown keeps it running).
        Idempotent; later writes fail.
        """
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()

    @property
    def running(self) -> bool:
        """Started and not closed: `submit` will take writes."""
        return self._thread is not None and not self._closed

    # -- writes (reactor thread) ------------------------------------------------

    def refusal(self) -> Exception | None:
        """Why `submit` would refuse a write now (closed, not started), or None."""
        if self._closed:
            return self._error(f"{self.name} store is closed")
        if self._thread is None:
            return self._error(f"{self.name} store is not loaded")
        return None

    def submit(self, op: WriteOp) -> Deferred[None]:
        """Queue `op`; the Deferred fires on the reactor thread once it is durable.

        Errbacks with the store's error type when the writer is not started,
        is closed, or the batch holding `op` could not be committed.
        """
        error = self.refusal()
        if error is not None:
            return defer.fail(error)
        d: Deferred[None] = Deferred()
        self._queue.put((op, d))
        return d

    # -- the writer thread ------------------------------------------------------

    def _run(self, conn: sqlite3.Connection) -> None:
        try:
            stopping = False
            while not stopping:
                batch: list[_Pending] = []
                item = self._queue.get()
                while True:
                    if item is _STOP:
                        stopping = True
                    else:
                        assert isinstance(item, tuple)
                        batch.append(item)
                    if len(batch) >= self._max_batch:
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

    def _apply(self, conn: sqlite3.Connection, batch: list[_Pending]) -> Exception | None:
        try:
            conn.execute("BEGIN IMMEDIATE")
            for op, _ in batch:
                op.apply(conn)
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

    # -- back on the reactor thread ---------------------------------------------

    def _committed(self, batch: list[_Pending], error: Exception | None) -> None:
        for _, d in batch:
            if error is None:
                d.callback(None)
            else:
                d.errback(self._error(f"{self.path}: {error}"))


def connect_readonly(
    path: str | os.PathLike[str], error: Callable[[str], Exception] = StorageError
) -> sqlite3.Connection:
    """A read-only connection to `path`, for a CLI beside a running server.

    Opens the file read-only (a `mode=ro` URI), so it never creates a database
    nor writes one, and works while the server holds it open in WAL mode: the
    reader sees the last commit. Raises `error` when the file is missing or
    cannot be opened; queries on the connection may still raise sqlite3.Error
    (e.g. a file that is not a database), which the caller reports.
    """
    file = Path(path)
    if not file.is_file():
        raise error(f"{file}: no such database")
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
        raise error(f"{file}: {exc}") from exc
    try:
        # The server's writer may hold the lock for a commit or a checkpoint.
        conn.execute("PRAGMA busy_timeout=5000")
    except sqlite3.Error as exc:
        conn.close()
        raise error(f"{file}: {exc}") from exc
    return conn
