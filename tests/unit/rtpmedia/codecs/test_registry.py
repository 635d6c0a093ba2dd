"""The codec registry: lookup by SDP rtpmap name and by static payload type."""

from __future__ import annotations

import pytest

from rtpmedia import codecs
from rtpmedia.codecs.g711 import PCMA, PCMU
from rtpmedia.codecs.l16 import L16_44100_STEREO


@pytest.mark.parametrize(("name", "codec"), [
    ("PCMU/8000", PCMU), ("pcmu/8000", PCMU), ("PCMA/8000/1", PCMA), (" PCMA/8000", PCMA),
    ("L16/44100/2", L16_44100_STEREO),
])
def test_get_by_rtpmap(name: str, codec: codecs.Codec) -> None:
    assert codecs.get(name) is codec


@pytest.mark.parametrize("name", ["PCMU/16000", "opus/48000/2", "PCMU", "", "telephone-event/8000"])
def test_unknown_names(name: str) -> None:
    with pytest.raises(codecs.UnknownCodecError):
        codecs.get(name)


def test_by_payload_type() -> None:
    assert codecs.by_payload_type(0) is PCMU
    assert codecs.by_payload_type(8) is PCMA
    assert codecs.by_payload_type(10) is L16_44100_STEREO
    with pytest.raises(codecs.UnknownCodecError):
        codecs.by_payload_type(96)


def test_every_name_finds_its_codec() -> None:
    assert {"PCMU/8000", "PCMA/8000", "L16/8000", "L16/16000"} <= set(codecs.names())
    for name in codecs.names():
        assert codecs.get(name).rtpmap == name
