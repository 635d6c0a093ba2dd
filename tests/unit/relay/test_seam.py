"""RelayMedia: leg -> tag mapping, flags, stickiness, errors as SIP statuses, final figures."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import task
from twisted.internet.defer import Deferred, fail, succeed
from twisted.python.failure import Failure

from softswitch.b2bua.legs import LegId
from softswitch.b2bua.media import MediaError
from softswitch.relay.figures import LegFigures, leg_figures
from softswitch.relay.ng_client import NgFailure, NgTimeout
from softswitch.relay.pool import RelayPool
from softswitch.relay.seam import RelayMedia

X = LegId("callid-a", "tagA", "phoneA")
Y = LegId("callid-b", "tagB", "", "z9hG4bK1")
Y2 = LegId("callid-c", "tagC", "", "z9hG4bK2")
SDP = b"v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 4000 RTP/AVP 0\r\n"


class FakeClient:
    def __init__(self) -> None:
        self.asked: list[tuple[tuple[str, int], dict[str, Any]]] = []
        self.answer: Any = {"result": "ok", "sdp": "v=0 relayed"}

    def request(self, address: tuple[str, int], message: dict[str, Any],
                timeout: float | None = None) -> Deferred[dict[str, Any]]:
        self.asked.append((address, message))
        if isinstance(self.answer, Exception):
            return fail(self.answer)
        if isinstance(self.answer, Deferred):
            return self.answer
        return succeed(self.answer)


def media(relays: list[tuple[str, int]] | None = None) -> tuple[RelayMedia, FakeClient]:
    client = FakeClient()
    pool = RelayPool(relays or [("udp:127.0.0.1:2223", 1)])
    return RelayMedia(client, pool, task.Clock()), client  # type: ignore[arg-type]


def result(d: Any) -> Any:
    got: list[Any] = []
    d.addBoth(got.append)
    return got[0]


def test_offer_and_answer_name_legs_as_agreed_with_the_relay() -> None:
    m, client = media()
    assert result(m.offer("uuid-1", X, Y, SDP, "application/sdp")) == b"v=0 relayed"
    assert result(m.answer("uuid-1", Y, X, SDP, "application/sdp")) == b"v=0 relayed"
    assert result(m.offer("uuid-1", Y, X, SDP, "application/sdp")) == b"v=0 relayed"  # re-INVITE
    (addr, offer), (_, answer), (_, reoffer) = client.asked
    assert addr == ("127.0.0.1", 2223)
    assert (offer["command"], offer["call-id"], offer["from-tag"], offer["to-tag"],
            offer["via-branch"]) == ("offer", "uuid-1", str(X), str(Y), str(Y))
    assert (answer["command"], answer["from-tag"], answer["to-tag"]) == ("answer", str(X), str(Y))
    assert (reoffer["command"], reoffer["from-tag"], reoffer["to-tag"]) == ("offer", str(Y), str(X))
    assert offer["sdp"] == SDP
    for message in (offer, answer, reoffer):
        assert message["replace"] == ["origin", "session-connection"]
        assert message["ICE"] == "remove" and message["transport-protocol"] == "RTP/AVP"
        assert message["rtcp-mux"] == ["demux"]
        assert message["flags"] == ["strict-source"]


def test_a_caller_behind_nat_gets_sip_source_address() -> None:
    m, client = media()
    m.behind_nat("uuid-1", X, "203.0.113.7")
    result(m.offer("uuid-1", X, Y, SDP, None))
    result(m.offer("uuid-1", Y, X, SDP, None))
    nat, other = (msg for _, msg in client.asked)
    assert nat["flags"] == ["strict-source", "SIP-source-address"]
    assert nat["received-from"] == ["IP4", "203.0.113.7"]
    assert other["flags"] == ["strict-source"]


def test_offers_ask_for_g711_transcoding_and_repaired_legs_say_so() -> None:
    m, client = media()
    m.repair("uuid-1", Y)
    result(m.offer("uuid-1", X, Y, SDP, None))
    result(m.answer("uuid-1", Y, X, SDP, None))
    offer, answer = (msg for _, msg in client.asked)
    assert offer["codec"] == {"transcode": ["PCMU", "PCMA"]}
    assert offer["flags"] == ["strict-source"]  # X is not repaired
    assert answer["flags"] == ["strict-source", "media-repair"]  # Y's SDP: Y's packets


def test_a_call_sticks_to_its_relay_and_a_restored_call_to_the_saved_one() -> None:
    m, client = media([("udp:127.0.0.1:1", 1), ("udp:127.0.0.1:2", 1)])
    result(m.offer("c1", X, Y, SDP, None))
    result(m.offer("c2", X, Y, SDP, None))
    result(m.answer("c1", Y, X, SDP, None))
    result(m.answer("c2", Y, X, SDP, None))
    hosts = [addr[1] for addr, _ in client.asked]
    assert hosts[0] != hosts[1] and hosts[2] == hosts[0] and hosts[3] == hosts[1]
    assert m.place("c3", "udp:127.0.0.1:2") == "udp:127.0.0.1:2"
    result(m.answer("c3", Y, X, SDP, None))
    assert client.asked[-1][0] == ("127.0.0.1", 2)
    assert m.place("c4", "not an address") in ("udp:127.0.0.1:1", "udp:127.0.0.1:2")


@pytest.mark.parametrize("error,status", [
    (NgTimeout(("127.0.0.1", 2223), "offer"), 503),
    (NgFailure("Ran out of ports"), 503),
    (NgFailure("Failed to parse SDP"), 488),
    (NgFailure("Unsupported codec"), 488),
    (RuntimeError("surprise"), 503),
])
def test_relay_errors_become_sip_statuses(error: Exception, status: int) -> None:
    m, client = media()
    client.answer = error
    got = result(m.offer("c", X, Y, SDP, None))
    assert isinstance(got, Failure) and got.check(MediaError)
    assert got.value.status == status


def test_an_answer_without_sdp_is_503() -> None:
    m, client = media()
    client.answer = {"result": "ok"}
    got = result(m.offer("c", X, Y, SDP, None))
    assert got.value.status == 503


def test_no_relay_up_is_503_at_once() -> None:
    m, _ = media()
    m.pool.missed("udp:127.0.0.1:2223")
    m.pool.missed("udp:127.0.0.1:2223")
    with pytest.raises(MediaError) as caught:
        m.offer("c", X, Y, SDP, None)
    assert caught.value.status == 503


def test_a_cancelled_fork_deletes_its_branch_only() -> None:
    m, client = media()
    result(m.offer("c", X, Y, SDP, None))
    result(m.offer("c", X, Y2, SDP, None))
    m.release("c", Y2)
    delete = client.asked[-1][1]
    assert delete == {"command": "delete", "call-id": "c", "from-tag": str(X),
                      "to-tag": str(Y2), "via-branch": str(Y2)}
    m.release("c", LegId("never", "offered"))  # nothing asked for a leg the relay never saw
    assert client.asked[-1][1] is delete


def test_the_end_of_the_call_queries_then_deletes_and_gives_the_figures() -> None:
    m, client = media()
    result(m.offer("c", X, Y, SDP, None))
    query: Deferred[dict[str, Any]] = Deferred()
    client.answer = query
    m.release("c", None)
    figures = m.figures("c")
    assert client.asked[-1][1] == {"command": "query", "call-id": "c"}
    client.answer = {"result": "ok"}
    query.callback({"result": "ok", "tags": {str(X): {"medias": [{"streams": [
        {"stats": {"packets": 250}, "loss": 1.5, "jitter": 4, "mos": 4.3}]}]}}})
    assert client.asked[-1][1] == {"command": "delete", "call-id": "c"}
    assert result(figures) == {str(X): LegFigures(250, 1.5, 4.0, 4.3)}
    assert result(m.figures("c")) == {}  # asked once
    m.release("c", None)  # a second release: the call is gone
    assert client.asked[-1][1] == {"command": "delete", "call-id": "c"}


def test_a_failed_query_still_deletes() -> None:
    m, client = media()
    result(m.offer("c", X, Y, SDP, None))
    client.answer = NgTimeout(("127.0.0.1", 2223), "query")
    m.release("c", None)
    assert client.asked[-1][1] == {"command": "delete", "call-id": "c"}


def test_rtpengine_shaped_figures() -> None:
    answer = {"SSRC": {"1234": {"average MOS": {"MOS": 43, "jitter": 2, "packet loss": 0}}},
              "tags": {"A": {"medias": [{"streams": [
                  {"SSRC": 1234, "flags": ["RTP"], "stats": {"packets": 100}},
                  {"flags": ["RTCP"], "stats": {"packets": 5}}]}]},
                  "B": {"medias": [{"streams": [{"stats": {"packets": "x"}}]}]},
                  "C": "junk"}}
    assert leg_figures(answer) == {"A": LegFigures(100, 0.0, 2.0, 4.3), "B": LegFigures(0)}
    assert leg_figures({"tags": []}) == {} and leg_figures({}) == {}


def test_our_relays_figures() -> None:
    answer = {"tags": {"A": {"medias": [{"streams": [
        {"stats": {"packets": 98}, "lost": 2, "expected": 100, "jitter_ms": 7, "MOS": 41},
        {"flags": ["RTCP"], "stats": {"packets": 3}}]}]}}}
    assert leg_figures(answer) == {"A": LegFigures(98, 2.0, 7.0, 4.1)}


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                    lambda children: st.lists(children, max_size=3)
                    | st.dictionaries(st.sampled_from(
                        ["tags", "medias", "streams", "stats", "SSRC", "packets", "MOS",
                         "lost", "expected", "jitter", "flags", "average MOS", "x"]),
                        children, max_size=4), max_leaves=30))
def test_figures_from_anything_never_raise(answer: Any) -> None:
    if isinstance(answer, dict):
        assert isinstance(leg_figures(answer), dict)


def test_the_sip_call_id_goes_with_offers_and_answers_until_the_call_is_released() -> None:
    m, client = media()
    m.offer("uuid-0", X, Y, SDP, None)  # not correlated: no key (rtpengine never sees it)
    m.correlate("uuid-1", "callid-a")
    m.offer("uuid-1", X, Y, SDP, None)
    m.answer("uuid-1", Y, X, SDP, None)
    m.release("uuid-1", None)
    m.offer("uuid-1", X, Y, SDP, None)  # the uuid again: what it knew was forgotten
    sent = [message for _, message in client.asked if message["command"] in ("offer", "answer")]
    assert [message.get("sip-call-id") for message in sent] == [None, "callid-a", "callid-a",
                                                                 None]


# -- media the relay hosts (hosted-ng) -------------------------------------------------


def test_host_names_the_party_and_a_late_offers_answer_is_marked() -> None:
    m, client = media()
    m.place("uuid-1")
    m.behind_nat("uuid-1", X, "203.0.113.7")
    assert result(m.host("uuid-1", X, SDP, "application/sdp", False)) == b"v=0 relayed"
    assert result(m.host("uuid-1", X, b"", None, False)) == b"v=0 relayed"  # late offer
    client.answer = {"result": "ok"}
    assert result(m.host("uuid-1", X, SDP, "application/sdp", True)) == b""
    (_, early), (_, late), (_, answer) = client.asked
    assert (early["command"], early["call-id"], early["from-tag"]) == ("host", "uuid-1", str(X))
    assert early["sdp"] == SDP and "sdp-type" not in early and "to-tag" not in early
    assert early["flags"] == ["strict-source", "SIP-source-address"]
    assert early["received-from"] == ["IP4", "203.0.113.7"]
    assert "sdp" not in late
    assert answer["sdp-type"] == "answer" and answer["sdp"] == SDP


def test_commands_go_to_the_calls_relay_and_errors_become_statuses() -> None:
    m, client = media([("udp:127.0.0.1:2223", 1), ("udp:127.0.0.1:2225", 1)])
    where = m.place("uuid-1")
    client.answer = {"result": "ok", "duration": 1200}
    assert result(m.command("uuid-1", X, "play media", {"file": "echo-test-intro"})) is None
    (addr, message), = client.asked
    assert f"udp:{addr[0]}:{addr[1]}" == where
    assert message == {"command": "play media", "call-id": "uuid-1", "from-tag": str(X),
                       "file": "echo-test-intro"}
    client.answer = NgFailure("unknown prompt nosuch")
    error = result(m.command("uuid-1", X, "play media", {"file": "nosuch"}))
    assert isinstance(error, Failure) and error.check(MediaError)
    error = result(m.command("uuid-unknown", X, "echo", {}))
    assert error.value.status == 503
