"""Media the PBX hosts itself: the dialplan's answer, playback, echo, record, voicemail.

A part of the call machine. Instead of bridging the caller to a callee,
the media relay answers the caller (hosted-ng `host`, docs/relay.md) and
the machine answers the caller's INVITE with the relay's SDP (RFC 3261
13.3.1; with a late offer the relay's offer goes in the 200 and the
caller's answer comes in the ACK, RFC 3264 and RFC 3261 13.2.1). Once the
caller ACKs, the dialplan runs on: each media action is a command to the
relay (`play media`, `echo`, `start recording`, `voicemail`), and the next
action runs when the relay reports the one before done (`MediaEvent`:
played, recorded; `ended` for voicemail hangs up). The caller's BYE ends
the call as any other, which deletes the call on the relay (a recording is
finalised there).

The steps are an explicit state machine (`Step`); every change happens in
`_move`. With direct media these actions stay refused: the PBX has no audio
of its own without the relay.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any

from dialplan import Answer, Echo, Playback, Record, Voicemail
from softswitch.b2bua import events as ev
from softswitch.b2bua.dialing import ALLOW
from softswitch.b2bua.legs import LegState
from softswitch.sip.message import Request, make_response

if TYPE_CHECKING:
    from softswitch.b2bua.machine import CallMachine

MediaAction = Answer | Playback | Echo | Record | Voicemail
MEDIA_ACTIONS = (Answer, Playback, Echo, Record, Voicemail)

# Kept in the call's variables (so in its snapshot): a restarted server
# knows the call was the PBX's own and ends it cleanly.
HOSTED_VARIABLE = "hosted"


class Step(enum.Enum):
    ANSWERING = "answering"  # `host` asked, nothing sent to the caller yet
    CONFIRMING = "confirming"  # 200 sent to the caller, waiting for its ACK
    IDLE = "idle"  # answered: the dialplan runs on
    PLAYING = "playing"  # until `played`
    ECHOING = "echoing"  # until the caller hangs up
    RECORDING = "recording"  # until `recorded`
    VOICEMAIL = "voicemail"  # until `ended`
    ENDED = "ended"


_STEPS: dict[Step, frozenset[Step]] = {
    Step.ANSWERING: frozenset({Step.CONFIRMING, Step.ENDED}),
    Step.CONFIRMING: frozenset({Step.IDLE, Step.ENDED}),
    Step.IDLE: frozenset({Step.PLAYING, Step.ECHOING, Step.RECORDING, Step.VOICEMAIL,
                          Step.ENDED}),
    Step.PLAYING: frozenset({Step.IDLE, Step.ENDED}),
    Step.ECHOING: frozenset({Step.ENDED}),
    Step.RECORDING: frozenset({Step.IDLE, Step.ENDED}),
    Step.VOICEMAIL: frozenset({Step.ENDED}),
    Step.ENDED: frozenset(),
}

# Which event ends which step.
_DONE_BY = {Step.PLAYING: "played", Step.RECORDING: "recorded", Step.VOICEMAIL: "ended"}


class HostedMedia:
    """The caller's media hosted by the relay, and the dialplan's media actions on it."""

    __slots__ = ("call", "step", "late_offer")

    def __init__(self, call: CallMachine) -> None:
        self.call = call
        self.step: Step | None = None  # None: the relay does not host this call
        self.late_offer = False  # the caller's INVITE had no SDP

    @property
    def active(self) -> bool:
        return self.step is not None and self.step is not Step.ENDED

    @property
    def idle(self) -> bool:
        """Answered by us, the last action done: the dialplan may run its next one."""
        return self.step is Step.IDLE

    def _move(self, new: Step) -> None:
        if self.step is not None and new not in _STEPS[self.step]:
            raise RuntimeError(f"call {self.call.uuid}: hosted media "
                               f"{self.step.value} cannot become {new.value}")
        self.step = new

    # -- answering ------------------------------------------------------------------------

    def answer(self, action: MediaAction) -> None:
        """The first media action of a call still routing: the relay answers the caller.

        Any action but `answer` itself runs once the caller has ACKed
        (Asterisk answers implicitly too).
        """
        call = self.call
        if call.settings.media_passthrough:
            call.log("media_action_refused", level="warning", action=type(action).__name__,
                     why="no media relay configured (media: direct)")
            call.unavailable(action, None)
            return
        if not isinstance(action, Answer):
            call.queue.insert(0, action)
        invite = call.a.invite
        assert invite is not None
        self.late_offer = not invite.body
        self._move(Step.ANSWERING)
        call.ask_media(lambda ref: ev.HostMedia(ref, call.a.id, invite.body,
                                                invite.get("content-type")),
                       self._hosted, action)

    def _hosted(self, event: ev.Event, action: MediaAction) -> None:
        call = self.call
        if self.step is not Step.ANSWERING or not call.routing:
            return  # the caller went away meanwhile
        if isinstance(event, ev.MediaReady) and not event.body:
            event = ev.MediaFailed(event.ref, 503, "Media Relay Gave No SDP")
        if isinstance(event, ev.MediaFailed):
            self._move(Step.ENDED)
            call.log("media_action_refused", level="warning", action=type(action).__name__,
                     status=event.status, why=event.reason)
            call.queue.clear()
            call.unavailable(action, (event.status, event.reason))
            return
        assert isinstance(event, ev.MediaReady)
        a = call.a
        dialog = call.caller_dialog()
        ok = call.to_caller(200)
        ok.add("Contact", str(dialog.local_contact))
        ok.add("Allow", ALLOW)
        ok.set_body(event.body, "application/sdp")
        a.sdp_sent = event.body
        if call.a_session is not None:
            ok.add("Supported", "timer")
            ok.add("Session-Expires", str(call.a_session.expires))
            if call.a_session.require_timer:
                ok.add("Require", "timer")
        dialog.sent_response(ok)
        call.variables[HOSTED_VARIABLE] = "yes"
        call.answered_by_us()
        a.move(LegState.ANSWERED)
        self._move(Step.CONFIRMING)
        call.final_to_caller(ok)
        call.retransmit("2xx:a", call.a_ref, ok, call.hangup, "system", "no ACK")
        call.log("call_answered", callee="", hosted=True)

    def ack(self, request: Request) -> bool:
        """The caller's ACK to our 200; False if the call is not ours to answer."""
        call = self.call
        if self.step is not Step.CONFIRMING:
            return False
        call.stop_retransmit("2xx:a")
        call.confirmed()
        call.a.move(LegState.CONFIRMED)
        if self.late_offer:
            if not request.body:
                # RFC 3264 sanity: an offer in the 200 must be answered in the ACK.
                call.hangup("system", "no SDP answer in the ACK")
                return True
            call.ask_media(lambda ref: ev.HostMedia(ref, call.a.id, request.body,
                                                    request.get("content-type"), answer=True),
                           self._answer_taken)
        self._move(Step.IDLE)
        call.established_now()
        call.run()
        return True

    def _answer_taken(self, event: ev.Event) -> None:
        if isinstance(event, ev.MediaFailed) and self.active:
            self.call.hangup("system", f"media refused the answer in the ACK: {event.reason}")

    def reoffer(self, ref: int, request: Request) -> None:
        """A re-INVITE or UPDATE from the hosted caller (hold, a new address)."""
        call = self.call
        a = call.a
        if not request.body:
            # No offer (a session refresh, or a late-offer re-INVITE): our SDP again.
            self._accept(ref, request, a.sdp_sent if request.method == "INVITE" else b"")
            return
        call.ask_media(lambda r: ev.HostMedia(r, a.id, request.body,
                                              request.get("content-type")),
                       self._reoffered, ref, request)

    def _reoffered(self, event: ev.Event, ref: int, request: Request) -> None:
        if isinstance(event, ev.MediaFailed):
            self.call.respond(ref, make_response(request, event.status, event.reason))
            return
        assert isinstance(event, ev.MediaReady)
        self.call.a.sdp_sent = event.body or self.call.a.sdp_sent
        self._accept(ref, request, event.body)

    def _accept(self, ref: int, request: Request, body: bytes) -> None:
        call = self.call
        dialog = call.a.dialog
        ok = make_response(request, 200)
        if dialog is not None:
            ok.add("Contact", str(dialog.local_contact))
        if body:
            ok.set_body(body, "application/sdp")
        session_expires = request.get("session-expires")
        if session_expires is not None:
            ok.add("Session-Expires", session_expires)  # RFC 4028 9
        if dialog is not None:
            dialog.sent_response(ok)
        call.sessions.arm(call.a)
        call.respond(ref, ok)

    # -- the actions after the answer ------------------------------------------------------

    def perform(self, action: Any) -> bool:
        """Run one action of an answered call; True to run the next at once."""
        call = self.call
        match action:
            case Answer():
                return True
            case Playback(file=file):
                self._command("play media", action, Step.PLAYING, (("file", file),))
            case Echo():
                self._command("echo", action, Step.ECHOING)
            case Record(file=file, max_seconds=max_seconds, beep=beep):
                self._command("start recording", action, Step.RECORDING,
                              (("file", file), ("max-seconds", max_seconds),
                               ("beep", "yes" if beep else "no")))
            case Voicemail(box=box, menu=menu):
                self._command("voicemail", action, Step.VOICEMAIL, self._mailbox(box, menu))
            case _:
                # A dial or transfer after the PBX answered would need the
                # caller's session re-offered to a callee: not supported yet.
                call.log("action_after_answer_unsupported", level="warning",
                         action=type(action).__name__)
                call.hangup("system", f"{type(action).__name__.lower()} after answer")
        return False

    def _mailbox(self, box: str, menu: bool) -> tuple[tuple[str, str | int], ...]:
        call = self.call
        domain = call.variables.get("domain", "")
        mailbox = box if "@" in box or not domain else f"{box}@{domain}"
        args: list[tuple[str, str | int]] = [("mailbox", mailbox),
                                             ("mode", "menu" if menu else "leave"),
                                             ("caller", call.caller_id_number())]
        name = call.caller_id_name()
        if name:
            args.append(("caller-name", name))
        args.append(("sip-call-id", call.call_id))
        return tuple(args)

    def _command(self, command: str, action: Any, step: Step,
                 args: tuple[tuple[str, str | int], ...] = ()) -> None:
        call = self.call
        self._move(step)
        call.log("media_action", action=command, args=dict(args))
        call.ask_media(lambda ref: ev.MediaCommand(ref, call.a.id, command, args),
                       self._accepted, command, step)

    def _accepted(self, event: ev.Event, command: str, step: Step) -> None:
        call = self.call
        if not isinstance(event, ev.MediaFailed) or self.step is not step:
            return
        call.log("media_action_failed", level="warning", action=command, status=event.status,
                 error=event.reason)
        if step is Step.PLAYING:
            # A missing prompt must not cost the caller the rest of the plan.
            self._move(Step.IDLE)
            call.run()
        else:
            call.hangup("system", f"{command} failed: {event.reason}")

    def event(self, event: ev.MediaEvent) -> None:
        """What the relay reports about the hosted caller."""
        call = self.call
        if event.event == "dtmf":
            call.log("dtmf", digit=event.digit)
            return
        step = self.step
        if step is None or _DONE_BY.get(step) != event.event:
            return  # late, repeated, or for a step already over
        if step is Step.VOICEMAIL:
            call.log("voicemail_ended", reason=event.reason)
            call.hangup("system", "voicemail ended")
            return
        if step is Step.RECORDING:
            call.log("recorded", file=event.file, duration=event.duration, reason=event.reason)
        self._move(Step.IDLE)
        call.run()

    def finished(self) -> None:
        """The dialplan has nothing more for an answered call: hang up, as Asterisk does."""
        self.call.hangup("system", "dialplan ended")

    def ended(self) -> None:
        if self.step is not None:
            self.step = Step.ENDED

