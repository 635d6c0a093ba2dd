"""`RelayMedia`: the B2BUA's media seam driving ng relays (ours or rtpengine).

Leg naming (agreed with the relay, after rtpengine's semantics): the
call-id is the B2BUA's call uuid and a leg's tag is `str(LegId)`; offers
and answers also carry `sip-call-id`, the caller leg's SIP Call-ID (see
`correlate`), for the relay's HEP capture. An offer
from leg X towards leg Y is `offer` with from-tag X, to-tag Y and
via-branch Y, so each fork of one offer gets its own ports; the answer
coming back from Y is `answer` with from-tag X (the offerer's) and to-tag
Y. A re-INVITE from Y is an offer from Y to X. Releasing a leg deletes its
branch (a cancelled fork); releasing the call queries its final figures,
then deletes it.

A call sticks to the relay that took its first offer: `place` records it,
and the B2BUA keeps it in the call's variables so a restarted softswitch
asks the same relay. Errors become `MediaError`: a relay that does not
answer or is out of resources gives 503, SDP it cannot serve gives 488.

It is a `MediaHost` too (docs/relay.md, "Media the relay hosts"): `host`
makes the relay answer a party itself, and `command` sends it `play media`,
`echo`, `start recording` or `voicemail` for that party. What the relay
then reports arrives as `media event` notifications (`ng_client.py`).
"""

from __future__ import annotations

import re
import time
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.python.failure import Failure

from softswitch.b2bua.legs import LegId
from softswitch.b2bua.media import MediaError
from softswitch.logs import get_logger
from softswitch.relay.figures import LegFigures, leg_figures
from softswitch.relay.ng_client import NgClient, NgFailure, NgTimeout, parse_address
from softswitch.relay.pool import RelayPool

# The flags Kamailio configs pass for a plain SIP phone on either side.
BASE_FLAGS: dict[str, Any] = {
    "replace": ["origin", "session-connection"],
    "ICE": "remove",
    "transport-protocol": "RTP/AVP",
    "rtcp-mux": ["demux"],
    # Packets from anyone but a leg's latched source (or, before it latches,
    # its SDP's address) are dropped, not forwarded: without it a stranger who
    # finds a relay port injects audio into the call (latching alone only
    # stops the stranger from taking the stream over).
    "flags": ["strict-source"],
    # Offers reach the other party with PCMU and PCMA appended after the
    # offered codecs; the relay converts only when the answer shares none
    # with the offerer (docs/relay.md). rtpengine reads the same key.
    "codec": {"transcode": ["PCMU", "PCMA"]},
}

RECORDINGS = "recordings"
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._@+=-]")


def recording_file(call: str, started: float) -> str:
    """Where the relay records `call`: relative to its media dir (the embedded relay's is the
    data dir), dated in UTC; the same name the relay would choose itself."""
    day = time.strftime("%Y-%m-%d", time.gmtime(started))
    return f"{RECORDINGS}/{day}/{_UNSAFE_NAME.sub('_', call).lstrip('.') or 'call'}.wav"


# Words in an error answer that mean the SDP, not the relay, is the problem.
_SDP_WORDS = ("sdp", "codec", "transport protocol", "protocol", "media type", "unsupported")


def media_error(failure: Failure | BaseException) -> MediaError:
    """The SIP status a failed relay request ends the attempt with."""
    error = failure.value if isinstance(failure, Failure) else failure
    if isinstance(error, MediaError):
        return error
    if isinstance(error, NgTimeout):
        return MediaError(503, "Media Relay Not Answering")
    if isinstance(error, NgFailure):
        if any(word in error.reason.lower() for word in _SDP_WORDS):
            return MediaError(488, "Not Acceptable Here")
        return MediaError(503, "Media Relay Unavailable")
    return MediaError(503, "Media Unavailable")


class RelayMedia:
    """`MediaSeam` over ng relays chosen from a `RelayPool`."""

    def __init__(self, client: NgClient, pool: RelayPool, clock: Any) -> None:
        self.client = client
        self.pool = pool
        self.clock = clock
        self.calls: dict[str, str] = {}  # call uuid -> relay address (udp:HOST:PORT)
        # Legs whose media comes from their SIP source address, not the SDP's
        # (behind a NAT): tag -> (address family, address).
        self._sources: dict[str, dict[str, tuple[str, str]]] = {}  # by call, then tag
        self._endings: dict[str, Deferred[dict[str, LegFigures]]] = {}
        # By call: a fork's tag -> the tag that offered to it (to delete the fork alone).
        self._offerers: dict[str, dict[str, str]] = {}
        self._sip_call_ids: dict[str, str] = {}  # call uuid -> the caller leg's SIP Call-ID
        # Recorded calls: their ng keys (record-call, recording-file, sip-call-id).
        self._recorded: dict[str, dict[str, str]] = {}
        # By call: the tags of legs whose media the relay repairs.
        self._repaired: dict[str, set[str]] = {}
        self.log = get_logger("softswitch.relay")

    # -- which relay -----------------------------------------------------------------------

    def place(self, call: str, known: str | None = None) -> str | None:
        """The relay of `call`: `known` (a restored call), the one it has, or a new choice."""
        if known:
            try:
                parse_address(known)
                self.calls[call] = known
            except ValueError:
                self.log.error("bad_saved_relay", call=call, relay=known)
        where = self.calls.get(call)
        if where is None:
            where = self.pool.choose()
            if where is not None:
                self.calls[call] = where
        return where

    def behind_nat(self, call: str, leg: LegId, address: str) -> None:
        """`leg` sends from `address` (its SIP source), not from what its SDP says."""
        self._sources.setdefault(call, {})[str(leg)] = ("IP6" if ":" in address else "IP4",
                                                        address)

    def correlate(self, call: str, sip_call_id: str) -> None:
        """`call`'s caller leg has `sip_call_id`: the relay's HEP capture groups the
        call's RTCP reports by it, as Homer groups the SIP messages."""
        self._sip_call_ids[call] = sip_call_id

    def record(self, call: str, known: str | None, sip_call_id: str) -> str:
        """The relay records `call` (to `known`, a restored call's file, or a new one)."""
        keys = self._recorded.get(call)
        if keys is None:
            file = known or recording_file(call, self.clock.seconds())
            keys = {"record-call": "yes", "recording-file": file, "sip-call-id": sip_call_id}
            self._recorded[call] = keys
        return keys["recording-file"]

    def repair(self, call: str, leg: LegId) -> None:
        """What `leg` sends goes through the relay's jitter buffer and concealment."""
        self._repaired.setdefault(call, set()).add(str(leg))

    # -- the seam --------------------------------------------------------------------------

    def offer(self, call: str, source: LegId, sink: LegId, body: bytes,
              content_type: str | None) -> Deferred[bytes]:
        message = self._message("offer", call, str(source), str(sink), str(sink), body)
        self._offerers.setdefault(call, {}).setdefault(str(sink), str(source))
        self._author(call, source, message)
        return self._sdp(call, message)

    def answer(self, call: str, source: LegId, sink: LegId, body: bytes,
               content_type: str | None) -> Deferred[bytes]:
        message = self._message("answer", call, str(sink), str(source), str(source), body)
        self._author(call, source, message)
        return self._sdp(call, message)

    def _author(self, call: str, source: LegId, message: dict[str, Any]) -> None:
        """The flags that belong to the SDP's author: its NAT source, its repair."""
        received = self._sources.get(call, {}).get(str(source))
        if received is not None:
            message["flags"] = [*message["flags"], "SIP-source-address"]
            message["received-from"] = list(received)
        if str(source) in self._repaired.get(call, ()):
            message["flags"] = [*message["flags"], "media-repair"]

    def release(self, call: str, leg: LegId | None) -> None:
        where = self.calls.get(call)
        if where is None:
            return
        if leg is not None:
            tag = str(leg)
            self._sources.get(call, {}).pop(tag, None)
            self._repaired.get(call, set()).discard(tag)
            offerer = self._offerers.get(call, {}).pop(tag, None)
            if offerer is not None:
                # A cancelled fork: only its branch goes. Without a from-tag
                # rtpengine would delete the whole call.
                self._ask(where, {"command": "delete", "call-id": call, "from-tag": offerer,
                                  "to-tag": tag, "via-branch": tag}
                          ).addErrback(self._delete_failed, call)
            return
        del self.calls[call]
        self._offerers.pop(call, None)
        self._sip_call_ids.pop(call, None)
        self._recorded.pop(call, None)
        self._sources.pop(call, None)
        self._repaired.pop(call, None)
        ending: Deferred[dict[str, LegFigures]] = Deferred()
        self._endings[call] = ending

        def figures(answer: dict[str, Any]) -> dict[str, LegFigures]:
            return leg_figures(answer)

        def none(failure: Failure) -> dict[str, LegFigures]:
            self.log.warning("relay_query_failed", call=call, error=str(failure.value))
            return {}

        def delete(result: dict[str, LegFigures]) -> dict[str, LegFigures]:
            self._ask(where, {"command": "delete", "call-id": call}).addErrback(
                self._delete_failed, call)
            self._endings.pop(call, None)
            ending.callback(result)
            return result

        # The figures first: rtpengine answers a delete without them when it
        # delays deletion (its default), so ask while the call is still there.
        self._ask(where, {"command": "query", "call-id": call}).addCallbacks(
            figures, none).addCallback(delete)

    def figures(self, call: str) -> Deferred[dict[str, LegFigures]]:
        """The final figures of a released call, by leg tag ({} if none were asked)."""
        ending = self._endings.get(call)
        if ending is None:
            return succeed({})
        out: Deferred[dict[str, LegFigures]] = Deferred()

        def fire(result: dict[str, LegFigures]) -> dict[str, LegFigures]:
            out.callback(result)
            return result

        ending.addCallback(fire)
        return out

    # -- media the relay hosts (MediaHost) ---------------------------------------------------

    def host(self, call: str, leg: LegId, body: bytes, content_type: str | None,
             answer: bool) -> Deferred[bytes]:
        """The relay answers `leg` itself: its SDP answer (or, without `body`, its offer)."""
        tag = str(leg)
        message: dict[str, Any] = {"command": "host", "call-id": call, "from-tag": tag,
                                   **BASE_FLAGS}
        if body:
            message["sdp"] = body
        if answer:
            message["sdp-type"] = "answer"
        received = self._sources.get(call, {}).get(tag)
        if received is not None:
            message["flags"] = [*BASE_FLAGS["flags"], "SIP-source-address"]
            message["received-from"] = list(received)
        if answer:
            return self._hosting(call, message).addCallback(lambda _: b"")
        return self._sdp(call, message)

    def command(self, call: str, leg: LegId, command: str,
                args: dict[str, str | int]) -> Deferred[None]:
        """`play media`, `stop media`, `echo`, `start recording`, `voicemail`... for `leg`."""
        message: dict[str, Any] = {"command": command, "call-id": call, "from-tag": str(leg),
                                   **args}
        return self._hosting(call, message).addCallback(lambda _: None)

    def _hosting(self, call: str, message: dict[str, Any]) -> Deferred[dict[str, Any]]:
        where = self.calls.get(call)
        if where is None:
            return fail(MediaError(503, "No Media Relay For This Call"))
        return self._ask(where, message).addErrback(self._refused, call, where,
                                                    message["command"])

    # -- requests ----------------------------------------------------------------------------

    def _message(self, command: str, call: str, from_tag: str, to_tag: str, branch: str,
                 body: bytes) -> dict[str, Any]:
        message = {"command": command, "call-id": call, "from-tag": from_tag, "to-tag": to_tag,
                   "via-branch": branch, "sdp": body, **BASE_FLAGS,
                   **self._recorded.get(call, {})}
        sip_call_id = self._sip_call_ids.get(call)
        if sip_call_id:
            # Our extension; ng relays ignore keys they do not know (rtpengine does).
            message["sip-call-id"] = sip_call_id
        return message

    def _ask(self, where: str, message: dict[str, Any]) -> Deferred[dict[str, Any]]:
        address = parse_address(where)
        result = self.client.request(address, message)

        def answered(answer: dict[str, Any]) -> dict[str, Any]:
            if self.pool.answered(where, self.clock.seconds()):
                self.log.info("relay_up", relay=where)
            return answer

        def failed(failure: Failure) -> Failure:
            if isinstance(failure.value, NgFailure):
                self.pool.answered(where, self.clock.seconds())  # it is alive, if unhappy
            return failure

        return result.addCallbacks(answered, failed)

    def _sdp(self, call: str, message: dict[str, Any]) -> Deferred[bytes]:
        where = self.place(call)
        if where is None:
            self.log.error("no_relay_up", call=call)
            raise MediaError(503, "No Media Relay Available")

        def sdp(answer: dict[str, Any]) -> bytes:
            body = answer.get("sdp")
            if not isinstance(body, str) or not body:
                raise MediaError(503, "Media Relay Gave No SDP")
            return body.encode("utf-8", "surrogateescape")

        return self._ask(where, message).addCallbacks(
            sdp, self._refused, errbackArgs=(call, where, message["command"]))

    def _refused(self, failure: Failure, call: str, where: str, command: str) -> Failure:
        """A failed request as the MediaError the call ends with, logged once."""
        error = media_error(failure)
        self.log.warning("relay_refused", call=call, relay=where, command=command,
                         status=error.status, error=str(failure.value))
        return Failure(error)

    def _delete_failed(self, failure: Failure, call: str) -> None:
        self.log.warning("relay_delete_failed", call=call, error=str(failure.value))
