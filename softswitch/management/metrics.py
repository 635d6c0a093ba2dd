"""Prometheus metrics: plain integer counters on the hot path, families at scrape time.

`SipCounters` is a `MessageObserver`: per message it bumps one or two
dictionary entries and, for response latency, remembers when a request
crossed the wire (keyed by Call-ID and the raw CSeq, so nothing is
parsed) until its first response (how fast a server reacts: 100 Trying for
an INVITE) and its final one (how long the request took: for an INVITE
that includes the ringing, so it says more about the callee than about us). prometheus-client's own Counter and
Histogram take a lock per increment; here nothing but ints moves until
`/metrics` is scraped, when `SoftswitchCollector` turns the counters and
the live figures of `MetricSources` into metric families.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from softswitch.b2bua.snapshot import CallSnapshot
from softswitch.sip.message import Request, Response
from softswitch.sip.peer import Peer

# Seconds: a local answer takes a millisecond, a phone's 100 tens of ms, a far trunk more.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
# Requests never answered (an ACK-less peer, a dropped fork) must not pile up.
MAX_PENDING = 50000


class Histogram:
    """Bucket counts and a sum in plain numbers (cumulated only when scraped)."""

    __slots__ = ("bounds", "counts", "total", "count")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value
        self.count += 1

    def buckets(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        running = 0
        for bound, n in zip(self.bounds, self.counts, strict=False):
            running += n
            out.append((repr(bound), running))
        out.append(("+Inf", self.count))
        return out


class SipCounters:
    """Requests and responses by method and code, both ways, and response latency."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str], int] = {}  # (direction, method)
        self.responses: dict[tuple[str, str, int], int] = {}  # (direction, method, code)
        # "ours": how fast we answer; "theirs": how fast the peers answer us.
        self.latency: dict[tuple[str, str], Histogram] = {}  # to the first response
        self.final_latency: dict[tuple[str, str], Histogram] = {}  # to the final response
        # -> [start, method, first response seen]
        self._pending: dict[tuple[str, str, bool], list[Any]] = {}

    def message_received(self, message: Request | Response, peer: Peer, now: float) -> None:
        self._count(message, now, True)

    def message_sent(self, message: Request | Response, peer: Peer, now: float) -> None:
        self._count(message, now, False)

    def _count(self, message: Request | Response, now: float, received: bool) -> None:
        direction = "in" if received else "out"
        key = (message.get("call-id") or "", message.get("cseq") or "", received)
        if isinstance(message, Request):
            method = message.method
            counter = (direction, method)
            self.requests[counter] = self.requests.get(counter, 0) + 1
            if method != "ACK":
                if len(self._pending) >= MAX_PENDING:
                    self._pending.clear()
                # The first copy counts: a retransmission does not restart the clock.
                if key not in self._pending:
                    self._pending[key] = [now, method, False]
            return
        # The request this answers crossed the wire the other way.
        request_key = (key[0], key[1], not received)
        final = message.status >= 200
        started = self._pending.pop(request_key, None) if final \
            else self._pending.get(request_key)
        cseq = key[1]
        method = cseq.rpartition(" ")[2].strip() if cseq else ""
        counter3 = (direction, method, message.status)
        self.responses[counter3] = self.responses.get(counter3, 0) + 1
        if started is None:
            return
        side = "theirs" if received else "ours"
        elapsed = max(0.0, now - started[0])
        if not started[2]:
            started[2] = True
            _observe(self.latency, (side, started[1]), elapsed)
        if final:
            _observe(self.final_latency, (side, started[1]), elapsed)


def _observe(histograms: dict[tuple[str, str], Histogram], key: tuple[str, str],
             value: float) -> None:
    histogram = histograms.get(key)
    if histogram is None:
        histogram = histograms[key] = Histogram(LATENCY_BUCKETS)
    histogram.observe(value)


class CallOutcomes:
    """Calls ended, by disposition and the SIP code the caller got."""

    def __init__(self) -> None:
        self.ended: dict[tuple[str, str], int] = {}

    def call_ended(self, snapshot: CallSnapshot) -> None:
        code = snapshot.sip_code if snapshot.sip_code is not None \
            else (200 if snapshot.answered is not None else 500)
        disposition = snapshot.disposition or ("ANSWERED" if snapshot.answered else "FAILED")
        key = (disposition, str(code))
        self.ended[key] = self.ended.get(key, 0) + 1


@dataclass(frozen=True, slots=True)
class RelayTotals:
    """What the relay reports in total (a hook until the relay lands)."""

    packets: int
    lost: int
    jitter_ms: float  # mean over the streams
    kernel_streams: int
    streams: int


def _zero() -> int:
    return 0


@dataclass(slots=True)
class MetricSources:
    """Live figures read at scrape time, each a callable of a public method."""

    active_calls: Callable[[], int] = _zero
    calls_started: Callable[[], int] = _zero
    registrations: Callable[[], int] = _zero
    auth_failures: Callable[[], int] = _zero
    malformed: Callable[[], int] = _zero
    transactions_active: Callable[[], tuple[int, int]] = lambda: (0, 0)  # server, client
    transaction_counts: Callable[[], Any] = lambda: None  # a TransactionCounts
    trunk_states: Callable[[], dict[str, str]] = dict
    relay: Callable[[], RelayTotals | None] = lambda: None
    loop_lag: Histogram = field(default_factory=lambda: Histogram(LAG_BUCKETS))


class SoftswitchCollector(Collector):
    """Everything in `/metrics`, built from the counters when Prometheus scrapes."""

    def __init__(self, sip: SipCounters, outcomes: CallOutcomes, sources: MetricSources) -> None:
        self.sip = sip
        self.outcomes = outcomes
        self.sources = sources

    def collect(self) -> Iterator[Metric]:
        s = self.sources
        yield GaugeMetricFamily("softswitch_calls_active", "Calls in progress",
                                value=s.active_calls())
        yield CounterMetricFamily("softswitch_calls_started", "Calls accepted by the B2BUA",
                                  value=s.calls_started())
        ended = CounterMetricFamily("softswitch_calls_ended", "Calls ended, by how they ended",
                                    labels=["disposition", "code"])
        for (disposition, code), n in sorted(self.outcomes.ended.items()):
            ended.add_metric([disposition, code], n)
        yield ended
        yield GaugeMetricFamily("softswitch_registrations", "Current registrar bindings",
                                value=s.registrations())
        yield CounterMetricFamily("softswitch_auth_failures",
                                  "Requests refused 403 for wrong credentials or user",
                                  value=s.auth_failures())
        yield CounterMetricFamily("softswitch_sip_malformed", "Messages that did not parse",
                                  value=s.malformed())
        requests = CounterMetricFamily("softswitch_sip_requests", "SIP requests",
                                       labels=["direction", "method"])
        for (direction, method), n in sorted(self.sip.requests.items()):
            requests.add_metric([direction, method], n)
        yield requests
        responses = CounterMetricFamily("softswitch_sip_responses", "SIP responses",
                                        labels=["direction", "method", "code"])
        for (direction, method, status), n in sorted(self.sip.responses.items()):
            responses.add_metric([direction, method, str(status)], n)
        yield responses
        latency = HistogramMetricFamily(
            "softswitch_sip_response_seconds",
            "Time from a request to its first response; side=ours is how fast we answer",
            labels=["side", "method"])
        for (side, method), histogram in sorted(self.sip.latency.items()):
            latency.add_metric([side, method], histogram.buckets(), histogram.total)
        yield latency
        final = HistogramMetricFamily(
            "softswitch_sip_final_response_seconds",
            "Time from a request to its final response (an INVITE's includes the ringing)",
            labels=["side", "method"])
        for (side, method), histogram in sorted(self.sip.final_latency.items()):
            final.add_metric([side, method], histogram.buckets(), histogram.total)
        yield final
        server, client = s.transactions_active()
        active = GaugeMetricFamily("softswitch_sip_transactions_active",
                                   "Transactions in the layer", labels=["kind"])
        active.add_metric(["server"], server)
        active.add_metric(["client"], client)
        yield active
        counts = s.transaction_counts()
        if counts is not None:
            made = CounterMetricFamily("softswitch_sip_transactions", "Transactions created",
                                       labels=["kind"])
            made.add_metric(["server"], counts.server)
            made.add_metric(["client"], counts.client)
            yield made
            yield CounterMetricFamily("softswitch_sip_retransmissions",
                                      "Requests and responses we sent again (Timers A, E, G)",
                                      value=counts.retransmitted)
            yield CounterMetricFamily("softswitch_sip_retransmissions_absorbed",
                                      "Request retransmissions received and absorbed",
                                      value=counts.absorbed)
        trunks = GaugeMetricFamily("softswitch_trunk_registered",
                                   "1 when the trunk's registration at its provider is up",
                                   labels=["trunk", "state"])
        for name, state in sorted(s.trunk_states().items()):
            trunks.add_metric([name, state], 1.0 if state == "registered" else 0.0)
        yield trunks
        lag = s.loop_lag
        yield _histogram("softswitch_event_loop_lag_seconds",
                         "How late the reactor ran a timer due every half second", lag)
        relay = s.relay()
        if relay is not None:
            yield CounterMetricFamily("softswitch_relay_packets", "RTP packets relayed",
                                      value=relay.packets)
            yield CounterMetricFamily("softswitch_relay_packets_lost", "RTP packets lost",
                                      value=relay.lost)
            yield GaugeMetricFamily("softswitch_relay_jitter_ms", "Mean jitter of the streams",
                                    value=relay.jitter_ms)
            yield GaugeMetricFamily("softswitch_relay_streams", "Streams on the relay",
                                    value=relay.streams)
            yield GaugeMetricFamily("softswitch_relay_kernel_streams",
                                    "Streams forwarded in the kernel", value=relay.kernel_streams)


def _histogram(name: str, documentation: str, histogram: Histogram) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, documentation)
    family.add_metric([], histogram.buckets(), histogram.total)
    return family
