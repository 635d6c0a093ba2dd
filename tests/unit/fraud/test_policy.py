"""The dial policy: classes, concurrent calls and calls per minute, as values."""

from __future__ import annotations

from dialplan import TrunkTarget, UserTarget
from softswitch.fraud.classes import Classifier, DestinationClass
from softswitch.fraud.policy import UNKNOWN, CallPolicy, DialRequest, Limits, Party

C = DestinationClass
ALICE = Party(account="1001", domain="pbx.example.com")
PROVIDER = Party(trunk="provider")
NATIONAL = TrunkTarget("provider", "+12125551234")
ABROAD = TrunkTarget("provider", "+442071234567")
EMERGENCY = TrunkTarget("provider", "911")


def policy(alice: Limits, trunk: Limits | None = None) -> CallPolicy:
    trunk = trunk or Limits(frozenset({C.INTERNAL}))

    def limits_of(party: Party) -> Limits | None:
        if party == ALICE:
            return alice
        if party.trunk == "provider":
            return trunk
        return None

    return CallPolicy(Classifier.build(), limits_of,
                      lambda name: trunk if name == "provider" else None)


def dial(p: CallPolicy, call: str, party: Party, *targets: object, now: float = 0.0,
         main: bool = True):  # noqa: ANN201
    return p.check(DialRequest(call, party, tuple(targets), main, now))  # type: ignore[arg-type]


def test_classes_decide_and_say_why() -> None:
    p = policy(Limits(frozenset({C.INTERNAL, C.NATIONAL})))
    assert dial(p, "c1", ALICE, NATIONAL) is None
    refusal = dial(p, "c2", ALICE, ABROAD)
    assert refusal is not None and refusal.status == 403
    assert refusal.reason == "Destination not allowed (international)"
    # One refused target refuses the whole dial.
    assert dial(p, "c3", ALICE, UserTarget("1002"), ABROAD) is not None


def test_emergency_is_always_allowed_and_never_counted() -> None:
    p = policy(Limits(frozenset(), max_calls=1))
    for call in ("e1", "e2", "e3"):
        assert dial(p, call, ALICE, EMERGENCY) is None
    assert p.active() == {}


def test_unknown_parties_and_trunk_callers_reach_only_internal() -> None:
    p = policy(Limits(frozenset(C)))
    assert dial(p, "t1", UNKNOWN, UserTarget("1002")) is None
    assert dial(p, "t2", UNKNOWN, NATIONAL) is not None
    assert dial(p, "t3", PROVIDER, NATIONAL) is not None  # no trunk to trunk
    assert dial(p, "t4", PROVIDER, UserTarget("1001")) is None


def test_max_calls_counts_calls_not_dials_and_frees_on_end() -> None:
    p = policy(Limits(frozenset({C.INTERNAL, C.NATIONAL}), max_calls=2))
    assert dial(p, "c1", ALICE, NATIONAL) is None
    assert dial(p, "c1", ALICE, NATIONAL) is None  # a fallback dial of the same call
    assert dial(p, "c2", ALICE, UserTarget("1002")) is None
    refusal = dial(p, "c3", ALICE, UserTarget("1002"))
    assert refusal is not None and refusal.status == 486 and "max_calls" in refusal.limit
    p.call_ended("c1")
    assert dial(p, "c3", ALICE, UserTarget("1002")) is None
    assert p.active() == {"user/1001@pbx.example.com": 2}


def test_a_refused_dial_holds_nothing() -> None:
    p = policy(Limits(frozenset({C.INTERNAL, C.NATIONAL}), max_calls=5),
               Limits(frozenset({C.INTERNAL}), max_calls=1))
    assert dial(p, "c1", ALICE, NATIONAL) is None
    assert dial(p, "c2", ALICE, NATIONAL) is not None  # the trunk is full
    assert p.active() == {"user/1001@pbx.example.com": 1, "trunk/provider": 1}


def test_calls_per_minute_with_a_fake_clock() -> None:
    p = policy(Limits(frozenset({C.INTERNAL}), calls_per_minute=2))
    assert dial(p, "c1", ALICE, UserTarget("1002"), now=0.0) is None
    assert dial(p, "c2", ALICE, UserTarget("1002"), now=1.0) is None
    refusal = dial(p, "c3", ALICE, UserTarget("1002"), now=2.0)
    assert refusal is not None and refusal.status == 403 and refusal.reason == "Call rate exceeded"
    assert dial(p, "c3", ALICE, UserTarget("1002"), now=31.0) is None  # one call back per 30 s


def test_trunk_limits_count_both_directions() -> None:
    p = policy(Limits(frozenset({C.INTERNAL, C.NATIONAL})),
               Limits(frozenset({C.INTERNAL}), max_calls=1))
    assert dial(p, "in1", PROVIDER, UserTarget("1001")) is None  # a call in holds the trunk
    assert dial(p, "out1", ALICE, NATIONAL) is not None
    p.call_ended("in1")
    assert dial(p, "out1", ALICE, NATIONAL) is None


def test_transfer_dials_do_not_count_the_caller_again() -> None:
    p = policy(Limits(frozenset({C.INTERNAL}), max_calls=1))
    assert dial(p, "c1", ALICE, UserTarget("1002")) is None
    assert dial(p, "c2", ALICE, UserTarget("1003"), main=False) is None
    assert dial(p, "c3", ALICE, UserTarget("1003")) is not None
