"""What the relay's control asks its glue to do: the effects of the ng commands.

`control.Control` (offer, answer, delete, expiry, restore) and the command
modules beside it (`hosting_commands`, `recording_commands`) return these
small frozen values; `service.RelayService` carries them out, in order,
before it sends the answer, so an answered command is durable. The effects
on a hosted party's processor live with the rest of hosted media in
`hosting.py` and are part of the same `Effect` union.
"""

from __future__ import annotations

from dataclasses import dataclass

from rtpmedia.relay import transcoding
from rtpmedia.relay.calls import Call, MediaEnd
from rtpmedia.relay.hosting import Host, MediaEffect, Unhost


@dataclass(frozen=True, slots=True)
class Bind:
    """Open the port pair of `end` (RTP and RTCP sockets)."""

    end: MediaEnd


@dataclass(frozen=True, slots=True)
class Unbind:
    """Close the port pair of `end` (and take its flow out of the kernel)."""

    end: MediaEnd


@dataclass(frozen=True, slots=True)
class Unkernel:
    """Its addresses changed: forward `end`'s stream in userspace until it latches again."""

    end: MediaEnd


@dataclass(frozen=True, slots=True)
class Save:
    call: Call


@dataclass(frozen=True, slots=True)
class Forget:
    call_id: str


@dataclass(frozen=True, slots=True)
class Teardown:
    """Tell the softswitch (the --notify address) that the call ended on its own."""

    call_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class Record:
    """Record the call's audio pair, `left` (the caller) and `right`, to `file` (see recording.py).

    Repeated for a call already recorded with the same ends, it changes nothing.
    """

    call_id: str
    file: str  # relative to the relay's media dir
    left: MediaEnd
    right: MediaEnd
    sip_call_id: str


@dataclass(frozen=True, slots=True)
class StopRecording:
    call_id: str


@dataclass(frozen=True, slots=True)
class BridgeMedia:
    """The relay converts or repairs the audio between two parties' ends of one media line.

    `plan` None: it stops (a new offer/answer no longer asks for it) and the
    stream is forwarded as it comes again. `repair` says, per end, whether
    what that party sends goes through a jitter buffer and concealment.
    """

    offerer: MediaEnd
    answerer: MediaEnd
    plan: transcoding.StreamPlan | None
    repair: tuple[bool, bool] = (False, False)


Effect = (Bind | Unbind | Unkernel | Save | Forget | Teardown | Record | StopRecording
          | Host | Unhost | MediaEffect | BridgeMedia)
