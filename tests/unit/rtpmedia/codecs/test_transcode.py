"""PCMU <-> PCMA code conversion (G.711 tables 3 and 4), generic transcoding, and negotiation."""

from __future__ import annotations

import numpy as np
import pytest

from rtpmedia.codecs import get
from rtpmedia.codecs.g711 import PCMA, PCMU
from rtpmedia.codecs.l16 import L16_8000, L16_16000
from rtpmedia.codecs.transcode import (
    ALAW_TO_ULAW,
    ULAW_TO_ALAW,
    Format,
    MediaPlan,
    NegotiationError,
    TranscodeError,
    can_transcode,
    extend_offer,
    negotiate,
    transcoder,
)

CODES = np.arange(256, dtype=np.uint8)
U_VALUES = PCMU.decode_array(CODES).astype(np.int32)
A_VALUES = PCMA.decode_array(CODES).astype(np.int32)


def rank(values: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Signed position of each code among its law's 256 levels (+0 and -0 apart)."""
    order = np.lexsort((codes >= 0x80, values))
    out = np.empty(256, np.int32)
    out[order] = np.arange(256)
    return out[codes]


U_RANK = rank(U_VALUES, CODES)
A_RANK = rank(A_VALUES, CODES)


@pytest.mark.parametrize(("table", "source", "target", "direct"), [
    (ULAW_TO_ALAW, U_VALUES, A_VALUES, PCMA.encode_table),
    (ALAW_TO_ULAW, A_VALUES, U_VALUES, PCMU.encode_table),
])
def test_conversion_keeps_sign_order_and_level(table, source, target, direct) -> None:  # type: ignore[no-untyped-def]
    converted = table[CODES]
    # The sign bit is kept, also for the two zeros of mu-law.
    assert np.array_equal(converted >= 0x80, CODES >= 0x80)
    # Louder in, never quieter out.
    order = np.lexsort((CODES >= 0x80, source))
    assert np.all(np.diff(target[converted[order]]) >= 0)
    # Within one level of what decoding and re-encoding would give.
    target_rank = A_RANK if target is A_VALUES else U_RANK
    via_linear = direct[source.astype(np.int16).view(np.uint16)]
    assert np.all(np.abs(target_rank[converted] - target_rank[via_linear]) <= 1)


@pytest.mark.parametrize(("forward", "back"), [(ULAW_TO_ALAW, ALAW_TO_ULAW),
                                               (ALAW_TO_ULAW, ULAW_TO_ALAW)])
def test_round_trips_lose_only_what_the_forward_table_merges(forward, back) -> None:  # type: ignore[no-untyped-def]
    there = forward[CODES]
    again = back[there]
    # Converting back and forth again changes nothing more.
    assert np.array_equal(forward[again], there)
    # A code comes back unchanged unless it shares its converted code with another.
    shared = np.bincount(there, minlength=256)[there] > 1
    assert np.all((again == CODES) | shared)
    # Of each pair merged by the forward table exactly one comes back.
    assert np.count_nonzero(again != CODES) == np.count_nonzero(shared) // 2 == 16


def test_known_conversions() -> None:
    assert ULAW_TO_ALAW[[0xFF, 0x7F, 0x00, 0x80]].tolist() == [0xD5, 0x55, 0x2A, 0xAA]
    assert ALAW_TO_ULAW[[0xD5, 0x55, 0x2A, 0xAA]].tolist() == [0xFE, 0x7E, 0x00, 0x80]


def test_transcoder_uses_the_tables_on_many_frames() -> None:
    rng = np.random.default_rng(2)
    frames = rng.integers(0, 256, size=(20, 160), dtype=np.uint8)
    to_a = transcoder("PCMU/8000", "PCMA/8000")
    out = to_a.convert_array(frames)
    assert out.shape == (20, 160) and np.array_equal(out, ULAW_TO_ALAW[frames])
    assert to_a.convert(frames[3].tobytes()) == ULAW_TO_ALAW[frames[3]].tobytes()
    back = transcoder(PCMA, PCMU)
    assert np.array_equal(back.convert_array(out), ALAW_TO_ULAW[out])


def test_transcoding_a_signal_round_trip() -> None:
    t = np.arange(1600) / 8000
    speechy = (8000 * np.sin(2 * np.pi * 440 * t) * np.sin(2 * np.pi * 3 * t)).astype(np.int16)
    ulaw = PCMU.encode(speechy)
    again = transcoder(PCMA, PCMU).convert(transcoder(PCMU, PCMA).convert(ulaw))
    error = PCMU.decode(again).astype(float) - PCMU.decode(ulaw)
    assert np.sqrt(np.mean(error ** 2)) < 0.01 * np.sqrt(np.mean(speechy.astype(float) ** 2))


def test_generic_transcoder_decodes_and_encodes() -> None:
    rng = np.random.default_rng(3)
    payload = rng.integers(0, 256, 160, dtype=np.uint8).tobytes()
    assert transcoder(PCMU, L16_8000).convert(payload) == L16_8000.encode(PCMU.decode(payload))
    with pytest.raises(TranscodeError):
        transcoder(PCMU, L16_16000)


def test_can_transcode() -> None:
    assert can_transcode("PCMU/8000", "pcma/8000")
    assert can_transcode("PCMA/8000", "L16/8000")
    assert not can_transcode("PCMU/8000", "PCMU/8000")
    assert not can_transcode("PCMU/8000", "L16/16000")
    assert not can_transcode("G729/8000", "PCMU/8000")


def fmts(*rtpmaps: str) -> list[Format]:
    return [Format.parse(r) for r in rtpmaps]


def test_format_parse() -> None:
    assert Format.parse("101 telephone-event/8000") == Format(101, "TELEPHONE-EVENT/8000")
    assert str(Format(0, "pcmu/8000")) == "0 PCMU/8000"
    for bad in ("PCMU/8000", "x PCMU/8000", "200 PCMU/8000", "0 PCMU"):
        with pytest.raises(ValueError):
            Format.parse(bad)


def test_common_codec_is_passed_through_with_each_legs_payload_type() -> None:
    offered = fmts("0 PCMU/8000", "8 PCMA/8000", "101 telephone-event/8000")
    answered = fmts("8 PCMA/8000", "96 telephone-event/8000")
    plan = negotiate(offered, answered)
    assert plan == MediaPlan(Format(8, "PCMA/8000"), Format(8, "PCMA/8000"), 101, 96)
    assert plan.passthrough and not plan.transcoding


def test_pcmu_only_caller_and_pcma_only_callee_transcode() -> None:
    offered = fmts("0 PCMU/8000", "101 telephone-event/8000")
    forwarded = extend_offer(offered)
    assert forwarded == [*offered, Format(8, "PCMA/8000")]
    plan = negotiate(offered, fmts("8 PCMA/8000"))
    assert plan.transcoding
    assert (plan.offerer, plan.answerer) == (Format(0, "PCMU/8000"), Format(8, "PCMA/8000"))
    assert (plan.offerer_events, plan.answerer_events) == (101, None)


def test_answerers_preference_wins_and_passthrough_beats_transcoding() -> None:
    offered = fmts("8 PCMA/8000", "0 PCMU/8000")
    # The answer puts the relay's added codec first, but PCMU was offered: no transcoding.
    assert negotiate(offered, fmts("9 G722/8000", "0 PCMU/8000")).passthrough
    plan = negotiate(fmts("0 PCMU/8000", "97 L16/8000"), fmts("8 PCMA/8000"))
    assert plan.offerer == Format(0, "PCMU/8000")


def test_extend_offer_adds_only_what_it_can_convert_to() -> None:
    assert extend_offer(fmts("0 PCMU/8000", "8 PCMA/8000")) == fmts("0 PCMU/8000", "8 PCMA/8000")
    assert extend_offer(fmts("18 G729/8000")) == fmts("18 G729/8000")
    # A static number already taken by another format moves to a dynamic one.
    assert extend_offer(fmts("8 L16/8000")) == [*fmts("8 L16/8000"), Format(0, "PCMU/8000"),
                                               Format(96, "PCMA/8000")]


def test_nothing_in_common() -> None:
    with pytest.raises(NegotiationError):
        negotiate(fmts("18 G729/8000"), fmts("0 PCMU/8000"))
    with pytest.raises(NegotiationError):
        negotiate(fmts("0 PCMU/8000", "101 telephone-event/8000"), fmts("101 telephone-event/8000"))


def test_registry_names_round_trip_through_formats() -> None:
    for f in fmts("0 PCMU/8000", "8 PCMA/8000/1"):
        assert get(f.encoding).payload_type == f.payload_type
