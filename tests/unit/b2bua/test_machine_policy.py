"""The call machine asks the dial policy before any target rings (toll fraud).

A refusal of the call's own dial is final (403/486 with its reason and a
CDR), whatever fallback the dialplan has; a refused transfer is told to
the referrer and the call goes on.
"""

from __future__ import annotations

from softswitch.b2bua import events as ev
from softswitch.b2bua.machine import CallState
from softswitch.config import TrunkSettings
from softswitch.fraud.classes import Classifier, DestinationClass
from softswitch.fraud.policy import CallPolicy, Limits
from softswitch.fraud.policy import Party as Dialler
from tests.support.calls import CallDriver, contact_dest, invite
from tests.unit.b2bua.test_machine_transfer import notifies, refer

C = DestinationClass
TRUNK = TrunkSettings(name="provider", host="192.0.2.9")


def driver(alice: Limits) -> tuple[CallDriver, CallPolicy]:
    def limits_of(party: Dialler) -> Limits | None:
        return alice if party.account == "1001" else None

    policy = CallPolicy(Classifier.build(), limits_of, lambda name: None)
    d = CallDriver(destinations={
        "1002": [contact_dest("1002")], "1003": [contact_dest("1003", "192.0.2.3")],
        "95551234": [contact_dest("5551234", "192.0.2.9", trunk="provider")]},
        settings_overrides={"trunks": {"provider": TRUNK}, "dial_policy": policy.check})
    return d, policy


def test_a_refused_destination_gets_403_with_the_reason_and_a_cdr_and_nothing_rings() -> None:
    d, _ = driver(Limits(frozenset({C.INTERNAL})))
    machine = d.start(invite("95551234"))
    assert d.requests("INVITE") == []
    assert d.of(ev.Resolve) == []
    (final,) = [e.response for e in d.of(ev.Respond) if e.response.status >= 200]
    assert (final.status, final.reason) == (403, "Destination not allowed (national)")
    (cdr,) = d.cdrs
    assert cdr.hangup_cause == "403 Destination not allowed (national)"
    assert cdr.disposition == "FAILED"
    assert machine.state is CallState.ENDED


def test_max_calls_refuses_the_next_call_with_486_until_one_ends() -> None:
    d, policy = driver(Limits(frozenset({C.INTERNAL}), max_calls=1))
    first = d.start(invite("1002"))
    assert len(d.requests("INVITE")) == 1
    second = d.start(invite("1003"))
    assert d.responses(second.a_ref)[-1] == 486
    assert d.cdrs[-1].hangup_cause == "486 Too many calls"
    assert len(d.requests("INVITE")) == 1
    d.answer(first, d.requests("INVITE")[0], 486)  # the first call fails...
    assert d.cdrs[-1].uuid == first.uuid
    policy.call_ended(first.uuid)  # ...and the glue gives its slot back (CallEnded)
    assert policy.active() == {}
    d.start(invite("1003"))
    assert len(d.requests("INVITE")) == 2
    assert policy.active() == {"user/1001@pbx.example.com": 1}


def test_a_transfer_by_a_trunk_party_to_a_number_is_refused() -> None:
    d, _ = driver(Limits(frozenset({C.INTERNAL, C.NATIONAL})))
    machine, caller, callee = d.connect("95551234")  # 1001 calls out: allowed
    assert machine.state is CallState.CONFIRMED
    invites = len(d.requests("INVITE", "192.0.2.9"))
    # The far end on the trunk asks us to call another number for it.
    assert d.responses(refer(d, machine, callee, "95551234")) == [202]
    assert notifies(d, "192.0.2.9")[-1] == b"SIP/2.0 403 Destination not allowed (national)"
    assert len(d.requests("INVITE", "192.0.2.9")) == invites
    assert machine.state is CallState.CONFIRMED


def test_a_transfer_by_the_caller_follows_the_callers_classes() -> None:
    d, _ = driver(Limits(frozenset({C.INTERNAL})))
    machine, caller, _ = d.connect("1002")
    refer(d, machine, caller, "95551234")
    assert notifies(d, "192.0.2.1")[-1].startswith(b"SIP/2.0 403")
    assert d.requests("INVITE", "192.0.2.9") == []
    refer(d, machine, caller, "1003")
    assert len(d.requests("INVITE", "192.0.2.3")) == 1
