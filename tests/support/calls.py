"""Driving a call machine in unit tests: no reactor, no sockets.

`CallDriver` plays the glue: it feeds events to one `CallMachine` (or a few
that transfer between each other), answers `Resolve` effects from a table
of destinations, answers media questions at once (or late, or with a
failure, as a test asks), and keeps every effect so tests can assert on
what the call did. Messages are built from text, as a peer would send them.
"""

from __future__ import annotations

import itertools
import textwrap
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from dialplan import Plan, load_text
from softswitch.b2bua import events as ev
from softswitch.b2bua.machine import Caller, CallMachine, CallSettings
from softswitch.b2bua.session_timer import negotiate_as_uas
from softswitch.b2bua.targets import Destination
from softswitch.sip.message import Request, Response, make_response, new_tag, parse_message
from softswitch.sip.peer import Peer
from softswitch.sip.uri import parse_sip_uri

CALLER = Peer("udp", "192.0.2.1", 5060)
SDP = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
SDP_B = SDP.replace(b"192.0.2.1", b"192.0.2.2")

PLAN = """
settings:
  timezone: UTC
contexts:
  internal:
    rules:
      - name: two-phones
        match: "2000"
        actions:
          - dial: [user/1002, user/1003]
      - name: busy-to-voicemail
        match: "3000"
        actions:
          - dial:
              to: user/1002
              on_busy: [voicemail: "1002"]
      - name: one
        match: _100X
        actions:
          - dial: {to: "user/${dest}", timeout: 20}
      - name: trunk
        match: _9.
        actions:
          - dial: trunk/provider/${dest}
      - name: office-hours
        match: "4000"
        when:
          time: {from: "09:00", to: "17:00"}
        actions:
          - dial: user/1002
        else:
          - hangup: {code: 480, reason: Closed}
"""


def plan(text: str = PLAN) -> Plan:
    result = load_text(textwrap.dedent(text))
    assert result.plan is not None, [d.format() for d in result.diagnostics]
    return result.plan


def invite(dest: str = "1002", body: bytes = SDP, *, headers: Iterable[str] = (),
           call_id: str | None = None) -> Request:
    text = (f"INVITE sip:{dest}@pbx.example.com SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK{new_tag()};rport\r\n"
            f"Max-Forwards: 70\r\n"
            f"From: <sip:1001@pbx.example.com>;tag={new_tag()}\r\n"
            f"To: <sip:{dest}@pbx.example.com>\r\n"
            f"Call-ID: {call_id or new_tag()}\r\nCSeq: 1 INVITE\r\n"
            f"Contact: <sip:1001@192.0.2.1:5060>\r\n"
            + "".join(f"{h}\r\n" for h in headers)
            + ("Content-Type: application/sdp\r\n" if body else "")
            + f"Content-Length: {len(body)}\r\n\r\n")
    message = parse_message(text.encode() + body)
    assert isinstance(message, Request)
    return message


def contact_dest(user: str, host: str = "192.0.2.2", trunk: str | None = None) -> Destination:
    return Destination(parse_sip_uri(f"sip:{user}@{host}:5060"), Peer("udp", host, 5060),
                       f"sip:{user}@pbx.example.com", f"user/{user}", trunk=trunk)


def response_to(request: Request, status: int, *, to_tag: str | None = None,
                body: bytes = b"", headers: Iterable[tuple[str, str]] = (),
                contact: str = "<sip:peer@192.0.2.2:5060>") -> Response:
    response = make_response(request, status, to_tag=to_tag)
    if 100 < status < 300 and request.method in ("INVITE", "UPDATE"):
        response.add("Contact", contact)
    for name, value in headers:
        response.add(name, value)
    if body:
        response.set_body(body, "application/sdp")
    return response


def in_dialog(request_from_peer: str) -> Request:
    message = parse_message(request_from_peer.encode())
    assert isinstance(message, Request)
    return message


@dataclass
class CallDriver:
    """One call (or several) and everything they did."""

    plan: Plan = field(default_factory=plan)
    destinations: dict[str, list[Destination]] = field(default_factory=dict)
    failures: dict[str, tuple[int, str]] = field(default_factory=dict)
    media_mode: str = "now"  # "now", "late" (held until `release_media_answers`) or "fail"
    media_failure: tuple[int, str] = (503, "Media Unavailable")
    now: float = 1_000_000.0
    settings_overrides: dict[str, Any] = field(default_factory=dict)
    effects: list[ev.Effect] = field(default_factory=list)
    calls: dict[str, CallMachine] = field(default_factory=dict)
    timers: dict[tuple[str, str], float] = field(default_factory=dict)  # (uuid, name) -> due
    held_media: list[tuple[str, ev.MediaOffer | ev.MediaAnswer]] = field(default_factory=list)
    dialogs: dict[tuple[str, str, str], str] = field(default_factory=dict)
    cdrs: list[Any] = field(default_factory=list)
    saved: list[Any] = field(default_factory=list)
    released: list[tuple[str, Any]] = field(default_factory=list)
    _refs: Any = field(default_factory=lambda: itertools.count(1000))

    def settings(self) -> CallSettings:
        return CallSettings(local_address=lambda peer: ("198.51.100.1", 5060),
                            find_dialog=self._find_dialog, **self.settings_overrides)

    def _find_dialog(self, replaces: str) -> tuple[CallMachine, Any] | None:
        from softswitch.b2bua.replaces import dialog_ids
        for dialog_id in dialog_ids(replaces):
            uuid = self.dialogs.get(dialog_id)
            if uuid is not None:
                leg = self.calls[uuid].leg_of(dialog_id)
                if leg is not None:
                    return self.calls[uuid], leg
        return None

    # -- starting calls ------------------------------------------------------------

    def start(self, request: Request, caller: Caller | None = None,
              source: Peer = CALLER) -> CallMachine:
        caller = caller or Caller("1001", "", "internal", domain="pbx.example.com")
        negotiation = negotiate_as_uas(request, 1800, 90)
        assert not isinstance(negotiation, int)
        machine, effects = CallMachine.incoming(
            self.settings(), next(self._refs), request, source, caller,
            request.uri.user or "", self.plan, negotiation, self.now)  # type: ignore[union-attr]
        self.calls[machine.uuid] = machine
        self._carry_out(machine, effects)
        return machine

    # -- events ---------------------------------------------------------------------

    def feed(self, machine: CallMachine, event: ev.Event) -> list[ev.Effect]:
        effects = machine.handle(event, self.now)
        self._carry_out(machine, effects)
        return effects

    def advance(self, seconds: float) -> None:
        """Let time pass, firing due timers in order."""
        end = self.now + seconds
        while True:
            due = sorted((when, key) for key, when in self.timers.items() if when <= end)
            if not due:
                break
            when, key = due[0]
            del self.timers[key]
            self.now = max(self.now, when)
            machine = self.calls.get(key[0])
            if machine is not None:
                self.feed(machine, ev.TimerFired(key[1]))
        self.now = end

    def _carry_out(self, machine: CallMachine, effects: list[ev.Effect]) -> None:
        for effect in effects:
            self.effects.append(effect)
            match effect:
                case ev.StartTimer(name=name, delay=delay):
                    self.timers[(machine.uuid, name)] = self.now + delay
                case ev.StopTimer(name=name):
                    self.timers.pop((machine.uuid, name), None)
                case ev.Resolve(ref=ref, target=target):
                    key = str(getattr(target, "user", "") or getattr(target, "number", ""))
                    if key in self.failures:
                        code, reason = self.failures[key]
                        self.feed(machine, ev.TargetResolved(ref, (), code, reason))
                    else:
                        found = tuple(self.destinations.get(key, ()))
                        self.feed(machine, ev.TargetResolved(
                            ref, found, None if found else 480,
                            "" if found else "Temporarily Unavailable"))
                case ev.MediaOffer() | ev.MediaAnswer():
                    if self.media_mode == "now":
                        self.feed(machine, ev.MediaReady(effect.ref, effect.body))
                    elif self.media_mode == "fail":
                        self.feed(machine, ev.MediaFailed(effect.ref, *self.media_failure))
                    else:
                        self.held_media.append((machine.uuid, effect))
                case ev.ReleaseMedia(leg=leg):
                    self.released.append((machine.uuid, leg))
                case ev.DialogOpened(dialog_id=dialog_id):
                    self.dialogs[dialog_id] = machine.uuid
                case ev.DialogClosed(dialog_id=dialog_id):
                    if self.dialogs.get(dialog_id) == machine.uuid:
                        del self.dialogs[dialog_id]
                case ev.CallEnded(snapshot=snapshot):
                    self.cdrs.append(snapshot)
                case ev.CallChanged(snapshot=snapshot):
                    self.saved.append(snapshot)
                case ev.OtherCall(uuid=uuid, effects=others):
                    self._carry_out(self.calls[uuid], list(others))

    def release_media_answers(self, fail: bool = False) -> None:
        held, self.held_media = self.held_media, []
        for uuid, effect in held:
            event: ev.Event = ev.MediaFailed(effect.ref, *self.media_failure) if fail \
                else ev.MediaReady(effect.ref, effect.body)
            self.feed(self.calls[uuid], event)

    # -- what happened ----------------------------------------------------------------

    def of(self, kind: type, where: Callable[[Any], bool] | None = None) -> list[Any]:
        return [e for e in self.effects if isinstance(e, kind) and (where is None or where(e))]

    def requests(self, method: str, host: str | None = None) -> list[ev.SendRequest]:
        return self.of(ev.SendRequest, lambda e: e.request.method == method
                       and (host is None or e.peer.host == host))

    def responses(self, ref: int | None = None) -> list[int]:
        return [e.response.status for e in self.of(ev.Respond)
                if ref is None or e.ref == ref]

    def answer(self, machine: CallMachine, sent: ev.SendRequest, status: int, *,
               to_tag: str | None = None, body: bytes = b"",
               headers: Iterable[tuple[str, str]] = ()) -> Response:
        response = response_to(sent.request, status, to_tag=to_tag, body=body, headers=headers)
        self.feed(machine, ev.ResponseReceived(sent.ref, response))
        return response
