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
"""

from __future__ import annotations

import ipaddress
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from rtpmedia import ng
from rtpmedia.relay import hosting, sdprewrite
from rtpmedia.relay.calls import Address, Call, Hosting, MediaEnd, Monologue, link
from rtpmedia.relay.hosting import Host, HostingError, MediaEffect, Unhost
from rtpmedia.relay.ports import PortPool, PortsExhausted
from rtpmedia.relay.sdprewrite import MediaLine, Rewrite, SdpError, SessionDescription

#: An unanswered fork is released this long after a sibling answered.
FORK_GRACE = 30.0
#: An offer never answered is released after this long (ringing is shorter).
UNANSWERED_TIMEOUT = 600.0
COOKIE_CACHE_SIZE = 4096
COOKIE_TTL = 120.0
# Payloads that are not the voice codec the E-model scores (RFC 4733 events, RFC 3389 comfort noise).
_NOT_VOICE = frozenset({"TELEPHONE-EVENT", "CN"})


class CommandError(Exception):
    """A command the relay refuses; the text is the answer's error-reason."""


# -- effects -------------------------------------------------------------------


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


Effect = (Bind | Unbind | Unkernel | Save | Forget | Teardown | Record | StopRecording
          | Host | Unhost | MediaEffect)


# -- options of one command ----------------------------------------------------


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
        for item in _strings(msg.get("flags")):
            o.flag(item)
        raw = msg.get("rtpp-flags")  # flags a module left for the daemon to parse
        if isinstance(raw, str):
            for item in raw.split():
                o.flag(item)
        o.replace |= {s.lower() for s in _strings(msg.get("replace"))}
        o.rtcp_mux |= {s.lower() for s in _strings(msg.get("rtcp-mux"))}
        if isinstance(msg.get("ICE"), str):
            o.ice = msg["ICE"].lower()
        if isinstance(msg.get("transport-protocol"), str):
            o.transport = msg["transport-protocol"]
        received = _strings(msg.get("received-from"))
        if len(received) == 2:
            o.received_from = received[1]
        codec = msg.get("codec")
        if isinstance(codec, dict):
            o.strip |= {s.upper() for s in _strings(codec.get("strip"))}
            o.strip |= {s.upper() for s in _strings(codec.get("mask"))}
            o.transcode += [s.upper() for s in _strings(codec.get("transcode"))]
        for key in ("record call", "record-call"):
            if str(msg.get(key, "")).lower() in ("yes", "on", "true"):
                o.record_call = True
        if "record-call" in o.flags:
            o.record_call = True
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
        call_id, from_tag = _required(msg, "call-id"), _required(msg, "from-tag")
        opts = Options.parse(msg)
        sdp = sdprewrite.parse(_required(msg, "sdp"))
        lines = sdprewrite.read(sdp)
        _check_transcode(opts, lines)
        return cls(call_id, from_tag, _text(msg, "to-tag"), _text(msg, "via-branch"),
                   opts, sdp, lines, _text(msg, "sip-call-id"))


# -- the control ---------------------------------------------------------------


class Control:
    """Every call of the relay, and the ng commands that change them."""

    def __init__(self, pool: PortPool, advertise: str, *,
                 silence_timeout: float = 60.0, hold_timeout: float = 3600.0,
                 kernel_counts: Callable[[MediaEnd], tuple[int, int]] | None = None) -> None:
        self.pool = pool
        self.advertise = advertise
        self.silence_timeout = silence_timeout
        self.hold_timeout = hold_timeout
        self.calls: dict[str, Call] = {}
        # What the kernel counted for an end's flow still installed (the glue asks the fast path).
        self._kernel_counts = kernel_counts or (lambda end: (0, 0))
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
            return _error("Unrecognized command"), []
        effects: list[Effect] = []
        try:
            return handler(self, msg, now, effects), effects
        except CommandError as exc:
            return _error(str(exc)), effects
        except (SdpError, HostingError) as exc:
            return _error(str(exc)), effects

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
        ask = _recording_asked(msg, c.opts)  # refused before anything changes
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
        new_ends = self._allocate(call, [offerer, other], len(lines))
        for mono in (offerer, other):
            call.monologues.setdefault(mono.key, mono)
        if fresh_call:
            self.calls[call_id] = call
        effects += [Bind(end) for end in new_ends]
        call.last_signal = now
        call.sip_call_id = c.sip_call_id or call.sip_call_id
        _want_recording(call, ask)
        self._unhost(offerer, effects)
        self._unhost(other, effects)
        self._learn(offerer, lines, opts, effects, offer=True)
        self._strictness(offerer, other, opts)
        offerer.peer, other.peer = other.key, offerer.key
        link(call)
        mux_out = tuple(False if "demux" in opts.rtcp_mux else
                        True if "offer" in opts.rtcp_mux else line.mux for line in lines)
        body = self._rewrite(sdp, other, lines, mux_out, opts)
        _recording(call, now, effects)
        effects.append(Save(call))
        return {"result": "ok", "sdp": body}

    def _answer(self, msg: dict[str, Any], now: float, effects: list[Effect]) -> dict[str, Any]:
        c = SdpCommand.read(msg)
        call_id, from_tag, to_tag, via, opts, sdp, lines = (
            c.call_id, c.from_tag, c.to_tag, c.via, c.opts, c.sdp, c.lines)
        ask = _recording_asked(msg, c.opts)  # refused before anything changes
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
        new_ends = self._allocate(call, [offerer, answerer], len(lines))
        effects += [Bind(end) for end in new_ends]
        call.last_signal = now
        call.sip_call_id = c.sip_call_id or call.sip_call_id
        _want_recording(call, ask)
        self._unhost(offerer, effects)
        self._unhost(answerer, effects)
        self._learn(answerer, lines, opts, effects, offer=False)
        self._strictness(answerer, offerer, opts)
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
        body = self._rewrite(sdp, offerer, lines, mux_out, opts)
        _recording(call, now, effects)
        effects.append(Save(call))
        return {"result": "ok", "sdp": body}

    def _delete(self, msg: dict[str, Any], now: float, effects: list[Effect]) -> dict[str, Any]:
        call = self._call(msg)
        to_tag, via = _text(msg, "to-tag"), _text(msg, "via-branch")
        answer = self.stats(call, now)
        if to_tag or via:
            branch = call.monologues.get(to_tag) if to_tag else None
            if branch is None and via:
                branch = next((m for m in call.monologues.values() if m.via_branch == via), None)
            if branch is None:
                raise CommandError("Unknown to-tag or via-branch")
            self._drop_monologue(call, branch, effects)
            if _has_pair(call):
                effects.append(Save(call))
                return answer
        self._drop_call(call, effects)
        return answer

    def _query(self, msg: dict[str, Any], now: float, effects: list[Effect]) -> dict[str, Any]:
        return self.stats(self._call(msg), now)

    # -- hosted media (issue 15, hosting.py) -----------------------------------------

    def _host(self, msg: dict[str, Any], now: float, effects: list[Effect]) -> dict[str, Any]:
        """The relay answers party `from-tag` itself (or offers, when it sent no SDP)."""
        call_id, tag = _required(msg, "call-id"), _required(msg, "from-tag")
        body = _text(msg, "sdp")
        late_answer = _text(msg, "sdp-type").lower() == "answer"
        call = self.calls.get(call_id) or Call(call_id, now, now)
        mono = call.monologues.get(tag) or Monologue(tag, now)
        if late_answer and (mono.hosting is None or tag not in call.monologues):
            raise CommandError("An answer to host, but the relay made no offer to from-tag")
        if body:
            sdp = sdprewrite.parse(body)
            lines = sdprewrite.read(sdp)
            index, chosen = hosting.choose(sdp)
        else:
            sdp, lines, index = None, [], 0
            chosen = Hosting(0, "PCMU", hosting.STATIC["PCMU"], hosting.EVENT_TYPE)
        new_ends = self._allocate(call, [mono], max(len(lines), 1))
        # The callee it had offered to (busy, unanswered) is no longer its peer.
        for other in list(call.monologues.values()):
            if other is not mono and (other.peer == mono.key or mono.peer == other.key):
                self._drop_monologue(call, other, effects)
        mono.peer = None
        call.monologues.setdefault(mono.key, mono)
        self.calls.setdefault(call_id, call)
        effects += [Bind(end) for end in new_ends]
        call.last_signal = now
        version = mono.hosting.version + (0 if late_answer else 1) if mono.hosting else 1
        mono.hosting = Hosting(index, chosen.codec, chosen.payload_type, chosen.event_type,
                               version)
        if lines:
            opts = Options.parse(msg)
            self._learn(mono, lines, opts, effects, offer=not late_answer)
            self._strictness(mono, mono, opts)
            mono.answered = True
        end = mono.ends[index]
        end.mux = False  # the relay's SDP never offers or accepts rtcp-mux
        link(call)
        effects += [Host(end, mono.hosting), Save(call)]
        if late_answer:
            return {"result": "ok"}
        if sdp is None:
            return {"result": "ok", "sdp": hosting.offer(self.advertise, end.port, version)}
        return {"result": "ok",
                "sdp": hosting.answer(sdp, mono.hosting, self.advertise, end.port, version)}

    def _unhost(self, mono: Monologue, effects: list[Effect]) -> None:
        """An offer or answer pairs a hosted party with another: forwarding again."""
        if mono.hosting is not None:
            effects += [hosting.Unhost(end) for end in mono.ends]
            mono.hosting = None

    def _hosted(self, msg: dict[str, Any]) -> MediaEnd:
        call = self._call(msg)
        mono = call.monologues.get(_required(msg, "from-tag"))
        if mono is None:
            raise CommandError("Unknown from-tag")
        if mono.hosting is None:
            raise CommandError("from-tag is not hosted by the relay")
        return mono.ends[mono.hosting.index]

    def _media_command(self, msg: dict[str, Any], now: float,
                       effects: list[Effect]) -> dict[str, Any]:
        """play media, stop media, echo, start/stop recording, voicemail: for a hosted party."""
        effects.append(hosting.media_effect(msg, self._hosted(msg)))
        return {"result": "ok"}  # the glue adds what it learns (a prompt's duration)

    def _start_recording(self, msg: dict[str, Any], now: float,
                         effects: list[Effect]) -> dict[str, Any]:
        if "from-tag" in msg:  # one party the relay hosts (issue 15)
            return self._media_command(msg, now, effects)
        return self._start_recording_call(msg, now, effects)

    def _stop_recording(self, msg: dict[str, Any], now: float,
                        effects: list[Effect]) -> dict[str, Any]:
        if "from-tag" in msg:  # one party the relay hosts (issue 15)
            return self._media_command(msg, now, effects)
        return self._stop_recording_call(msg, now, effects)

    def _start_recording_call(self, msg: dict[str, Any], now: float,
                              effects: list[Effect]) -> dict[str, Any]:
        """rtpengine's `start recording` without a from-tag: record the whole call from now."""
        ask = _recording_asked(msg, Options(record_call=True))
        call = self._call(msg)
        _want_recording(call, ask)
        _recording(call, now, effects)
        effects.append(Save(call))
        return {"result": "ok"}

    def _stop_recording_call(self, msg: dict[str, Any], now: float,
                             effects: list[Effect]) -> dict[str, Any]:
        """`stop recording` without a from-tag: the call's recording ends (its file is kept)."""
        call = self._call(msg)
        if call.record_call:
            call.record_call = False
            effects.append(StopRecording(call.call_id))
            effects.append(Save(call))
        return {"result": "ok"}

    # -- time ----------------------------------------------------------------------

    def expire(self, now: float) -> list[Effect]:
        """Release forks not chosen, and end calls whose media stopped (with a Teardown)."""
        effects: list[Effect] = []
        for call in list(self.calls.values()):
            forks = [m for m in call.monologues.values()
                     if m.deadline is not None and m.deadline <= now]
            for mono in forks:
                self._drop_monologue(call, mono, effects)
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
        _recording(call, now, effects)  # goes on into the recording's next part
        return effects

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
        return self.reanswer(datagram, _error(reason), now)

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

    def _call(self, msg: dict[str, Any]) -> Call:
        call = self.calls.get(_required(msg, "call-id"))
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

    def _allocate(self, call: Call, monos: list[Monologue], count: int) -> list[MediaEnd]:
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

    def _learn(self, mono: Monologue, lines: list[MediaLine], opts: Options,
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

    def _strictness(self, author: Monologue, other: Monologue, opts: Options) -> None:
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

    def _drop_monologue(self, call: Call, mono: Monologue, effects: list[Effect]) -> None:
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
            self._drop_monologue(call, mono, effects)
        self.calls.pop(call.call_id, None)
        effects.append(Forget(call.call_id))


_COMMANDS: dict[str, Callable[[Control, dict[str, Any], float, list[Effect]], dict[str, Any]]] = {
    "ping": Control._ping,
    "offer": Control._offer,
    "answer": Control._answer,
    "delete": Control._delete,
    "query": Control._query,
    "list": Control._list,
    "host": Control._host,
    "play media": Control._media_command,
    "stop media": Control._media_command,
    "echo": Control._media_command,
    "start recording": Control._start_recording,
    "stop recording": Control._stop_recording,
    "voicemail": Control._media_command,
}


RECORDINGS = "recordings"
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._@+=-]")


def default_recording_file(call_id: str, started: float) -> str:
    """`recordings/YYYY-MM-DD/<call-id>.wav` (UTC date), the call-id made a safe file name."""
    day = time.strftime("%Y-%m-%d", time.gmtime(started))
    name = _UNSAFE_NAME.sub("_", call_id).lstrip(".") or "call"
    return f"{RECORDINGS}/{day}/{name}.wav"


def checked_recording_file(path: str) -> str:
    """A file a command names: relative to the media dir, no `..`, `.wav` added if missing."""
    p = PurePosixPath(path)
    if not path or p.is_absolute() or "\\" in path or any(part == ".." for part in p.parts):
        raise CommandError(f"recording-file {path!r} must be a relative path inside the media dir")
    return str(p) if p.suffix.lower() == ".wav" else f"{p}.wav"


@dataclass(frozen=True, slots=True)
class _RecordingAsk:
    file: str  # "" for the default name
    sip_call_id: str


def _recording_asked(msg: dict[str, Any], opts: Options) -> _RecordingAsk | None:
    """What an offer, answer or `start recording` asks of the call's recording (None: nothing).

    `recording-file` (a path relative to the media dir) names the file; by
    default it is recordings/<UTC date>/<call-id>.wav, fixed when recording
    starts. `sip-call-id` goes into the metadata (the ng call-id may be the
    B2BUA's own id). A file outside the media dir is refused here, before
    the command changes anything.
    """
    if not opts.record_call:
        return None
    file = _text(msg, "recording-file")
    return _RecordingAsk(checked_recording_file(file) if file else "", _text(msg, "sip-call-id"))


def _want_recording(call: Call, ask: _RecordingAsk | None) -> None:
    if ask is None:
        return
    call.record_call = True
    if ask.file and not call.recording_file:
        call.recording_file = ask.file
    if ask.sip_call_id:
        call.sip_call_id = ask.sip_call_id


def _recording(call: Call, now: float, effects: list[Effect]) -> None:
    """A recorded call whose two parties are paired: record (or keep recording) their audio.

    The left channel is the caller: the call's first monologue (created by
    the first offer, never renamed); the right one its peer. Early media
    before an answer is not recorded (forks come and go until then).
    """
    if not call.record_call:
        return
    monos = list(call.monologues.values())
    left = next((m for m in monos if m.peer is not None and m.peer in call.monologues), None)
    if left is None:
        return
    right = call.monologues[left.peer]  # type: ignore[index]
    if not (left.answered and right.answered):
        return
    pair = next(((a, b) for a, b in zip(left.ends, right.ends, strict=False)
                 if a.media == "audio" and b.media == "audio"), None)
    if pair is None:
        return
    if not call.recording_file:
        call.recording_file = default_recording_file(call.call_id, now)
    effects.append(Record(call.call_id, call.recording_file, pair[0], pair[1], call.sip_call_id))


def _error(reason: str) -> dict[str, Any]:
    return {"result": "error", "error-reason": reason}


def _text(msg: dict[str, Any], key: str) -> str:
    value = msg.get(key)
    return value if isinstance(value, str) else ""


def _required(msg: dict[str, Any], key: str) -> str:
    value = _text(msg, key)
    if not value:
        raise CommandError(f"No {key} in message")
    return value


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


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


def _check_transcode(opts: Options, lines: list[MediaLine]) -> None:
    offered = {c for line in lines for c in line.codecs}
    missing = [c for c in opts.transcode if c not in offered]
    if missing:
        raise CommandError(f"Transcoding to {', '.join(missing)} is not supported by this relay")


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
