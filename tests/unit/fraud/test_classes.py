"""The classifier of dialled numbers: presets, overrides, targets."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dialplan import TrunkTarget, UriTarget, UserTarget
from softswitch.fraud.classes import Classifier, DestinationClass, parse_classes

C = DestinationClass


@pytest.mark.parametrize(("number", "expected"), [
    ("911", C.EMERGENCY),
    ("112", C.EMERGENCY),
    ("+12125551234", C.NATIONAL),
    ("12125551234", C.NATIONAL),
    ("2125551234", C.NATIONAL),
    ("+1 (212) 555-1234", C.NATIONAL),
    ("+442071234567", C.INTERNATIONAL),
    ("01144207123456", C.INTERNATIONAL),
    ("+19005551234", C.PREMIUM),
    ("19765551234", C.PREMIUM),
    ("9115", C.NATIONAL),  # only the exact emergency number is emergency
])
def test_nanp(number: str, expected: DestinationClass) -> None:
    assert Classifier.build("nanp", "1").classify_number(number) is expected


@pytest.mark.parametrize(("number", "expected"), [
    ("112", C.EMERGENCY),
    ("+4930123456", C.NATIONAL),
    ("030123456", C.NATIONAL),
    ("0049301234", C.INTERNATIONAL),
    ("+33123456789", C.INTERNATIONAL),
    ("+49900123456", C.PREMIUM),
])
def test_eu_with_overrides(number: str, expected: DestinationClass) -> None:
    classifier = Classifier.build("eu", "49", {"premium": ["+49900", "0900"]})
    assert classifier.classify_number(number) is expected


def test_e164_home_country_is_national() -> None:
    classifier = Classifier.build("e164", "44")
    assert classifier.classify_number("+442071234567") is C.NATIONAL
    assert classifier.classify_number("+12125551234") is C.INTERNATIONAL


def test_targets() -> None:
    classifier = Classifier.build()
    assert classifier.classify(UserTarget("1002")) is C.INTERNAL
    assert classifier.classify(TrunkTarget("provider", "+442071234567")) is C.INTERNATIONAL
    assert classifier.classify(UriTarget("sip:+442071234567@carrier.example")) is C.INTERNATIONAL
    assert classifier.classify(UriTarget("sip:%2B19005551234@carrier.example")) is C.PREMIUM
    assert classifier.classify(UriTarget("sip:alice@example.org")) is C.INTERNAL


def test_bad_configuration_is_named() -> None:
    with pytest.raises(ValueError, match="preset"):
        Classifier.build("mars")
    with pytest.raises(ValueError, match="'local'"):
        Classifier.build("nanp", "1", {"local": ["5"]})
    with pytest.raises(ValueError, match="internal"):
        Classifier.build("nanp", "1", {"internal": ["5"]})
    with pytest.raises(ValueError, match="'intl'"):
        parse_classes(["internal", "intl"])


@given(st.text(max_size=40))
def test_any_text_gets_a_class(text: str) -> None:
    for preset in ("nanp", "e164", "eu"):
        assert isinstance(Classifier.build(preset, "1").classify_number(text), DestinationClass)
        assert isinstance(Classifier.build(preset).classify(UriTarget(text)), DestinationClass)
