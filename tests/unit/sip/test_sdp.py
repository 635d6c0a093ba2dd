"""SDP: parsing, exact round trips, the helpers offer/answer and the relay use
(RFC 8866, RFC 3264 5.1, 6, 8.4, RFC 3551, RFC 3605), and property tests."""

from __future__ import annotations

import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from softswitch.sip.errors import MessageError
from softswitch.sip.sdp import (
    Attribute,
    Codec,
    Connection,
    Direction,
    MediaDescription,
    Origin,
    RtpMap,
    SessionDescription,
)

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Whole generated descriptions cost more each: fewer, to keep the suite fast.
SLOW_SETTINGS = settings(SETTINGS, max_examples=100)


def sdp(*lines: str) -> bytes:
    return ("\r\n".join(lines) + "\r\n").encode()


PHONE_OFFER = sdp(
    "v=0",
    "o=alice 2890844526 2890844526 IN IP4 192.0.2.1",
    "s=-",
    "c=IN IP4 192.0.2.1",
    "t=0 0",
    "m=audio 49170 RTP/AVP 0 8 9 101",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:101 telephone-event/8000",
    "a=fmtp:101 0-16",
    "a=ptime:20",
    "a=sendrecv",
)

# Every line type of RFC 8866 in its place, multicast addresses, a second
# timing with repeats, per-media c= and an unknown attribute.
FULL = sdp(
    "v=0",
    "o=jdoe 0123 0042 IN IP4 198.51.100.1",
    "s=Seminar on session description",
    "i=A talk",
    "u=http://www.example.com/seminar.pdf",
    "e=j.doe@example.com (Jane Doe)",
    "p=+1 617 555-6011",
    "c=IN IP4 233.252.0.1/127/3",
    "b=AS:128",
    "t=2873397496 2873404696",
    "r=604800 3600 0 90000",
    "t=0 0",
    "z=2882844526 -1h 2898848070 0",
    "k=clear:secret",
    "a=recvonly",
    "a=tool:some tool 1.0",
    "m=audio 49170/2 RTP/AVP 0 96",
    "i=voice",
    "c=IN IP6 FF15::101/3",
    "b=AS:64",
    "k=prompt",
    "a=rtpmap:96 opus/48000/2",
    "a=x-unknown:  spaced  value ",
    "a=flag",
    "a=empty:",
    "m=video 0 RTP/AVP 31",
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
    "c=IN IP4 198.51.100.1",
    "a=sctp-port:5000",
)


def test_parse_a_phone_offer() -> None:
    desc = SessionDescription.parse(PHONE_OFFER)
    assert desc.version == 0 and desc.name == "-"
    assert desc.origin == Origin("alice", "2890844526", "2890844526", "IN", "IP4", "192.0.2.1")
    assert desc.connection == Connection("IN", "IP4", "192.0.2.1")
    assert [(t.start, t.stop) for t in desc.timing] == [(0, 0)]
    [audio] = desc.media
    assert (audio.media, audio.port, audio.proto, audio.formats) == (
        "audio", 49170, "RTP/AVP", ["0", "8", "9", "101"])
    assert audio.direction is Direction.SENDRECV and audio.ptime == 20
    assert desc.endpoint(audio) == ("192.0.2.1", 49170)
    assert audio.codecs == [
        Codec(0, "PCMU", 8000, None),  # the rtpmap says no channel count
        Codec(8, "PCMA", 8000, 1),  # RFC 3551 static, no rtpmap needed
        Codec(9, "G722", 8000, 1),
        Codec(101, "telephone-event", 8000, None, "0-16"),
    ]
    assert desc.to_bytes() == PHONE_OFFER == bytes(desc)


def test_full_description_round_trips_and_parses() -> None:
    desc = SessionDescription.parse(FULL)
    assert desc.to_bytes() == FULL
    assert desc.origin.session_id == "0123"  # leading zeros kept
    assert desc.connection is not None
    assert (desc.connection.address, desc.connection.suffix) == ("233.252.0.1", "/127/3")
    assert desc.timing[0].repeats == ["604800 3600 0 90000"] and desc.timing[1].repeats == []
    assert [x.type for x in desc.extra] == ["i", "u", "e", "p", "b", "z", "k"]
    assert desc.direction is Direction.RECVONLY
    audio, video, data = desc.media
    assert audio.port_count == 2 and audio.rtpmaps == {96: RtpMap(96, "opus", 48000, 2)}
    assert audio.attribute("x-unknown") == Attribute("x-unknown", "  spaced  value ")
    assert audio.attribute("flag") == Attribute("flag")
    assert audio.attribute("empty") == Attribute("empty", "")
    assert desc.endpoint(audio) == ("FF15::101", 49170)
    assert desc.media_direction(audio) is Direction.RECVONLY  # inherited from the session
    assert video.rejected and desc.endpoint(video) == ("233.252.0.1", 0)
    assert video.codecs == [Codec(31, "H261", 90000, None)]
    assert data.codecs == []  # not RTP payload types


def test_lf_line_ends_and_blank_lines_are_accepted() -> None:
    lf = PHONE_OFFER.replace(b"\r\n", b"\n") + b"\n"
    assert SessionDescription.parse(lf).to_bytes() == PHONE_OFFER
    no_final = PHONE_OFFER[:-2]
    assert SessionDescription.parse(no_final).to_bytes() == PHONE_OFFER


def test_non_utf8_free_text_comes_back_as_it_came() -> None:
    data = PHONE_OFFER.replace(b"s=-", b"s=caf\xe9")
    assert SessionDescription.parse(data).to_bytes() == data


@pytest.mark.parametrize(("data", "why"), [
    (b"", "empty"),
    (b"\r\n\r\n", "empty"),
    (b"v=1\r\no=- 1 1 IN IP4 h\r\ns=-\r\n", "v=0"),
    (b"o=- 1 1 IN IP4 h\r\nv=0\r\ns=-\r\n", "v=0"),
    (b"v=0\r\ns=-\r\n", "o="),
    (b"v=0\r\no=- 1 1 IN IP4 h\r\n", "s="),
    (b"v=0\r\no=- 1 1 IN IP4\r\ns=-\r\n", "o="),
    (b"v=0\r\no=- x 1 IN IP4 h\r\ns=-\r\n", "session id"),
    (b"v=0\r\no=- 1 1 IN IP4 h\r\no=- 1 1 IN IP4 h\r\ns=-\r\n", "two"),
    (b"v=0\r\nv=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\n", "two"),
    (b"v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\ns=x\r\n", "two"),
    (b"v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nc=IN IP4 h\r\nc=IN IP4 h\r\n", "two"),
    (b"v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nc=IN IP4\r\n", "c="),
    (b"v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nc=IN IP4 /127\r\n", "c="),
    (b"v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nt=0\r\n", "t="),
    (b"v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nt=x 0\r\n", "time"),
    (b"v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nr=1 2 3\r\n", "r="),
    (b"v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nm=audio 70000 RTP/AVP 0\r\n", "port"),
    (b"v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nm=audio x RTP/AVP 0\r\n", "port"),
    (b"v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nm=audio 1/x RTP/AVP 0\r\n", "port count"),
    (b"v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nm=audio 1\r\n", "m="),
    (b"v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\na=\r\n", "attribute"),
    (b"v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\na=:x\r\n", "attribute"),
    (b"v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nX=1\r\n", "line"),
    (b"v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nnot a line\r\n", "line"),
    (b"v=0\r\no=- 1 1 IN IP4 h\r\ns=a\rb\r\n", "control"),
    (b"v=0\r\no=- 1 1 IN IP4 h\r\ns=a\x00b\r\n", "control"),
    (b"v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nt=" + b"9" * 5000 + b" 0\r\n", "time"),
])
def test_malformed_sdp_is_a_400(data: bytes, why: str) -> None:
    with pytest.raises(MessageError) as err:
        SessionDescription.parse(data)
    assert err.value.status == 400 and why in err.value.reason


def test_unacceptable_but_well_formed_offers_parse() -> None:
    # An ATM address or an unknown transport is the B2BUA's 488 to give.
    desc = SessionDescription.parse(sdp("v=0", "o=- 1 1 ATM NSAP 47.0005", "s=-",
                                        "c=ATM NSAP 47.0005", "t=0 0",
                                        "m=audio 9 FOO/BAR 0"))
    assert desc.connection == Connection("ATM", "NSAP", "47.0005")


# -- direction and hold ------------------------------------------------------------------


def test_set_direction_replaces_in_place_and_drops_duplicates() -> None:
    desc = SessionDescription.parse(PHONE_OFFER.replace(b"a=ptime:20\r\n",
                                                        b"a=inactive\r\na=ptime:20\r\n"))
    audio = desc.media[0]
    audio.set_direction(Direction.SENDONLY)
    assert [str(a) for a in audio.attributes][-3:] == ["fmtp:101 0-16", "sendonly", "ptime:20"]
    media = MediaDescription("audio", 4000, "RTP/AVP", ["0"])
    media.set_direction(Direction.INACTIVE)
    assert media.attributes == [Attribute("inactive")]


def test_session_set_direction_covers_every_stream() -> None:
    desc = SessionDescription.parse(FULL)
    desc.set_direction(Direction.SENDONLY)
    assert desc.direction is None
    assert [desc.media_direction(m) for m in desc.media] == [Direction.SENDONLY] * 3


@pytest.mark.parametrize(("direction", "reverse"), [
    (Direction.SENDONLY, Direction.RECVONLY), (Direction.RECVONLY, Direction.SENDONLY),
    (Direction.SENDRECV, Direction.SENDRECV), (Direction.INACTIVE, Direction.INACTIVE)])
def test_answer_direction(direction: Direction, reverse: Direction) -> None:
    assert direction.reverse() is reverse


@pytest.mark.parametrize(("change", "held"), [
    ((b"a=sendrecv", b"a=sendrecv"), False),
    ((b"a=sendrecv", b"a=sendonly"), True),
    ((b"a=sendrecv", b"a=inactive"), True),
    ((b"a=sendrecv", b"a=recvonly"), False),
    ((b"c=IN IP4 192.0.2.1", b"c=IN IP4 0.0.0.0"), True),  # RFC 2543 style
    ((b"m=audio 49170", b"m=audio 0"), False),  # rejected, not held
])
def test_hold_detection(change: tuple[bytes, bytes], held: bool) -> None:
    desc = SessionDescription.parse(PHONE_OFFER.replace(*change))
    assert desc.on_hold is held


def test_hold_needs_every_active_stream_held() -> None:
    desc = SessionDescription.parse(PHONE_OFFER + b"m=video 5000 RTP/AVP 31\r\na=sendrecv\r\n")
    desc.media[0].set_direction(Direction.SENDONLY)
    assert desc.media_on_hold(desc.media[0]) and not desc.on_hold
    desc.media[1].set_direction(Direction.INACTIVE)
    assert desc.on_hold


# -- rewriting for the relay -----------------------------------------------------------------


def test_with_connection_rewrites_address_and_ports_in_a_copy() -> None:
    original = SessionDescription.parse(FULL)
    relayed = original.with_connection("203.0.113.50", [30000, 30002, 30004])
    assert original.to_bytes() == FULL  # untouched
    assert relayed.connection == Connection("IN", "IP4", "203.0.113.50")
    assert [m.port for m in relayed.media] == [30000, 0, 30004]  # the rejected stream stays 0
    assert all(m.connections == [] for m in relayed.media)
    assert [relayed.endpoint(m) for m in relayed.media] == [
        ("203.0.113.50", 30000), ("203.0.113.50", 0), ("203.0.113.50", 30004)]
    assert SessionDescription.parse(relayed.to_bytes()).to_bytes() == relayed.to_bytes()
    v6 = original.with_connection("2001:db8::5", [1, 2, 3])
    assert v6.connection == Connection("IN", "IP6", "2001:db8::5")
    with pytest.raises(ValueError):
        original.with_connection("203.0.113.50", [1])


def test_media_with_connection_drops_the_old_rtcp_address() -> None:
    media = SessionDescription.parse(PHONE_OFFER + b"a=rtcp:53020 IN IP4 126.16.64.4\r\n").media[0]
    assert media.rtcp == (53020, "126.16.64.4")
    moved = media.with_connection("203.0.113.50", 40000)
    assert moved.rtcp is None and media.rtcp is not None
    assert moved.connections == [Connection("IN", "IP4", "203.0.113.50")]
    assert moved.m_line() == "audio 40000 RTP/AVP 0 8 9 101"


def test_origin_version_goes_up() -> None:
    origin = SessionDescription.parse(PHONE_OFFER).origin
    assert origin.next_version().version == "2890844527"
    assert origin.next_version().session_id == origin.session_id


def test_lenient_attribute_helpers_ignore_malformed_values() -> None:
    media = MediaDescription("audio", 4000, "RTP/AVP", ["96", "97", "x"], attributes=[
        Attribute("rtpmap", "96"), Attribute("rtpmap", "97 AMR/8000/1"),
        Attribute("rtpmap", "97 dup/1"), Attribute("fmtp", "x y"), Attribute("ptime", "soon"),
        Attribute("rtcp", "big")])
    assert media.codecs == [Codec(96, None, None), Codec(97, "AMR", 8000, 1)]
    assert media.fmtps == {} and media.ptime is None and media.rtcp is None
    assert media.attribute_values("rtpmap") == ["96", "97 AMR/8000/1", "97 dup/1"]


# -- properties -------------------------------------------------------------------------------

PRINTABLE = string.ascii_letters + string.digits + " !\"#$%&'()*+,-./:;<>?@[\\]^_`{|}~\t"
text = st.text(PRINTABLE + "éü€", max_size=20)
word = st.text(string.ascii_letters + string.digits + "-._+:", min_size=1, max_size=10)
digits = st.integers(0, 2**64).map(str)
ports = st.integers(0, 65535)


@st.composite
def connections(draw: st.DrawFn) -> str:
    suffix = draw(st.sampled_from(["", "/127", "/127/3"]))
    return f"c=IN {draw(st.sampled_from(['IP4', 'IP6']))} {draw(word)}{suffix}"


@st.composite
def attributes(draw: st.DrawFn) -> str:
    name = draw(st.sampled_from(["sendrecv", "sendonly", "rtpmap", "fmtp", "ptime", "rtcp",
                                 "x-foo"]) | word.filter(lambda w: ":" not in w))
    value = draw(st.none() | text)
    return f"a={name}" if value is None else f"a={name}:{value}"


def lines_of(draw: st.DrawFn, kinds: str) -> list[str]:
    return [f"{k}={draw(text)}" for k in kinds if draw(st.booleans())]


@st.composite
def media_sections(draw: st.DrawFn) -> list[str]:
    count = draw(st.none() | st.integers(1, 9))
    port = f"{draw(ports)}" + ("" if count is None else f"/{count}")
    formats = draw(st.lists(st.integers(0, 127).map(str) | word, max_size=5))
    out = [" ".join(["m=" + draw(st.sampled_from(["audio", "video", "text"])), port,
                     draw(st.sampled_from(["RTP/AVP", "RTP/SAVPF", "UDP/TLS/RTP/SAVP"])),
                     *formats])]
    out += lines_of(draw, "i")
    out += draw(st.lists(connections(), max_size=2))
    out += lines_of(draw, "bk")
    out += draw(st.lists(attributes(), max_size=6))
    return out


@st.composite
def descriptions(draw: st.DrawFn) -> bytes:
    out = ["v=0", f"o={draw(word)} {draw(digits)} {draw(digits)} IN IP4 {draw(word)}",
           f"s={draw(text)}"]
    out += lines_of(draw, "iuep")
    if draw(st.booleans()):
        out.append(draw(connections()))
    out += lines_of(draw, "b")
    for _ in range(draw(st.integers(0, 2))):
        out.append(f"t={draw(st.integers(0, 2**40))} {draw(st.integers(0, 2**40))}")
        out += [f"r={draw(text)}" for _ in range(draw(st.integers(0, 2)))]
    out += lines_of(draw, "zk")
    out += draw(st.lists(attributes(), max_size=4))
    for media in draw(st.lists(media_sections(), max_size=3)):
        out += media
    return ("\r\n".join(out) + "\r\n").encode()


@SLOW_SETTINGS
@given(descriptions())
def test_well_formed_descriptions_round_trip_exactly(data: bytes) -> None:
    desc = SessionDescription.parse(data)
    assert desc.to_bytes() == data
    assert SessionDescription.parse(data.replace(b"\r\n", b"\n")).to_bytes() == data
    assert desc.copy().to_bytes() == data


@SLOW_SETTINGS
@given(descriptions(), st.data())
def test_rewritten_descriptions_stay_well_formed(data: bytes, draw: st.DataObject) -> None:
    desc = SessionDescription.parse(data)
    relayed = desc.with_connection("203.0.113.1", [draw.draw(ports) for _ in desc.media])
    relayed.set_direction(draw.draw(st.sampled_from(list(Direction))))
    out = relayed.to_bytes()
    assert SessionDescription.parse(out).to_bytes() == out
    assert desc.to_bytes() == data


def _check_parse(data: bytes) -> None:
    try:
        desc = SessionDescription.parse(data)
    except MessageError as exc:
        assert exc.status == 400
        return
    # Whatever we accept, we write in a form we read back the same.
    out = desc.to_bytes()
    assert SessionDescription.parse(out).to_bytes() == out


@SETTINGS
@given(st.binary(max_size=300))
def test_arbitrary_bytes_give_a_description_or_message_error(data: bytes) -> None:
    _check_parse(data)
    _check_parse(b"v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\n" + data)


@SLOW_SETTINGS
@given(descriptions(), st.lists(st.tuples(st.integers(0, 10**6), st.binary(max_size=3)),
                                min_size=1, max_size=4))
def test_corrupted_descriptions_give_a_description_or_message_error(
        data: bytes, edits: list[tuple[int, bytes]]) -> None:
    for position, junk in edits:
        at = position % (len(data) + 1)
        data = data[:at] + junk + data[at + len(junk):]
    _check_parse(data)
