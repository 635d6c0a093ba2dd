"""The location store interface (RFC 3261 section 10.2 "location service").

The registrar writes bindings through this interface and the proxy reads them;
neither knows where they are kept. `sqlite.py` is the single-node store; a
networked store (Redis, PostgreSQL) for several nodes implements the same
Protocol later. The registrar never touches SQL.

The contract, which every implementation keeps:
- `lookup` and `list` are synchronous and served from memory: routing a call
  must never wait on a disk or a network.
- `save` and `remove` return a Deferred that fires once the change is durable;
  the registrar sends its 200 OK only then (RFC 3261 10.3 step 8 promises the
  binding exists), and reads see the change from that moment on.
- `expire(now)` takes the clock from the caller; nothing here reads the time.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from typing import Protocol

from twisted.internet.defer import Deferred

from softswitch.location.binding import Binding


class LocationStoreError(Exception):
    """The store cannot take the request (closed, not loaded, disk failure)."""


class LocationStore(Protocol):
    def load(self, now: float) -> None:
        """Read the persisted bindings into memory, dropping those expired at `now`.

        Called once at start, before any other method.
        """
        ...

    def lookup(self, aor: str) -> builtins.list[Binding]:
        """The current bindings of `aor` (canonical user@domain), highest q first."""
        ...

    def save(
        self,
        aor: str,
        bindings_to_upsert: Iterable[Binding],
        contacts_to_remove: Iterable[str] = (),
    ) -> Deferred[None]:
        """Insert or replace bindings (by contact) and delete contacts of `aor`.

        Fires when durable; errbacks with LocationStoreError if it cannot be.
        """
        ...

    def remove(self, aor: str) -> Deferred[None]:
        """Delete every binding of `aor` (REGISTER with Contact: * and Expires: 0)."""
        ...

    def expire(self, now: float) -> builtins.list[Binding]:
        """Drop bindings expired at `now` from memory at once, from storage in a batch.

        Returns the bindings dropped, e.g. to log them or to notify watchers.
        """
        ...

    def list(self, aor_prefix: str | None = None) -> builtins.list[Binding]:
        """All bindings whose aor starts with `aor_prefix` (all when None)."""
        ...

    def close(self) -> None:
        """Flush pending writes and release resources; later writes fail."""
        ...
