"""Metrics counters and collector; the API's answers (Operations) and its token check."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from twisted.web.test.requesthelper import DummyRequest

from softswitch.b2bua import events as ev
from softswitch.b2bua.snapshot import CallSnapshot
from softswitch.management.api import ApiResource, Operations, ServerState
from softswitch.management.calls import NoMedia, StreamFigures, codecs_of, summary
from softswitch.management.messages import MessageLog
from softswitch.management.metrics import (
    CallOutcomes,
    MetricSources,
    SipCounters,
    SoftswitchCollector,
)
from softswitch.sip.message import make_response
from softswitch.sip.peer import Peer
from softswitch.sip.transaction.base import TransactionCounts
from tests.support.calls import SDP, CallDriver, contact_dest
from tests.unit.management.test_messages import A, request


def scrape(counters: SipCounters, outcomes: CallOutcomes, sources: MetricSources) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SoftswitchCollector(counters, outcomes, sources))
    return generate_latest(registry).decode()


def test_requests_responses_and_latency_both_ways() -> None:
    counters = SipCounters()
    invite = request("INVITE", "c1")
    counters.message_received(invite, A, 10.0)
    counters.message_received(invite, A, 10.4)  # a retransmission: the clock keeps running
    counters.message_sent(make_response(invite, 100), A, 10.5)
    counters.message_sent(make_response(invite, 180), A, 11.0)  # not the first: not timed
    counters.message_sent(make_response(invite, 486), A, 12.0)  # final: 2 s after the request
    options = request("OPTIONS", "o1")
    counters.message_sent(options, Peer("udp", "192.0.2.9", 5060), 20.0)
    counters.message_received(make_response(options, 200), A, 20.02)
    assert counters.requests == {("in", "INVITE"): 2, ("out", "OPTIONS"): 1}
    assert counters.responses == {("out", "INVITE", 100): 1, ("out", "INVITE", 180): 1,
                                  ("out", "INVITE", 486): 1, ("in", "OPTIONS", 200): 1}
    ours = counters.latency[("ours", "INVITE")]
    assert ours.count == 1 and abs(ours.total - 0.5) < 1e-9
    final = counters.final_latency[("ours", "INVITE")]
    assert final.count == 1 and abs(final.total - 2.0) < 1e-9
    # A 200 OPTIONS is both its first and its final response.
    assert counters.final_latency[("theirs", "OPTIONS")].count == 1
    assert counters.latency[("theirs", "OPTIONS")].count == 1
    text = scrape(counters, CallOutcomes(), MetricSources(
        active_calls=lambda: 3, transaction_counts=lambda: TransactionCounts(5, 2, 4, 1)))
    assert 'softswitch_sip_requests_total{direction="in",method="INVITE"} 2.0' in text
    assert 'softswitch_sip_responses_total{code="180",direction="out",method="INVITE"} 1.0' in text
    assert 'softswitch_sip_response_seconds_bucket{le="0.5",method="INVITE",side="ours"} 1.0' in text
    assert 'softswitch_sip_response_seconds_bucket{le="0.25",method="INVITE",side="ours"} 0.0' in text
    assert ('softswitch_sip_final_response_seconds_bucket{le="2.5",method="INVITE",side="ours"} 1.0'
            in text)
    assert "softswitch_calls_active 3.0" in text
    assert "softswitch_sip_retransmissions_total 4.0" in text


def test_calls_ended_by_disposition_and_code() -> None:
    driver = CallDriver(destinations={"1002": [contact_dest("1002")]})
    machine, _, _ = driver.connect()
    driver.feed(machine, ev.Shutdown("operator"))
    outcomes = CallOutcomes()
    outcomes.call_ended(machine.snapshot())
    failed = CallDriver().start(request("INVITE", "nobody"))  # 1002 has no destination here
    outcomes.call_ended(failed.snapshot())
    text = scrape(SipCounters(), outcomes, MetricSources())
    assert 'softswitch_calls_ended_total{code="200",disposition="ANSWERED"} 1.0' in text
    assert 'disposition="FAILED"' in text or 'disposition="NO ANSWER"' in text


class FakeServer:
    def __init__(self, calls: list[CallSnapshot]) -> None:
        self.calls = calls
        self.hung_up: list[tuple[str, str]] = []

    def state(self) -> ServerState:
        def hang_up(uuid: str, cause: str) -> bool:
            self.hung_up.append((uuid, cause))
            return True

        def route(query: dict[str, Any]) -> dict[str, Any]:
            if query["dest"] == "bad":
                raise ValueError("no context 'x'")
            return {"matched": True}

        return ServerState(live_calls=lambda: self.calls, hang_up=hang_up,
                           registrations=lambda: [], trunks=lambda: [{"name": "t"}],
                           reload=lambda: [{"name": "dialplan", "ok": False}], route=route,
                           ready=lambda: (False, "draining"), started=0.0)


def operations(calls: list[CallSnapshot], log: MessageLog | None = None,
               ) -> tuple[Operations, FakeServer]:
    server = FakeServer(calls)
    return Operations(server.state(), log or MessageLog(), NoMedia(),
                      CollectorRegistry(auto_describe=False), clock=lambda: 1_000_010.0), server


def two_calls() -> list[CallSnapshot]:
    driver = CallDriver(destinations={"1002": [contact_dest("1002")]})
    return [driver.connect()[0].snapshot(), driver.connect()[0].snapshot()]


def test_calls_found_by_id_prefix_or_call_id_and_hung_up() -> None:
    calls = two_calls()
    ops, server = operations(calls)
    listed = ops.handle("GET", "/api/calls")
    assert listed.status == 200 and [c["id"] for c in listed.document] == [c.uuid for c in calls]
    first = listed.document[0]
    assert first["caller"] == "1001" and first["codecs"] and first["mos"] is None
    assert ops.handle("GET", f"/api/calls/{calls[0].uuid[:10]}").document["id"] == calls[0].uuid
    by_call_id = ops.handle("GET", f"/api/calls/{calls[1].call_id}")
    assert by_call_id.document["id"] == calls[1].uuid and len(by_call_id.document["legs"]) == 2
    assert ops.handle("GET", "/api/calls/zzz").status == 404
    assert ops.handle("GET", "/api/calls/").status == 200  # the list
    done = ops.handle("POST", f"/api/calls/{calls[0].uuid}/hangup")
    assert done.status == 200 and server.hung_up == [(calls[0].uuid, "operator")]
    assert ops.handle("GET", f"/api/calls/{calls[0].uuid}/hangup").status == 405
    assert ops.handle("DELETE", "/api/calls").status == 405


def test_an_ambiguous_prefix_is_refused() -> None:
    first, second = two_calls()
    calls = [replace(first, uuid="abc1" + first.uuid[4:]), replace(second, uuid="abc2" + second.uuid[4:])]
    ops, _ = operations(calls)
    refused = ops.handle("GET", "/api/calls/abc")
    assert refused.status == 409 and "2 calls" in refused.document["error"]
    assert ops.handle("GET", "/api/calls/abc2").document["id"] == calls[1].uuid


def test_other_endpoints() -> None:
    ops, _ = operations([])
    assert ops.handle("GET", "/api/health").document["status"] == "ok"
    assert ops.handle("GET", "/api/ready").status == 503
    assert ops.handle("GET", "/api/relays").document == {"configured": False, "relays": []}
    assert ops.handle("POST", "/api/reload").status == 422
    assert ops.handle("POST", "/api/dialplan/test", b"{nope").status == 400
    assert ops.handle("POST", "/api/dialplan/test", b'{"dest": "bad"}').status == 422
    assert ops.handle("POST", "/api/dialplan/test", b'{"dest": "1002"}').status == 200
    assert ops.handle("GET", "/nothing").status == 404
    assert ops.handle("GET", "/metrics").content_type.startswith("text/plain")


def render(resource: ApiResource, path: bytes, authorization: str | None = None,
           ) -> tuple[int, Any]:
    request = DummyRequest(path.strip(b"/").split(b"/"))
    request.path = path
    if authorization is not None:
        request.requestHeaders.addRawHeader(b"authorization", authorization.encode())
    body = resource.render(request)
    return request.responseCode, json.loads(body)


def test_the_token_is_required_when_configured() -> None:
    ops, _ = operations([])
    guarded = ApiResource(ops, "s3cret-token-0123456789")
    assert render(guarded, b"/api/health")[0] == 401
    assert render(guarded, b"/api/health", "Bearer wrong")[0] == 401
    assert render(guarded, b"/api/health", "Basic s3cret-token-0123456789")[0] == 401
    code, document = render(guarded, b"/api/health", "Bearer s3cret-token-0123456789")
    assert code == 200 and document["status"] == "ok"
    assert render(ApiResource(ops, None), b"/api/health")[0] == 200


def test_codecs_and_worst_figures() -> None:
    assert codecs_of(SDP.decode("latin-1"))
    assert codecs_of("") == [] and codecs_of("not sdp") == []
    call = two_calls()[0]
    line = summary(call, [StreamFigures("a", loss=0.01, jitter_ms=3.0, mos=4.3),
                          StreamFigures("b1", loss=0.05, jitter_ms=1.0, mos=3.9)], 1_000_010.0)
    assert (line["loss"], line["jitter_ms"], line["mos"]) == (0.05, 3.0, 3.9)
