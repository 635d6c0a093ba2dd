"""A stand-in for the reactor's `callFromThread`, for tests of the SQLite stores.

The stores' writer threads hand their results back with `callFromThread`;
here those calls queue up and `wait_for` runs them on the test's thread
until a condition holds, with a deadline (never a fixed sleep).
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred


class ThreadReactor:
    def __init__(self) -> None:
        self.calls: queue.SimpleQueue[tuple[Callable[..., Any], tuple[Any, ...]]] = (
            queue.SimpleQueue()
        )

    def callFromThread(self, f: Callable[..., Any], *args: Any, **kw: Any) -> None:  # noqa: N802
        self.calls.put((f, args))

    def wait_for(self, condition: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("condition not met in time")
            try:
                f, args = self.calls.get(timeout=left)
            except queue.Empty:
                continue
            f(*args)


def settle(reactor: ThreadReactor, d: Deferred[None]) -> object:
    """Run the reactor's queue until `d` fires; its result (or Failure)."""
    results: list[object] = []
    d.addBoth(results.append)
    reactor.wait_for(lambda: bool(results))
    return results[0]
