"""The retransmission schedule (RFC 3261 17.1.1.2, 17.2.1, 13.3.1.4; RFC 3262 3)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from softswitch.sip.retransmit import Backoff


def schedule(backoff: Backoff) -> list[float]:
    delays = [backoff.first()]
    while (delay := backoff.next()) is not None:
        delays.append(delay)
    return delays


def test_default_timers_double_to_t2_and_stop_after_64_t1() -> None:
    # Sent at 0, resent at 0.5, 1.5, 3.5, 7.5, 11.5 ... 31.5; at 35.5 the
    # 32 s are over and nothing more goes out.
    assert schedule(Backoff(0.5, 4.0)) == [0.5, 1.0, 2.0, 4.0] + [4.0] * 7


def test_without_cap_it_keeps_doubling() -> None:
    # Timer A: 0.5, 1, 2, 4, 8, 16, 32 (resends at 0.5 ... 63.5 s until Timer B).
    assert schedule(Backoff(0.5)) == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0]


def test_first_starts_over() -> None:
    backoff = Backoff(0.5, 4.0)
    schedule(backoff)
    assert backoff.next() is None
    assert backoff.first() == 0.5
    assert (backoff.interval, backoff.elapsed) == (0.5, 0.5)
    assert backoff.next() == 1.0
    assert backoff.elapsed == 1.5


def test_same_as_the_arithmetic_it_replaces() -> None:
    # What reliable.py and B2BUA._retransmit_2xx did before: at each tick,
    # add the interval to the time elapsed, give up at 64*T1, else resend
    # and double up to T2.
    for t1, t2 in [(0.5, 4.0), (0.1, 0.3), (0.5, 0.5), (2.0, 4.0), (0.03, 1.0)]:
        expected, interval, elapsed = [t1], t1, 0.0
        while True:
            elapsed += interval
            if elapsed >= 64 * t1:
                break
            interval = min(2 * interval, t2)
            expected.append(interval)
        assert schedule(Backoff(t1, t2)) == expected


@given(t1=st.floats(min_value=0.001, max_value=10.0),
       ratio=st.one_of(st.none(), st.floats(min_value=1.0, max_value=100.0)))
def test_schedule_properties(t1: float, ratio: float | None) -> None:
    t2 = None if ratio is None else t1 * ratio
    backoff = Backoff(t1, t2)
    delays = [backoff.first()]
    assert delays[0] == t1
    while (delay := backoff.next()) is not None:
        delays.append(delay)
        assert len(delays) < 1000
    assert all(a <= b for a, b in zip(delays, delays[1:], strict=False))  # never decrease
    if t2 is not None:
        assert all(d <= t2 for d in delays)  # never above T2
    assert backoff.elapsed == sum(delays)
    assert sum(delays) - delays[-1] < 64 * t1  # each delay was asked for before 64*T1
    assert sum(delays) >= 64 * t1  # and the last one runs past it
    for _ in range(3):
        assert backoff.next() is None  # given up stays given up
