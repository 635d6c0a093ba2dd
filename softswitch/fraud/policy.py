"""Whether a party may dial a target now: destination classes and call limits.

Asked by the call machine for every dial, before any target is resolved
(`CallMachine.dial`): the call's own dial, a dialplan fallback, a blind
transfer's target. The answer is a value: `None` (go on) or a `Refusal`
with the SIP status and reason the caller (or the transferor) is given.

Rules, in order:
- Emergency numbers are always allowed and never counted against a limit.
- Classes: an account may reach the classes of its `allowed_destinations`
  (default `PolicySettings.default_classes`); a trunk's callers those of
  the trunk's `allowed_destinations` (default: internal only, so nothing
  comes in from one trunk and goes out through another); a party we do not
  know (the far end of a trunk leg transferring the call) internal only.
  Refused: 403 "Destination not allowed (CLASS)".
- The call's first dial counts the call against its caller: an account's
  `max_calls` (concurrent, 486 "Too many calls") and `calls_per_minute`
  (403 "Call rate exceeded"), or the same two of the trunk it came from.
- Each trunk dialled counts the call against that trunk's `max_calls` and
  `calls_per_minute` (486 / 403 the same way).
A dial is refused whole when any of its targets is refused.
`call_ended` gives back what a call held. State is per call uuid, so a
call forked twice to one trunk holds one slot there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from dialplan import Target, TrunkTarget
from softswitch.fraud.classes import Classifier, DestinationClass
from softswitch.ratelimit import TokenBucket

TOO_MANY_CALLS = 486
FORBIDDEN = 403


@dataclass(frozen=True, slots=True)
class Party:
    """Who dials: an account of ours, the callers of a trunk, or someone we do not know."""

    account: str | None = None
    domain: str | None = None
    trunk: str | None = None

    @property
    def key(self) -> str:
        if self.account is not None:
            return f"user/{self.account}@{self.domain or ''}"
        if self.trunk is not None:
            return f"trunk/{self.trunk}"
        return "unknown"


UNKNOWN = Party()


@dataclass(frozen=True, slots=True)
class Limits:
    """What one account or trunk may do: classes, concurrent calls, calls per minute."""

    classes: frozenset[DestinationClass]
    max_calls: int | None = None
    calls_per_minute: int | None = None


@dataclass(frozen=True, slots=True)
class DialRequest:
    call: str  # the call's uuid
    party: Party
    targets: tuple[Target, ...]
    main: bool  # the call's own dial (counts the call against its caller)
    now: float


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int
    reason: str
    klass: str = ""  # the destination class refused, if that was the reason
    limit: str = ""  # which limit: max_calls or calls_per_minute, and of whom


@dataclass(slots=True)
class _Counter:
    calls: set[str] = field(default_factory=set)
    bucket: TokenBucket | None = None


class CallPolicy:
    """The classes and limits in force; keeps the calls each account and trunk holds."""

    def __init__(self, classifier: Classifier, limits_of: Callable[[Party], Limits | None],
                 trunk_limits: Callable[[str], Limits | None]) -> None:
        # Read at each dial: a reload of the directory or config changes them.
        self.classifier = classifier
        self._limits_of = limits_of
        self._trunk_limits = trunk_limits
        self._counters: dict[str, _Counter] = {}
        self._held: dict[str, set[str]] = {}  # call uuid -> counter keys

    def check(self, request: DialRequest) -> Refusal | None:
        """Decide a dial; when allowed, the call now holds its slots."""
        klasses = [self.classifier.classify(t) for t in request.targets]
        if klasses and all(k is DestinationClass.EMERGENCY for k in klasses):
            return None
        limits = self._limits_of(request.party) if request.party != UNKNOWN else None
        allowed = limits.classes if limits is not None \
            else frozenset({DestinationClass.INTERNAL})
        for klass in klasses:
            if klass not in allowed and klass is not DestinationClass.EMERGENCY:
                return Refusal(FORBIDDEN, f"Destination not allowed ({klass.value})",
                               klass=klass.value)
        wanted: list[tuple[str, Limits]] = []
        if request.main and limits is not None:
            wanted.append((request.party.key, limits))
        for target in request.targets:
            if isinstance(target, TrunkTarget):
                trunk = self._trunk_limits(target.trunk)
                if trunk is not None:
                    wanted.append((Party(trunk=target.trunk).key, trunk))
        held = self._held.get(request.call, set())
        new = [(key, lim) for key, lim in dict(wanted).items() if key not in held]
        for key, lim in new:
            refusal = self._would_refuse(key, lim, request.now)
            if refusal is not None:
                return refusal
        for key, lim in new:
            counter = self._counters.setdefault(key, _Counter())
            counter.calls.add(request.call)
            if lim.calls_per_minute is not None:
                assert counter.bucket is not None
                counter.bucket.take(request.now)
            self._held.setdefault(request.call, set()).add(key)
        return None

    def _would_refuse(self, key: str, limits: Limits, now: float) -> Refusal | None:
        counter = self._counters.get(key)
        if limits.max_calls is not None and counter is not None \
                and len(counter.calls) >= limits.max_calls:
            return Refusal(TOO_MANY_CALLS, "Too many calls", limit=f"{key} max_calls")
        if limits.calls_per_minute is not None:
            counter = self._counters.setdefault(key, _Counter())
            per_minute = float(limits.calls_per_minute)
            if counter.bucket is None or counter.bucket.capacity != per_minute:
                # New, or the limit changed on reload: start a full bucket.
                counter.bucket = TokenBucket(per_minute, per_minute / 60.0)
            if counter.bucket.level(now) < 1.0:
                return Refusal(FORBIDDEN, "Call rate exceeded",
                               limit=f"{key} calls_per_minute")
        return None

    def call_ended(self, call: str) -> None:
        """The call is over: give back the slots it held."""
        for key in self._held.pop(call, ()):
            counter = self._counters.get(key)
            if counter is None:
                continue
            counter.calls.discard(call)
            if not counter.calls and counter.bucket is None:
                del self._counters[key]

    def active(self) -> Mapping[str, int]:
        """Calls held per account and trunk, for logs and listings."""
        return {key: len(c.calls) for key, c in self._counters.items() if c.calls}
