"""The message-summary subscriptions, kept durable in DATA_DIR/mwi.sqlite.

A phone subscribes for an hour and will not ask again before then: a
restart that forgot its subscription would leave its voicemail light
wrong until the next refresh. So every accepted SUBSCRIBE, refresh and
NOTIFY (the dialog's CSeq grows) is saved, each subscription as one JSON
document (`Subscription.as_dict`), on the group-commit writer of
`softswitch.storage`; expired ones are dropped at load.
"""

from __future__ import annotations

import json
import sqlite3

from twisted.internet.defer import Deferred

from softswitch.mwi import Subscription, SubscriptionId
from softswitch.storage import GroupCommitWriter, StorageError, ThreadCaller

DATABASE = "mwi.sqlite"
SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS subscriptions (
    id TEXT PRIMARY KEY,
    mailbox TEXT NOT NULL,
    expires_at REAL NOT NULL,
    document TEXT NOT NULL
);
"""


class SubscriptionStoreError(StorageError):
    """The subscription store cannot take the request."""


def _key(sub_id: SubscriptionId) -> str:
    return "\x1f".join(sub_id)  # a unit separator never appears in Call-IDs or tags


class _Save:
    def __init__(self, sub: Subscription) -> None:
        self.row = (_key(sub.id), sub.mailbox, sub.expires_at, json.dumps(sub.as_dict()))

    def apply(self, conn: sqlite3.Connection) -> None:
        conn.execute("INSERT OR REPLACE INTO subscriptions (id, mailbox, expires_at, document) "
                     "VALUES (?, ?, ?, ?)", self.row)


class _Remove:
    def __init__(self, sub_id: SubscriptionId) -> None:
        self.key = _key(sub_id)

    def apply(self, conn: sqlite3.Connection) -> None:
        conn.execute("DELETE FROM subscriptions WHERE id = ?", (self.key,))


class SQLiteSubscriptionStore:
    def __init__(self, path: str, reactor: ThreadCaller) -> None:
        self._writer = GroupCommitWriter(path, reactor, _SCHEMA, "mwi",
                                         schema_version=SCHEMA_VERSION,
                                         error=SubscriptionStoreError)
        self.unreadable = 0

    def load(self, now: float) -> list[Subscription]:
        """Open the file and return the subscriptions still running at `now`."""

        def prepare(conn: sqlite3.Connection) -> list[Subscription]:
            conn.execute("DELETE FROM subscriptions WHERE expires_at <= ?", (now,))
            found: list[Subscription] = []
            for (document,) in conn.execute("SELECT document FROM subscriptions"):
                try:
                    found.append(Subscription.from_dict(json.loads(document)))
                except (KeyError, TypeError, ValueError):
                    self.unreadable += 1
            return found

        return self._writer.start(prepare)

    def save(self, sub: Subscription) -> Deferred[None]:
        return self._writer.submit(_Save(sub))

    def remove(self, sub_id: SubscriptionId) -> Deferred[None]:
        return self._writer.submit(_Remove(sub_id))

    def close(self) -> None:
        self._writer.close()
