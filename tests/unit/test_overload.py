"""The overload controller: loss and levels from signals and time, decisions by request kind."""

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

LIMITS = Thresholds(max_lag=0.2, max_udp_datagrams=1000, max_transactions=100, drop_factor=4.0,
                    recover_ratio=0.5, recover_after=1.0, lag_samples=1, loss_step=0.25)
CALM = Signals()


def controller(**changes: float) -> OverloadController:
    values = {name: getattr(LIMITS, name) for name in Thresholds.__dataclass_fields__}
    values.update(changes)
    return OverloadController(Thresholds(**values))  # type: ignore[arg-type]


def decisions(c: OverloadController, kind: RequestKind, n: int) -> list[Action]:
    return [c.decide(kind) for _ in range(n)]


def test_below_every_limit_admits_everything() -> None:
    c = controller()
    assert c.update(Signals(lag=0.1, udp_datagrams=900, transactions=99), 0.0) is None
    assert c.level is Level.NORMAL and c.loss == 0
    for kind in RequestKind:
        assert c.decide(kind) is Action.ADMIT
    assert c.refused == c.dropped == 0


@pytest.mark.parametrize("signals", [Signals(lag=0.25), Signals(udp_datagrams=1000),
                                     Signals(transactions=150)])
def test_any_one_signal_over_its_limit_refuses_a_share_of_new_work_only(signals: Signals) -> None:
    c = controller()
    transition = c.update(signals, 5.0)
    assert transition is not None and (transition.old, transition.new) == (Level.NORMAL, Level.REFUSE)
    assert transition.at == 5.0 and transition.signals == signals
    assert c.loss == 0.25
    # One in four, spread evenly, for each refusable kind; ongoing work always passes.
    assert decisions(c, RequestKind.NEW_INVITE, 8).count(Action.REFUSE) == 2
    assert decisions(c, RequestKind.INITIAL_REGISTER, 4).count(Action.REFUSE) == 1
    assert set(decisions(c, RequestKind.ONGOING, 20)) == {Action.ADMIT}
    assert c.refused == 3


def test_sustained_overload_refuses_all_new_work() -> None:
    c = controller()
    for i in range(4):
        c.update(Signals(transactions=120), i * 0.05)
    assert c.loss == 1.0
    assert set(decisions(c, RequestKind.NEW_INVITE, 10)) == {Action.REFUSE}


def test_far_beyond_a_limit_drops_new_work_but_still_admits_ongoing() -> None:
    c = controller()
    c.update(Signals(udp_datagrams=4000), 0.0)
    assert c.level is Level.DROP
    assert c.decide(RequestKind.NEW_INVITE) is Action.DROP
    assert c.decide(RequestKind.ONGOING) is Action.ADMIT
    assert c.dropped == 1


def test_a_disabled_signal_never_counts() -> None:
    c = OverloadController(Thresholds(max_lag=0, max_udp_datagrams=0, max_transactions=10))
    c.update(Signals(lag=100.0, udp_datagrams=1 << 30, transactions=9), 0.0)
    assert c.level is Level.NORMAL


def test_disabled_controller_only_records_the_signals() -> None:
    c = OverloadController(LIMITS, enabled=False)
    assert c.update(Signals(lag=10.0), 0.0) is None
    assert c.level is Level.NORMAL and c.last.lag == 10.0


def test_the_loss_holds_between_the_calm_mark_and_the_limit_and_decays_when_calm() -> None:
    c = controller(loss_step=1.0)
    c.update(Signals(transactions=120), 0.0)
    assert c.loss == 1.0
    # Below the limit but above recover_ratio (50): the loss holds.
    for t in (0.5, 1.0, 2.0, 3.0):
        assert c.update(Signals(transactions=80), t) is None
    assert c.loss == 1.0 and c.level is Level.REFUSE
    # Calm: recover_after (1 s) takes it from 1 to 0.
    c.update(Signals(transactions=40), 3.5)
    assert c.loss == pytest.approx(0.5)
    assert decisions(c, RequestKind.NEW_INVITE, 4).count(Action.REFUSE) == 2
    transition = c.update(Signals(transactions=40), 4.0)
    assert transition is not None and transition.new is Level.NORMAL
    assert c.decide(RequestKind.NEW_INVITE) is Action.ADMIT


def test_drop_is_left_well_below_where_it_began_then_through_full_refusal() -> None:
    c = controller()
    c.update(Signals(lag=1.0), 0.0)
    assert c.level is Level.DROP
    c.update(Signals(lag=0.5), 0.05)  # under 4x, not under 0.5 x 4x
    assert c.level is Level.DROP
    t = c.update(Signals(lag=0.3), 0.1)
    assert t is not None and (t.old, t.new) == (Level.DROP, Level.REFUSE)
    assert c.loss == 1.0
    c.update(CALM, 0.6)
    c.update(CALM, 1.1)
    assert c.level is Level.NORMAL


def test_one_late_tick_is_a_pause_three_in_a_row_is_overload() -> None:
    c = OverloadController(Thresholds(max_lag=0.5, lag_samples=3))
    for t, lag in enumerate([0.0, 1.2, 0.0, 0.0, 0.9, 0.7]):
        c.update(Signals(lag=lag), t * 0.05)
        assert c.level is Level.NORMAL
    c.update(Signals(lag=0.6), 0.3)
    assert c.level is Level.REFUSE


def test_bad_thresholds_are_refused() -> None:
    for bad in (dict(drop_factor=0.5), dict(recover_ratio=0), dict(lag_samples=0),
                dict(loss_step=0), dict(loss_step=1.5), dict(recover_after=-1)):
        with pytest.raises(ValueError):
            Thresholds(**bad)  # type: ignore[arg-type]


@given(st.lists(st.tuples(st.floats(0, 5), st.integers(0, 10_000), st.integers(0, 1000)),
                max_size=60))
def test_loss_and_level_stay_consistent(samples: list[tuple[float, int, int]]) -> None:
    """Whatever the samples: the loss is a share, over a limit means not NORMAL,
    NORMAL means no loss, and a calm spell of recover_after ends any refusal."""
    c = controller()
    now = 0.0
    for lag, queue, tx in samples:
        now += 0.05
        c.update(Signals(lag, queue, tx), now)
        assert 0.0 <= c.loss <= 1.0
        if lag >= 0.2 or queue >= 1000 or tx >= 100:
            assert c.level is not Level.NORMAL
        assert (c.level is Level.NORMAL) == (c.loss == 0.0)
    for _ in range(int(LIMITS.recover_after / 0.05) + 2):
        now += 0.05
        c.update(CALM, now)
    assert c.level is Level.NORMAL


def test_a_late_sample_over_the_limit_counts_for_the_intervals_it_missed() -> None:
    """A busy reactor samples late; the loss must rise as fast per second anyway."""
    c = controller(sample_interval=0.05)
    c.update(CALM, 0.0)
    c.update(Signals(transactions=150), 0.05)  # on time: one step
    assert c.loss == pytest.approx(0.25)
    c.update(Signals(transactions=150), 0.15)  # 100 ms after the last: two steps
    assert c.loss == pytest.approx(0.75)
    c.update(Signals(transactions=150), 0.60)
    assert c.loss == 1.0
    with pytest.raises(ValueError):
        Thresholds(sample_interval=0)
