"""Relay choice: weighted spread, down after missed pings, back when it answers."""

from __future__ import annotations

from collections import Counter

import pytest

from softswitch.relay.pool import RelayPool


def test_weights_spread_new_calls() -> None:
    pool = RelayPool([("udp:a:1", 3), ("udp:b:1", 1)])
    picks = Counter(pool.choose() for _ in range(400))
    assert picks == {"udp:a:1": 300, "udp:b:1": 100}
    # Smooth: b is never starved for long, a never gets more than 3 in a row.
    seq = [pool.choose() for _ in range(8)]
    assert "udp:b:1" in seq[:4] and "udp:b:1" in seq[4:]


def test_down_after_missed_pings_and_up_again() -> None:
    pool = RelayPool([("udp:a:1", 1), ("udp:b:1", 1)], misses_allowed=2)
    assert pool.missed("udp:a:1") is False  # one miss is not enough
    assert pool.is_up("udp:a:1")
    assert pool.missed("udp:a:1") is True
    assert not pool.is_up("udp:a:1")
    assert {pool.choose() for _ in range(10)} == {"udp:b:1"}
    assert pool.answered("udp:a:1", now=12.0) is True
    assert {pool.choose() for _ in range(10)} == {"udp:a:1", "udp:b:1"}
    assert pool.answered("udp:a:1", now=13.0) is False


def test_an_answer_resets_the_misses() -> None:
    pool = RelayPool([("udp:a:1", 1)], misses_allowed=2)
    pool.missed("udp:a:1")
    pool.answered("udp:a:1", 1.0)
    assert pool.missed("udp:a:1") is False and pool.is_up("udp:a:1")


def test_all_down_gives_none_and_weight_zero_gets_nothing() -> None:
    pool = RelayPool([("udp:a:1", 1), ("udp:z:1", 0)], misses_allowed=1)
    assert {pool.choose() for _ in range(5)} == {"udp:a:1"}
    pool.missed("udp:a:1")
    assert pool.choose() is None
    assert pool.missed("udp:unknown:1") is False


def test_an_empty_pool_is_refused() -> None:
    with pytest.raises(ValueError):
        RelayPool([])
