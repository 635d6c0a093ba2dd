"""The repair budget: what to shed when the relay uses more than its share of a core, and what
to repair again when it has room."""

from __future__ import annotations

from dataclasses import dataclass, field

from rtpmedia.relay.shedding import HOLD, RepairBudget, Step

TICK = 0.020


def feed(budget: RepairBudget, share: float, ticks: int, directions: int,
         start: tuple[float, float], shed: int = 0) -> tuple[list[Step], tuple[float, float]]:
    """`ticks` 20 ms ticks at `share` of a core; what was decided at each, and where time got to."""
    now, cpu = start
    out = []
    for _ in range(ticks):
        now += TICK
        cpu += TICK * share
        out.append(budget.tick(now, cpu, directions, shed))
    return out, (now, cpu)


@dataclass
class Relay:
    """A relay whose thread uses `base` (forwarding, signalling) plus `each` per repaired
    direction of a core, at most all of it; it carries out the budget's decisions."""

    budget: RepairBudget
    repaired: int
    base: float
    each: float
    shed: int = 0
    now: float = 100.0
    cpu: float = 7.0
    steps: list[tuple[float, Step]] = field(default_factory=list)  # (time, what was decided)
    peak: float = 0.0  # the highest share since the last `run`

    @property
    def share(self) -> float:
        return min(1.0, self.base + self.each * self.repaired)

    def run(self, seconds: float) -> list[Step]:
        """Ticks for `seconds`; the decisions that changed something."""
        made: list[Step] = []
        self.peak = 0.0
        for _ in range(round(seconds / TICK)):
            self.now += TICK
            self.cpu += TICK * self.share
            self.peak = max(self.peak, self.share)
            step = self.budget.tick(self.now, self.cpu, self.repaired, self.shed)
            if step != HOLD:
                made.append(step)
                self.steps.append((self.now, step))
                self.repaired += step.restore - step.shed
                self.shed += step.shed - step.restore
        return made


def test_nothing_is_shed_within_the_limit_or_for_a_burst_shorter_than_the_window() -> None:
    budget = RepairBudget(limit=0.85, window=0.099)
    steps, t = feed(budget, 0.80, 50, 100, (100.0, 3.0))
    assert steps == [HOLD] * 50
    steps, t = feed(budget, 1.0, 1, 100, t)  # one tick flat out: 84% over the last 100 ms
    assert steps == [HOLD]
    steps, t = feed(budget, 0.5, 5, 100, t)
    assert steps == [HOLD] * 5


def test_over_the_limit_some_are_shed_then_the_share_is_measured_afresh() -> None:
    budget = RepairBudget(limit=0.85, window=0.099)
    _, t = feed(budget, 0.5, 10, 95, (100.0, 3.0))
    steps, t = feed(budget, 1.0, 20, 95, t)
    at = [i for i, s in enumerate(steps) if s != HOLD]
    # Shed once the last 100 ms average passes 85% (90%: 5 points over, at 90/95 points a
    # direction, 6 of them), then every full window (5 ticks) measured afresh while it stays
    # flat out (15 points over: 15). This feed does not take them off; a relay would.
    assert [steps[i] for i in at] == [Step(shed=6)] + [Step(shed=15)] * (len(at) - 1)
    assert at[0] == 3 and all(b - a == 5 for a, b in zip(at, at[1:], strict=False))


def test_the_cost_estimate_sheds_just_enough_to_get_under_the_limit() -> None:
    # 100 repaired at 0.85% of a core each, 10% for the rest: 95%. Charging it all to repair
    # (0.95% each), 6 are shed: 89.9%, and nothing more. A flat tenth would have shed 10.
    relay = Relay(RepairBudget(), repaired=100, base=0.10, each=0.0085)
    assert relay.run(0.4) == []  # not a whole window yet
    assert relay.run(0.2) == [Step(shed=6)]
    assert relay.share < relay.budget.limit
    assert relay.run(30.0) == []  # under the limit, above the low mark: nothing moves
    assert relay.repaired == 94


def test_a_share_measured_over_a_whole_core_is_a_whole_core() -> None:
    # A tick that ran 300 ms late and long: its CPU is read at its end, its time at its start,
    # so 1.6 of a core is measured. Taken at its word: 44 of 100 shed; it is at most a core.
    steps, _ = feed(RepairBudget(window=0.099), 1.6, 6, 100, (0.0, 0.0))
    assert steps[-1] == Step(shed=10)


def test_over_the_limit_with_late_ticks_sheds_as_for_a_whole_core() -> None:
    # 95% of a core on time: 5 points over at 0.95 points a direction, 6 of 100.
    steps, _ = feed(RepairBudget(), 0.95, 26, 100, (0.0, 0.0))
    assert steps[-1] == Step(shed=6)
    # 95% with every other tick skipped: the relay is behind and wants more than it got.
    budget = RepairBudget()
    now, cpu, made = 0.0, 0.0, []
    for _ in range(14):
        now += 0.040
        cpu += 0.040 * 0.95
        made.append(budget.tick(now, cpu, 100, 0))
    assert [s for s in made if s != HOLD] == [Step(shed=11)]


def test_at_least_one_and_never_more_than_there_are() -> None:
    for directions, expect in ((0, 0), (1, 1), (3, 1)):
        steps, _ = feed(RepairBudget(window=0.019), 1.0, 2, directions, (0.0, 0.0))
        assert steps[-1].shed == expect
    # Just over the limit, with the cost of one far above what is over: still one.
    steps, _ = feed(RepairBudget(window=0.019), 0.91, 2, 2, (0.0, 0.0))
    assert steps[-1] == Step(shed=1)


def test_shed_repair_comes_back_after_the_hold_below_the_low_mark() -> None:
    # A burst of plain calls (base 45%) pushes 150 repaired calls (0.4% each) over the limit.
    relay = Relay(RepairBudget(), repaired=150, base=0.45, each=0.004)
    relay.run(5.0)
    assert relay.shed > 0 and relay.share <= relay.budget.limit
    shed_at_peak = relay.shed
    # The burst ends: 5% for the rest. Nothing comes back before the hold has passed (counted
    # from the first window under the low mark)...
    relay.base = 0.05
    assert relay.run(relay.budget.hold) == []
    assert relay.run(relay.budget.window) != []
    # ...then step by step, each at most a tenth of the 150 that want repair, never past the
    # low mark: all back within two seconds.
    relay.run(2.0)
    restores = [s.restore for _, s in relay.steps if s.restore]
    assert restores and sum(restores) == shed_at_peak and relay.shed == 0
    assert max(restores) <= 15 and len(restores) >= shed_at_peak / 15
    assert relay.peak < relay.budget.low
    assert relay.run(30.0) == []  # and nothing more
    # A whole window measured afresh between two.
    times = [t for t, s in relay.steps if s.restore]
    assert all(b - a >= relay.budget.window - 1e-9 for a, b in zip(times, times[1:], strict=False))


def test_only_as_many_as_fit_under_the_low_mark_come_back() -> None:
    # 40 shed; 60% in use with 20 repaired at 1% each: room for 10 at the estimated 3% each
    # (everything charged to repair): 3, within the step of 6 (a tenth of 60).
    relay = Relay(RepairBudget(), repaired=20, base=0.40, each=0.01, shed=40)
    made = relay.run(3.0)
    assert made == [Step(restore=3)]
    assert relay.share < relay.budget.low


def test_repair_comes_back_even_when_plain_forwarding_made_the_overload_and_all_were_shed() -> None:
    # 10 repaired at 1% each; a burst of forwarding takes the relay flat out: shedding repair
    # cannot bring it under the limit, so all 10 go.
    relay = Relay(RepairBudget(), repaired=10, base=0.95, each=0.01)
    relay.run(10.0)
    assert relay.repaired == 0 and relay.shed == 10
    # The burst ends (20%): the cost estimate (everything charged to the one repaired: 20%
    # or more) would fit none, yet they come back, one a window, without going over `low`.
    relay.base = 0.20
    relay.run(10.0)
    assert relay.repaired == 10 and relay.shed == 0 and relay.peak < relay.budget.low


def test_nothing_comes_back_while_above_the_low_mark_or_for_a_dip_shorter_than_the_hold() -> None:
    relay = Relay(RepairBudget(), repaired=100, base=0.35, each=0.004, shed=30)  # 75%
    assert relay.run(20.0) == []
    relay.base = 0.20  # 60% for a second, then 75% again: a lull between bursts
    assert relay.run(1.0) == []
    relay.base = 0.35
    assert relay.run(20.0) == []
    assert relay.shed == 30


def test_nothing_comes_back_while_the_ticks_come_late() -> None:
    # 30% of a core, but every other tick skipped: the relay is kept off the CPU by others.
    budget = RepairBudget()
    now, cpu, made = 100.0, 7.0, []
    for _ in range(200):  # 16 s
        now += 0.080
        cpu += 0.080 * 0.3
        made.append(budget.tick(now, cpu, 50, 20))
    assert set(made) == {HOLD}
    steps, _ = feed(budget, 0.3, 150, 50, (now, cpu), shed=20)  # on time: room after the hold
    assert [s for s in steps if s != HOLD][0].restore > 0


def test_a_steady_load_near_the_limit_neither_sheds_nor_restores() -> None:
    # Just under the limit with some shed: a minute without a change.
    relay = Relay(RepairBudget(), repaired=110, base=0.12, each=0.007, shed=20)  # 89%
    assert relay.run(60.0) == []
    # Just over it: shed to under it once, then nothing more for a minute (no ping-pong).
    relay = Relay(RepairBudget(), repaired=112, base=0.12, each=0.007, shed=20)  # 90.4%
    made = relay.run(60.0)
    assert made == [Step(shed=1)] and relay.share < relay.budget.limit
