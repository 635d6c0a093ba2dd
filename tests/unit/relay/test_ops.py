"""`parse_streams` (per-tag figures of a query answer) and `RelayFigures`' poll on a fake clock."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock

from softswitch.relay.ops import RelayFigures, parse_streams
from softswitch.relay.pool import RelayPool

ANSWER: dict[str, Any] = {"result": "ok", "tags": {
    "a": {"medias": [{"streams": [
        {"stats": {"packets": 250}, "kernelized": 1, "lost": 5, "expected": 255,
         "jitter_ms": 3, "MOS": 43},
        {"flags": ["RTCP"], "stats": {"packets": 9}}]}]},
    "b": {"medias": [{"streams": [{"stats": {"packets": 100}, "kernelized": 0}]}]},
}}


def test_a_query_answer_gives_packets_loss_jitter_mos_and_kernel_per_tag() -> None:
    figures = parse_streams(ANSWER)
    a, b = figures["a"], figures["b"]
    assert (a.packets, a.lost, a.jitter_ms, a.mos, a.kernel) == (250, 5, 3.0, 4.3, True)
    assert a.loss is not None and abs(a.loss - 5 / 255) < 1e-4
    assert (b.packets, b.lost, b.loss, b.kernel) == (100, None, None, False)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                  max_size=4),
    max_leaves=20)


# deadline=None: the machine is shared (a first run once took over 200 ms).
@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(["tags", "SSRC", "result"]), json_values))
def test_junk_answers_never_raise(answer: dict[str, Any]) -> None:
    parse_streams(answer)


class FakeClient:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.pending: list[Deferred[dict[str, Any]]] = []

    def request(self, address: Any, message: dict[str, Any], timeout: float | None = None
                ) -> Deferred[dict[str, Any]]:
        self.sent.append(message)
        if message["command"] == "list":
            return succeed({"result": "ok", "calls": ["c1", "other"]})
        d: Deferred[dict[str, Any]] = Deferred()
        self.pending.append(d)
        return d


class FakeMedia:
    def __init__(self) -> None:
        self.calls = {"c1": "udp:127.0.0.1:2223"}


def test_the_poll_asks_once_per_call_keeps_figures_and_counts_after_the_call() -> None:
    clock, client, media = Clock(), FakeClient(), FakeMedia()
    live = RelayFigures(media, client, RelayPool([("udp:127.0.0.1:2223", 1)]),  # type: ignore[arg-type]
                        clock, interval=1.0)
    live.leg_names = lambda: [("c1", {"a": "a", "b": "b1"})]
    live.startService()
    clock.advance(1.0)
    clock.advance(1.0)  # the first query is still out: not asked again
    assert [m["command"] for m in client.sent].count("query") == 1
    assert live.streams("c1") == []
    client.pending.pop().callback(ANSWER)
    assert [(s.leg, s.packets, s.kernel) for s in live.streams("c1")] == [
        ("a", 250, True), ("b1", 100, False)]
    [relay] = live.relays()
    assert (relay["up"], relay["calls"], relay["load"], relay["streams"]) == (True, 1, 2, 2)
    totals = live.totals()
    assert (totals.packets, totals.lost, totals.kernel_streams, totals.streams) == (350, 5, 1, 2)
    del media.calls["c1"]
    clock.advance(1.0)
    assert live.streams("c1") == []
    after = live.totals()
    assert (after.packets, after.lost, after.streams) == (350, 5, 0)
    live.stopService()
