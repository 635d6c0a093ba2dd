import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtpmedia import ng


def test_round_trip() -> None:
    datagram = ng.encode(b"5323_1", {"command": "offer", "flags": ["trust-address"], "n": 3})
    assert datagram.startswith(b"5323_1 d")
    assert ng.decode(datagram) == (b"5323_1", {"command": "offer", "flags": ["trust-address"], "n": 3})


@pytest.mark.parametrize("datagram", [b"", b"nocookie", b" d1:ai1ee", b"c li1ee", b"c d1:a", b"c zz"])
def test_not_ng(datagram: bytes) -> None:
    with pytest.raises(ng.NgError):
        ng.decode(datagram)


@given(st.binary(max_size=200))
def test_any_bytes_decode_or_ng_error(datagram: bytes) -> None:
    try:
        cookie, message = ng.decode(datagram)
    except ng.NgError:
        return
    assert isinstance(message, dict) and cookie


def test_keys_in_any_order_as_kamailio_and_rtpengine_write_them() -> None:
    assert ng.decode(b"c1 d7:command4:ping8:supportsl10:load limitee") == \
        (b"c1", {"command": "ping", "supports": ["load limit"]})
    with pytest.raises(ng.NgError):
        ng.decode(b"c1 d1:zi1e1:a")


def test_keys_out_of_order_as_rtpengine_sends_them() -> None:
    # Seen from Debian's rtpengine 10.5: "sdp" before "result".
    cookie, message = ng.decode(b"77 d3:sdp3:v=06:result2:oke")
    assert cookie == b"77"
    assert message == {"sdp": "v=0", "result": "ok"}
