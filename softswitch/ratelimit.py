"""Token buckets: how often something may happen, with the time passed in.

A bucket holds up to `capacity` tokens and gains `rate` tokens a second;
each event takes one. `capacity` is the burst allowed after a quiet spell,
`rate` the sustained pace. No clock is read here: every call takes `now`
(the reactor's `seconds()` in production, any float in tests), so the
buckets are pure values to test and cheap to keep by the thousand.

`KeyedBuckets` keeps one bucket per key (a source address, an account) and
forgets full ones, so that a scan from many addresses cannot grow it
without bound: at most `max_keys` live at once, the stalest dropped first.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


@dataclass(slots=True)
class TokenBucket:
    capacity: float
    rate: float  # tokens per second
    tokens: float = -1.0  # -1: full (set on the first use)
    stamp: float = 0.0

    def __post_init__(self) -> None:
        if self.capacity <= 0 or self.rate < 0:
            raise ValueError("a bucket needs capacity > 0 and rate >= 0")

    def _refill(self, now: float) -> None:
        if self.tokens < 0:
            self.tokens, self.stamp = self.capacity, now
            return
        if now > self.stamp:
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def take(self, now: float, cost: float = 1.0) -> bool:
        """Take `cost` tokens if there are enough; False (and nothing taken) if not."""
        self._refill(now)
        if self.tokens >= cost:
            self.tokens -= cost
            return True
        return False

    def level(self, now: float) -> float:
        """Tokens available at `now`."""
        self._refill(now)
        return self.tokens

    def full(self, now: float) -> bool:
        return self.level(now) >= self.capacity


class KeyedBuckets(Generic[K]):
    """One `TokenBucket(capacity, rate)` per key, at most `max_keys` of them."""

    def __init__(self, capacity: float, rate: float, max_keys: int = 65536) -> None:
        TokenBucket(capacity, rate)  # validate once, here
        self.capacity = capacity
        self.rate = rate
        self.max_keys = max_keys
        self._buckets: OrderedDict[K, TokenBucket] = OrderedDict()

    def take(self, key: K, now: float, cost: float = 1.0) -> bool:
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._buckets.popitem(last=False)
            bucket = self._buckets[key] = TokenBucket(self.capacity, self.rate)
        else:
            self._buckets.move_to_end(key)
        return bucket.take(now, cost)

    def forget(self, key: K) -> None:
        self._buckets.pop(key, None)

    def sweep(self, now: float) -> int:
        """Drop the buckets that refilled (they hold nothing a new one would not)."""
        full = [key for key, bucket in self._buckets.items() if bucket.full(now)]
        for key in full:
            del self._buckets[key]
        return len(full)

    def __len__(self) -> int:
        return len(self._buckets)
