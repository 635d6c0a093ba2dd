"""The relay's ng control without sockets: commands, legs and forks, ports, the cookie cache."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from rtpmedia import ng
from rtpmedia.relay.calls import Call
from rtpmedia.relay.control import Bind, Control, Forget, Save, Teardown, Unbind, Unkernel
from rtpmedia.relay.ports import PortPool

RELAY = "203.0.113.1"


def sdp(address: str, port: int, extra: str = "", media_c: bool = False) -> str:
    session_c = "" if media_c else f"c=IN IP4 {address}\r\n"
    media_line_c = f"c=IN IP4 {address}\r\n" if media_c else ""
    return (f"v=0\r\no=- 1 1 IN IP4 {address}\r\ns=-\r\n{session_c}t=0 0\r\n"
            f"m=audio {port} RTP/AVP 0 8 101\r\n{media_line_c}a=rtpmap:0 PCMU/8000\r\n"
            f"a=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n{extra}")


def control(low: int = 30000, high: int = 30099, **kw: Any) -> Control:
    return Control(PortPool(low, high), RELAY, **kw)


def offer(c: Control, call: str = "c1", frm: str = "A", to: str = "", via: str = "",
          body: str | None = None, now: float = 0.0, **extra: Any) -> tuple[dict[str, Any], list]:
    msg: dict[str, Any] = {"command": "offer", "call-id": call, "from-tag": frm,
                           "sdp": body or sdp("192.0.2.10", 4000), **extra}
    if to:
        msg["to-tag"] = to
    if via:
        msg["via-branch"] = via
    return c.handle(msg, now)


def answer(c: Control, call: str = "c1", frm: str = "A", to: str = "B", via: str = "",
           body: str | None = None, now: float = 0.0, **extra: Any) -> tuple[dict[str, Any], list]:
    msg: dict[str, Any] = {"command": "answer", "call-id": call, "from-tag": frm, "to-tag": to,
                           "sdp": body or sdp("192.0.2.20", 5000), **extra}
    if via:
        msg["via-branch"] = via
    return c.handle(msg, now)


def port_of(body: str) -> int:
    line = next(x for x in body.split("\r\n") if x.startswith("m=audio"))
    return int(line.split()[1])


def test_ping() -> None:
    assert control().handle({"command": "ping"}, 0) == ({"result": "pong"}, [])


def test_offer_answer_rewrite_both_ways_with_distinct_even_ports() -> None:
    c = control()
    out, effects = offer(c, to="B")
    assert out["result"] == "ok"
    assert f"c=IN IP4 {RELAY}" in out["sdp"] and "192.0.2.10" not in out["sdp"].split("o=")[1].split("\r\n", 1)[1]
    to_b = port_of(out["sdp"])
    assert to_b % 2 == 0 and f"a=rtcp:{to_b + 1}" in out["sdp"]
    assert sum(isinstance(e, Bind) for e in effects) == 2 and any(isinstance(e, Save) for e in effects)
    back, _ = answer(c)
    to_a = port_of(back["sdp"])
    assert to_a % 2 == 0 and to_a != to_b
    a_end = c.calls["c1"].monologues["A"].ends[0]
    b_end = c.calls["c1"].monologues["B"].ends[0]
    assert (a_end.port, b_end.port) == (to_a, to_b)
    assert a_end.sink is b_end and b_end.sink is a_end
    assert a_end.expected == ("192.0.2.10", 4000) and b_end.expected == ("192.0.2.20", 5000)


def test_kamailio_style_via_branch_then_answer_with_to_tag() -> None:
    c = control()
    out, _ = offer(c, via="z9hG4bK1")
    to_b = port_of(out["sdp"])
    back, _ = answer(c, to="B")  # no via-branch: the one waiting branch is it
    assert back["result"] == "ok"
    assert c.calls["c1"].monologues["B"].ends[0].port == to_b
    assert "branch:z9hG4bK1" not in c.calls["c1"].monologues


def test_forks_get_own_ports_and_a_cancelled_fork_is_deleted_alone() -> None:
    c = control()
    one = port_of(offer(c, to="F1", via="F1")[0]["sdp"])
    two = port_of(offer(c, to="F2", via="F2")[0]["sdp"])
    assert one != two
    a_port = c.calls["c1"].monologues["A"].ends[0].port
    answer(c, to="F2", via="F2")
    assert c.calls["c1"].monologues["A"].peer == "F2"
    out, effects = c.handle({"command": "delete", "call-id": "c1", "from-tag": "A",
                             "to-tag": "F1", "via-branch": "F1"}, 1)
    assert out["result"] == "ok"
    assert [e.end.port for e in effects if isinstance(e, Unbind)] == [one]
    assert set(c.calls["c1"].monologues) == {"A", "F2"}
    assert c.calls["c1"].monologues["A"].ends[0].port == a_port
    assert not any(isinstance(e, Forget) for e in effects)


def test_delete_call_id_only_ends_call_and_frees_ports() -> None:
    c = control(30000, 30009)  # 5 pairs
    offer(c, to="B")
    answer(c)
    before = c.pool.available
    out, effects = c.handle({"command": "delete", "call-id": "c1"}, 5)
    assert out["result"] == "ok" and "totals" in out
    assert c.pool.available == before + 2
    assert any(isinstance(e, Forget) for e in effects) and "c1" not in c.calls
    assert c.handle({"command": "query", "call-id": "c1"}, 6)[0]["result"] == "error"


def test_delete_of_the_only_branch_ends_the_call() -> None:
    c = control()
    offer(c, to="B")
    answer(c)
    out, effects = c.handle({"command": "delete", "call-id": "c1", "from-tag": "A",
                             "to-tag": "B"}, 1)
    assert out["result"] == "ok" and "c1" not in c.calls
    assert any(isinstance(e, Forget) for e in effects)


def test_reinvite_from_callee_reuses_ports() -> None:
    c = control()
    to_b = port_of(offer(c, to="B")[0]["sdp"])
    to_a = port_of(answer(c)[0]["sdp"])
    # callee re-INVITE: an offer from B to A, moving B to a new address
    out, effects = offer(c, frm="B", to="A", body=sdp("192.0.2.21", 6000, "a=sendonly\r\n"))
    assert port_of(out["sdp"]) == to_a and not any(isinstance(e, Bind) for e in effects)
    assert "a=sendonly" in out["sdp"]
    back, _ = answer(c, frm="B", to="A", body=sdp("192.0.2.10", 4000, "a=recvonly\r\n"))
    assert port_of(back["sdp"]) == to_b
    b_end = c.calls["c1"].monologues["B"].ends[0]
    assert b_end.expected == ("192.0.2.21", 6000) and b_end.on_hold


def test_port_exhaustion_is_an_error_and_leaks_nothing() -> None:
    c = control(30000, 30003)  # 2 pairs: one call
    assert offer(c, call="one", to="B")[0]["result"] == "ok"
    out, effects = offer(c, call="two", to="B")
    assert out == {"result": "error", "error-reason": "Ran out of ports"}
    assert effects == [] and "two" not in c.calls and c.pool.available == 0
    c.handle({"command": "delete", "call-id": "one"}, 1)
    assert offer(c, call="two", to="B")[0]["result"] == "ok"


def test_errors() -> None:
    c = control()
    assert c.handle({"command": "dance"}, 0)[0] == {"result": "error",
                                                     "error-reason": "Unrecognized command"}
    assert "call-id" in c.handle({"command": "offer"}, 0)[0]["error-reason"]
    assert c.handle({"command": "answer", "call-id": "x", "from-tag": "A", "sdp": sdp("1.2.3.4", 2)},
                    0)[0]["error-reason"] == "Unknown call-id"
    bad = offer(c, body="v=0\r\nnonsense")[0]
    assert bad["result"] == "error" and "SDP" in bad["error-reason"]
    transcode = offer(c, call="t", codec={"transcode": ["G729"]})[0]
    assert transcode["result"] == "error" and "G729" in transcode["error-reason"]
    assert offer(c, call="t2", codec={"transcode": ["PCMA"]})[0]["result"] == "ok"  # nothing to do


def test_cookie_cache_answers_a_retry_the_same_without_doing_it_again() -> None:
    c = control()
    datagram = ng.encode(b"k1", {"command": "offer", "call-id": "c1", "from-tag": "A",
                                 "to-tag": "B", "sdp": sdp("192.0.2.10", 4000)})
    first, effects = c.datagram(datagram, 0)
    again, effects_again = c.datagram(datagram, 1)
    assert first == again and effects and effects_again == []
    assert c.pool.available == c.pool.capacity - 2
    # another cookie is another command: same call, same ports, new answer
    other, _ = c.datagram(datagram.replace(b"k1", b"k2", 1), 2)
    assert ng.decode(other)[1]["sdp"] == ng.decode(first)[1]["sdp"]
    assert c.datagram(b"garbage", 3) == (None, [])


def test_list_and_query_shape() -> None:
    c = control()
    offer(c, to="B")
    answer(c)
    assert c.handle({"command": "list"}, 1)[0] == {"result": "ok", "calls": ["c1"]}
    q = c.handle({"command": "query", "call-id": "c1"}, 1)[0]
    assert q["totals"]["RTP"] == {"packets": 0, "bytes": 0, "errors": 0}
    stream = q["tags"]["A"]["medias"][0]["streams"][0]
    assert stream["local port"] == c.calls["c1"].monologues["A"].ends[0].port
    assert stream["kernelized"] == 0 and stream["endpoint"]["address"] == "192.0.2.10"
    assert q["tags"]["A"]["in dialogue with"] == "B"


def test_nat_side_sends_to_the_sip_source_and_is_untrusted() -> None:
    c = control()
    offer(c, to="B", body=sdp("10.0.0.5", 4000), **{"received-from": ["IP4", "198.51.100.7"]})
    end = c.calls["c1"].monologues["A"].ends[0]
    assert end.expected == ("198.51.100.7", 4000) and not end.trusted
    offer(c, call="c2", to="B", body=sdp("10.0.0.5", 4000), flags=["trust-address"],
          **{"received-from": ["IP4", "198.51.100.7"]})
    end = c.calls["c2"].monologues["A"].ends[0]
    assert end.expected == ("10.0.0.5", 4000) and end.trusted


def test_flags_strict_source_and_rtcp_mux() -> None:
    c = control()
    body = sdp("192.0.2.10", 4000, "a=rtcp-mux\r\n")
    out, _ = offer(c, to="B", body=body, flags=["strict-source"], **{"rtcp-mux": ["demux"]})
    assert "a=rtcp-mux" not in out["sdp"]
    back, _ = answer(c)  # B does not multiplex; the relay accepts A's mux (demux)
    to_a = port_of(back["sdp"])
    assert "a=rtcp-mux" in back["sdp"] and f"a=rtcp:{to_a}" in back["sdp"]
    a_end = c.calls["c1"].monologues["A"].ends[0]
    assert a_end.mux and a_end.strict and not c.calls["c1"].monologues["B"].ends[0].mux


def test_unanswered_fork_released_and_silent_call_torn_down() -> None:
    c = control(silence_timeout=60, hold_timeout=600)
    offer(c, to="F1", via="F1")
    offer(c, to="F2", via="F2")
    answer(c, to="F2", via="F2", now=1)
    effects = c.expire(40)
    assert set(c.calls["c1"].monologues) == {"A", "F2"}
    assert any(isinstance(e, Unbind) for e in effects)
    c.calls["c1"].monologues["F2"].ends[0].last_packet = 100
    assert not any(isinstance(e, Teardown) for e in c.expire(150))
    effects = c.expire(161)
    assert Teardown("c1", "media timeout") in effects and "c1" not in c.calls


def test_one_stream_silent_ends_the_call_while_the_other_still_sends() -> None:
    c = control(silence_timeout=60, hold_timeout=600)
    offer(c, to="B")
    answer(c, now=1)
    a_end = c.calls["c1"].monologues["A"].ends[0]
    b_end = c.calls["c1"].monologues["B"].ends[0]
    a_end.latched, b_end.latched = ("192.0.2.10", 4000), ("192.0.2.20", 5000)
    a_end.last_packet, b_end.last_packet = 10, 10
    assert c.expire(50) == []
    b_end.last_packet = 100  # B still talks; A's phone died at 10
    assert Teardown("c1", "media timeout") in c.expire(71)


def test_hold_uses_the_hold_timeout() -> None:
    c = control(silence_timeout=60, hold_timeout=600)
    offer(c, to="B", body=sdp("192.0.2.10", 4000, "a=sendonly\r\n"))
    answer(c, body=sdp("192.0.2.20", 5000, "a=recvonly\r\n"))
    assert c.expire(100) == []
    assert any(isinstance(e, Teardown) for e in c.expire(601))


def test_record_round_trip_and_restore_takes_the_same_ports() -> None:
    c = control()
    offer(c, to="B", flags=["strict-source"])
    answer(c)
    call = c.calls["c1"]
    call.monologues["A"].ends[0].latched = ("192.0.2.10", 4002)
    record = call.record()
    again = Call.from_record(record)
    assert again.record() == record
    fresh = control()
    effects = fresh.restore(again, 10)
    assert sorted(e.end.port for e in effects if isinstance(e, Bind)) == \
        sorted(e.port for e in call.ends())
    assert fresh.pool.available == fresh.pool.capacity - 2
    assert fresh.calls["c1"].monologues["A"].ends[0].sink is fresh.calls["c1"].monologues["B"].ends[0]


values = st.recursive(
    st.one_of(st.integers(-5, 5), st.text(max_size=8), st.binary(max_size=8)),
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.text(max_size=8), children, max_size=4)),
    max_leaves=12)
keys = st.sampled_from(["command", "call-id", "from-tag", "to-tag", "via-branch", "sdp", "flags",
                        "replace", "rtcp-mux", "ICE", "codec", "received-from", "limit"])
commands = st.sampled_from(["offer", "answer", "delete", "query", "list", "ping", "x"])


@settings(max_examples=100, deadline=None)
@given(st.lists(st.fixed_dictionaries({"command": commands},
                                      optional={"call-id": st.sampled_from(["c", "d"]),
                                                "from-tag": st.sampled_from(["A", "B"]),
                                                "to-tag": st.sampled_from(["A", "B", "C"]),
                                                "sdp": st.sampled_from([sdp("192.0.2.1", 4000),
                                                                        "v=0", ""])})
                .flatmap(lambda base: st.dictionaries(keys, values, max_size=4)
                         .map(lambda extra: {**extra, **base})), max_size=6))
def test_arbitrary_commands_always_get_a_dict_answer(messages: list[dict[str, Any]]) -> None:
    c = control(30000, 30007)
    for msg in messages:
        answer_, _ = c.handle(ng.text(msg), 0)
        assert isinstance(answer_, dict) and answer_["result"] in ("ok", "pong", "error")
    assert c.pool.available + sum(len(call.ends()) for call in c.calls.values()) == c.pool.capacity


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_datagrams_never_crash(data: bytes) -> None:
    reply, _ = control().datagram(data, 0)
    if reply is not None:
        cookie, message = ng.decode(reply)
        assert isinstance(message, dict) and "result" in message


def test_answer_from_another_fork_takes_the_early_media_flow_out_of_the_kernel() -> None:
    c = control()
    offer(c, to="F1", via="F1")
    offer(c, to="F2", via="F2")
    answer(c, to="F1", via="F1", body=sdp("192.0.2.30", 7000))  # 183 with early media
    a_end = c.calls["c1"].monologues["A"].ends[0]
    f1_end = c.calls["c1"].monologues["F1"].ends[0]
    a_end.kernelized = f1_end.kernelized = "flow-a-f1"  # as the forwarder marks them
    _, effects = answer(c, to="F2", via="F2")
    assert Unkernel(a_end) in effects
    assert a_end.sink is c.calls["c1"].monologues["F2"].ends[0]


def test_the_sip_call_id_of_the_offer_is_kept_and_survives_a_restart() -> None:
    """HEP correlates RTCP by the caller's SIP Call-ID, which the ng call-id (a uuid) is not."""
    c = control()
    offer(c, to="B", **{"sip-call-id": "abc@192.0.2.10"})
    answer(c)  # an answer without the key keeps what the offer said
    assert c.calls["c1"].sip_call_id == "abc@192.0.2.10"
    again = Call.from_record(c.calls["c1"].record())
    assert again.sip_call_id == "abc@192.0.2.10"
    offer(c, call="c2", to="B")  # rtpengine's clients (Kamailio) never send it
    assert c.calls["c2"].sip_call_id == ""
    older = c.calls["c2"].record()
    del older["sip_call_id"]  # a record stored before the key existed
    assert Call.from_record(older).sip_call_id == ""
