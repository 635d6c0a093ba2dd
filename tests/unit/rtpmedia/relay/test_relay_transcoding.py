"""Transcoding and media repair decided in offer/answer: codecs appended, chosen only when needed."""

from __future__ import annotations

import random
from typing import Any

import numpy as np

from rtpmedia.plc import Repeat
from rtpmedia.relay.bridge import Bridge, Repairs
from rtpmedia.relay.calls import MediaEnd
from rtpmedia.relay.control import BridgeMedia, Control
from rtpmedia.relay.engine import Emit
from rtpmedia.relay.ports import PortPool
from rtpmedia.relay.transcoding import Format, Route, plan_streams
from rtpmedia.rtp import RtpPacket

RELAY = "203.0.113.1"
TRANSCODE = {"codec": {"transcode": ["PCMU", "PCMA"]}}


def sdp(address: str, port: int, formats: str, maps: str) -> str:
    return (f"v=0\r\no=- 1 1 IN IP4 {address}\r\ns=-\r\nc=IN IP4 {address}\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP {formats}\r\n{maps}")


PCMU_ONLY = sdp("192.0.2.10", 4000, "0 101",
                "a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
                "a=fmtp:101 0-16\r\n")
PCMA_ONLY = sdp("192.0.2.20", 5000, "8 101",
                "a=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
                "a=fmtp:101 0-16\r\n")


def m_line(body: str) -> list[str]:
    return next(x for x in body.split("\r\n") if x.startswith("m=audio")).split()[3:]


def run(offer_sdp: str, answer_sdp: str, offer_extra: dict[str, Any] | None = None,
        answer_extra: dict[str, Any] | None = None) -> tuple[str, str, list[Any], Control]:
    c = Control(PortPool(30000, 30099), RELAY)
    o, _ = c.handle({"command": "offer", "call-id": "c", "from-tag": "A", "to-tag": "B",
                     "sdp": offer_sdp, **(offer_extra or {})}, 0.0)
    assert o["result"] == "ok", o
    a, effects = c.handle({"command": "answer", "call-id": "c", "from-tag": "A", "to-tag": "B",
                           "sdp": answer_sdp, **(answer_extra or {})}, 0.0)
    return o["sdp"], a.get("sdp", a.get("error-reason", "")), effects, c


def test_offer_appends_missing_g711_after_the_offered_codecs() -> None:
    to_b, _, _, _ = run(PCMU_ONLY, PCMU_ONLY, TRANSCODE)
    assert m_line(to_b) == ["0", "101", "8"]
    assert "a=rtpmap:8 PCMA/8000" in to_b
    assert to_b.index("a=rtpmap:101") < to_b.index("a=rtpmap:8 ")


def test_without_the_flag_the_offer_is_untouched() -> None:
    to_b, _, effects, _ = run(PCMU_ONLY, PCMU_ONLY)
    assert m_line(to_b) == ["0", "101"]
    assert not any(isinstance(e, BridgeMedia) for e in effects)


def test_a_shared_codec_is_passed_through_not_transcoded() -> None:
    both = sdp("192.0.2.20", 5000, "0 8 101",
               "a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n")
    _, to_a, effects, c = run(PCMU_ONLY, sdp("192.0.2.20", 5000, "0 101",
                                             "a=rtpmap:101 telephone-event/8000\r\n"), TRANSCODE)
    assert m_line(to_a) == ["0", "101"]
    assert not any(isinstance(e, BridgeMedia) for e in effects)  # the kernel may take it
    # An answer that lists the appended PCMA too: the offerer is answered only what it
    # offered, and the answerer sends PCMU (RFC 3264 6.1): still plain forwarding.
    _, to_a, effects, _ = run(PCMU_ONLY, both, TRANSCODE)
    assert m_line(to_a) == ["0", "101"] and "PCMA" not in to_a
    assert not any(isinstance(e, BridgeMedia) for e in effects)
    plan = plan_streams([Format(0, "PCMU/8000")], [Format(0, "PCMU/8000"), Format(8, "PCMA/8000")])
    assert not plan.plan.transcoding
    assert Route(8, 0, "PCMA/8000", "PCMU/8000") in plan.answerer_to_offerer  # if repaired


def test_no_shared_codec_answers_the_offerer_in_its_own_and_transcodes_both_ways() -> None:
    _, to_a, effects, c = run(PCMU_ONLY, PCMA_ONLY, TRANSCODE)
    assert m_line(to_a) == ["0", "101"]
    assert "a=rtpmap:8" not in to_a and "a=fmtp:101 0-16" in to_a
    bridge = next(e for e in effects if isinstance(e, BridgeMedia))
    assert bridge.plan is not None and bridge.plan.plan.transcoding
    assert bridge.offerer is c.calls["c"].monologues["A"].ends[0]
    assert Route(0, 8, "PCMU/8000", "PCMA/8000") in bridge.plan.offerer_to_answerer
    assert Route(8, 0, "PCMA/8000", "PCMU/8000") in bridge.plan.answerer_to_offerer
    assert Route(101, 101, "TELEPHONE-EVENT/8000", "TELEPHONE-EVENT/8000") \
        in bridge.plan.offerer_to_answerer


def test_telephone_event_payload_types_are_mapped() -> None:
    pcma_te_96 = sdp("192.0.2.20", 5000, "8 96",
                     "a=rtpmap:8 PCMA/8000\r\na=rtpmap:96 telephone-event/8000\r\n")
    plan = plan_streams([Format(0, "PCMU/8000"), Format(101, "telephone-event/8000")],
                        [Format(8, "PCMA/8000"), Format(96, "telephone-event/8000")])
    assert Route(101, 96, "TELEPHONE-EVENT/8000", "TELEPHONE-EVENT/8000") \
        in plan.offerer_to_answerer
    assert Route(96, 101, "TELEPHONE-EVENT/8000", "TELEPHONE-EVENT/8000") \
        in plan.answerer_to_offerer
    _, to_a, _, _ = run(PCMU_ONLY, pcma_te_96, TRANSCODE)
    assert m_line(to_a) == ["0", "101"]


def test_events_the_callee_lacks_are_played_to_it_as_dtmf_tones() -> None:
    from rtpmedia.codecs.g711 import PCMA
    from rtpmedia.goertzel import detect
    from rtpmedia.telephone_event import digit_packets

    no_te = sdp("192.0.2.20", 5000, "8", "a=rtpmap:8 PCMA/8000\r\n")
    _, to_a, effects, _ = run(PCMU_ONLY, no_te, TRANSCODE)
    assert m_line(to_a) == ["0", "101"]  # the caller keeps sending RFC 4733 events
    bridge_effect = next(e for e in effects if isinstance(e, BridgeMedia))
    assert bridge_effect.plan is not None
    assert Route(101, 8, "TELEPHONE-EVENT/8000", "PCMA/8000") \
        in bridge_effect.plan.offerer_to_answerer
    a, b = MediaEnd("c", "A", 0, 30000), MediaEnd("c", "B", 0, 30002)
    sent: list[bytes] = []
    bridge = Bridge(a, b, bridge_effect.plan, (False, False), lambda end, data: sent.append(data))
    heard = []
    for digit, first_ts in (("5", 8000), ("#", 16000)):
        for _, packet in digit_packets(digit, ssrc=7, sequence_number=first_ts // 80,
                                       timestamp=first_ts, payload_type=101, duration_ms=200):
            bridge.rtp(a, memoryview(packet.serialize()), 0.0)
        tone = [RtpPacket.parse(x) for x in sent]
        sent.clear()
        assert {p.payload_type for p in tone} == {8}
        assert tone[0].marker and tone[0].timestamp == first_ts
        assert sum(len(p.payload) for p in tone) == 1600  # the event's duration, once
        heard.append(detect(np.concatenate([PCMA.decode(p.payload) for p in tone])))
    assert heard == ["5", "#"]


def test_an_answer_with_nothing_convertible_is_refused() -> None:
    g729 = sdp("192.0.2.20", 5000, "18", "a=rtpmap:18 G729/8000\r\n")
    _, reason, _, _ = run(PCMU_ONLY, g729, TRANSCODE)
    assert "codec" in reason


def test_unsupported_transcode_target_is_refused() -> None:
    c = Control(PortPool(30000, 30099), RELAY)
    out, _ = c.handle({"command": "offer", "call-id": "c", "from-tag": "A", "sdp": PCMU_ONLY,
                       "codec": {"transcode": ["G729"]}}, 0.0)
    assert out["result"] == "error" and "G729" in out["error-reason"]


def test_media_repair_on_a_leg_bridges_even_without_transcoding() -> None:
    _, _, effects, _ = run(PCMU_ONLY, PCMU_ONLY, answer_extra={"flags": ["media-repair"]})
    bridge = next(e for e in effects if isinstance(e, BridgeMedia))
    assert bridge.repair == (False, True)
    _, _, effects, _ = run(PCMU_ONLY, PCMU_ONLY, {"media-repair": "yes"})
    assert next(e for e in effects if isinstance(e, BridgeMedia)).repair == (True, False)


def test_a_new_offer_answer_without_transcoding_stops_the_bridge() -> None:
    _, _, _, c = run(PCMU_ONLY, PCMA_ONLY, TRANSCODE)
    a_end = c.calls["c"].monologues["A"].ends[0]
    a_end.processor = object()  # what the glue attached
    c.handle({"command": "offer", "call-id": "c", "from-tag": "A", "to-tag": "B",
              "sdp": PCMU_ONLY}, 1.0)
    _, effects = c.handle({"command": "answer", "call-id": "c", "from-tag": "A", "to-tag": "B",
                           "sdp": PCMU_ONLY}, 1.0)
    stop = next(e for e in effects if isinstance(e, BridgeMedia))
    assert stop.plan is None


def test_bridge_converts_payload_and_keeps_seq_timestamp_ssrc() -> None:
    from rtpmedia.codecs.transcode import ULAW_TO_ALAW

    a, b = MediaEnd("c", "A", 0, 30000), MediaEnd("c", "B", 0, 30002)
    plan = plan_streams([Format(0, "PCMU/8000"), Format(101, "telephone-event/8000")],
                        [Format(8, "PCMA/8000"), Format(96, "telephone-event/8000")])
    sent: list[tuple[MediaEnd, bytes]] = []
    bridge = Bridge(a, b, plan, (False, False), lambda end, data: sent.append((end, data)))
    payload = bytes(range(160))
    packet = RtpPacket(payload_type=0, sequence_number=7, timestamp=1234, ssrc=99,
                       marker=True, payload=payload).serialize()
    bridge.rtp(a, memoryview(packet), 0.0)
    event = RtpPacket(payload_type=101, sequence_number=8, timestamp=1234, ssrc=99,
                      payload=b"\x05\x0a\x00\xa0").serialize()
    bridge.rtp(a, memoryview(event), 0.0)
    assert [end for end, _ in sent] == [b, b]
    out = RtpPacket.parse(sent[0][1])
    assert (out.payload_type, out.sequence_number, out.timestamp, out.ssrc, out.marker) == \
        (8, 7, 1234, 99, True)
    assert out.payload == bytes(ULAW_TO_ALAW[list(payload)])
    ev = RtpPacket.parse(sent[1][1])
    assert (ev.payload_type, ev.payload) == (96, b"\x05\x0a\x00\xa0")


def test_a_restarted_relay_takes_up_transcoding_and_repair_again() -> None:
    from rtpmedia.relay.calls import Call

    _, _, _, c = run(PCMU_ONLY, PCMA_ONLY, TRANSCODE, {"flags": ["media-repair"]})
    stored = Call.from_record(c.calls["c"].record())
    fresh = Control(PortPool(30000, 30099), RELAY)
    bridges = [e for e in fresh.restore(stored, 5.0) if isinstance(e, BridgeMedia)]
    assert len(bridges) == 1
    [bridge] = bridges
    assert bridge.offerer.tag == "A" and bridge.repair == (False, True)
    assert bridge.plan is not None and bridge.plan.plan.transcoding
    # A plain call restores as plain forwarding.
    _, _, _, c = run(PCMU_ONLY, PCMU_ONLY)
    fresh = Control(PortPool(30000, 30099), RELAY)
    assert not any(isinstance(e, BridgeMedia)
                   for e in fresh.restore(Call.from_record(c.calls["c"].record()), 5.0))


def test_a_repaired_direction_sends_one_frame_per_tick_and_catches_up_a_late_tick() -> None:
    import numpy as np

    from rtpmedia.codecs.g711 import PCMA, PCMU

    a, b = MediaEnd("c", "A", 0, 30000), MediaEnd("c", "B", 0, 30002)
    plan = plan_streams([Format(0, "PCMU/8000")], [Format(8, "PCMA/8000")])
    sent: list[tuple[MediaEnd, bytes]] = []
    bridge = Bridge(a, b, plan, (True, False), lambda end, data: sent.append((end, data)))
    tone = (4000 * np.sin(np.arange(160 * 60) * 0.2)).astype(np.int16)
    t = 100.0
    per_tick: dict[int, int] = {}
    for seq in range(60):
        if seq != 20:  # one packet lost
            payload = PCMU.encode(tone[seq * 160:(seq + 1) * 160])
            packet = RtpPacket(payload_type=0, sequence_number=seq, timestamp=seq * 160,
                               ssrc=5, payload=payload).serialize()
            bridge.rtp(a, memoryview(packet), t + seq * 0.02)
        if seq != 30:  # the reactor missed this tick
            before = len(sent)
            bridge.tick(t + seq * 0.02 + 0.01, lambda end, data: sent.append((end, data)))
            per_tick[seq] = len(sent) - before
    out = [RtpPacket.parse(data) for end, data in sent if end is b]
    first = min(seq for seq, n in per_tick.items() if n)  # after the jitter buffer's delay
    assert first < 10
    assert per_tick[31] == 2  # the tick after the missed one sent both frames due
    assert all(n == 1 for seq, n in per_tick.items() if seq >= first and seq != 31)
    assert {p.payload_type for p in out} == {8} and len({p.ssrc for p in out}) == 1
    pairs = list(zip(out, out[1:], strict=False))
    assert {(q.sequence_number - p.sequence_number) % 65536 for p, q in pairs} == {1}
    assert {(q.timestamp - p.timestamp) % 2**32 for p, q in pairs} == {160}
    assert out[0].marker and not any(p.marker for p in out[1:])
    counts, _ = bridge.counts()
    assert counts.frames == len(out) and counts.concealed >= 1
    heard = np.concatenate([PCMA.decode(p.payload) for p in out]).astype(float)
    assert np.abs(heard).mean() > 1000  # audio, not silence


def test_reformat_writes_codec_lines_in_format_order_and_keeps_the_rest() -> None:
    from rtpmedia.relay import sdprewrite

    body = sdp("192.0.2.20", 5000, "8 96 18",
               "a=ptime:20\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:96 telephone-event/8000\r\n"
               "a=fmtp:96 0-15\r\na=rtpmap:18 G729/8000\r\na=fmtp:18 annexb=no\r\n"
               "a=sendrecv\r\n")
    parsed = sdprewrite.parse(body)
    media = parsed.media[0]
    sdprewrite.reformat(media, [(0, "PCMU/8000", None), (96, "TELEPHONE-EVENT/8000", None)])
    assert media.formats == ["0", "96"]
    assert [str(a) for a in media.attributes] == [
        "ptime:20", "rtpmap:0 PCMU/8000", "rtpmap:96 telephone-event/8000", "fmtp:96 0-15",
        "sendrecv"]


def test_after_a_long_stall_a_repaired_direction_sends_at_most_five_frames_then_keeps_pace() -> None:
    from rtpmedia.codecs.g711 import PCMU

    a, b = MediaEnd("c", "A", 0, 30000), MediaEnd("c", "B", 0, 30002)
    plan = plan_streams([Format(0, "PCMU/8000")], [Format(0, "PCMU/8000")])
    sent: list[bytes] = []
    bridge = Bridge(a, b, plan, (True, False), lambda end, data: sent.append(data))
    payload = PCMU.encode(np.full(160, 1000, np.int16))
    per_tick = []
    for seq in range(150):
        t = 100.0 + seq * 0.02
        packet = RtpPacket(payload_type=0, sequence_number=seq, timestamp=seq * 160, ssrc=5,
                           payload=payload).serialize()
        bridge.rtp(a, memoryview(packet), t)
        if not 50 <= seq < 100:  # the reactor stalled for a second
            before = len(sent)
            bridge.tick(t + 0.01, lambda end, data: sent.append(data))
            per_tick.append(len(sent) - before)
    assert max(per_tick) == 5  # the first tick after the stall
    assert per_tick[-40:] == [1] * 40  # then one a tick again


def test_an_srtp_line_is_never_converted_or_repaired() -> None:
    """Converting in place would encrypt a second plaintext under the sender's keystream."""
    crypto = "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + "A" * 40 + "\r\n"
    srtp_pcmu = PCMU_ONLY.replace("RTP/AVP", "RTP/SAVP") + crypto
    srtp_pcma = PCMA_ONLY.replace("RTP/AVP", "RTP/SAVP") + crypto
    to_b, _, effects, _ = run(srtp_pcmu, srtp_pcma, {**TRANSCODE, "flags": ["media-repair"]},
                              {"flags": ["media-repair"]})
    assert m_line(to_b) == ["0", "101"]  # no PCMA appended: the callee refuses (488) itself
    assert not any(isinstance(e, BridgeMedia) for e in effects)


def test_bridges_sharing_the_repair_stage_send_the_same_bytes_on_late_irregular_ticks() -> None:
    # Two repaired bridges played together by one Repairs stage, as the relay
    # does. Every G.711 code word goes through (0x7F, the mu-law "negative
    # zero", included): a frame played as it came is sent through the
    # code-word table, which must give what decoding and encoding would.
    # The ticks run 0-15 ms late at random: each frame is still played at its
    # own due time, so with packets on time the jitter buffer has nothing to
    # stretch and every frame comes out as it went in.
    from rtpmedia.codecs.g711 import PCMA, PCMU
    from rtpmedia.relay.bridge import Repairs

    rng = random.Random(7)
    sent: list[tuple[MediaEnd, bytes]] = []
    emit = lambda end, data: sent.append((end, data))  # noqa: E731
    repairs = Repairs(emit)
    ends = [(MediaEnd("c", "A", 0, 30000), MediaEnd("c", "B", 0, 30002)),
            (MediaEnd("d", "A", 0, 30004), MediaEnd("d", "B", 0, 30006))]
    bridges = [Bridge(a, b, plan_streams([Format(0, "PCMU/8000")], [Format(8, "PCMA/8000")]),
                      (True, False), emit, repairs) for a, b in ends[:1]]
    bridges.append(Bridge(*ends[1], plan_streams([Format(0, "PCMU/8000")],
                                                 [Format(0, "PCMU/8000")]),
                          (True, False), emit, repairs))
    # A voiced sound (a stretch would find its period), and two frames of every code word.
    voice = (3000 * sum(np.sin(np.arange(160 * 100) * 2 * np.pi * k * 150 / 8000) / k
                        for k in range(1, 5))).astype(np.int16)
    payloads = [PCMU.encode(voice[i * 160:(i + 1) * 160]) for i in range(100)]
    payloads[30] = bytes(range(256))[:160]
    payloads[31] = bytes(range(96, 256))
    t0 = 100.0
    for seq in range(100):
        for bridge, (a, _) in zip(bridges, ends, strict=True):
            packet = RtpPacket(payload_type=0, sequence_number=seq, timestamp=seq * 160,
                               ssrc=5, payload=payloads[seq]).serialize()
            bridge.rtp(a, memoryview(packet), t0 + seq * 0.02 + rng.uniform(0, 0.002))
        now = t0 + seq * 0.02 + 0.003 + rng.uniform(0, 0.015)
        for bridge in bridges:
            bridge.tick(now, emit)
        repairs.run(now)
    for (_, b), decode_as, encode in ((ends[0], PCMU, PCMA), (ends[1], PCMU, PCMU)):
        out = [RtpPacket.parse(data).payload for end, data in sent if end is b]
        assert len(out) >= 95
        first = payloads.index(next(p for p in payloads
                                    if encode.encode(decode_as.decode(p)) == out[0]))
        expect = [encode.encode(decode_as.decode(p)) for p in payloads[first:first + len(out)]]
        assert out == expect


def test_a_repaired_direction_that_raises_falls_back_to_forwarding_alone() -> None:
    from rtpmedia.codecs.g711 import PCMU
    from rtpmedia.relay.bridge import Repairs

    sent: list[tuple[MediaEnd, bytes]] = []
    emit = lambda end, data: sent.append((end, data))  # noqa: E731
    repairs = Repairs(emit)
    plan = plan_streams([Format(0, "PCMU/8000")], [Format(0, "PCMU/8000")])
    good_a, good_b = MediaEnd("g", "A", 0, 30000), MediaEnd("g", "B", 0, 30002)
    bad_a, bad_b = MediaEnd("b", "A", 0, 30004), MediaEnd("b", "B", 0, 30006)
    good = Bridge(good_a, good_b, plan, (True, False), emit, repairs)
    bad = Bridge(bad_a, bad_b, plan, (True, False), emit, repairs)
    # Its concealer breaks (a bug, say): every frame it is handed raises.
    bad_receiver = next(r for r in bad.receivers() if r is not None)
    bad_receiver.plc = Broken()
    payload = PCMU.encode(np.full(160, 1000, np.int16))
    for seq in range(30):
        t = 100.0 + seq * 0.02
        packet = RtpPacket(payload_type=0, sequence_number=seq, timestamp=seq * 160, ssrc=5,
                           payload=payload).serialize()
        good.rtp(good_a, memoryview(packet), t)
        bad.rtp(bad_a, memoryview(packet), t)
        for bridge in (good, bad):
            bridge.tick(t + 0.01, emit)
        repairs.run(t + 0.01)
    to_good = [RtpPacket.parse(data) for end, data in sent if end is good_b]
    to_bad = [RtpPacket.parse(data) for end, data in sent if end is bad_b]
    assert len(to_good) >= 25 and {p.ssrc for p in to_good} != {5}  # repaired: the relay's
    # The broken one goes on unrepaired: the sender's packets as they came.
    assert bad.receivers() == (None, None)
    assert len(to_bad) >= 25 and {p.ssrc for p in to_bad} == {5}
    assert [p.sequence_number for p in to_bad] == list(range(30 - len(to_bad), 30))


class Broken(Repeat):
    def good(self, frame: Any) -> Any:
        raise RuntimeError("broken concealer")


def test_packets_that_are_not_whole_10_ms_blocks_end_repair_and_are_forwarded_as_they_come(
        ) -> None:
    from rtpmedia.codecs.g711 import PCMU

    a, b = MediaEnd("c", "A", 0, 30000), MediaEnd("c", "B", 0, 30002)
    plan = plan_streams([Format(0, "PCMU/8000")], [Format(8, "PCMA/8000")])
    sent: list[bytes] = []
    bridge = Bridge(a, b, plan, (True, False), lambda end, data: sent.append(data))
    for seq in range(40):
        # 20 ms packets, then from seq 20 on 25 ms ones (no 10 ms grid fits them).
        samples = 160 if seq < 20 else 200
        payload = PCMU.encode(np.full(samples, 1000, np.int16))
        packet = RtpPacket(payload_type=0, sequence_number=seq, timestamp=seq * samples, ssrc=5,
                           payload=payload).serialize()
        bridge.rtp(a, memoryview(packet), 100.0 + seq * 0.02)
        bridge.tick(100.01 + seq * 0.02, lambda end, data: sent.append(data))
    assert bridge.receivers() == (None, None)
    out = [RtpPacket.parse(data) for data in sent]
    forwarded = [p for p in out if p.ssrc == 5]
    # Every 25 ms packet went on at once, converted to PCMA, with its own numbering.
    assert [p.sequence_number for p in forwarded] == list(range(20, 40))
    assert {p.payload_type for p in out} == {8} and {len(p.payload) for p in forwarded} == {200}


def test_a_repaired_direction_of_30_ms_packets_stays_repaired_and_sends_20_ms_frames() -> None:
    from rtpmedia.codecs.g711 import PCMU

    a, b = MediaEnd("c", "A", 0, 30000), MediaEnd("c", "B", 0, 30002)
    plan = plan_streams([Format(0, "PCMU/8000")], [Format(0, "PCMU/8000")])
    sent: list[bytes] = []
    bridge = Bridge(a, b, plan, (True, False), lambda end, data: sent.append(data))
    # Every mu-law code word but 0x7F decodes to its own level: one a 10 ms
    # block, so each frame sent on shows which blocks it is made of.
    codes = [c for c in range(256) if c != 0x7F]
    blocks = [bytes([codes[i % len(codes)]]) * 80 for i in range(150)]
    seq = 0
    for tick in range(120):  # 1.5 s in 30 ms packets, on time, and a 20 ms tick
        now = 100.005 + tick * 0.02
        while seq < 50 and 100.0 + seq * 0.03 <= now:
            packet = RtpPacket(payload_type=0, sequence_number=seq, timestamp=seq * 240, ssrc=5,
                               marker=seq == 0, payload=b"".join(blocks[3 * seq:3 * seq + 3]))
            bridge.rtp(a, memoryview(packet.serialize()), 100.0 + seq * 0.03)
            seq += 1
        bridge.tick(now, lambda end, data: sent.append(data))
    assert bridge.receivers()[0] is not None  # still repaired
    out = [RtpPacket.parse(data) for data in sent]
    assert out and {p.ssrc for p in out} != {5} and {len(p.payload) for p in out} == {160}
    assert {p.payload_type for p in out} == {0}
    # The audio is A's, block for block, in order: the frames between the
    # jitter buffer's start and the stream's end are A's 20 ms frames.
    level = {int(PCMU.decode(bytes([c]))[0]): i for i, c in enumerate(codes)}
    heard = [level.get(int(PCMU.decode(p.payload)[k])) for p in out for k in (0, 80)]
    spoken = [i for i in heard if i is not None]
    first = spoken[0]
    assert spoken[:150 - first] == list(range(first, 150)), heard


def test_after_a_stall_the_repaired_stream_plays_current_audio_not_a_second_late() -> None:
    # Each frame says which packet it came from (every mu-law code word but
    # 0x7F decodes to its own level), so what is played after the relay
    # stalled for a second shows the delay: frames the relay could not send
    # in time are skipped, both in the jitter buffer and in the stream's
    # timestamps, rather than kept as a second of extra delay.
    from rtpmedia.codecs.g711 import PCMU

    a, b = MediaEnd("c", "A", 0, 30000), MediaEnd("c", "B", 0, 30002)
    plan = plan_streams([Format(0, "PCMU/8000")], [Format(0, "PCMU/8000")])
    sent: list[tuple[int, bytes]] = []
    bridge = Bridge(a, b, plan, (True, False), lambda end, data: None)
    codes = [c for c in range(256) if c != 0x7F][:200]
    level_of = {int(PCMU.decode(bytes([c]))[0]): i for i, c in enumerate(codes)}
    for seq in range(200):
        t = 100.0 + seq * 0.02
        packet = RtpPacket(payload_type=0, sequence_number=seq, timestamp=seq * 160, ssrc=5,
                           payload=bytes([codes[seq]]) * 160)
        bridge.rtp(a, memoryview(packet.serialize()), t)
        if not 50 <= seq < 100:  # the relay stalled for a second
            bridge.tick(t + 0.01, lambda end, data, seq=seq: sent.append((seq, data)))
    played = [(seq, RtpPacket.parse(data)) for seq, data in sent]
    after = [(seq, level_of.get(int(PCMU.decode(p.payload)[80]))) for seq, p in played
             if seq >= 110]
    assert after and all(frame is not None and seq - frame <= 5 for seq, frame in after), after
    # The stream's timestamps jumped over what was skipped.
    stamps = [p.timestamp for _, p in played]
    first_after = next(i for i, (seq, _) in enumerate(played) if seq >= 100)
    assert (stamps[first_after] - stamps[first_after - 1]) % 2**32 > 160 * 40


def test_an_overloaded_repair_stage_stops_repair_on_the_newest_streams_first() -> None:
    from rtpmedia.codecs.g711 import PCMU
    from rtpmedia.relay.bridge import Repairs
    from rtpmedia.relay.shedding import RepairBudget

    class Clock:
        """The relay's thread flat out: a tick's 20 ms of CPU between ticks."""

        def __init__(self) -> None:
            self.cpu = 0.0

        def __call__(self) -> float:
            self.cpu += 0.020
            return self.cpu

    sent: list[tuple[MediaEnd, bytes]] = []
    emit = lambda end, data: sent.append((end, data))  # noqa: E731
    repairs = Repairs(emit, RepairBudget(limit=0.85, window=0.079), Clock())
    plan = plan_streams([Format(0, "PCMU/8000")], [Format(0, "PCMU/8000")])
    calls = [(MediaEnd(f"c{i}", "A", 0, 30000 + 4 * i), MediaEnd(f"c{i}", "B", 0, 30002 + 4 * i))
             for i in range(4)]
    bridges = [Bridge(a, b, plan, (True, False), emit, repairs) for a, b in calls]
    payload = PCMU.encode(np.full(160, 1000, np.int16))
    repaired_after: list[list[bool]] = []
    for seq in range(12):
        t = 100.0 + seq * 0.02
        for bridge, (a, _) in zip(bridges, calls, strict=True):
            packet = RtpPacket(payload_type=0, sequence_number=seq, timestamp=seq * 160,
                               ssrc=5, payload=payload).serialize()
            bridge.rtp(a, memoryview(packet), t)
            bridge.tick(t + 0.01, emit)
        repairs.run(t + 0.01)
        repaired_after.append([bridge.receivers()[0] is not None for bridge in bridges])
    assert repaired_after[3] == [True] * 4
    assert repaired_after[4] == [True, True, True, False]  # 5 ticks over: a quarter, the newest
    assert repaired_after[9] == [True, True, False, False]  # 5 more: the next newest
    assert repairs.shed == 2
    # The shed call still gets its audio: the sender's packets, as they came.
    last = [RtpPacket.parse(data) for end, data in sent if end is calls[3][1]][-3:]
    assert [p.sequence_number for p in last] == [9, 10, 11] and {p.ssrc for p in last} == {5}


class _CpuClock:
    """The relay's thread at `share` of a core: that much of a tick's 20 ms between ticks."""

    def __init__(self) -> None:
        self.cpu = 0.0
        self.share = 1.0

    def __call__(self) -> float:
        self.cpu += 0.020 * self.share
        return self.cpu


def _budgeted_calls(n: int, repair: tuple[bool, bool], emit: Emit, clock: _CpuClock
                    ) -> tuple[Repairs, list[tuple[MediaEnd, MediaEnd]], list[Bridge]]:
    """`n` PCMU calls repaired as `repair` says, sharing one `Repairs` whose budget decides
    quickly: restoring needs 100 ms under 70%, then a tenth at a time."""
    from rtpmedia.relay.shedding import RepairBudget

    repairs = Repairs(emit, RepairBudget(limit=0.85, low=0.7, hold=0.1, window=0.079), clock)
    plan = plan_streams([Format(0, "PCMU/8000")], [Format(0, "PCMU/8000")])
    calls = [(MediaEnd(f"c{i}", "A", 0, 30000 + 4 * i), MediaEnd(f"c{i}", "B", 0, 30002 + 4 * i))
             for i in range(n)]
    return repairs, calls, [Bridge(a, b, plan, repair, emit, repairs) for a, b in calls]


def test_repair_shed_under_overload_comes_back_when_the_relay_has_room() -> None:
    from rtpmedia.codecs.g711 import PCMU

    clock = _CpuClock()
    sent: list[tuple[MediaEnd, bytes]] = []
    emit = lambda end, data: sent.append((end, data))  # noqa: E731
    # One restored at a time (a tenth of four is one).
    repairs, calls, bridges = _budgeted_calls(5, (True, False), emit, clock)
    payload = PCMU.encode(np.full(160, 1000, np.int16))
    long_payload = PCMU.encode(np.full(200, 1000, np.int16))  # 25 ms: repair stops for good
    repaired: list[list[bool]] = []
    for seq in range(60):
        t = 100.0 + seq * 0.02
        clock.share = 1.0 if seq < 12 else 0.3  # a burst of load, then room again
        for i, (bridge, (a, _)) in enumerate(zip(bridges, calls, strict=True)):
            late = i == 4
            packet = RtpPacket(payload_type=0, sequence_number=seq,
                               timestamp=seq * (200 if late else 160), ssrc=5,
                               payload=long_payload if late else payload).serialize()
            bridge.rtp(a, memoryview(packet), t)
            bridge.tick(t + 0.01, emit)
        repairs.run(t + 0.01)
        repaired.append([bridge.receivers()[0] is not None for bridge in bridges])
    # Overloaded: the newest repaired directions lost repair, c3 then c2 (c4's is 25 ms packets).
    assert repaired[11] == [True, True, False, False, False]
    assert repairs.shed == 2
    # With room again, they come back the oldest first, and c4's never does.
    back = [next(n for n, r in enumerate(repaired) if n > 11 and r[i]) for i in (2, 3)]
    assert back[0] < back[1]
    assert repaired[-1] == [True, True, True, True, False]
    assert repairs.restored == 2
    counts = bridges[3].counts()[0]
    assert (counts.shed, counts.restored) == (1, 1)
    # c3's party got the relay's stream, then the sender's as it came, then the relay's
    # again: the same SSRC, its sequence numbers going on and a marker on the first frame
    # after the gap, its timestamp moved on by the time it was not used.
    to_c3 = [RtpPacket.parse(data) for end, data in sent if end is calls[3][1]]
    relay_ssrc = to_c3[-1].ssrc
    assert relay_ssrc != 5
    ssrcs = [p.ssrc for p in to_c3]
    switches = [n for n in range(1, len(ssrcs)) if ssrcs[n] != ssrcs[n - 1]]
    assert len(switches) == 2 and ssrcs[switches[0]] == 5 and ssrcs[switches[1]] == relay_ssrc
    before, after = to_c3[switches[0] - 1], to_c3[switches[1]]
    gap = switches[1] - switches[0]  # packets forwarded as they came: ~20 ms each
    assert after.marker and after.sequence_number == (before.sequence_number + 1) & 0xFFFF
    assert (after.timestamp - before.timestamp) % 2**32 >= 160 * gap
    mine = to_c3[switches[1]:]
    assert all(not p.marker for p in mine[1:])
    assert [(p.sequence_number - after.sequence_number) & 0xFFFF for p in mine] == list(
        range(len(mine)))
    # c4's party got every packet as it came.
    to_c4 = [RtpPacket.parse(data) for end, data in sent if end is calls[4][1]]
    assert [p.sequence_number for p in to_c4] == list(range(60)) and {p.ssrc for p in to_c4} == {5}


def test_a_shed_direction_whose_call_ended_is_not_repaired_again() -> None:
    from rtpmedia.codecs.g711 import PCMU

    clock = _CpuClock()
    emit = lambda end, data: None  # noqa: E731
    repairs, calls, bridges = _budgeted_calls(2, (True, True), emit, clock)
    payload = PCMU.encode(np.full(160, 1000, np.int16))
    for seq in range(60):
        t = 100.0 + seq * 0.02
        clock.share = 1.0 if seq < 6 else 0.2
        if seq == 6:
            bridges[1].close()  # the shed call ends (the engine closes its processor)
        for bridge, (a, b) in zip(bridges[:1] if seq >= 6 else bridges, calls, strict=False):
            for end in (a, b):
                packet = RtpPacket(payload_type=0, sequence_number=seq, timestamp=seq * 160,
                                   ssrc=5, payload=payload).serialize()
                bridge.rtp(end, memoryview(packet), t)
            bridge.tick(t + 0.01, emit)
        repairs.run(t + 0.01)
    assert repairs.shed == 1 and repairs.restored == 0
    assert bridges[1].counts()[0].shed + bridges[1].counts()[1].shed == 1
    assert all(r is not None for r in bridges[0].receivers())
