"""What happens to a call: the events the call machine takes, and the effects it returns.

The machine (`machine.py`) never does I/O. The glue (`b2bua.py`) turns
transactions, timers, DNS answers and media replies into these events, and
carries out the effects in the order given. Every request the machine sends
carries a `ref` (a number the machine chose); what comes back for it (a
response, a time-out, a transport failure) names that ref. Requests the
machine receives in a server transaction carry a ref the glue chose, which
the machine's `Respond` names. Media and target resolution work the same
way: the machine asks, and the answer comes back later as an event with the
ref of the question, so the media relay can answer slowly or fail.

All of these are small frozen dataclasses: easy to log, compare and test.
"""

from __future__ import annotations

from dataclasses import dataclass

from dialplan import Target
from softswitch.b2bua.legs import LegId
from softswitch.b2bua.snapshot import CallSnapshot
from softswitch.b2bua.targets import Destination
from softswitch.sip.message import Request, Response
from softswitch.sip.peer import Peer

# -- events ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResponseReceived:
    """A response to the request the machine sent under `ref`."""

    ref: int
    response: Response


@dataclass(frozen=True, slots=True)
class RequestTimedOut:
    """No final response to the request sent under `ref` (Timer B or F)."""

    ref: int


@dataclass(frozen=True, slots=True)
class TransportFailed:
    """The request sent under `ref` could not be sent (RFC 3261 17.1.4)."""

    ref: int


@dataclass(frozen=True, slots=True)
class RequestReceived:
    """A request inside one of the call's dialogs, in the server transaction `ref`."""

    ref: int
    request: Request
    source: Peer


@dataclass(frozen=True, slots=True)
class ReplacingInvite:
    """An INVITE whose Replaces names one of the call's dialogs (RFC 3891)."""

    ref: int
    request: Request
    source: Peer
    caller: str


@dataclass(frozen=True, slots=True)
class CancelReceived:
    """The caller CANCELled its INVITE."""


@dataclass(frozen=True, slots=True)
class AckReceived:
    """An ACK to a 2xx in one of the call's dialogs."""

    request: Request


@dataclass(frozen=True, slots=True)
class StrayResponse:
    """A 2xx retransmission whose client transaction is gone: ACK it again."""

    response: Response


@dataclass(frozen=True, slots=True)
class TimerFired:
    name: str


@dataclass(frozen=True, slots=True)
class TargetResolved:
    """Where a dialplan target can be rung, for the `Resolve` effect `ref`."""

    ref: int
    destinations: tuple[Destination, ...]
    failure: int | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class MediaReady:
    """The media side's SDP for the `MediaOffer`/`MediaAnswer` effect `ref`."""

    ref: int
    body: bytes


@dataclass(frozen=True, slots=True)
class MediaFailed:
    """The media side could not take the SDP of effect `ref`: 488 or 503."""

    ref: int
    status: int
    reason: str


@dataclass(frozen=True, slots=True)
class MediaEvent:
    """The relay hosting leg `leg` (its tag, `str(LegId)`) reports: a prompt was
    `played`, a recording `recorded`, a voicemail flow `ended`, a `dtmf` digit."""

    leg: str
    event: str
    digit: str = ""
    file: str = ""
    duration: float = 0.0
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Shutdown:
    """The server stops: end the call now (the glue's last word to it)."""

    cause: str = "shutdown"


Event = (ResponseReceived | RequestTimedOut | TransportFailed | RequestReceived
         | ReplacingInvite | CancelReceived | AckReceived | StrayResponse | TimerFired
         | TargetResolved | MediaReady | MediaFailed | MediaEvent | Shutdown)


# -- effects --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Respond:
    """Answer the request received in server transaction `ref`."""

    ref: int
    response: Response


@dataclass(frozen=True, slots=True)
class SendRequest:
    """Send `request` to `peer` in a new client transaction; what comes back names `ref`."""

    ref: int
    request: Request
    peer: Peer


@dataclass(frozen=True, slots=True)
class SendCancel:
    """CANCEL the INVITE sent under `invite_ref` (RFC 3261 9.1): `cancel` is built."""

    invite_ref: int
    cancel: Request
    peer: Peer


@dataclass(frozen=True, slots=True)
class SendAck:
    """An ACK to a 2xx: sent outside any transaction (RFC 3261 13.2.2.4, 17.1.1.3)."""

    request: Request
    peer: Peer


@dataclass(frozen=True, slots=True)
class StartTimer:
    """(Re)arm the call's timer `name`; a timer of that name already set is replaced."""

    name: str
    delay: float


@dataclass(frozen=True, slots=True)
class StopTimer:
    name: str


@dataclass(frozen=True, slots=True)
class Resolve:
    """Find where `target` can be rung (bindings, trunk, RFC 3263): a `TargetResolved` follows."""

    ref: int
    target: Target
    domain: str


@dataclass(frozen=True, slots=True)
class MediaOffer:
    """An SDP offer from leg `source` on its way to leg `sink`: `MediaReady` or `MediaFailed` follows."""

    ref: int
    source: LegId
    sink: LegId
    body: bytes
    content_type: str | None


@dataclass(frozen=True, slots=True)
class MediaAnswer:
    """An SDP answer from leg `source` on its way to leg `sink`."""

    ref: int
    source: LegId
    sink: LegId
    body: bytes
    content_type: str | None


@dataclass(frozen=True, slots=True)
class HostMedia:
    """The media side answers leg `leg` itself (the PBX answers the caller).

    `body` is the party's SDP: its offer, or with `answer` its answer to the
    offer we sent in a 200 (late offer); empty for a late offer, when the
    media side makes the offer. `MediaReady` (the SDP to send the party;
    empty after an answer) or `MediaFailed` follows.
    """

    ref: int
    leg: LegId
    body: bytes
    content_type: str | None
    answer: bool = False


@dataclass(frozen=True, slots=True)
class MediaCommand:
    """Ask the media side hosting `leg` to `play media`, `echo`, `start recording`,
    or run `voicemail` (the hosted-ng commands) with `args`: `MediaReady` (empty
    body) once accepted or `MediaFailed`; what it then does comes as `MediaEvent`s."""

    ref: int
    leg: LegId
    command: str
    args: tuple[tuple[str, str | int], ...] = ()


@dataclass(frozen=True, slots=True)
class ReleaseMedia:
    """Free what the media side holds for `leg` (a cancelled fork), or the whole call."""

    leg: LegId | None = None


@dataclass(frozen=True, slots=True)
class DialogOpened:
    """Index dialog `dialog_id` (Call-ID, local tag, remote tag) to this call."""

    dialog_id: tuple[str, str, str]


@dataclass(frozen=True, slots=True)
class DialogClosed:
    dialog_id: tuple[str, str, str]


@dataclass(frozen=True, slots=True)
class CallChanged:
    """What a restart needs changed (answered, a new target, a transfer): save it."""

    snapshot: CallSnapshot


@dataclass(frozen=True, slots=True)
class CallEnded:
    """The call is over: write its CDR (made from the snapshot) and forget it."""

    snapshot: CallSnapshot


@dataclass(frozen=True, slots=True)
class OtherCall:
    """Effects of another call that this one caused (an attended transfer ends it)."""

    uuid: str
    effects: tuple[Effect, ...]


@dataclass(frozen=True, slots=True)
class Log:
    """A line for the log: `event` and its fields."""

    event: str
    fields: tuple[tuple[str, object], ...] = ()
    level: str = "info"


Effect = (Respond | SendRequest | SendCancel | SendAck | StartTimer | StopTimer | Resolve
          | MediaOffer | MediaAnswer | HostMedia | MediaCommand | ReleaseMedia | DialogOpened
          | DialogClosed | CallChanged | CallEnded | OtherCall | Log)
