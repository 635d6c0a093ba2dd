"""The relay's calls as data: a call holds one monologue per party, a monologue one end per media line.

rtpengine's model (its `call.h`): a *monologue* is what one party (named by
its SIP tag, or by the Via branch of a fork whose tag is not known yet)
said in SDP, and the relay's sockets that party sends to. A monologue's
`peer` is the monologue its packets are forwarded to. An end's RTP port is
even and RTCP is the next port (see ports.py).

Records (`Call.record` / `Call.from_record`) are what the durable store
keeps: addresses, ports, flags, latches; never the counters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Address = tuple[str, int]


@dataclass(slots=True, eq=False)
class MediaEnd:
    """One media line of one party: the relay's port pair it sends to, and where it receives."""

    call_id: str
    tag: str
    index: int
    port: int  # the relay's RTP port; RTCP is port + 1
    media: str = "audio"
    expected: Address | None = None  # RTP, from its SDP (or the SIP source's address)
    expected_rtcp: Address | None = None
    latched: Address | None = None  # the source of its RTP we latched to
    latched_rtcp: Address | None = None
    trusted: bool = True  # latch only to packets from the expected address
    mux: bool = False  # it sends and receives RTCP on the RTP port (RFC 5761)
    mux_offered: bool = False  # its SDP offered a=rtcp-mux
    mux_accept: bool = False  # its offer asked the relay to accept mux whatever the peer does
    strict: bool = False  # drop packets from anyone but the latched source
    port_latching: bool = False  # never re-latch once latched
    asymmetric: bool = False  # never latch: always send to the SDP address
    on_hold: bool = False
    clock_rate: int = 8000
    codec: str = ""  # the first codec its SDP names (for the E-model's MOS); never stored
    # Its SDP's a=crypto values: the SDES keys it sends SRTP with (RFC 4568 6.1). Only
    # read when the relay must hear the audio (a recording); forwarding never decrypts.
    crypto: tuple[str, ...] = ()
    # Counters of what this party sent us (never stored).
    packets: int = 0
    bytes: int = 0
    errors: int = 0  # dropped: not RTP, from a stranger under strict-source, no one to send to
    rtcp_packets: int = 0
    rtcp_bytes: int = 0
    last_packet: float = 0.0
    kernel_packets: int = 0  # counted by the kernel in flows already removed
    kernel_bytes: int = 0
    kernelized: str | None = None  # the fast path's flow key while the kernel forwards
    sink: MediaEnd | None = None  # where its packets go (its monologue's peer's end)
    health: Any = None  # a relay.health.StreamHealth, set by the forwarder
    processor: Any = None  # a relay.engine.Processor that takes this party's packets (never stored)

    @property
    def rtcp_port(self) -> int:
        return self.port if self.mux else self.port + 1

    def destination(self) -> Address | None:
        """Where RTP for this party goes: the latched source, else the SDP's address."""
        if self.latched is not None and not self.asymmetric:
            return self.latched
        return self.expected

    def rtcp_destination(self) -> Address | None:
        if self.mux:
            return self.destination()
        if self.latched_rtcp is not None and not self.asymmetric:
            return self.latched_rtcp
        return self.expected_rtcp

    def unlatch(self) -> None:
        self.latched = None
        self.latched_rtcp = None

    def record(self) -> dict[str, Any]:
        return {"index": self.index, "port": self.port, "media": self.media,
                "expected": _addr(self.expected), "expected_rtcp": _addr(self.expected_rtcp),
                "latched": _addr(self.latched), "latched_rtcp": _addr(self.latched_rtcp),
                "trusted": self.trusted, "mux": self.mux, "mux_offered": self.mux_offered,
                "mux_accept": self.mux_accept,
                "strict": self.strict, "port_latching": self.port_latching,
                "asymmetric": self.asymmetric, "on_hold": self.on_hold,
                "clock_rate": self.clock_rate, "crypto": list(self.crypto)}

    @classmethod
    def from_record(cls, call_id: str, tag: str, r: dict[str, Any]) -> MediaEnd:
        return cls(call_id, tag, int(r["index"]), int(r["port"]), str(r["media"]),
                   _unaddr(r["expected"]), _unaddr(r["expected_rtcp"]),
                   _unaddr(r["latched"]), _unaddr(r["latched_rtcp"]),
                   bool(r["trusted"]), bool(r["mux"]), bool(r["mux_offered"]), bool(r.get("mux_accept", False)),
                   bool(r["strict"]), bool(r["port_latching"]), bool(r["asymmetric"]),
                   bool(r["on_hold"]), int(r.get("clock_rate", 8000)),
                   crypto=tuple(str(c) for c in r.get("crypto", ())))


@dataclass(frozen=True, slots=True)
class Hosting:
    """The relay answered this party itself (`host`, issue 15): its media line and codec.

    What plays or records is not kept: after a restart the party hears
    silence until the softswitch asks for something else.
    """

    index: int  # the accepted audio line
    codec: str  # PCMU or PCMA
    payload_type: int
    event_type: int | None = None  # telephone-event/8000, if the party offered it
    version: int = 1  # of the relay's SDP (o= line), raised at each new answer

    def record(self) -> dict[str, Any]:
        return {"index": self.index, "codec": self.codec, "payload_type": self.payload_type,
                "event_type": self.event_type, "version": self.version}

    @classmethod
    def from_record(cls, r: dict[str, Any]) -> Hosting:
        event = r.get("event_type")
        return cls(int(r["index"]), str(r["codec"]), int(r["payload_type"]),
                   None if event is None else int(event), int(r.get("version", 1)))


@dataclass(slots=True, eq=False)
class Monologue:
    """What one party said: its media ends and whom it talks to."""

    key: str  # its tag, or "branch:<via-branch>" until a fork's tag is known
    created: float
    via_branch: str = ""
    peer: str | None = None
    answered: bool = False  # its SDP was an answer, or it answered one
    ends: list[MediaEnd] = field(default_factory=list)
    label: str = ""
    deadline: float | None = None  # a fork not chosen is released then
    hosting: Hosting | None = None  # the relay is this party's far end (no peer)

    def record(self) -> dict[str, Any]:
        out = {"key": self.key, "created": self.created, "via_branch": self.via_branch,
               "peer": self.peer, "answered": self.answered, "deadline": self.deadline,
               "ends": [e.record() for e in self.ends]}
        if self.hosting is not None:
            out["hosting"] = self.hosting.record()
        return out


@dataclass(slots=True, eq=False)
class Call:
    call_id: str
    created: float
    last_signal: float
    monologues: dict[str, Monologue] = field(default_factory=dict)
    record_call: bool = False
    # The caller leg's SIP Call-ID when the ng call-id is not it (our B2BUA
    # names calls by uuid): what HEP capture correlates RTCP reports by.
    # The recording's file, relative to the relay's media dir ("" until one starts),
    # and the SIP Call-ID the client named for its metadata.
    recording_file: str = ""
    sip_call_id: str = ""

    def ends(self) -> list[MediaEnd]:
        return [e for m in self.monologues.values() for e in m.ends]

    def record(self) -> dict[str, Any]:
        return {"call_id": self.call_id, "created": self.created,
                "last_signal": self.last_signal, "record_call": self.record_call,
                "recording_file": self.recording_file, "sip_call_id": self.sip_call_id,
                "monologues": [m.record() for m in self.monologues.values()]}

    @classmethod
    def from_record(cls, r: dict[str, Any]) -> Call:
        call = cls(str(r["call_id"]), float(r["created"]), float(r["last_signal"]),
                   record_call=bool(r.get("record_call", False)),
                   recording_file=str(r.get("recording_file", "")),
                   sip_call_id=str(r.get("sip_call_id", "")))
        for m in r["monologues"]:
            mono = Monologue(str(m["key"]), float(m["created"]), str(m["via_branch"]),
                             m["peer"], bool(m["answered"]),
                             deadline=m.get("deadline"))
            if m.get("hosting") is not None:
                mono.hosting = Hosting.from_record(m["hosting"])
            tag = mono.key
            mono.ends = [MediaEnd.from_record(call.call_id, tag, e) for e in m["ends"]]
            call.monologues[mono.key] = mono
        link(call)
        return call


def link(call: Call) -> None:
    """Point every end's `sink` at the same media line of its monologue's peer."""
    for mono in call.monologues.values():
        peer = call.monologues.get(mono.peer) if mono.peer is not None else None
        for end in mono.ends:
            end.tag = mono.key
            end.sink = peer.ends[end.index] if peer is not None and end.index < len(peer.ends) \
                else None


def _addr(a: Address | None) -> list[Any] | None:
    return None if a is None else [a[0], a[1]]


def _unaddr(a: Any) -> Address | None:
    return None if a is None else (str(a[0]), int(a[1]))
