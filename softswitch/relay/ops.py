"""`RelayFigures`: the relays' live figures for the management API, CLI and metrics.

The management API reads figures synchronously (`MediaFigures.streams` is
called per call for every `softswitch calls`, `top` refreshes every
second), so the figures cannot be asked for on each read: a poll every
`interval` seconds asks each live call's relay with ng `query` and keeps
the last answer. Why a poll and not a cache filled on read: the load on a
relay is then one query per call per interval whatever the number of
readers (several `top` windows, a Prometheus scrape), and a read never
waits on the network. A query still outstanding is not asked again, so a
slow relay is not flooded either. Relays' health (up/down, last answer)
comes from the pool the pinger keeps; each poll also asks each relay's
`list` for the calls it holds (the load it answers: its own and other
softswitches' calls).

`parse_streams` (pure) reads a query answer per tag; `RelayFigures` is the
thin Twisted part.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from twisted.application.service import Service
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure

from softswitch.management.calls import StreamFigures
from softswitch.management.metrics import RelayTotals
from softswitch.relay.figures import leg_figures
from softswitch.relay.ng_client import NgClient, parse_address
from softswitch.relay.pool import RelayPool
from softswitch.relay.seam import RelayMedia

POLL_INTERVAL = 1.0
QUERY_TIMEOUT = 0.8


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    return None


@dataclass(frozen=True, slots=True)
class TagFigures:
    """One leg's media as the relay received it (all its RTP streams together)."""

    packets: int
    lost: int | None
    loss: float | None  # fraction 0..1
    jitter_ms: float | None
    rtt_ms: float | None
    mos: float | None
    kernel: bool | None  # every RTP stream of the leg forwarded in the kernel


def parse_streams(answer: dict[str, Any]) -> dict[str, TagFigures]:
    """Per tag: packets, loss, jitter, RTT, MOS and kernelized, from an ng query answer.

    Junk never raises (the answer comes from another process): what is
    missing stays None.
    """
    base = leg_figures(answer)
    tags = answer.get("tags")
    out: dict[str, TagFigures] = {}
    if not isinstance(tags, dict):
        return out
    for tag, monologue in tags.items():
        figures = base.get(str(tag))
        if figures is None or not isinstance(monologue, dict):
            continue
        lost: int | None = None
        rtt: float | None = None
        kernel: bool | None = None
        for media in monologue.get("medias") or ():
            streams = media.get("streams") if isinstance(media, dict) else None
            for stream in streams if isinstance(streams, list) else ():
                if not isinstance(stream, dict):
                    continue
                flags = stream.get("flags")
                if isinstance(flags, list) and "RTCP" in flags:
                    continue
                if (n := _int(stream.get("lost"))) is not None:
                    lost = max(0, n) + (lost or 0)
                for key in ("rtt_ms", "rtt"):
                    if (r := _int(stream.get(key))) is not None:
                        rtt = float(r) if rtt is None else max(rtt, float(r))
                        break
                flagged = stream.get("kernelized")
                if flagged is None and isinstance(flags, list):
                    flagged = "kernelized" in flags
                if flagged is not None:
                    one = bool(flagged)
                    kernel = one if kernel is None else (kernel and one)
        loss = round(figures.loss / 100.0, 6) if figures.loss is not None else None
        out[str(tag)] = TagFigures(figures.packets, lost, loss, figures.jitter, rtt,
                                   figures.mos, kernel)
    return out


class RelayFigures(Service):
    """`MediaFigures` over the relays of a `RelayMedia`, polled every `interval`."""

    def __init__(self, media: RelayMedia, client: NgClient, pool: RelayPool, reactor: Any,
                 *, interval: float = POLL_INTERVAL) -> None:
        self.media = media
        self.client = client
        self.pool = pool
        self.reactor = reactor
        self.interval = interval
        self.names: dict[str, str] = {}  # relay address -> a name for listings ("embedded")
        # Which leg name ("a", "b1") a relay tag (str(LegId)) is, by call; set by the owner.
        self.leg_names: Callable[[], Iterable[tuple[str, dict[str, str]]]] = lambda: ()
        self._figures: dict[str, dict[str, TagFigures]] = {}  # by call uuid, then tag
        self._names: dict[str, dict[str, str]] = {}
        self._asking: set[str] = set()
        self._relay_calls: dict[str, int] = {}  # by relay address: calls it holds
        self._ended_packets = 0  # of calls no longer polled (the counter stays monotonic)
        self._ended_lost = 0
        self._loop = LoopingCall(self.poll)
        self._loop.clock = reactor

    def startService(self) -> None:  # noqa: N802
        super().startService()
        if not self._loop.running:
            self._loop.start(self.interval, now=False)

    def stopService(self) -> None:  # noqa: N802
        super().stopService()
        if self._loop.running:
            self._loop.stop()

    # -- MediaFigures --------------------------------------------------------------

    def streams(self, uuid: str) -> list[StreamFigures]:
        figures = self._figures.get(uuid, {}) if uuid in self.media.calls else {}
        names = self._names.get(uuid, {})
        return [StreamFigures(leg=names.get(tag, tag), packets=f.packets, lost=f.lost,
                              loss=f.loss, jitter_ms=f.jitter_ms, rtt_ms=f.rtt_ms, mos=f.mos,
                              kernel=f.kernel)
                for tag, f in sorted(figures.items(), key=lambda item: names.get(item[0], item[0]))]

    def relays(self) -> list[dict[str, Any]]:
        ours: dict[str, int] = {}
        streams: dict[str, int] = {}
        for uuid, where in self.media.calls.items():
            ours[where] = ours.get(where, 0) + 1
            streams[where] = streams.get(where, 0) + len(self._figures.get(uuid, {}))
        return [{"name": self.names.get(r.address, r.address), "address": r.address,
                 "weight": r.weight, "up": r.up, "health": "up" if r.up else "down",
                 "misses": r.misses, "last_answer": r.last_answer,
                 "calls": ours.get(r.address, 0), "streams": streams.get(r.address, 0),
                 # What the relay holds in all (its `list`), other softswitches' calls too.
                 "load": self._relay_calls.get(r.address)}
                for r in self.pool.relays]

    def totals(self) -> RelayTotals:
        """For /metrics: packets and losses so far, mean jitter and kernel streams now."""
        self._sweep()
        packets, lost = self._ended_packets, self._ended_lost
        jitters: list[float] = []
        kernel = streams = 0
        for figures in self._figures.values():
            for f in figures.values():
                packets += f.packets
                lost += f.lost or 0
                streams += 1
                kernel += 1 if f.kernel else 0
                if f.jitter_ms is not None:
                    jitters.append(f.jitter_ms)
        return RelayTotals(packets=packets, lost=lost,
                           jitter_ms=round(sum(jitters) / len(jitters), 3) if jitters else 0.0,
                           kernel_streams=kernel, streams=streams)

    # -- the poll ------------------------------------------------------------------

    def _sweep(self) -> None:
        """Forget calls released since (their counts go to the totals of ended calls)."""
        calls = self.media.calls
        for uuid in [u for u in self._figures if u not in calls]:
            for f in self._figures.pop(uuid).values():
                self._ended_packets += f.packets
                self._ended_lost += f.lost or 0
            self._names.pop(uuid, None)

    def poll(self) -> None:
        self._sweep()
        calls = dict(self.media.calls)
        try:
            for uuid, names in self.leg_names():
                if uuid in calls:
                    self._names[uuid] = names
        except Exception:  # noqa: BLE001 - names are cosmetic; the figures matter
            pass
        for uuid, where in calls.items():
            if uuid in self._asking:
                continue
            self._asking.add(uuid)
            d = self.client.request(parse_address(where), {"command": "query", "call-id": uuid},
                                    timeout=QUERY_TIMEOUT)
            d.addCallbacks(self._queried, self._unanswered, callbackArgs=(uuid,),
                           errbackArgs=(uuid,))
        for relay in self.pool.relays:
            if not relay.up:
                continue
            d = self.client.request(parse_address(relay.address), {"command": "list"},
                                    timeout=QUERY_TIMEOUT)
            d.addCallbacks(self._listed, lambda _f: None, callbackArgs=(relay.address,))

    def _queried(self, answer: dict[str, Any], uuid: str) -> None:
        self._asking.discard(uuid)
        if uuid in self.media.calls:
            self._figures[uuid] = parse_streams(answer)

    def _unanswered(self, failure: Failure, uuid: str) -> None:
        # Keep the last figures: a relay slow once should not blank the call's line.
        self._asking.discard(uuid)

    def _listed(self, answer: dict[str, Any], where: str) -> None:
        calls = answer.get("calls")
        if isinstance(calls, list):
            self._relay_calls[where] = len(calls)
