"""Token buckets with the time passed in: bursts, refill, bounded key tables."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from softswitch.ratelimit import KeyedBuckets, TokenBucket


def test_burst_then_sustained_rate() -> None:
    bucket = TokenBucket(capacity=3, rate=1.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert not bucket.take(0.5)
    assert bucket.take(1.0)  # one token back after a second
    assert not bucket.take(1.0)
    assert bucket.level(100.0) == 3  # never above capacity


def test_time_going_backwards_gives_nothing_back() -> None:
    bucket = TokenBucket(capacity=1, rate=1.0)
    assert bucket.take(10.0)
    assert not bucket.take(5.0)


def test_bad_buckets_are_refused() -> None:
    with pytest.raises(ValueError):
        TokenBucket(capacity=0, rate=1)
    with pytest.raises(ValueError):
        KeyedBuckets(capacity=1, rate=-1)


@given(st.lists(st.floats(min_value=0, max_value=1000), min_size=1, max_size=200))
def test_never_more_than_capacity_plus_refill(times: list[float]) -> None:
    """Over any sequence of times, takes <= capacity + rate * elapsed."""
    times.sort()
    bucket = TokenBucket(capacity=5, rate=2.0)
    taken = sum(bucket.take(t) for t in times)
    assert taken <= 5 + 2.0 * (times[-1] - times[0]) + 1e-9


def test_keyed_buckets_are_independent_and_bounded() -> None:
    buckets: KeyedBuckets[str] = KeyedBuckets(capacity=1, rate=0.1, max_keys=2)
    assert buckets.take("a", 0.0)
    assert not buckets.take("a", 0.0)
    assert buckets.take("b", 0.0)
    assert buckets.take("c", 0.0)  # "a" is dropped, the stalest
    assert len(buckets) == 2
    assert buckets.take("a", 0.0)  # forgotten: a fresh bucket
    assert buckets.sweep(100.0) == 2
    assert len(buckets) == 0
