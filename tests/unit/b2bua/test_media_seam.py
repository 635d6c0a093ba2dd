"""The asynchronous media seam: a media side that answers late, and one that fails.

First the call machine through `CallDriver` (media held until the test
answers, or failed with 488/503), then the glue (`B2BUA`) with a fake
media side whose answers are Deferreds fired by hand: no reactor, no
sockets, a Twisted `task.Clock`, and a stand-in core that records what
would be sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from softswitch.b2bua import events as ev
from softswitch.b2bua.b2bua import B2BUA
from softswitch.b2bua.legs import LegId
from softswitch.b2bua.machine import CallMachine, CallState
from softswitch.b2bua.media import DirectMedia, MediaError
from softswitch.sip.message import Request, Response
from softswitch.sip.peer import Peer
from tests.support.calls import (
    SDP,
    SDP_B,
    CallDriver,
    Party,
    contact_dest,
    invite,
)

RELAYED = SDP.replace(b"192.0.2.1", b"203.0.113.9")  # what a relay would put in
RELAYED_B = SDP_B.replace(b"192.0.2.2", b"203.0.113.9")
SDP_C = SDP.replace(b"m=audio 4000", b"m=audio 4002")
TWO = {"1002": [contact_dest("1002")], "1003": [contact_dest("1003", "192.0.2.3")]}


def late() -> CallDriver:
    return CallDriver(destinations=dict(TWO), media_mode="late")


def answer_held(d: CallDriver, kind: type, body: bytes) -> None:
    """The media side answers the one held question of `kind` with `body`."""
    (held,) = [(uuid, e) for uuid, e in d.held_media if isinstance(e, kind)]
    d.held_media.remove(held)
    d.feed(d.calls[held[0]], ev.MediaReady(held[1].ref, body))


def fail_held(d: CallDriver, status: int, reason: str) -> None:
    (held,) = d.held_media
    d.held_media.clear()
    d.feed(d.calls[held[0]], ev.MediaFailed(held[1].ref, status, reason))


def ended_cleanly(d: CallDriver, machine: CallMachine) -> None:
    assert len(d.cdrs) == 1 and len(d.of(ev.CallEnded)) == 1
    assert ev.ReleaseMedia(None) in d.effects
    assert machine.finished
    assert not d.dialogs  # every dialog the call opened is closed
    assert not [key for key in d.timers if key[0] == machine.uuid]


# -- the media side answers late ----------------------------------------------------------


def test_no_invite_goes_to_the_callee_until_the_offer_is_ready() -> None:
    d = late()
    machine = d.start(invite("1002"))
    (offer,) = d.of(ev.MediaOffer)
    assert offer.body == SDP and offer.source == machine.a.id
    assert d.requests("INVITE") == []
    answer_held(d, ev.MediaOffer, RELAYED)
    (sent,) = d.requests("INVITE")
    assert sent.request.body == RELAYED  # the media side's SDP, not the caller's
    assert offer.sink.branch == sent.request.top_via.params["branch"]


def test_the_200_to_the_caller_waits_for_the_media_answer() -> None:
    d = late()
    machine = d.start(invite("1002"))
    answer_held(d, ev.MediaOffer, RELAYED)
    (sent,) = d.requests("INVITE")
    d.answer(machine, sent, 200, to_tag="b", body=SDP_B)
    assert 200 not in d.responses(machine.a_ref)
    assert machine.state is CallState.DIALING
    (answer,) = d.of(ev.MediaAnswer)
    assert answer.body == SDP_B and answer.sink == machine.a.id
    answer_held(d, ev.MediaAnswer, RELAYED_B)
    assert d.responses(machine.a_ref)[-1] == 200
    assert d.caller_ok(machine).body == RELAYED_B
    assert machine.state is CallState.ANSWERED


def test_cancel_while_the_offer_is_pending_sends_no_invite_and_frees_the_fork() -> None:
    d = late()
    machine = d.start(invite("2000"))  # two forks, both offers with the media side
    assert len(d.of(ev.MediaOffer)) == 2
    d.feed(machine, ev.CancelReceived())
    assert d.responses(machine.a_ref)[-1] == 487
    forks = [leg for leg in machine.legs if not leg.caller_side]
    assert {(machine.uuid, leg.id) for leg in forks} <= set(d.released)
    # The media side answers after all: still nobody is rung.
    d.release_media_answers()
    assert d.requests("INVITE") == [] and d.of(ev.SendCancel) == []
    ended_cleanly(d, machine)


def test_early_media_waits_for_the_media_side_too() -> None:
    d = late()
    machine = d.start(invite("1002"))
    answer_held(d, ev.MediaOffer, RELAYED)
    (sent,) = d.requests("INVITE")
    d.answer(machine, sent, 183, to_tag="b", body=SDP_B)
    assert 183 not in d.responses(machine.a_ref)
    answer_held(d, ev.MediaAnswer, RELAYED_B)
    (early,) = [e.response for e in d.of(ev.Respond) if e.response.status == 183]
    assert early.body == RELAYED_B


# -- the media side fails ------------------------------------------------------------------


@pytest.mark.parametrize("status", [488, 503])
def test_an_offer_refused_fails_the_dial_with_that_status(status: int) -> None:
    d = late()
    machine = d.start(invite("1002"))
    fail_held(d, status, "Media refused")
    assert d.requests("INVITE") == []
    assert d.responses(machine.a_ref)[-1] == status
    ended_cleanly(d, machine)
    (cdr,) = d.cdrs
    assert cdr.sip_code == status and cdr.answered is None


def test_one_fork_refused_by_the_media_side_the_other_still_rings() -> None:
    d = late()
    machine = d.start(invite("2000"))
    first, second = [e for _, e in d.held_media]
    d.held_media.clear()
    d.feed(machine, ev.MediaFailed(first.ref, 503, "No ports"))
    assert (machine.uuid, first.sink) in d.released
    d.feed(machine, ev.MediaReady(second.ref, RELAYED))
    (sent,) = d.requests("INVITE")
    assert machine.state is CallState.DIALING
    d.answer(machine, sent, 486)
    assert d.responses(machine.a_ref)[-1] == 486  # the callee's answer beats ours
    ended_cleanly(d, machine)


@pytest.mark.parametrize("status", [488, 503])
def test_the_callees_answer_refused_acks_and_byes_the_callee_and_fails_the_caller(
        status: int) -> None:
    d = late()
    machine = d.start(invite("1002"))
    answer_held(d, ev.MediaOffer, RELAYED)
    (sent,) = d.requests("INVITE")
    d.answer(machine, sent, 200, to_tag="b", body=SDP_B)
    fail_held(d, status, "Media refused")
    (ack,) = d.of(ev.SendAck)
    assert ack.peer == sent.peer and ack.request.to_tag == "b"
    (bye,) = d.requests("BYE")
    assert bye.peer == sent.peer
    assert d.responses(machine.a_ref)[-1] == status
    assert 200 not in d.responses(machine.a_ref)
    ended_cleanly(d, machine)


@pytest.mark.parametrize("status", [488, 503])
def test_a_reinvite_offer_refused_gets_the_status_and_the_call_goes_on(status: int) -> None:
    d = CallDriver(destinations=dict(TWO))
    machine, caller, _ = d.connect()
    d.media_mode, d.media_failure = "fail", (status, "Media refused")
    ref = caller.send(d, machine, caller.request("INVITE", body=SDP_C))
    assert d.responses(ref) == [status]
    assert d.requests("INVITE", "192.0.2.2")[1:] == []
    assert machine.state is CallState.CONFIRMED
    # The media side is back: the next re-INVITE goes through.
    d.media_mode = "now"
    ref = caller.send(d, machine, caller.request("INVITE", body=SDP_C))
    (relayed,) = d.requests("INVITE", "192.0.2.2")[1:]
    assert relayed.request.body == SDP_C
    assert d.cdrs == []


def test_a_reinvite_answer_refused_gets_the_status_and_the_callee_is_acked() -> None:
    d = CallDriver(destinations=dict(TWO))
    machine, caller, _ = d.connect()
    d.media_mode = "late"
    ref = caller.send(d, machine, caller.request("INVITE", body=SDP_C))
    answer_held(d, ev.MediaOffer, SDP_C)
    (relayed,) = d.requests("INVITE", "192.0.2.2")[1:]
    d.answer(machine, relayed, 200, body=SDP_B)
    fail_held(d, 488, "Media refused")
    assert d.responses(ref) == [488]
    # RFC 3261 13.2.2.4: the callee's 2xx is ACKed all the same.
    assert [a for a in d.of(ev.SendAck) if a.request.cseq.seq == relayed.request.cseq.seq]
    assert machine.state is CallState.CONFIRMED


def test_the_end_of_a_call_releases_its_media_once() -> None:
    d = CallDriver(destinations=dict(TWO))
    machine, caller, _ = d.connect()
    caller.send(d, machine, caller.request("BYE"))
    assert [leg for uuid, leg in d.released if leg is None] == [None]
    ended_cleanly(d, machine)


# -- the glue: B2BUA._media through its public entry points ------------------------------


@dataclass
class FakeMedia:
    """A media side whose every answer is a Deferred the test fires, or an error."""

    raises: MediaError | None = None
    asked: list[tuple[str, LegId, LegId, bytes]] = field(default_factory=list)
    pending: list[Deferred[bytes]] = field(default_factory=list)
    released: list[tuple[str, LegId | None]] = field(default_factory=list)

    def _ask(self, call: str, source: LegId, sink: LegId, body: bytes) -> Deferred[bytes]:
        self.asked.append((call, source, sink, body))
        if self.raises is not None:
            raise self.raises
        d: Deferred[bytes] = Deferred()
        self.pending.append(d)
        return d

    def offer(self, call: str, source: LegId, sink: LegId, body: bytes,
              content_type: str | None) -> Deferred[bytes]:
        return self._ask(call, source, sink, body)

    def answer(self, call: str, source: LegId, sink: LegId, body: bytes,
               content_type: str | None) -> Deferred[bytes]:
        return self._ask(call, source, sink, body)

    def release(self, call: str, leg: LegId | None) -> None:
        self.released.append((call, leg))


@dataclass
class FakeTransactions:
    sent: list[tuple[Request, Peer, dict[str, Any]]] = field(default_factory=list)

    def send_request(self, request: Request, peer: Peer, **callbacks: Any) -> Any:
        self.sent.append((request, peer, callbacks))
        return self


class FakeCore:
    """What `B2BUA` needs of the SIP core to carry out effects: sending."""

    def __init__(self) -> None:
        self.transactions = FakeTransactions()
        self.acks: list[Request] = []

    def send(self, request: Request, peer: Peer) -> None:
        self.acks.append(request)


@dataclass
class FakeServerTransaction:
    request: Request
    source: Peer
    responses: list[Response] = field(default_factory=list)

    def respond(self, response: Response) -> None:
        self.responses.append(response)


def glue(media: FakeMedia) -> tuple[B2BUA, FakeCore, Party, CallMachine, list[Any]]:
    """An established call restored into a `B2BUA` built from stand-ins (no registrar)."""
    d = CallDriver(destinations=dict(TWO))
    machine, caller, _ = d.connect()
    core, ended = FakeCore(), []
    b2bua = B2BUA(core, None, lambda: None,  # type: ignore[arg-type]
                  lambda peer: ("198.51.100.1", 5060), [], Clock(), media=media,  # type: ignore[arg-type]
                  on_call_end=ended.append, identity=object())  # type: ignore[arg-type]
    restored = b2bua.restore(machine.snapshot())
    assert restored is not None
    return b2bua, core, caller, restored, ended


def reinvite(b2bua: B2BUA, caller: Party) -> FakeServerTransaction:
    request = caller.request("INVITE", body=SDP_C)
    tx = FakeServerTransaction(request, caller.source)
    b2bua.in_dialog(tx, request)  # type: ignore[arg-type]
    return tx


def relayed_invites(core: FakeCore) -> list[Request]:
    return [r for r, _, _ in core.transactions.sent if r.method == "INVITE"]


def test_glue_a_deferred_offer_is_sent_on_when_it_fires() -> None:
    media = FakeMedia()
    b2bua, core, caller, machine, _ = glue(media)
    tx = reinvite(b2bua, caller)
    (asked,) = media.asked
    assert asked[0] == machine.uuid and asked[3] == SDP_C
    assert relayed_invites(core) == []  # waiting for the media side
    media.pending.pop().callback(RELAYED)
    (sent,) = relayed_invites(core)
    assert sent.body == RELAYED
    assert tx.responses == []


@pytest.mark.parametrize("status", [488, 503])
def test_glue_a_media_error_raised_answers_the_reinvite_with_its_status(status: int) -> None:
    media = FakeMedia(raises=MediaError(status, "Media refused"))
    b2bua, core, caller, machine, ended = glue(media)
    tx = reinvite(b2bua, caller)
    assert [r.status for r in tx.responses] == [status]
    assert relayed_invites(core) == []
    assert machine.state is CallState.CONFIRMED and ended == []
    assert b2bua.calls.get(machine.uuid) is not None


def test_glue_a_failed_deferred_with_a_media_error_gives_its_status() -> None:
    media = FakeMedia()
    b2bua, core, caller, machine, _ = glue(media)
    tx = reinvite(b2bua, caller)
    media.pending.pop().errback(MediaError(488, "Codec not served"))
    assert [(r.status, r.reason) for r in tx.responses] == [(488, "Codec not served")]
    assert relayed_invites(core) == []


def test_glue_any_other_failure_of_the_media_side_is_a_503() -> None:
    media = FakeMedia()
    b2bua, core, caller, machine, _ = glue(media)
    tx = reinvite(b2bua, caller)
    media.pending.pop().errback(ConnectionRefusedError("relay down"))
    assert [r.status for r in tx.responses] == [503]
    assert machine.state is CallState.CONFIRMED


def test_glue_the_end_of_the_call_releases_its_media_and_forgets_it() -> None:
    media = FakeMedia()
    b2bua, core, caller, machine, ended = glue(media)
    bye = caller.request("BYE")
    tx = FakeServerTransaction(bye, caller.source)
    b2bua.in_dialog(tx, bye)  # type: ignore[arg-type]
    assert [r.status for r in tx.responses] == [200]
    assert media.released == [(machine.uuid, None)]
    assert len(ended) == 1
    assert b2bua.calls.is_empty()


def test_glue_hang_up_byes_both_legs_with_the_cause_and_lists_no_more() -> None:
    media = FakeMedia()
    b2bua, core, caller, machine, ended = glue(media)
    assert [s.uuid for s in b2bua.live_calls()] == [machine.uuid]
    assert b2bua.hang_up(machine.uuid, "media timeout")
    byes = [r for r, _, _ in core.transactions.sent if r.method == "BYE"]
    assert len(byes) == 2
    (cdr,) = ended
    assert cdr.hangup_cause == "media timeout"
    assert b2bua.live_calls() == []
    assert not b2bua.hang_up(machine.uuid, "again")
    assert not b2bua.hang_up("no-such-call", "operator")


@dataclass
class FakeChoice:
    """A media choice: `media` unless the call's `media` variable says direct."""

    media: FakeMedia
    direct: DirectMedia = field(default_factory=DirectMedia)

    def seam_for(self, machine: Any) -> tuple[Any, dict[str, str]]:
        if machine.variables.get("media") == "direct":
            return self.direct, {"media": "direct"}
        return self.media, {"media": "relay", "media_relay": "udp:127.0.0.1:2223"}


def glue_with_choice(choice: FakeChoice, variables: dict[str, str] | None = None
                     ) -> tuple[B2BUA, FakeCore, Party, CallMachine]:
    d = CallDriver(destinations=dict(TWO))
    machine, caller, _ = d.connect()
    snapshot = machine.snapshot()
    if variables:
        snapshot = replace(snapshot, variables=tuple(sorted(
            {**dict(snapshot.variables), **variables}.items())))
    core = FakeCore()
    b2bua = B2BUA(core, None, lambda: None,  # type: ignore[arg-type]
                  lambda peer: ("198.51.100.1", 5060), [], Clock(),  # type: ignore[arg-type]
                  identity=object(), media_choice=choice)  # type: ignore[arg-type]
    restored = b2bua.restore(snapshot)
    assert restored is not None
    return b2bua, core, caller, restored


def test_glue_asks_the_choice_per_call_and_the_call_remembers_its_relay() -> None:
    choice = FakeChoice(FakeMedia())
    b2bua, core, caller, machine = glue_with_choice(choice)
    reinvite(b2bua, caller)
    assert len(choice.media.asked) == 1  # through the relay
    assert machine.variables["media_relay"] == "udp:127.0.0.1:2223"
    assert dict(machine.snapshot().variables)["media"] == "relay"


def test_glue_a_direct_call_passes_sdp_unchanged() -> None:
    choice = FakeChoice(FakeMedia())
    b2bua, core, caller, machine = glue_with_choice(choice, {"media": "direct"})
    reinvite(b2bua, caller)
    assert choice.media.asked == []
    (sent,) = relayed_invites(core)
    assert sent.body == SDP_C
