"""Actions: the typed, already-substituted instructions a routing decision returns.

Owns the action and dial-target dataclasses the softswitch executes, and the
parsing of a target string (`user/1001`, `trunk/provider/+15551234567`,
`sip:bob@example.com`). Nothing here runs a call.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class UserTarget:
    """A registered user of the directory, rung on all its contacts."""

    user: str

    def __str__(self) -> str:
        return f"user/{self.user}"


@dataclass(frozen=True, slots=True)
class TrunkTarget:
    """A number sent out through a configured trunk."""

    trunk: str
    number: str

    def __str__(self) -> str:
        return f"trunk/{self.trunk}/{self.number}"


@dataclass(frozen=True, slots=True)
class UriTarget:
    """Any SIP or SIPS URI."""

    uri: str

    def __str__(self) -> str:
        return self.uri


Target = UserTarget | TrunkTarget | UriTarget


class TargetError(ValueError):
    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


TARGET_HINT = "write user/1001, trunk/NAME/NUMBER or a sip: URI"


def parse_target(text: str) -> Target:
    if text.startswith("user/"):
        user = text[5:]
        if not user or "/" in user:
            raise TargetError(f"bad user target {text!r}", "write user/1001")
        return UserTarget(user)
    if text.startswith("trunk/"):
        name, sep, number = text[6:].partition("/")
        if not name or not sep or not number or "/" in number:
            raise TargetError(f"bad trunk target {text!r}", "write trunk/NAME/NUMBER")
        return TrunkTarget(name, number)
    if text.startswith(("sip:", "sips:")):
        if "@" not in text and len(text.partition(":")[2]) == 0:
            raise TargetError(f"bad SIP URI {text!r}", "write sip:user@host")
        return UriTarget(text)
    raise TargetError(f"unknown dial target {text!r}", TARGET_HINT)


@dataclass(frozen=True, slots=True)
class CallerId:
    number: str | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Dial:
    """Ring every target at once; the first to answer wins.

    When the dial fails, the matching handler (busy, no answer, any other
    failure) runs instead of the actions after the dial; without a handler the
    next action runs, which is how a list of dials tries targets in turn.
    """

    targets: tuple[Target, ...]
    timeout: int | None = None
    caller_id: CallerId | None = None
    headers: tuple[tuple[str, str], ...] = ()
    on_busy: tuple[Action, ...] | None = None
    on_no_answer: tuple[Action, ...] | None = None
    on_failure: tuple[Action, ...] | None = None


@dataclass(frozen=True, slots=True)
class Answer:
    pass


@dataclass(frozen=True, slots=True)
class Hangup:
    """End the call; before an answer the code and reason are the SIP final response."""

    code: int = 480
    reason: str = "Temporarily Unavailable"


@dataclass(frozen=True, slots=True)
class Playback:
    file: str


@dataclass(frozen=True, slots=True)
class Echo:
    pass


@dataclass(frozen=True, slots=True)
class Record:
    file: str
    max_seconds: int = 60
    beep: bool = True


@dataclass(frozen=True, slots=True)
class Voicemail:
    """Answer and run mailbox `box`: leave a message, or (`menu`) its owner's menu.

    Runs in the media relay (hosted-ng `voicemail`); with direct media the
    call is refused (480).
    """

    box: str
    menu: bool = False


@dataclass(frozen=True, slots=True)
class SetVariables:
    """Variables set at routing time; `caller_id_number` and `caller_id_name` change the caller ID."""

    variables: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Goto:
    """Continue routing in another context. Top-level gotos are followed by the router;
    a goto inside a dial's failure handler is returned for the softswitch to follow
    with `Plan.resume` when that failure happens."""

    context: str
    number: str | None = None


@dataclass(frozen=True, slots=True)
class Transfer:
    """Send the caller elsewhere: a 302 before answer, a REFER after."""

    target: Target


Action = (
    Dial | Answer | Hangup | Playback | Echo | Record | Voicemail | SetVariables | Goto | Transfer
)


def describe_action(action: Action) -> str:
    """One line per action, as `softswitch dialplan test` prints them."""
    match action:
        case Dial():
            text = "dial " + " & ".join(str(t) for t in action.targets)
            if action.timeout is not None:
                text += f" timeout={action.timeout}s"
            if action.caller_id is not None:
                cid = action.caller_id
                text += f" caller_id={cid.name or ''}<{cid.number or ''}>"
            for name, value in action.headers:
                text += f" {name}={value}"
            return text
        case Answer():
            return "answer"
        case Hangup():
            return f"hangup {action.code} {action.reason}"
        case Playback():
            return f"playback {action.file}"
        case Echo():
            return "echo"
        case Record():
            return f"record {action.file} max={action.max_seconds}s beep={action.beep}"
        case Voicemail():
            return f"voicemail {action.box}" + (" menu" if action.menu else "")
        case SetVariables():
            return "set " + " ".join(f"{k}={v}" for k, v in action.variables)
        case Goto():
            return f"goto {action.context}" + (f" {action.number}" if action.number else "")
        case Transfer():
            return f"transfer {action.target}"
