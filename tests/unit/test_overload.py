"""The overload controller: levels from signals and time, decisions by request kind."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from softswitch.overload import (
    Action,
    Level,
    OverloadController,
    RequestKind,
    Signals,
    Thresholds,
)

LIMITS = Thresholds(max_lag=0.2, max_udp_queue=1000, max_transactions=100,
                    drop_factor=4.0, recover_ratio=0.5, recover_after=1.0, lag_samples=1)
CALM = Signals()
ORDER = [Level.NORMAL, Level.REFUSE, Level.DROP]


def controller() -> OverloadController:
    return OverloadController(LIMITS)


def test_below_every_limit_admits_everything() -> None:
    c = controller()
    assert c.update(Signals(lag=0.1, udp_queue=900, transactions=99), 0.0) is None
    assert c.level is Level.NORMAL
    for kind in RequestKind:
        assert c.decide(kind) is Action.ADMIT
    assert c.refused == c.dropped == 0


@pytest.mark.parametrize("signals", [Signals(lag=0.25), Signals(udp_queue=1000),
                                     Signals(transactions=150)])
def test_any_one_signal_over_its_limit_refuses_new_work_only(signals: Signals) -> None:
    c = controller()
    transition = c.update(signals, 5.0)
    assert transition is not None and (transition.old, transition.new) == (Level.NORMAL, Level.REFUSE)
    assert transition.at == 5.0 and transition.signals == signals
    assert c.decide(RequestKind.NEW_INVITE) is Action.REFUSE
    assert c.decide(RequestKind.INITIAL_REGISTER) is Action.REFUSE
    assert c.decide(RequestKind.ONGOING) is Action.ADMIT
    assert c.refused == 2


def test_far_beyond_a_limit_drops_new_work_but_still_admits_ongoing() -> None:
    c = controller()
    c.update(Signals(udp_queue=4000), 0.0)
    assert c.level is Level.DROP
    assert c.decide(RequestKind.NEW_INVITE) is Action.DROP
    assert c.decide(RequestKind.ONGOING) is Action.ADMIT
    assert c.dropped == 1


def test_a_disabled_signal_never_counts() -> None:
    c = OverloadController(Thresholds(max_lag=0, max_udp_queue=0, max_transactions=10))
    c.update(Signals(lag=100.0, udp_queue=1 << 30, transactions=9), 0.0)
    assert c.level is Level.NORMAL


def test_disabled_controller_only_records_the_signals() -> None:
    c = OverloadController(LIMITS, enabled=False)
    assert c.update(Signals(lag=10.0), 0.0) is None
    assert c.level is Level.NORMAL and c.last.lag == 10.0


def test_recovery_waits_for_a_calm_spell_below_the_low_water_mark() -> None:
    c = controller()
    c.update(Signals(transactions=120), 0.0)
    # Below the limit but above recover_ratio (50): still refusing.
    for t in (0.5, 1.0, 2.0, 3.0):
        assert c.update(Signals(transactions=80), t) is None
    assert c.level is Level.REFUSE
    # Calm from 3.5 s; 1 s later, normal again.
    assert c.update(Signals(transactions=40), 3.5) is None
    assert c.update(Signals(transactions=40), 4.0) is None
    transition = c.update(Signals(transactions=40), 4.5)
    assert transition is not None and transition.new is Level.NORMAL
    assert c.decide(RequestKind.NEW_INVITE) is Action.ADMIT


def test_a_spike_during_the_calm_spell_restarts_it() -> None:
    c = controller()
    c.update(Signals(lag=0.3), 0.0)
    c.update(CALM, 0.1)
    c.update(Signals(lag=0.15), 0.9)  # not over the limit, but not calm
    assert c.update(CALM, 1.2) is None
    assert c.level is Level.REFUSE
    assert c.update(CALM, 2.2) is not None
    assert c.level is Level.NORMAL


def test_drop_steps_down_through_refuse() -> None:
    c = controller()
    c.update(Signals(lag=1.0), 0.0)
    assert c.level is Level.DROP
    # Calm for DROP means below recover_ratio x drop_factor of a limit.
    c.update(Signals(lag=0.3), 0.1)
    t = c.update(Signals(lag=0.3), 1.1)
    assert t is not None and (t.old, t.new) == (Level.DROP, Level.REFUSE)
    c.update(CALM, 1.2)
    assert c.level is Level.REFUSE
    t = c.update(CALM, 2.3)
    assert t is not None and t.new is Level.NORMAL


def test_going_up_is_immediate_even_from_refuse() -> None:
    c = controller()
    c.update(Signals(lag=0.3), 0.0)
    t = c.update(Signals(lag=0.9), 0.05)
    assert t is not None and (t.old, t.new) == (Level.REFUSE, Level.DROP)


def test_one_late_tick_is_a_pause_three_in_a_row_is_overload() -> None:
    c = OverloadController(Thresholds(max_lag=0.5, lag_samples=3))
    for t, lag in enumerate([0.0, 1.2, 0.0, 0.0, 0.9, 0.7]):
        c.update(Signals(lag=lag), t * 0.05)
        assert c.level is Level.NORMAL
    c.update(Signals(lag=0.6), 0.3)
    assert c.level is Level.REFUSE


def test_bad_thresholds_are_refused() -> None:
    with pytest.raises(ValueError):
        Thresholds(drop_factor=0.5)
    with pytest.raises(ValueError):
        Thresholds(recover_ratio=0)
    with pytest.raises(ValueError):
        Thresholds(lag_samples=0)


@given(st.lists(st.tuples(st.floats(0, 5), st.integers(0, 10_000), st.integers(0, 1000)),
                max_size=60))
def test_it_never_flaps_faster_than_the_calm_spell(samples: list[tuple[float, int, int]]) -> None:
    """Each step down follows at least recover_after seconds of calm: at most
    one downward transition per recover_after of clock time."""
    c = controller()
    downs: list[float] = []
    for i, (lag, queue, tx) in enumerate(samples):
        now = i * 0.1
        t = c.update(Signals(lag, queue, tx), now)
        if t is not None and ORDER.index(t.new) < ORDER.index(t.old):
            downs.append(now)
        # The level always matches the last sample's pressure or is above it.
        if lag >= 0.2 or queue >= 1000 or tx >= 100:
            assert c.level is not Level.NORMAL
    for a, b in zip(downs, downs[1:], strict=False):
        assert b - a >= LIMITS.recover_after - 1e-9
