"""Overload control: when to refuse new work, decided from load signals and the clock.

Pure (no I/O, no Twisted): the monitor in `overload_monitor.py` samples the
signals (event-loop lag, datagrams waiting in the UDP receive queues, server
transactions still owed a final response) and feeds them here with the
time; the SIP core asks `decide(kind)` for each request that would start
new work. Only two kinds of request are ever refused: new INVITEs and
initial REGISTERs (RFC 3261 21.5.4: 503 with Retry-After). ACK, CANCEL,
BYE, in-dialog requests, responses and REGISTER refreshes always go
through: they finish work already accepted, and refusing them is what turns
overload into congestion collapse (calls set up and then lost, bindings
expiring, more retransmissions than before).

Three levels: NORMAL admits everything; REFUSE answers a share of new
work (the `loss`, see `OverloadController`) 503, cheaply: no transaction, no
store, no B2BUA; DROP discards all new work unanswered (when even the 503s
cost too much: one signal at `drop_factor` times its limit). The loss rises
at once with the first sample over a limit and falls only after calm
samples, so the server does not flap.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass


class Level(enum.Enum):
    NORMAL = "normal"
    REFUSE = "refuse"
    DROP = "drop"


class Action(enum.Enum):
    ADMIT = "admit"
    REFUSE = "refuse"  # answer 503 + Retry-After, statelessly
    DROP = "drop"      # no answer at all


class RequestKind(enum.Enum):
    """What a request means for the server's load."""

    NEW_INVITE = "new_invite"              # starts a call: refusable
    INITIAL_REGISTER = "initial_register"  # a binding not held yet: refusable
    ONGOING = "ongoing"                    # finishes accepted work: always admitted


@dataclass(slots=True, frozen=True)
class Signals:
    """One sample of the load, as the monitor measured it."""

    lag: float = 0.0          # seconds the event loop ran late
    udp_datagrams: int = 0    # datagrams waiting in the UDP receive queues (estimated)
    transactions: int = 0     # server transactions still owed a final response
    # The bytes those datagrams take in the kernel: for the log only. A
    # few large datagrams take as many bytes as a thousand requests and
    # cost far less to read, so bytes are not what is limited.
    udp_bytes: int = 0


@dataclass(slots=True, frozen=True)
class Thresholds:
    """Where each signal means "beyond capacity"; 0 disables that signal."""

    max_lag: float = 0.5
    max_udp_datagrams: int = 1000
    max_transactions: int = 4000
    drop_factor: float = 3.0      # one signal above this many times its limit: DROP
    # The lag counted is the smallest of the last `lag_samples` samples: one
    # late tick is a pause (garbage collection, a slow disk write, the
    # start-up), every tick late is a reactor that cannot keep up.
    lag_samples: int = 3
    recover_ratio: float = 0.5    # under this share of every limit is calm...
    recover_after: float = 1.0    # ...and this long of calm takes the loss from 1 to 0 (seconds)
    loss_step: float = 0.1        # loss added by each sample at or over a limit...
    # ...taken every `sample_interval` seconds: a sample that comes late
    # (the reactor was busy, itself a sign of overload) counts for the
    # intervals it missed, so that the loss rises as fast per second
    # however late the samples run.
    sample_interval: float = 0.05

    def __post_init__(self) -> None:
        if self.drop_factor < 1.0:
            raise ValueError("drop_factor must be at least 1")
        if not 0.0 < self.recover_ratio <= 1.0:
            raise ValueError("recover_ratio must be in (0, 1]")
        if self.recover_after < 0:
            raise ValueError("recover_after must not be negative")
        if not 0.0 < self.loss_step <= 1.0:
            raise ValueError("loss_step must be in (0, 1]")
        if self.lag_samples < 1:
            raise ValueError("lag_samples must be at least 1")
        if self.sample_interval <= 0:
            raise ValueError("sample_interval must be positive")


@dataclass(slots=True, frozen=True)
class Transition:
    """A change of level, for the log: when, from what, to what, and the sample that caused it."""

    at: float
    old: Level
    new: Level
    signals: Signals


class OverloadController:
    """Decides, from the last samples, whether new work is admitted.

    Loss-based (the idea of RFC 7339's loss algorithm, applied to our own
    admission): `loss` is the share of new work refused. Each sample with a
    signal at or over its limit adds `loss_step` (times the sample intervals
    since the last one, when it comes late); each calm sample (every
    signal below `recover_ratio` of its limit) takes away its share of
    `recover_after` seconds, so a fully refusing server needs that long of
    calm to admit everything again; in between, the loss holds. Refusing a
    share rather than all-or-nothing keeps the admitted rate near capacity
    instead of swinging between collapse and idleness.

    `level` is read on every message (an attribute, so the check costs
    nothing when all is well); `update` runs once per sample.
    """

    __slots__ = ("thresholds", "enabled", "level", "loss", "refused", "dropped",
                 "last", "entered_at", "_lags", "_debt", "_last_now")

    def __init__(self, thresholds: Thresholds | None = None, *, enabled: bool = True) -> None:
        self.thresholds = thresholds or Thresholds()
        self.enabled = enabled
        self.level = Level.NORMAL
        self.loss = 0.0
        self.refused = 0
        self.dropped = 0
        self.last = Signals()
        self.entered_at = 0.0
        self._lags: deque[float] = deque(maxlen=self.thresholds.lag_samples)
        self._debt = 0.0  # refusals owed at the current loss (deterministic spreading)
        self._last_now: float | None = None

    def _pressure(self, signals: Signals) -> float:
        """The highest ratio of a signal to its limit (1.0 = at capacity)."""
        t = self.thresholds
        ratios = [0.0]
        if t.max_lag > 0:
            self._lags.append(signals.lag)
            if len(self._lags) == self._lags.maxlen:
                ratios.append(min(self._lags) / t.max_lag)
        if t.max_udp_datagrams > 0:
            ratios.append(signals.udp_datagrams / t.max_udp_datagrams)
        if t.max_transactions > 0:
            ratios.append(signals.transactions / t.max_transactions)
        return max(ratios)

    def update(self, signals: Signals, now: float) -> Transition | None:
        """Take one sample; return the change of level it caused, if any."""
        self.last = signals
        elapsed = 0.0 if self._last_now is None else max(0.0, now - self._last_now)
        self._last_now = now
        if not self.enabled:
            return None
        t = self.thresholds
        pressure = self._pressure(signals)
        old = self.level
        if pressure >= 1.0:
            # Up at once: waiting while the queue grows is what collapses.
            # Measured with REGISTER at twice capacity: samples 0.3-0.5 s
            # apart (the reactor reading a batch of datagrams) let the
            # queue pass 3,000 datagrams before the loss reached 0.3.
            intervals = max(1.0, elapsed / t.sample_interval)
            self.loss = min(1.0, self.loss + t.loss_step * intervals)
        elif pressure < t.recover_ratio:
            self.loss = 0.0 if t.recover_after == 0 else max(
                0.0, self.loss - elapsed / t.recover_after)
        if pressure >= t.drop_factor:
            new = Level.DROP
        elif old is Level.DROP and pressure >= t.recover_ratio * t.drop_factor:
            new = Level.DROP  # hysteresis: leave DROP well below where it began
        elif self.loss > 0.0:
            new = Level.REFUSE
        else:
            new = Level.NORMAL
        if new is Level.DROP:
            self.loss = 1.0  # and out of DROP through full refusal, decaying
        if new is old:
            return None
        self.level = new
        self.entered_at = now
        return Transition(now, old, new, signals)

    def decide(self, kind: RequestKind) -> Action:
        """Admit, refuse or drop one request of `kind` at the current level and loss."""
        level = self.level
        if level is Level.NORMAL or kind is RequestKind.ONGOING:
            return Action.ADMIT
        if level is Level.DROP:
            self.dropped += 1
            return Action.DROP
        # Spread the refusals evenly: with loss 0.25, every fourth request.
        self._debt += self.loss
        if self._debt < 1.0:
            return Action.ADMIT
        self._debt -= 1.0
        self.refused += 1
        return Action.REFUSE
