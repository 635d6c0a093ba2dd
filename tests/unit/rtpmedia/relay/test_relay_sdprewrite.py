"""The relay's SDP reading and rewriting."""

from __future__ import annotations

import pytest

from rtpmedia.relay.sdprewrite import Rewrite, SdpError, parse, read, rewrite

OFFER = ("v=0\r\no=alice 2890844526 2890844526 IN IP4 10.0.0.5\r\ns=-\r\n"
         "c=IN IP4 10.0.0.5\r\nt=0 0\r\na=ice-ufrag:abcd\r\na=ice-pwd:secretsecretsecret\r\n"
         "m=audio 49170 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
         "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=rtcp:49171\r\n"
         "a=candidate:1 1 UDP 2130706431 10.0.0.5 49170 typ host\r\na=x-unknown:keep me\r\n"
         "a=sendrecv\r\n"
         "m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n")


def lines(body: bytes) -> list[str]:
    return body.decode().split("\r\n")


def test_read_endpoints() -> None:
    audio, video = read(parse(OFFER))
    assert audio.rtp == ("10.0.0.5", 49170) and audio.rtcp == ("10.0.0.5", 49171)
    assert not audio.mux and audio.codecs == ("PCMU", "PCMA", "TELEPHONE-EVENT")
    assert video.rtp is None  # rejected


def test_rewrite_c_m_rtcp_keeps_unknown_lines_and_rejected_streams() -> None:
    out = lines(rewrite(parse(OFFER), Rewrite("203.0.113.1", (30000, 30002), (False, False))))
    assert "c=IN IP4 203.0.113.1" in out and "c=IN IP4 10.0.0.5" not in out
    assert "m=audio 30000 RTP/AVP 0 8 101" in out and "a=rtcp:30001" in out
    assert "a=rtcp:49171" not in out and "a=x-unknown:keep me" in out
    assert "m=video 0 RTP/AVP 96" in out
    assert "o=alice 2890844526 2890844526 IN IP4 10.0.0.5" in out  # no replace-origin
    assert any(x.startswith("a=candidate") for x in out)  # no ICE=remove


def test_replace_origin_and_ice_remove() -> None:
    out = lines(rewrite(parse(OFFER), Rewrite("203.0.113.1", (30000, 0), (False, False),
                                              replace_origin=True, ice_remove=True)))
    assert "o=alice 2890844526 2890844526 IN IP4 203.0.113.1" in out
    assert not any(x.startswith(("a=candidate", "a=ice-")) for x in out)


def test_media_level_connection_is_replaced_and_no_session_c_added() -> None:
    body = ("v=0\r\no=- 1 1 IN IP4 10.0.0.5\r\ns=-\r\nt=0 0\r\n"
            "m=audio 4000 RTP/AVP 0\r\nc=IN IP4 10.0.0.5\r\n")
    out = lines(rewrite(parse(body), Rewrite("203.0.113.1", (30000,), (False,))))
    assert out.count("c=IN IP4 203.0.113.1") == 1
    assert out.index("c=IN IP4 203.0.113.1") > out.index("m=audio 30000 RTP/AVP 0")


def test_ipv6_advertise() -> None:
    out = lines(rewrite(parse(OFFER), Rewrite("2001:db8::1", (30000, 0), (False, False))))
    assert "c=IN IP6 2001:db8::1" in out


def test_rtcp_mux_added_and_removed() -> None:
    muxed = OFFER.replace("a=sendrecv", "a=rtcp-mux\r\na=sendrecv")
    assert read(parse(muxed))[0].mux
    out = lines(rewrite(parse(muxed), Rewrite("203.0.113.1", (30000, 0), (False, False))))
    assert "a=rtcp-mux" not in out and "a=rtcp:30001" in out
    out = lines(rewrite(parse(OFFER), Rewrite("203.0.113.1", (30000, 0), (True, False))))
    assert "a=rtcp-mux" in out and "a=rtcp:30000" in out


def test_direction_is_kept_and_read() -> None:
    held = OFFER.replace("a=sendrecv", "a=sendonly")
    assert read(parse(held))[0].on_hold
    assert "a=sendonly" in lines(rewrite(parse(held), Rewrite("203.0.113.1", (30000, 0), (False, False))))
    old_hold = OFFER.replace("c=IN IP4 10.0.0.5", "c=IN IP4 0.0.0.0")
    assert read(parse(old_hold))[0].rtp is None


def test_codec_strip() -> None:
    out = lines(rewrite(parse(OFFER), Rewrite("203.0.113.1", (30000, 0), (False, False),
                                              strip=frozenset({"PCMA"}))))
    assert "m=audio 30000 RTP/AVP 0 101" in out and "a=rtpmap:8 PCMA/8000" not in out
    everything = lines(rewrite(parse(OFFER), Rewrite("203.0.113.1", (30000, 0), (False, False),
                                                     strip=frozenset({"ALL"}))))
    assert "m=audio 30000 RTP/AVP 0 8 101" in everything  # never an m= line without formats


def test_transport_protocol() -> None:
    avpf = OFFER.replace("RTP/AVP 0 8 101", "RTP/AVPF 0 8 101")
    out = lines(rewrite(parse(avpf), Rewrite("203.0.113.1", (30000, 0), (False, False),
                                             transport="RTP/AVP")))
    assert "m=audio 30000 RTP/AVP 0 8 101" in out


@pytest.mark.parametrize("body", ["", "v=0\r\n", "x", "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\nm=audio 1 RTP/AVP 0\r\n"])
def test_bad_sdp_is_an_sdp_error(body: str) -> None:
    with pytest.raises(SdpError):
        read(parse(body))


def test_clock_rate_of_the_first_codec() -> None:
    opus = OFFER.replace("RTP/AVP 0 8 101", "RTP/AVP 111 0").replace(
        "a=rtpmap:0 PCMU/8000", "a=rtpmap:111 opus/48000/2\r\na=rtpmap:0 PCMU/8000")
    assert read(parse(opus))[0].clock_rate == 48000
    assert read(parse(OFFER))[0].clock_rate == 8000


def test_srtp_sdes_passes_untouched_even_with_the_rtp_avp_flag() -> None:
    """RFC 4568: the keys travel in a=crypto; a relay that forwards the packets
    as they are must keep the profile and the keys, whatever flags Kamailio sends."""
    crypto = "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:32"
    body = OFFER.replace("m=audio 49170 RTP/AVP 0 8 101", "m=audio 49170 RTP/SAVP 0 8 101").replace(
        "a=sendrecv", f"{crypto}\r\na=sendrecv")
    out = lines(rewrite(parse(body), Rewrite("203.0.113.1", (30000, 0), (False, False),
                                             transport="RTP/AVP")))
    assert "m=audio 30000 RTP/SAVP 0 8 101" in out
    assert crypto in out
