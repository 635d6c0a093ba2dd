"""Media the relay hosts itself (issue 15): what `host` answers and what the media commands ask.

The ng extension of docs/relay.md ("Hosted media"): `host` makes the relay
the far end of one party's call (it answers its SDP offer itself), and
`play media`, `stop media`, `echo`, `start recording`, `stop recording` and
`voicemail` tell it what that party hears. This module holds the pure parts:

- the choice of codec (PCMU or PCMA, whichever the party offered first, and
  telephone-event/8000 when offered) and the answer SDP built from it
  (RFC 3264 6: every other m= line rejected with port 0, the direction
  mirrored as 6.1 asks), and the offer for a late-offer INVITE;
- the file names a command may carry: relative to the media dir, never
  absolute and never climbing out of it with "..";
- the effects the glue carries out on the party's processor
  (`rtpmedia.relay.hosted.HostedParty`).

Control (`control.py`) owns the calls; `hosting_commands.py` turns the
commands into these effects.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from rtpmedia.relay.calls import Hosting, MediaEnd
from softswitch.sip.sdp import Codec, SessionDescription

#: The codecs a hosted party may use: G.711 only (the relay's prompts and recordings are 8 kHz).
VOICE = ("PCMU", "PCMA")
STATIC = {"PCMU": 0, "PCMA": 8}
#: The payload type the relay offers for telephone-event when it makes the offer.
EVENT_TYPE = 101
_MIRROR = {"sendonly": "recvonly", "recvonly": "sendonly", "inactive": "inactive",
           "sendrecv": "sendrecv"}


class HostingError(ValueError):
    """A hosted command the relay refuses; the text is the error-reason."""


# -- effects the glue carries out on the hosted party ------------------------------------


@dataclass(frozen=True, slots=True)
class Host:
    """Make (or keep) `end` a hosted party in `hosting`'s codec."""

    end: MediaEnd
    hosting: Hosting


@dataclass(frozen=True, slots=True)
class Unhost:
    """`end` is forwarded again (an offer or answer paired it with another party)."""

    end: MediaEnd


@dataclass(frozen=True, slots=True)
class PlayMedia:
    end: MediaEnd
    file: str  # a prompt name or a path relative to the media dir (checked)
    repeat: int


@dataclass(frozen=True, slots=True)
class StopMedia:
    end: MediaEnd


@dataclass(frozen=True, slots=True)
class Echo:
    end: MediaEnd


@dataclass(frozen=True, slots=True)
class StartPartyRecording:
    end: MediaEnd
    file: str  # relative to the media dir, ends in .wav
    max_seconds: int
    beep: bool
    stop_digit: str


@dataclass(frozen=True, slots=True)
class StopPartyRecording:
    end: MediaEnd


@dataclass(frozen=True, slots=True)
class Voicemail:
    end: MediaEnd
    mailbox: str
    mode: str  # "leave" | "menu"
    caller: str
    caller_name: str
    sip_call_id: str


MediaEffect = PlayMedia | StopMedia | Echo | StartPartyRecording | StopPartyRecording | Voicemail


# -- codec choice and SDP ------------------------------------------------------------------


def choose(sdp: SessionDescription) -> tuple[int, Hosting]:
    """The audio line to accept (its index) and the codec to use on it.

    The first audio m= line with PCMU or PCMA wins; the party's order of
    preference decides between the two (RFC 3264 6.1: the answerer should
    use the offerer's preference).
    """
    for index, media in enumerate(sdp.media):
        # Plain RTP only: the relay has no SRTP keys to answer RTP/SAVP with.
        if media.media != "audio" or media.port == 0 \
                or media.proto.upper() not in ("RTP/AVP", "RTP/AVPF"):
            continue
        codecs = media.codecs
        voice = next((c for c in codecs if _name(c) in VOICE and c.clock_rate in (8000, None)),
                     None)
        if voice is None:
            continue
        events = next((c for c in codecs if _name(c) == "TELEPHONE-EVENT"
                       and c.clock_rate == 8000), None)
        return index, Hosting(index=index, codec=_name(voice), payload_type=voice.payload_type,
                              event_type=None if events is None else events.payload_type)
    raise HostingError("no codec in common")


def answer(offer: SessionDescription, hosting: Hosting, address: str, port: int,
           version: int) -> str:
    """The relay's answer to `offer`: the chosen line accepted, every other one rejected."""
    family = "IP6" if ":" in address else "IP4"
    lines = _session(address, family, version)
    for index, media in enumerate(offer.media):
        if index != hosting.index:
            lines.append(f"m={media.media} 0 {media.proto} {' '.join(media.formats) or '0'}")
            continue
        direction = _MIRROR.get(offer.media_direction(media).value, "sendrecv")
        lines += _audio(port, hosting, media.proto, direction)
    return "\r\n".join(lines) + "\r\n"


def offer(address: str, port: int, version: int) -> str:
    """The relay's offer for a party that sent none (a late-offer INVITE, RFC 3261 13.2.1)."""
    family = "IP6" if ":" in address else "IP4"
    lines = _session(address, family, version)
    lines += [f"m=audio {port} RTP/AVP 0 8 {EVENT_TYPE}",
              "a=rtpmap:0 PCMU/8000", "a=rtpmap:8 PCMA/8000",
              f"a=rtpmap:{EVENT_TYPE} telephone-event/8000", f"a=fmtp:{EVENT_TYPE} 0-16",
              "a=ptime:20", f"a=rtcp:{port + 1}", "a=sendrecv"]
    return "\r\n".join(lines) + "\r\n"


def _session(address: str, family: str, version: int) -> list[str]:
    return ["v=0", f"o=- {version} {version} IN {family} {address}", "s=softswitch",
            f"c=IN {family} {address}", "t=0 0"]


def _audio(port: int, hosting: Hosting, proto: str, direction: str) -> list[str]:
    formats = [str(hosting.payload_type)]
    if hosting.event_type is not None:
        formats.append(str(hosting.event_type))
    out = [f"m=audio {port} {proto} {' '.join(formats)}",
           f"a=rtpmap:{hosting.payload_type} {hosting.codec}/8000"]
    if hosting.event_type is not None:
        out += [f"a=rtpmap:{hosting.event_type} telephone-event/8000",
                f"a=fmtp:{hosting.event_type} 0-16"]
    out += ["a=ptime:20", f"a=rtcp:{port + 1}", f"a={direction}"]
    return out


def _name(codec: Codec) -> str:
    return (codec.name or "").upper()


# -- the media commands ------------------------------------------------------------------


def media_effect(msg: dict[str, Any], end: MediaEnd) -> MediaEffect:
    """What a media command asks of hosted party `end`; HostingError for bad keys."""
    command = msg.get("command")
    if command == "play media":
        return PlayMedia(end, prompt_or_path(msg.get("file")),
                         positive_int(msg.get("repeat-times"), 1, "repeat-times"))
    if command == "stop media":
        return StopMedia(end)
    if command == "echo":
        return Echo(end)
    if command == "start recording":
        beep = _text(msg, "beep").lower() or "yes"
        if beep not in ("yes", "no"):
            raise HostingError("beep must be yes or no")
        digit = _text(msg, "stop-digit") or "#"
        if len(digit) != 1 or digit not in "0123456789*#ABCD":
            raise HostingError(f"stop-digit {digit!r} is not a DTMF digit")
        return StartPartyRecording(end, relative_path(msg.get("file"), suffix=".wav"),
                              positive_int(msg.get("max-seconds"), 60, "max-seconds"),
                              beep == "yes", digit)
    if command == "stop recording":
        return StopPartyRecording(end)
    if command == "voicemail":
        from softswitch.voicemail import valid_mailbox

        mailbox = _text(msg, "mailbox")
        if not valid_mailbox(mailbox):
            raise HostingError(f"Not a mailbox: {mailbox!r}")
        mode = _text(msg, "mode") or "leave"
        if mode not in ("leave", "menu"):
            raise HostingError("mode must be leave or menu")
        return Voicemail(end, mailbox, mode, _text(msg, "caller"), _text(msg, "caller-name"),
                         _text(msg, "sip-call-id"))
    raise HostingError("Unrecognized command")


def _text(msg: dict[str, Any], key: str) -> str:
    value = msg.get(key)
    return value if isinstance(value, str) else ""


# -- what commands may name ------------------------------------------------------------------


def relative_path(text: Any, *, suffix: str = "") -> str:
    """`text` as a path inside the media dir; HostingError for absolute paths or "..".

    `suffix` is added when the name lacks it (recordings are WAV).
    """
    if not isinstance(text, str) or not text.strip():
        raise HostingError("No file in message")
    if "\x00" in text or "\\" in text:
        raise HostingError(f"Bad file name {text!r}")
    path = PurePosixPath(text)
    if path.is_absolute() or any(part in ("..", "") for part in path.parts):
        raise HostingError(f"File {text!r} must be a path relative to the media dir, "
                           "without '..'")
    name = str(path)
    if suffix and not name.lower().endswith(suffix):
        name += suffix
    return name


def prompt_or_path(text: Any) -> str:
    """A `play media` file: a bare prompt NAME, or a relative path."""
    name = relative_path(text)
    if "/" not in name and name.startswith("."):
        raise HostingError(f"Bad prompt name {name!r}")
    return name


def positive_int(value: Any, default: int, what: str) -> int:
    if value is None:
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise HostingError(f"{what} must be a whole number") from None
    if number < 1:
        raise HostingError(f"{what} must be at least 1")
    return number
