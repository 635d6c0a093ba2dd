"""RFC 7339 Via parameters as a server sets them."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from softswitch.sip.headers import Via
from softswitch.sip.oc import stamp_oc, wants_oc


def via(params: str) -> Via:
    return Via.parse(f"SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKa{params}")


def test_a_client_asks_with_oc_and_the_loss_algorithm_or_none_named() -> None:
    assert wants_oc(via(";oc"))
    assert wants_oc(via(';oc;oc-algo="loss,A"'))
    assert wants_oc(via(';OC;OC-ALGO="Loss"'))
    assert not wants_oc(via(""))
    assert not wants_oc(via(';oc;oc-algo="rate"'))  # we only do loss


def test_the_response_carries_loss_validity_sequence_and_algorithm() -> None:
    v = via(';oc;oc-algo="loss,A"')
    assert stamp_oc(v, 0.25, 1282321615.7821, 500)
    assert v.params["oc"] == "25" and v.params["oc-validity"] == "500"
    assert v.params["oc-seq"] == "1282321615.782" and v.params["oc-algo"] == '"loss"'
    # Round trip through the header text, as the client reads it.
    again = Via.parse(str(v))
    assert again.params == v.params and again.branch == "z9hG4bKa"


def test_no_loss_ends_overload_control_and_no_request_no_parameters() -> None:
    v = via(";oc")
    stamp_oc(v, 0.0, 10.0, 500)
    assert v.params["oc"] == "0" and v.params["oc-validity"] == "0"
    plain = via("")
    assert not stamp_oc(plain, 0.5, 10.0, 500)
    assert "oc" not in plain.params


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_oc_is_a_percentage_whatever_the_loss(loss: float) -> None:
    v = via(";oc")
    stamp_oc(v, loss, 1.0, 500)
    value = v.params["oc"]
    assert value is not None and 0 <= int(value) <= 100
