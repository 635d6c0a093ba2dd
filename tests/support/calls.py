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
from softswitch.b2bua.snapshot import CallSnapshot
from softswitch.b2bua.targets import Destination
from softswitch.sip.dialog import Dialog
from softswitch.sip.message import Request, Response, make_response, new_tag, parse_message
from softswitch.sip.peer import Peer
from softswitch.sip.uri import parse_sip_uri

CALLER = Peer("udp", "192.0.2.1", 5060)
SDP = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
SDP_B = SDP.replace(b"192.0.2.1", b"192.0.2.2")
SDP_RELAY = SDP.replace(b"192.0.2.1", b"203.0.113.9")  # the relay's answer when it hosts

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


def _target_key(target: Any) -> str:
    return str(getattr(target, "user", "") or getattr(target, "number", ""))


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
    # Hosted media (`HostMedia`, `MediaCommand`): "direct" refuses as the glue
    # does for a call with direct media; "relay" accepts at once; "fail" fails
    # with `media_failure`; "held" never answers (a slow relay).
    hosting: str = "direct"
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
    # Targets (user or number) whose Resolve is held until `resolve_held` (a slow DNS).
    hold_resolve: set[str] = field(default_factory=set)
    held_resolves: list[tuple[str, ev.Resolve]] = field(default_factory=list)
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
        caller = caller or Caller("1001", "", "internal", frozenset(), "pbx.example.com", None,
                                  "1001")
        negotiation = negotiate_as_uas(request, 1800, 90)
        assert not isinstance(negotiation, int)
        machine, effects = CallMachine.incoming(
            self.settings(), next(self._refs), request, source, caller,
            request.uri.user or "", self.plan, negotiation, self.now)  # type: ignore[union-attr]
        self.calls[machine.uuid] = machine
        self._carry_out(machine, effects)
        return machine

    # -- events ---------------------------------------------------------------------

    def next_ref(self) -> int:
        """A fresh ref for a request the machine receives (a server transaction)."""
        return int(next(self._refs))

    def restore(self, machine: CallMachine, through_dict: bool = True) -> CallMachine:
        """`machine` back from its snapshot, as a restart would; it replaces `machine`."""
        snapshot = machine.snapshot()
        if through_dict:
            snapshot = CallSnapshot.from_dict(snapshot.as_dict())
        again, effects = CallMachine.restore(self.settings(), snapshot, self.plan, self.now)
        del self.calls[machine.uuid]
        self.dialogs.clear()
        self.calls[again.uuid] = again
        self._carry_out(again, effects)
        return again

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
                case ev.Resolve(target=target):
                    if _target_key(target) in self.hold_resolve:
                        self.held_resolves.append((machine.uuid, effect))
                    else:
                        self._resolve(machine, effect)
                case ev.MediaOffer() | ev.MediaAnswer():
                    if self.media_mode == "now":
                        self.feed(machine, ev.MediaReady(effect.ref, effect.body))
                    elif self.media_mode == "fail":
                        self.feed(machine, ev.MediaFailed(effect.ref, *self.media_failure))
                    else:
                        self.held_media.append((machine.uuid, effect))
                case ev.HostMedia() | ev.MediaCommand():
                    if self.hosting == "relay":
                        body = SDP_RELAY if isinstance(effect, ev.HostMedia) \
                            and not effect.answer else b""
                        self.feed(machine, ev.MediaReady(effect.ref, body))
                    elif self.hosting == "fail":
                        self.feed(machine, ev.MediaFailed(effect.ref, *self.media_failure))
                    elif self.hosting == "direct":
                        self.feed(machine, ev.MediaFailed(effect.ref, 488,
                                                          "Media actions need the media relay"))
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

    def _resolve(self, machine: CallMachine, effect: ev.Resolve) -> None:
        key = _target_key(effect.target)
        if key in self.failures:
            code, reason = self.failures[key]
            self.feed(machine, ev.TargetResolved(effect.ref, (), code, reason))
        else:
            found = tuple(self.destinations.get(key, ()))
            self.feed(machine, ev.TargetResolved(
                effect.ref, found, None if found else 480,
                "" if found else "Temporarily Unavailable"))

    def resolve_held(self) -> None:
        """Answer the held `Resolve`s now, from the table (the DNS answer came)."""
        held, self.held_resolves = self.held_resolves, []
        for uuid, effect in held:
            self._resolve(self.calls[uuid], effect)

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

    def caller_ok(self, machine: CallMachine) -> Response:
        """The last 2xx the caller got to its INVITE."""
        return next(e.response for e in reversed(self.effects) if isinstance(e, ev.Respond)
                    and e.ref == machine.a_ref and 200 <= e.response.status < 300)

    def connect(self, dest: str = "1002", body: bytes = SDP, *, headers: Iterable[str] = (),
                answer_body: bytes = SDP_B, answer_headers: Iterable[tuple[str, str]] = (),
                ack: bool = True) -> tuple[CallMachine, Party, Party]:
        """A call to `dest`, answered by its first destination (and ACKed by the caller)."""
        machine = self.start(invite(dest, body, headers=headers))
        sent = self.requests("INVITE")[-1]
        ok = self.answer(machine, sent, 200, to_tag=new_tag(), body=answer_body,
                         headers=answer_headers)
        caller = Party.caller(self, machine)
        if ack:
            assert machine.a.invite is not None
            self.feed(machine, ev.AckReceived(caller.ack(machine.a.invite,
                                                         self.caller_ok(machine))))
        return machine, caller, Party.callee(sent, ok)

    def answer(self, machine: CallMachine, sent: ev.SendRequest, status: int, *,
               to_tag: str | None = None, body: bytes = b"",
               headers: Iterable[tuple[str, str]] = ()) -> Response:
        response = response_to(sent.request, status, to_tag=to_tag, body=body, headers=headers)
        self.feed(machine, ev.ResponseReceived(sent.ref, response))
        return response


# -- the far ends, as phones see their dialogs with us --------------------------------


@dataclass
class Party:
    """One far end of a call, as it sees its dialog with us: builds the requests it sends.

    `caller(driver, machine)` is the caller once it got our 2xx (or a
    reliable 18x); `callee(driver, sent, answer)` is a party we rang, from
    our INVITE and the answer the test gave it. `send` feeds a request to
    the machine in a new server transaction and returns that ref.
    """

    dialog: Dialog
    source: Peer
    host: str

    @classmethod
    def caller(cls, driver: CallDriver, machine: CallMachine,
               invite_request: Request | None = None, source: Peer = CALLER) -> Party:
        request = invite_request or machine.a.invite
        assert request is not None
        ok = next(e.response for e in reversed(driver.effects) if isinstance(e, ev.Respond)
                  and e.response.call_id == request.call_id
                  and e.response.cseq.method == "INVITE" and 100 < e.response.status < 300
                  and e.response.to_tag)
        dialog = Dialog.from_uac(request, ok, peer=source)
        if ok.status >= 200:
            dialog.receive_response(ok)
        return cls(dialog, source, source.host)

    @classmethod
    def callee(cls, sent: ev.SendRequest, answer: Response) -> Party:
        tag = answer.to_tag or ""
        contact = answer.get("contact") or f"<sip:peer@{sent.peer.host}:5060>"
        dialog = Dialog.from_uas(sent.request, tag, contact, peer=sent.peer)
        dialog.sent_response(answer)
        return cls(dialog, sent.peer, sent.peer.host)

    def request(self, method: str, body: bytes = b"",
                headers: Iterable[tuple[str, str]] = ()) -> Request:
        return self.dialog.create_request(method, via_host=self.host, via_port=5060, body=body,
                                          content_type="application/sdp" if body else None,
                                          extra_headers=list(headers))

    def ack(self, invite_request: Request, ok: Response, body: bytes = b"") -> Request:
        return self.dialog.create_ack(invite_request, ok, via_host=self.host, via_port=5060,
                                      body=body,
                                      content_type="application/sdp" if body else None)

    def send(self, driver: CallDriver, machine: CallMachine, request: Request) -> int:
        ref = driver.next_ref()
        driver.feed(machine, ev.RequestReceived(ref, request, self.source))
        return ref
