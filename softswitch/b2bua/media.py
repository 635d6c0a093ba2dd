"""The media seam: every SDP body that crosses the B2BUA passes through here.

The call machine asks (`MediaOffer`, `MediaAnswer`, `ReleaseMedia`
effects) and the glue calls a `MediaSeam`. An implementation answers with
the SDP to send on, at once (bytes) or later (a Deferred), or fails with
`MediaError` carrying the SIP status the attempt ends with (488 when the
SDP cannot be served, 503 when the media side is out of resources or
unreachable). Legs are named by `LegId`; a cancelled fork releases what it
held and the end of a call releases the rest.

`DirectMedia` passes SDP unchanged: the endpoints exchange RTP directly.
The media relay plugs its own implementation into the same seam.

A seam that can also answer a party itself and play, echo, record or run
voicemail to it (the dialplan's media actions) is a `MediaHost` as well;
what it then reports (a prompt played, a recording done) comes back to the
call as `MediaEvent`s. `DirectMedia` is not one: those actions are refused.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from twisted.internet.defer import Deferred

from softswitch.b2bua.legs import LegId


class MediaError(Exception):
    """The media side cannot take this SDP; `status` is what the SIP side answers."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason


class MediaSeam(Protocol):
    def offer(self, call: str, source: LegId, sink: LegId, body: bytes,
              content_type: str | None) -> bytes | Deferred[bytes]:
        """An SDP offer from `source` on its way to `sink`: the SDP to send `sink`."""
        ...

    def answer(self, call: str, source: LegId, sink: LegId, body: bytes,
               content_type: str | None) -> bytes | Deferred[bytes]:
        """An SDP answer from `source` on its way to `sink`."""
        ...

    def release(self, call: str, leg: LegId | None) -> None:
        """Free what `leg` held, or (None) everything the call held."""
        ...


@runtime_checkable
class MediaHost(Protocol):
    def host(self, call: str, leg: LegId, body: bytes, content_type: str | None,
             answer: bool) -> bytes | Deferred[bytes]:
        """Answer `leg` ourselves: its offer `body` gives our answer; no body gives
        our offer; `answer` marks `body` as its answer to that offer (b"" back)."""
        ...

    def command(self, call: str, leg: LegId, command: str,
                args: dict[str, str | int]) -> Deferred[None]:
        """`play media`, `echo`, `start recording`, `voicemail`... to hosted `leg`."""
        ...


class MediaChooser(Protocol):
    def seam_for(self, machine: Any) -> tuple[MediaSeam, dict[str, str]]:
        """The seam of `machine`'s call (relayed or direct), and variables to keep
        in the call for it (so a restarted server chooses the same)."""
        ...


class DirectMedia:
    """SDP passes unchanged: the endpoints exchange RTP directly."""

    def offer(self, call: str, source: LegId, sink: LegId, body: bytes,
              content_type: str | None) -> bytes:
        return body

    def answer(self, call: str, source: LegId, sink: LegId, body: bytes,
               content_type: str | None) -> bytes:
        return body

    def release(self, call: str, leg: LegId | None) -> None:
        return None
