"""The fuzz targets: one function per parser of untrusted input.

Each takes the fuzzer's bytes and lets through only the parser's own error
type (MessageError, NgError, ConfigError, DirectoryError, or a dialplan
report; the media targets none: bad packets are counted and dropped): anything else escaping is a crash, written by libFuzzer as
`crash-*` and to be turned into a regression test (tests/unit/test_fuzz_regressions.py).
Beyond "parses or refuses", each target uses what it parsed the way the
server would (accessors, serialisation, a second parse), since lazy
parsing hides bugs behind the first success.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from softswitch.sip.errors import MessageError


def sip_message(data: bytes) -> None:
    """softswitch/sip/message.py: a datagram, then what the core reads of it."""
    from softswitch.sip.message import Request, error_response, parse_message

    try:
        message = parse_message(data, datagram=True)
    except MessageError as exc:
        # The transport answers what it can identify: that must not crash either.
        error_response(data, exc)
        return
    _use(message)
    again = parse_message(message.to_bytes(), datagram=True)
    assert again.start_line() == message.start_line(), (again.start_line(), message.start_line())
    if isinstance(message, Request):
        assert isinstance(again, Request) and again.method == message.method


def _use(message: object) -> None:
    from softswitch.sip.message import Request, make_response

    for name in ("vias", "top_via", "from_addr", "to_addr", "from_tag", "to_tag", "call_id",
                 "cseq"):
        getattr(message, name)
    try:
        message.contacts  # type: ignore[attr-defined] # noqa: B018
    except MessageError:
        pass
    if isinstance(message, Request):
        message.branch  # noqa: B018
        make_response(message, 400).to_bytes()


def stream_framer(data: bytes) -> None:
    """softswitch/sip/framing.py: the bytes cut in chunks at the first byte's choice."""
    from softswitch.sip.framing import KeepAlivePing, StreamFramer
    from softswitch.sip.message import parse_message

    framer = StreamFramer()
    step = (data[0] % 97) + 1 if data else 1
    for start in range(0, len(data), step):
        try:
            items = framer.feed(data[start:start + step])
        except MessageError:
            return  # the connection would be closed
        for item in items:
            if isinstance(item, KeepAlivePing):
                continue
            try:
                _use(parse_message(item, datagram=False))
            except MessageError:
                pass


def sdp(data: bytes) -> None:
    """softswitch/sip/sdp.py: an offer, then serialised and parsed again."""
    from softswitch.sip.sdp import SessionDescription

    try:
        session = SessionDescription.parse(data)
    except MessageError:
        return
    for media in session.media:
        session.media_direction(media)
        session.endpoint(media)
        session.media_on_hold(media)
    session.on_hold  # noqa: B018
    again = SessionDescription.parse(session.to_bytes())
    assert len(again.media) == len(session.media)


def digest(data: bytes) -> None:
    """softswitch/sip/digest.py: Authorization and WWW-Authenticate values."""
    from softswitch.sip.digest import parse_challenge, parse_credentials, verify

    try:
        # As parse_message gives header values: valid UTF-8 only.
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return
    try:
        parse_challenge(text)
    except MessageError:
        pass
    try:
        credentials = parse_credentials(text)
    except MessageError:
        return
    verify(credentials, "REGISTER", "0" * 32)


def ng(data: bytes) -> None:
    """rtpmedia/ng.py: a control datagram to the relay (or its answer)."""
    from rtpmedia.ng import NgError, decode

    try:
        decode(data)
    except NgError:
        pass


def datagrams(data: bytes) -> Iterator[tuple[float, bytes]]:
    """The fuzzer's bytes as a series of datagrams and their arrival times: each is two
    bytes of length (big-endian, at most 1500), one of time since the one before (in
    half milliseconds), then its bytes. `fuzz/seeds.py` writes inputs the same way."""
    at, t = 0, 0.0
    while at + 3 <= len(data):
        size = int.from_bytes(data[at : at + 2], "big") % 1501
        t += data[at + 2] / 2000
        yield t, data[at + 3 : at + 3 + size]
        at += 3 + size


def rtp_media(data: bytes) -> None:
    """rtpmedia: datagrams into the receive pipeline (reframing, jitter buffer,
    concealment, time stretching) on a 20 ms tick, the relay's per-stream health
    figures and RFC 4733 events. Malformed packets are counted and dropped, never
    raised. Two receivers take the same packets, one played alone (`frame`) and one
    in the relay's batch (`play`): their audio must be the same, sample for sample."""
    import numpy as np

    from rtpmedia.codecs.g711 import PCMA, PCMU
    from rtpmedia.codecs.l16 import L16_8000
    from rtpmedia.receiver import Receiver
    from rtpmedia.relay.health import StreamHealth
    from rtpmedia.rtp import RtpError, RtpPacket
    from rtpmedia.telephone_event import TelephoneEventReceiver

    codecs = {0: PCMU, 8: PCMA, 96: L16_8000}
    alone, batched = Receiver(codecs), Receiver(codecs)
    events = TelephoneEventReceiver()
    health = StreamHealth(8000)
    tick = 0.0
    for arrival, datagram in datagrams(data):
        while tick <= arrival:
            a = alone.frame(tick)
            b = Receiver.play([batched], tick)[0]
            assert (a is None) == (b is None) and (a is None or np.array_equal(a, b))
            tick += 0.02
        alone.put_packet(datagram, arrival)
        batched.put_packet(datagram, arrival)
        if len(datagram) >= 12 and datagram[0] >> 6 == 2:
            health.rtp(memoryview(datagram), arrival)
        try:
            packet = RtpPacket.parse(datagram)
        except RtpError:
            continue
        if packet.payload_type == 101:
            events.receive(packet)
    alone.stats()
    health.as_ng("PCMU")
    health.mos("PCMU")


def rtcp(data: bytes) -> None:
    """rtpmedia/relay/quality.py: compound RTCP from both parties of a stream, as the
    relay reads it before forwarding (reports, round trip, the figures of `query`)."""
    from rtpmedia.relay.health import StreamHealth

    caller, callee = StreamHealth(8000), StreamHealth(8000)
    caller.pair(callee)
    for n, (arrival, datagram) in enumerate(datagrams(data)):
        (caller if n % 2 else callee).rtcp(datagram, arrival, "a" if n % 2 else "b")
    for health in (caller, callee):
        health.reported()
        health.as_ng("PCMA", packets=100)
        health.mos("PCMA", packets=100)


def _with_file(data: bytes, suffix: str, load: Callable[[Path], object]) -> None:
    fd, name = tempfile.mkstemp(suffix=suffix, prefix="fuzz-")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        load(Path(name))
    finally:
        os.unlink(name)


def config_yaml(data: bytes) -> None:
    """softswitch/config.py: conf/softswitch.yaml."""
    from softswitch.config import ConfigError, load_config

    def load(path: Path) -> None:
        try:
            load_config(path)
        except ConfigError:
            pass

    _with_file(data, ".yaml", load)


def directory_yaml(data: bytes) -> None:
    """softswitch/directory.py: conf/directory.yaml."""
    from softswitch.directory import DirectoryError, load_directory

    def load(path: Path) -> None:
        try:
            load_directory(path)
        except DirectoryError:
            pass

    _with_file(data, ".yaml", load)


def dialplan_yaml(data: bytes) -> None:
    """dialplan/: conf/dialplan.yaml, checked and compiled (errors are a report, never raised)."""
    from dialplan.loader import load_file

    _with_file(data, ".yaml",
               lambda path: load_file(path, known_users=["1001"], known_trunks=["provider"]))


TARGETS: dict[str, Callable[[bytes], None]] = {
    "sip_message": sip_message,
    "stream_framer": stream_framer,
    "sdp": sdp,
    "digest": digest,
    "ng": ng,
    "rtp_media": rtp_media,
    "rtcp": rtcp,
    "config_yaml": config_yaml,
    "directory_yaml": directory_yaml,
    "dialplan_yaml": dialplan_yaml,
}

# The modules each target instruments for coverage (imported under atheris).
MODULES: dict[str, tuple[str, ...]] = {
    "sip_message": ("softswitch.sip.message", "softswitch.sip.headers", "softswitch.sip.uri"),
    "stream_framer": ("softswitch.sip.framing", "softswitch.sip.message",
                      "softswitch.sip.headers"),
    "sdp": ("softswitch.sip.sdp",),
    "digest": ("softswitch.sip.digest",),
    "ng": ("rtpmedia.ng",),
    "rtp_media": ("rtpmedia.rtp", "rtpmedia.reframe", "rtpmedia.jitterbuffer", "rtpmedia.receiver",
                  "rtpmedia.telephone_event", "rtpmedia.relay.health", "rtpmedia.relay.quality"),
    "rtcp": ("rtpmedia.relay.quality", "rtpmedia.relay.health"),
    "config_yaml": ("softswitch.config", "ruamel.yaml"),
    "directory_yaml": ("softswitch.directory", "softswitch.config", "ruamel.yaml"),
    "dialplan_yaml": ("dialplan", "dialplan.loader", "dialplan.source", "dialplan.compiler",
                      "dialplan.linker", "ruamel.yaml"),
}
