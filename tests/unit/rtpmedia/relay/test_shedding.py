"""The repair budget: what to shed when the relay uses more than its share of a core."""

from __future__ import annotations

from rtpmedia.relay.shedding import RepairBudget


def feed(budget: RepairBudget, share: float, ticks: int, directions: int,
         start: tuple[float, float]) -> tuple[list[int], tuple[float, float]]:
    """`ticks` 20 ms ticks at `share` of a core; what was shed at each, and where time got to."""
    now, cpu = start
    out = []
    for _ in range(ticks):
        now += 0.020
        cpu += 0.020 * share
        out.append(budget.tick(now, cpu, directions))
    return out, (now, cpu)


def test_nothing_is_shed_within_the_limit_or_for_a_burst_shorter_than_the_window() -> None:
    budget = RepairBudget(limit=0.85, window=0.099, fraction=0.1)
    shed, t = feed(budget, 0.80, 50, 100, (100.0, 3.0))
    assert shed == [0] * 50
    shed, t = feed(budget, 1.0, 1, 100, t)  # one tick flat out: 84% over the last 100 ms
    assert shed == [0]
    shed, t = feed(budget, 0.5, 5, 100, t)
    assert shed == [0] * 5


def test_a_tenth_is_shed_when_over_the_limit_then_measured_afresh() -> None:
    budget = RepairBudget(limit=0.85, window=0.099, fraction=0.1)
    _, t = feed(budget, 0.5, 10, 95, (100.0, 3.0))
    shed, t = feed(budget, 1.0, 20, 95, t)
    # Shed once the last 100 ms average passes 85%, then every full window
    # (5 ticks) measured afresh while it stays flat out.
    at = [i for i, n in enumerate(shed) if n]
    assert [shed[i] for i in at] == [10] * len(at)
    assert at[0] == 3 and all(b - a == 5 for a, b in zip(at, at[1:], strict=False))


def test_at_least_one_and_never_more_than_there_are() -> None:
    for directions, expect in ((0, 0), (1, 1), (3, 1)):
        shed, _ = feed(RepairBudget(window=0.019), 1.0, 2, directions, (0.0, 0.0))
        assert shed[-1] == expect
    shed, _ = feed(RepairBudget(window=0.019, fraction=2.0), 1.0, 2, 3, (0.0, 0.0))
    assert shed[-1] == 3
