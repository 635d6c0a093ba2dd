"""ng commands in, answers and effects out: the relay's control, without sockets.

rtpengine's semantics (its docs/ng_control_protocol.md): `offer` carries the
SDP of the party named by `from-tag` and answers it rewritten for the other
party (`to-tag`, or `via-branch` while a fork's tag is unknown); `answer`
carries the SDP of the `to-tag` party and answers it rewritten for the
`from-tag` party; a re-INVITE from the callee is an offer with the tags the
other way round. `delete` with the call-id alone ends the call, with a
`to-tag` or `via-branch` it ends that branch (a cancelled fork) and the
call only if no pair of parties is left. `query`, `list` and `ping` read.

`Control.datagram` takes one datagram and returns the answer's bytes and
effects (ports to open and close, calls to store or forget, flows to take
out of the kernel). The glue carries out the effects *before* it sends the
answer, so an answered offer is durable. A datagram whose cookie was seen
recently gets the same bytes again and no effects (a client's retry).

This module dispatches every command and holds the offer/answer family
(offer, answer, delete, query, list, ping), expiry and restore. Hosted
media (`host`, `play media`, ...) are in `hosting_commands.py`, whole-call
recording in `recording_commands.py`; they act on the calls through the
public methods of `commands.CallTable`. The effects are in `effects.py`.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rtpmedia import ng
from rtpmedia.relay import hosting_commands, recording_commands, sdprewrite, transcoding
from rtpmedia.relay.calls import Address, Call, MediaEnd, Monologue, link
from rtpmedia.relay.commands import CommandError, Options, error, required, text
from rtpmedia.relay.effects import (
    Bind,
    BridgeMedia,
    Effect,
    Forget,
    Record,
    Save,
    StopRecording,
    Teardown,
    Unbind,
    Unkernel,
)
from rtpmedia.relay.hosting import Host, HostingError
from rtpmedia.relay.hosting_commands import unhost
from rtpmedia.relay.ports import PortPool, PortsExhausted
from rtpmedia.relay.recording_commands import (
    checked_recording_file,
    default_recording_file,
    record_if_paired,
    recording_asked,
    want_recording,
)
from rtpmedia.relay.sdprewrite import MediaLine, Rewrite, SdpError, SessionDescription

# The glue and the tests take the whole of the control's vocabulary from here.
__all__ = [
    "FORK_GRACE", "TRANSCODABLE", "UNANSWERED_TIMEOUT", "Bind", "BridgeMedia", "CommandError",
    "NOT_PROCESSED", "Control", "Effect", "Forget", "Options", "ProcessedCounts", "Record", "Save", "SdpCommand", "StopRecording",
    "Teardown", "Unbind", "Unkernel", "checked_recording_file", "default_recording_file",
    "restored_bridges",
]

#: An unanswered fork is released this long after a sibling answered.
FORK_GRACE = 30.0
#: An offer never answered is released after this long (ringing is shorter).
UNANSWERED_TIMEOUT = 600.0
COOKIE_CACHE_SIZE = 4096
COOKIE_TTL = 120.0
# Payloads that are not the voice codec the E-model scores (RFC 4733 events, RFC 3389 comfort noise).
_NOT_VOICE = frozenset({"TELEPHONE-EVENT", "CN"})
#: What `codec: {transcode: [...]}` may name: G.711 converts code word to code word.
TRANSCODABLE = frozenset({"PCMU", "PCMA"})


@dataclass(frozen=True, slots=True)
class SdpCommand:
    """What an offer and an answer both carry: the leg's names, its flags, its SDP."""

    call_id: str
    from_tag: str
    to_tag: str
    via: str
    opts: Options
    sdp: SessionDescription
    lines: list[MediaLine]
    sip_call_id: str = ""  # our extension, for HEP: the caller leg's SIP Call-ID

    @classmethod
    def read(cls, msg: dict[str, Any]) -> SdpCommand:
        call_id, from_tag = required(msg, "call-id"), required(msg, "from-tag")
        opts = Options.parse(msg)
        sdp = sdprewrite.parse(required(msg, "sdp"))
        lines = sdprewrite.read(sdp)
        _check_transcode(opts)
        return cls(call_id, from_tag, text(msg, "to-tag"), text(msg, "via-branch"),
                   opts, sdp, lines, text(msg, "sip-call-id"))


@dataclass(frozen=True, slots=True)
class ProcessedCounts:
    """What the relay's media engine did with the packets one party sent (the glue reads it).

    `bridge`: the converting or repairing bridge's counters for that
    direction (`bridge.BridgeCounts`: forwarded, converted, dropped, frames,
    concealed), None when no bridge takes the stream. `srtp_failed`: of a
    recorded SDES-SRTP stream, the copies no key authenticated (left out of
    the recording; forwarding is not touched), None when not recorded so.
    """

    bridge: dict[str, int] | None = None
    srtp_failed: int | None = None


NOT_PROCESSED = ProcessedCounts()


# -- the control ---------------------------------------------------------------


class Control:
    """Every call of the relay, and the ng commands that change them."""

    def __init__(self, pool: PortPool, advertise: str, *,
                 silence_timeout: float = 60.0, hold_timeout: float = 3600.0,
                 kernel_counts: Callable[[MediaEnd], tuple[int, int]] | None = None,
                 processed_counts: Callable[[MediaEnd], ProcessedCounts] | None = None) -> None:
        self.pool = pool
        self.advertise = advertise
        self.silence_timeout = silence_timeout
        self.hold_timeout = hold_timeout
        self.calls: dict[str, Call] = {}
        # What the kernel counted for an end's flow still installed (the glue asks the fast path).
        self._kernel_counts = kernel_counts or (lambda end: (0, 0))
        # What the media engine's processors and taps counted on an end (the glue asks them).
        self._processed_counts = processed_counts or (lambda end: NOT_PROCESSED)
        self._answers: OrderedDict[bytes, tuple[float, bytes]] = OrderedDict()

    # -- datagrams ---------------------------------------------------------------

    def datagram(self, data: bytes, now: float) -> tuple[bytes | None, list[Effect]]:
        """The answer to one control datagram (None: not ng, drop it) and its effects."""
        try:
            cookie, message = ng.decode(data)
        except ng.NgError:
            return None, []
        cached = self._answers.get(cookie)
        if cached is not None and now - cached[0] < COOKIE_TTL:
            return cached[1], []
        answer, effects = self.handle(message, now)
        try:
            reply = ng.encode(cookie, answer)
        except (TypeError, ValueError) as exc:  # a value we echoed that bencode refuses
            reply = ng.encode(cookie, {"result": "error", "error-reason": f"internal: {exc}"})
        self._remember(cookie, reply, now)
        return reply, effects

    def _remember(self, cookie: bytes, reply: bytes, now: float) -> None:
        self._answers[cookie] = (now, reply)
        self._answers.move_to_end(cookie)
        while len(self._answers) > COOKIE_CACHE_SIZE:
            self._answers.popitem(last=False)

    def handle(self, msg: dict[str, Any], now: float) -> tuple[dict[str, Any], list[Effect]]:
        """One decoded command: its answer (always a dict) and effects."""
        command = msg.get("command")
        handler = _COMMANDS.get(command if isinstance(command, str) else "")
        if handler is None:
            return error("Unrecognized command"), []
        effects: list[Effect] = []
        try:
            return handler(self, msg, now, effects), effects
        except CommandError as exc:
            return error(str(exc)), effects
        except (SdpError, HostingError) as exc:
            return error(str(exc)), effects

    # -- commands ------------------------------------------------------------------

    def _ping(self, msg: dict[str, Any], now: float, effects: list[Effect]) -> dict[str, Any]:
        return {"result": "pong"}

    def _list(self, msg: dict[str, Any], now: float, effects: list[Effect]) -> dict[str, Any]:
        limit = msg.get("limit")
        ids = list(self.calls)
        if isinstance(limit, int) and limit >= 0:
            ids = ids[:limit]
        return {"result": "ok", "calls": ids}

    def _offer(self, msg: dict[str, Any], now: float, effects: list[Effect]) -> dict[str, Any]:
        c = SdpCommand.read(msg)
        call_id, from_tag, to_tag, via, opts, sdp, lines = (
            c.call_id, c.from_tag, c.to_tag, c.via, c.opts, c.sdp, c.lines)
        ask = recording_asked(msg, c.opts)  # refused before anything changes
        call = self.calls.get(call_id)
        fresh_call = call is None
        if call is None:
            call = Call(call_id, now, now)
        offerer = call.monologues.get(from_tag) or Monologue(from_tag, now)
        other = self._callee_side(call, to_tag, via)
        if other is None:
            other = Monologue(to_tag or _branch_key(via), now, via_branch=via)
        if other is offerer or other.key == offerer.key:
            raise CommandError("from-tag and to-tag are the same")
        new_ends = self.allocate(call, [offerer, other], len(lines))
        for mono in (offerer, other):
            call.monologues.setdefault(mono.key, mono)
        if fresh_call:
            self.calls[call_id] = call
        effects += [Bind(end) for end in new_ends]
        call.last_signal = now
        call.sip_call_id = c.sip_call_id or call.sip_call_id
        want_recording(call, ask)
        unhost(offerer, effects)
        unhost(other, effects)
        self.learn(offerer, lines, opts, effects, offer=True)
        self.set_strictness(offerer, other, opts)
        offerer.peer, other.peer = other.key, offerer.key
        link(call)
        mux_out = tuple(False if "demux" in opts.rtcp_mux else
                        True if "offer" in opts.rtcp_mux else line.mux for line in lines)
        sdp = _offer_codecs(offerer, sdp, opts)
        body = self._rewrite(sdp, other, lines, mux_out, opts)
        record_if_paired(call, now, effects)
        effects.append(Save(call))
        return {"result": "ok", "sdp": body}

    def _answer(self, msg: dict[str, Any], now: float, effects: list[Effect]) -> dict[str, Any]:
        c = SdpCommand.read(msg)
        call_id, from_tag, to_tag, via, opts, sdp, lines = (
            c.call_id, c.from_tag, c.to_tag, c.via, c.opts, c.sdp, c.lines)
        ask = recording_asked(msg, c.opts)  # refused before anything changes
        call = self.calls.get(call_id)
        if call is None:
            raise CommandError("Unknown call-id")
        offerer = call.monologues.get(from_tag)
        if offerer is None:
            raise CommandError("Unknown from-tag")
        answerer = self._answerer(call, offerer, to_tag, via)
        if answerer is offerer:
            raise CommandError("from-tag and to-tag are the same")
        if to_tag and answerer.key != to_tag:
            self._rename(call, answerer, to_tag)
        new_ends = self.allocate(call, [offerer, answerer], len(lines))
        effects += [Bind(end) for end in new_ends]
        call.last_signal = now
        call.sip_call_id = c.sip_call_id or call.sip_call_id
        want_recording(call, ask)
        unhost(offerer, effects)
        unhost(answerer, effects)
        self.learn(answerer, lines, opts, effects, offer=False)
        self.set_strictness(answerer, offerer, opts)
        answerer.answered = offerer.answered = True
        answerer.deadline = None
        offerer.peer, answerer.peer = answerer.key, offerer.key
        for mono in call.monologues.values():  # the forks not chosen
            if mono is not answerer and mono is not offerer and mono.peer == offerer.key \
                    and not mono.answered and mono.deadline is None:
                mono.deadline = now + FORK_GRACE
        accept = bool({"accept", "demux"} & opts.rtcp_mux)
        for end, line in zip(offerer.ends, lines, strict=False):
            end.mux = end.mux_offered and (line.mux or end.mux_accept or accept)
        link(call)
        mux_out = tuple(offerer.ends[i].mux for i in range(len(lines)))
        sdp = _answer_codecs(offerer, answerer, sdp, opts, effects)
        body = self._rewrite(sdp, offerer, lines, mux_out, opts)
        record_if_paired(call, now, effects)
        effects.append(Save(call))
        return {"result": "ok", "sdp": body}

    def _delete(self, msg: dict[str, Any], now: float, effects: list[Effect]) -> dict[str, Any]:
        call = self.find_call(msg)
        to_tag, via = text(msg, "to-tag"), text(msg, "via-branch")
        answer = self.stats(call, now)
        if to_tag or via:
            branch = call.monologues.get(to_tag) if to_tag else None
            if branch is None and via:
                branch = next((m for m in call.monologues.values() if m.via_branch == via), None)
            if branch is None:
                raise CommandError("Unknown to-tag or via-branch")
            self.drop_monologue(call, branch, effects)
            if _has_pair(call):
                effects.append(Save(call))
                return answer
        self._drop_call(call, effects)
        return answer

    def _query(self, msg: dict[str, Any], now: float, effects: list[Effect]) -> dict[str, Any]:
        return self.stats(self.find_call(msg), now)

    # -- time ----------------------------------------------------------------------

    def expire(self, now: float) -> list[Effect]:
        """Release forks not chosen, and end calls whose media stopped (with a Teardown)."""
        effects: list[Effect] = []
        for call in list(self.calls.values()):
            forks = [m for m in call.monologues.values()
                     if m.deadline is not None and m.deadline <= now]
            for mono in forks:
                self.drop_monologue(call, mono, effects)
            if forks:
                if not _has_pair(call):
                    self._drop_call(call, effects)
                    continue
                effects.append(Save(call))
            ends = call.ends()
            # Per stream: once a party has sent, its stream going silent ends
            # the call even while the other party still talks (a phone that
            # died, a NAT binding that was lost). Before anyone sends, the
            # call's own activity counts.
            sending = [e.last_packet for e in ends if e.latched is not None]
            activity = max(call.last_signal, min(sending)) if sending \
                else max([call.last_signal, *(e.last_packet for e in ends)])
            answered = any(m.answered for m in call.monologues.values())
            if not answered:
                timeout = UNANSWERED_TIMEOUT
            elif any(e.on_hold for e in ends):
                timeout = self.hold_timeout
            else:
                timeout = self.silence_timeout
            if now - activity >= timeout:
                self._drop_call(call, effects)
                if answered:
                    effects.append(Teardown(call.call_id, "media timeout"))
        return effects

    # -- restore ---------------------------------------------------------------------

    def restore(self, call: Call, now: float) -> list[Effect]:
        """Take back a stored call after a restart: its ports, if they are still free.

        Its media get a fresh silence allowance: packets sent while the relay
        was down were lost, not missing.
        """
        effects: list[Effect] = []
        reserved: list[int] = []
        for end in call.ends():
            if not self.pool.reserve(end.port):
                for port in reserved:
                    self.pool.release(port)
                raise CommandError(f"port {end.port} of call {call.call_id} is not free")
            reserved.append(end.port)
            end.last_packet = now
            effects.append(Bind(end))
        for mono in call.monologues.values():
            if mono.hosting is not None and mono.hosting.index < len(mono.ends):
                effects.append(Host(mono.ends[mono.hosting.index], mono.hosting))
        self.calls[call.call_id] = call
        record_if_paired(call, now, effects)  # goes on into the recording's next part
        return effects + restored_bridges(call)

    def abandon(self, call_id: str, unusable: list[int]) -> list[Effect]:
        """The system would not let us bind `unusable`: set them aside and drop the call."""
        effects: list[Effect] = []
        call = self.calls.get(call_id)
        if call is not None:
            self._drop_call(call, effects)
        for port in unusable:
            self.pool.skip(port)
        return effects

    def refuse(self, datagram: bytes, reason: str, now: float) -> bytes | None:
        """Replace the answer to `datagram` (also for its retries) by an error."""
        return self.reanswer(datagram, error(reason), now)

    def reanswer(self, datagram: bytes, answer: dict[str, Any], now: float) -> bytes | None:
        """Replace the answer to `datagram` (also for its retries): what the glue learnt
        carrying out its effects (a prompt's duration, a file it could not read)."""
        try:
            cookie, _ = ng.decode(datagram)
        except ng.NgError:
            return None
        reply = ng.encode(cookie, answer)
        self._remember(cookie, reply, now)
        return reply

    # -- stats -----------------------------------------------------------------------

    def stats(self, call: Call, now: float) -> dict[str, Any]:
        """rtpengine's query answer: totals, and per tag, media and stream the counters."""
        totals = {"RTP": {"packets": 0, "bytes": 0, "errors": 0},
                  "RTCP": {"packets": 0, "bytes": 0, "errors": 0}}
        tags: dict[str, Any] = {}
        ssrcs: dict[str, Any] = {}  # rtpengine's per-SSRC quality table
        for mono in call.monologues.values():
            medias = []
            for end in mono.ends:
                kp, kb = self._kernel_counts(end)
                packets = end.packets + end.kernel_packets + kp
                octets = end.bytes + end.kernel_bytes + kb
                totals["RTP"]["packets"] += packets
                totals["RTP"]["bytes"] += octets
                totals["RTP"]["errors"] += end.errors
                totals["RTCP"]["packets"] += end.rtcp_packets
                totals["RTCP"]["bytes"] += end.rtcp_bytes
                stream: dict[str, Any] = {
                    "local port": end.port,
                    "advertised endpoint": _endpoint((self.advertise, end.port)),
                    "last packet": int(end.last_packet),
                    "flags": _stream_flags(end),
                    "kernelized": int(end.kernelized is not None),
                    "stats": {"packets": packets, "bytes": octets, "errors": end.errors},
                }
                if end.destination() is not None:
                    stream["endpoint"] = _endpoint(end.destination())
                processed = self._processed_counts(end)
                if processed.bridge is not None:
                    stream["bridge"] = dict(processed.bridge)
                if processed.srtp_failed is not None:
                    stream["recording"] = {"SRTP failed": processed.srtp_failed}
                if end.health is not None:
                    stream.update(end.health.as_ng(end.codec, packets))
                    entry = end.health.ssrc_entry(end.codec, packets)
                    if entry is not None:
                        ssrcs[str(end.health.ssrc)] = entry
                rtcp: dict[str, Any] = {
                    "local port": end.rtcp_port,
                    "flags": ["RTCP"],
                    "stats": {"packets": end.rtcp_packets, "bytes": end.rtcp_bytes,
                              "errors": 0},
                }
                if end.rtcp_destination() is not None:
                    rtcp["endpoint"] = _endpoint(end.rtcp_destination())
                medias.append({"index": end.index + 1, "type": end.media,
                               "streams": [stream, rtcp]})
            tags[mono.key] = {"tag": mono.key, "created": int(mono.created),
                              "in dialogue with": mono.peer or "", "medias": medias}
            if mono.via_branch:
                tags[mono.key]["via-branch"] = mono.via_branch
        answer = {"result": "ok", "created": int(call.created),
                  "last signal": int(call.last_signal),
                  "totals": totals, "tags": tags, "SSRC": ssrcs,
                  "recording": int(call.record_call)}
        if call.recording_file:
            answer["recording-file"] = call.recording_file
        return answer

    # -- helpers ---------------------------------------------------------------------

    def find_call(self, msg: dict[str, Any]) -> Call:
        call = self.calls.get(required(msg, "call-id"))
        if call is None:
            raise CommandError("Unknown call-id")
        return call

    def _callee_side(self, call: Call, to_tag: str, via: str) -> Monologue | None:
        if to_tag and to_tag in call.monologues:
            return call.monologues[to_tag]
        branch = call.monologues.get(_branch_key(via))
        if branch is not None and to_tag:
            self._rename(call, branch, to_tag)
        return branch

    def _answerer(self, call: Call, offerer: Monologue, to_tag: str, via: str) -> Monologue:
        if to_tag and to_tag in call.monologues:
            return call.monologues[to_tag]
        if via:
            for mono in call.monologues.values():
                if mono.via_branch == via and mono is not offerer:
                    return mono
        waiting = [m for m in call.monologues.values()
                   if m is not offerer and m.peer == offerer.key and m.key.startswith("branch:")]
        if len(waiting) == 1:
            return waiting[0]
        if to_tag and len(waiting) > 1:
            raise CommandError("Unknown to-tag: several forks wait and no via-branch names one")
        raise CommandError("Unknown to-tag")

    def _rename(self, call: Call, mono: Monologue, key: str) -> None:
        old = mono.key
        del call.monologues[old]
        mono.key = key
        call.monologues[key] = mono
        for other in call.monologues.values():
            if other.peer == old:
                other.peer = key
        link(call)

    def allocate(self, call: Call, monos: list[Monologue], count: int) -> list[MediaEnd]:
        """Ends for `count` media lines on each monologue; all or none."""
        new: list[tuple[Monologue, MediaEnd]] = []
        try:
            for mono in monos:
                for index in range(len(mono.ends), count):
                    end = MediaEnd(call.call_id, mono.key, index, self.pool.allocate())
                    new.append((mono, end))
        except PortsExhausted as exc:
            for _, end in new:
                self.pool.release(end.port)
            raise CommandError(str(exc)) from None
        for mono, end in new:
            mono.ends.append(end)
        return [end for _, end in new]

    def learn(self, mono: Monologue, lines: list[MediaLine], opts: Options,
               effects: list[Effect], *, offer: bool) -> None:
        """What `mono`'s SDP says about where it receives, and how far to trust it."""
        source = opts.received_from
        trust = "trust-address" in opts.flags or source is None
        use_source = "sip-source-address" in opts.flags and source is not None
        for end, line in zip(mono.ends, lines, strict=False):
            end.media = line.media
            end.on_hold = line.on_hold
            end.clock_rate = line.clock_rate
            end.codec = next((c for c in line.codecs if c not in _NOT_VOICE), "")
            end.crypto = line.crypto
            if offer:
                end.mux_offered = line.mux
                end.mux_accept = bool({"accept", "demux"} & opts.rtcp_mux)
            else:
                end.mux = line.mux
            expected, expected_rtcp = line.rtp, line.rtcp
            trusted = True
            if expected is not None and source is not None and _is_ip(source):
                if use_source or (not trust and source != expected[0]):
                    # The SDP names a private address behind a NAT: send to the SIP
                    # source's address until the party's own packets say where it is.
                    expected = (source, expected[1])
                    expected_rtcp = (source, expected_rtcp[1]) if expected_rtcp else None
                    trusted = use_source
            if "asymmetric" in opts.flags:
                end.asymmetric = True
            elif "symmetric" in opts.flags:
                end.asymmetric = False
            if (expected, expected_rtcp) != (end.expected, end.expected_rtcp) \
                    or trusted != end.trusted:
                end.expected, end.expected_rtcp, end.trusted = expected, expected_rtcp, trusted
                if end.latched is not None and not (
                        expected is not None and end.latched[0] == expected[0]
                        and trusted):
                    end.unlatch()
            # RFC 3264 8: a new offer or answer may move the stream, or pair this
            # party with another fork; the old flows leave the kernel, and the
            # glue installs the new pair once both of its sides are latched.
            if end.kernelized is not None:
                effects.append(Unkernel(end))
            if end.sink is not None and end.sink.kernelized is not None:
                effects.append(Unkernel(end.sink))

    def set_strictness(self, author: Monologue, other: Monologue, opts: Options) -> None:
        strict = "strict-source" in opts.flags
        latching = "port-latching" in opts.flags
        for end in author.ends + other.ends:
            end.strict = end.strict or strict
            end.port_latching = end.port_latching or latching

    def _rewrite(self, sdp: Any, towards: Monologue, lines: list[MediaLine],
                 mux: tuple[bool, ...], opts: Options) -> str:
        ports = tuple(towards.ends[i].port for i in range(len(lines)))
        how = Rewrite(
            address=self.advertise, ports=ports, mux=mux,
            replace_origin="origin" in opts.replace,
            ice_remove=opts.ice in ("remove", "force-relay"),
            strip=frozenset(opts.strip),
            transport=opts.transport)
        return sdprewrite.rewrite(sdp, how).decode("utf-8", "surrogateescape")

    def drop_monologue(self, call: Call, mono: Monologue, effects: list[Effect]) -> None:
        for end in mono.ends:
            effects.append(Unbind(end))
            self.pool.release(end.port)
        call.monologues.pop(mono.key, None)
        for other in call.monologues.values():
            if other.peer == mono.key:
                other.peer = None
        link(call)

    def _drop_call(self, call: Call, effects: list[Effect]) -> None:
        for mono in list(call.monologues.values()):
            self.drop_monologue(call, mono, effects)
        self.calls.pop(call.call_id, None)
        effects.append(Forget(call.call_id))


_COMMANDS: dict[str, Callable[[Control, dict[str, Any], float, list[Effect]], dict[str, Any]]] = {
    "ping": Control._ping,
    "offer": Control._offer,
    "answer": Control._answer,
    "delete": Control._delete,
    "query": Control._query,
    "list": Control._list,
    "host": hosting_commands.host,
    "play media": hosting_commands.media_command,
    "stop media": hosting_commands.media_command,
    "echo": hosting_commands.media_command,
    "start recording": recording_commands.start_recording,
    "stop recording": recording_commands.stop_recording,
    "voicemail": hosting_commands.media_command,
}


def _branch_key(via: str) -> str:
    return f"branch:{via}"


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _has_pair(call: Call) -> bool:
    """Two parties still talk to each other."""
    return any(m.peer is not None and m.peer in call.monologues
               for m in call.monologues.values())


def _check_transcode(opts: Options) -> None:
    missing = [c for c in opts.transcode if c.split("/")[0] not in TRANSCODABLE]
    if missing:
        raise CommandError(f"Transcoding to {', '.join(missing)} is not supported by this relay")


def _audio_lines(sdp: SessionDescription) -> list[int]:
    return [i for i, m in enumerate(sdp.media)
            if m.media == "audio" and m.port != 0 and "TCP" not in m.proto.upper()]


def _is_srtp(media: Any) -> bool:
    """An SRTP line (RFC 3711/4568): the relay forwards it untouched, never converts or repairs it.

    Converting in place would encrypt a second plaintext under the sender's
    keystream (same key, SSRC and index): whoever sees both legs gets the
    XOR of the two, most of each sample. Doing it safely needs the relay's
    own keys on each leg (its own a=crypto), which it does not have yet.
    """
    return "SAVP" in media.proto.upper() or any(a.name == "crypto" for a in media.attributes)


def _offer_codecs(offerer: Monologue, sdp: SessionDescription,
                  opts: Options) -> SessionDescription:
    """Remember the offerer's codecs per line; append those it asked the relay to convert to."""
    out = sdp.copy() if opts.transcode else sdp
    for i, end in enumerate(offerer.ends[:len(sdp.media)]):
        end.formats = tuple(str(f) for f in transcoding.formats_of(sdp.media[i]))
        plain = not _is_srtp(sdp.media[i])
        end.transcode = bool(opts.transcode) and plain
        end.repair = "media-repair" in opts.flags and plain
    for i in [i for i in _audio_lines(sdp) if offerer.ends[i].transcode] \
            if opts.transcode else []:
        media = out.media[i]
        offered = _formats(offerer.ends[i])
        extended = transcoding.offer_formats(offered, opts.transcode)
        if len(extended) > len(offered):
            fmtps = media.fmtps
            sdprewrite.reformat(media, _with_fmtps(extended, fmtps))
    return out


def _formats(end: MediaEnd) -> list[transcoding.Format]:
    return [transcoding.Format.parse(f) for f in end.formats]


def restored_bridges(call: Call) -> list[BridgeMedia]:
    """The conversions and repairs a stored call had: a restarted relay takes them up again."""
    out: list[BridgeMedia] = []
    for mono in call.monologues.values():
        peer = call.monologues.get(mono.peer) if mono.peer is not None else None
        if peer is None or not (mono.answered and peer.answered):
            continue
        for a_end, b_end in zip(mono.ends, peer.ends, strict=False):
            # Each pair once: from the side whose offer asked for transcoding, or
            # (both or neither did) from the side with the smaller key.
            if a_end.transcode != b_end.transcode:
                if not a_end.transcode:
                    continue
            elif mono.key > peer.key:
                continue
            if not (a_end.transcode or a_end.repair or b_end.repair) or a_end.media != "audio":
                continue
            try:
                plan = transcoding.plan_streams(_formats(a_end), _formats(b_end))
            except (transcoding.NegotiationError, ValueError):
                continue
            if plan.plan.transcoding or a_end.repair or b_end.repair:
                out.append(BridgeMedia(a_end, b_end, plan, (a_end.repair, b_end.repair)))
    return out


def _with_fmtps(formats: list[transcoding.Format],
                fmtps: dict[int, str]) -> list[tuple[int, str, str | None]]:
    return [(f.payload_type, f.encoding, fmtps.get(f.payload_type)) for f in formats]


def _answer_codecs(offerer: Monologue, answerer: Monologue, sdp: SessionDescription,
                   opts: Options, effects: list[Effect]) -> SessionDescription:
    """Answer the offerer in its own codecs, and say which lines the relay converts or repairs.

    Raises CommandError when the offerer asked for transcoding and the
    answer shares no codec with it that the relay can convert.
    """
    out = sdp.copy()
    for i, end in enumerate(answerer.ends[:len(sdp.media)]):
        end.formats = tuple(str(f) for f in transcoding.formats_of(sdp.media[i]))
        end.repair = "media-repair" in opts.flags and not _is_srtp(sdp.media[i])
    audio = set(_audio_lines(sdp))
    for i in range(min(len(sdp.media), len(offerer.ends), len(answerer.ends))):
        a_end, b_end = offerer.ends[i], answerer.ends[i]
        # The glue stops only its own bridge on these ends (no other processor).
        was = a_end.processor is not None or b_end.processor is not None
        repair = (a_end.repair, b_end.repair)
        plan = None
        if i in audio and (a_end.transcode or any(repair)):
            try:
                plan = transcoding.plan_streams(_formats(a_end), _formats(b_end))
            except transcoding.NegotiationError as exc:
                if a_end.transcode:
                    raise CommandError(f"codec: {exc}") from None
        if plan is not None and a_end.transcode:
            media = out.media[i]
            answered = transcoding.answer_formats(_formats(a_end), _formats(b_end), plan.plan)
            by_encoding = {f.encoding: media.fmtps.get(f.payload_type)
                           for f in _formats(b_end)}
            sdprewrite.reformat(media, [(f.payload_type, f.encoding, by_encoding.get(f.encoding))
                                        for f in answered])
        # A shared codec is passed through untouched, even when the answer also
        # lists one the relay appended: the answerer SHOULD send the offer's most
        # preferred format it accepted (RFC 3264 6.1), and the stream keeps the
        # kernel path.
        if plan is not None and (plan.plan.transcoding or any(repair)):
            effects.append(BridgeMedia(a_end, b_end, plan, repair))
        elif was:
            effects.append(BridgeMedia(a_end, b_end, None))
    return out


def _endpoint(address: Address | None) -> dict[str, Any]:
    if address is None:
        return {}
    family = "IPv6" if ":" in address[0] else "IPv4"
    return {"family": family, "address": address[0], "port": address[1]}


def _stream_flags(end: MediaEnd) -> list[str]:
    flags = ["RTP"]
    if end.expected is not None:
        flags.append("filled")
    if end.latched is not None:
        flags.append("confirmed")
    if end.kernelized is not None:
        flags.append("kernelized")
    if end.strict:
        flags.append("strict source")
    if end.mux:
        flags.append("RTCP-mux")
    return flags
