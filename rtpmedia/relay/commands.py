"""What every ng command handler shares: reading the message, its flags, refusing, the call table.

`control.Control` dispatches the commands; the offer/answer family lives
there, hosted media in `hosting_commands.py` and whole-call recording in
`recording_commands.py`. A handler reads the bencoded dictionary with
`text`/`required`/`strings`, the offer/answer flags (rtpengine's `flags`,
their sibling keys and Kamailio's `rtpp-flags`) with `Options.parse`, and
refuses with `CommandError`, whose text becomes the answer's error-reason.
`CallTable` is what a handler outside control.py may ask of the control.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from rtpmedia.relay.calls import Call, MediaEnd, Monologue
from rtpmedia.relay.effects import Effect
from rtpmedia.relay.sdprewrite import MediaLine


class CommandError(Exception):
    """A command the relay refuses; the text is the answer's error-reason."""


@dataclass(slots=True)
class Options:
    """The flags of one offer/answer, from `flags`, its sibling keys or `rtpp-flags`."""

    flags: set[str] = field(default_factory=set)
    replace: set[str] = field(default_factory=set)
    rtcp_mux: set[str] = field(default_factory=set)
    ice: str = ""
    transport: str | None = None
    received_from: str | None = None
    strip: set[str] = field(default_factory=set)
    transcode: list[str] = field(default_factory=list)
    record_call: bool = False

    @classmethod
    def parse(cls, msg: dict[str, Any]) -> Options:
        o = cls()
        for item in strings(msg.get("flags")):
            o.flag(item)
        raw = msg.get("rtpp-flags")  # flags a module left for the daemon to parse
        if isinstance(raw, str):
            for item in raw.split():
                o.flag(item)
        o.replace |= {s.lower() for s in strings(msg.get("replace"))}
        o.rtcp_mux |= {s.lower() for s in strings(msg.get("rtcp-mux"))}
        if isinstance(msg.get("ICE"), str):
            o.ice = msg["ICE"].lower()
        if isinstance(msg.get("transport-protocol"), str):
            o.transport = msg["transport-protocol"]
        received = strings(msg.get("received-from"))
        if len(received) == 2:
            o.received_from = received[1]
        codec = msg.get("codec")
        if isinstance(codec, dict):
            o.strip |= {s.upper() for s in strings(codec.get("strip"))}
            o.strip |= {s.upper() for s in strings(codec.get("mask"))}
            o.transcode += [s.upper() for s in strings(codec.get("transcode"))]
        for key in ("record call", "record-call"):
            if str(msg.get(key, "")).lower() in ("yes", "on", "true"):
                o.record_call = True
        if "record-call" in o.flags:
            o.record_call = True
        if str(msg.get("media-repair", "")).lower() in ("yes", "on", "true"):
            o.flags.add("media-repair")
        return o

    def flag(self, item: str) -> None:
        """One flag, as Kamailio writes it in `flags` or `rtpp-flags`."""
        key, eq, value = item.partition("=")
        low = key.lower()
        if eq:
            if low == "ice":
                self.ice = value.lower()
            elif low == "transport-protocol":
                self.transport = value
            elif low == "replace":
                self.replace.add(value.lower())
            elif low == "rtcp-mux":
                self.rtcp_mux.add(value.lower())
            elif low in ("codec-strip", "codec-mask"):
                self.strip.add(value.upper())
            elif low in ("codec-transcode", "transcode"):
                self.transcode.append(value.upper())
            elif low == "received-from":
                self.received_from = value
            return
        for prefix, target in (("replace-", self.replace), ("rtcp-mux-", self.rtcp_mux)):
            if low.startswith(prefix):
                target.add(low[len(prefix):])
                return
        for prefix in ("codec-strip-", "codec-mask-"):
            if low.startswith(prefix):
                self.strip.add(key[len(prefix):].upper())
                return
        for prefix in ("codec-transcode-", "transcode-"):
            if low.startswith(prefix):
                self.transcode.append(key[len(prefix):].upper())
                return
        if key.upper().startswith(("RTP/", "UDP/TLS/")):
            self.transport = key
            return
        self.flags.add(low)  # known or not: rtpengine ignores what it does not know


class CallTable(Protocol):
    """The control's calls and the changes to them a command handler may ask for.

    `control.Control` is the one implementation; handlers outside control.py
    take this instead of reaching into it.
    """

    advertise: str
    calls: dict[str, Call]

    def find_call(self, msg: dict[str, Any]) -> Call:
        """The call `msg`'s call-id names; CommandError if there is none."""
        ...

    def allocate(self, call: Call, monos: list[Monologue], count: int) -> list[MediaEnd]:
        """Ends (ports) for `count` media lines on each of `monos`; all or none."""
        ...

    def drop_monologue(self, call: Call, mono: Monologue, effects: list[Effect]) -> None:
        """`mono` leaves the call: its ports closed and released, its peer unpaired."""
        ...

    def learn(self, mono: Monologue, lines: list[MediaLine], opts: Options,
              effects: list[Effect], *, offer: bool) -> None:
        """What `mono`'s SDP says about where it receives, and how far to trust it."""
        ...

    def set_strictness(self, author: Monologue, other: Monologue, opts: Options) -> None:
        """`strict-source` and `port-latching` asked by `author`, on both parties' ends."""
        ...


def error(reason: str) -> dict[str, Any]:
    """The answer refusing a command."""
    return {"result": "error", "error-reason": reason}


def text(msg: dict[str, Any], key: str) -> str:
    """A string value of the message ("" when absent or not a string)."""
    value = msg.get(key)
    return value if isinstance(value, str) else ""


def required(msg: dict[str, Any], key: str) -> str:
    """A string value the command cannot do without (CommandError when missing)."""
    value = text(msg, key)
    if not value:
        raise CommandError(f"No {key} in message")
    return value


def strings(value: Any) -> list[str]:
    """A value that may be one string or a list of them, as a list of its strings."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []
