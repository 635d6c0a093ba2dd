"""The media side of `softswitch run`: the ng socket, relay pings, the embedded relay.

`build_media_side` turns `media:` of the configuration into a `MediaSide`
service (a `MultiService`): the ng client listening on `media.notify`
(relays send teardowns and media events there), a ping every `media.ping_interval` to each
relay (a relay that misses two in a row gets no new calls until it answers
again), and on the embedded default our relay as a child process. Its
`choice` is what the B2BUA asks per call (`softswitch.relay.choice`).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure

from softswitch.b2bua.events import MediaEvent
from softswitch.b2bua.snapshot import CallSnapshot
from softswitch.config import Config
from softswitch.logs import get_logger
from softswitch.relay.child import HEP_AUTH_KEY_ENV, LOCK_FILE, EmbeddedRelay, relay_command
from softswitch.relay.choice import MediaChoice
from softswitch.relay.figures import LegFigures
from softswitch.relay.ng_client import NgClient, parse_address
from softswitch.relay.ops import RelayFigures
from softswitch.relay.pool import RelayPool
from softswitch.relay.seam import RelayMedia


def outside_address() -> str:
    """The host's address towards the outside (a connected UDP socket sends nothing)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: only the route is looked up
            return str(probe.getsockname()[0])
    except OSError:
        return "127.0.0.1"


class _Listener(Service):
    def __init__(self, client: NgClient, address: tuple[str, int], reactor: Any) -> None:
        self.client = client
        self.address = address
        self.reactor = reactor
        self.port: Any = None

    def startService(self) -> None:  # noqa: N802
        super().startService()
        self.port = self.reactor.listenUDP(self.address[1], self.client,
                                           interface=self.address[0])

    def stopService(self) -> Any:  # noqa: N802
        super().stopService()
        self.client.stop()
        if self.port is not None:
            return self.port.stopListening()
        return None


class _Pinger(Service):
    def __init__(self, client: NgClient, pool: RelayPool, interval: float, reactor: Any) -> None:
        self.client = client
        self.pool = pool
        self.interval = interval
        self.reactor = reactor
        self.loop = LoopingCall(self.ping)
        self.loop.clock = reactor
        self.log = get_logger("softswitch.relay")

    def startService(self) -> None:  # noqa: N802
        super().startService()
        self.loop.start(self.interval, now=False)

    def stopService(self) -> None:  # noqa: N802
        super().stopService()
        if self.loop.running:
            self.loop.stop()

    def ping(self) -> None:
        for relay in self.pool.relays:
            where = relay.address
            d = self.client.request(parse_address(where), {"command": "ping"},
                                    timeout=min(self.interval, 3.0))
            d.addCallbacks(self._answered, self._missed, callbackArgs=(where,),
                           errbackArgs=(where,))

    def _answered(self, answer: dict[str, Any], where: str) -> None:
        if self.pool.answered(where, self.reactor.seconds()):
            self.log.warning("relay_up", relay=where)

    def _missed(self, failure: Failure, where: str) -> None:
        if self.pool.missed(where):
            self.log.error("relay_down", relay=where, error=str(failure.value))


class MediaSide(MultiService):
    def __init__(self, choice: MediaChoice, client: NgClient | None,
                 embedded: EmbeddedRelay | None) -> None:
        super().__init__()
        self.choice = choice
        self.client = client
        self.embedded = embedded
        # Live figures for the management API (softswitch.relay.ops); None when direct.
        self.live: RelayFigures | None = None
        self.log = get_logger("softswitch.relay")

    def on_teardown(self, hang_up: Callable[[str, str], object]) -> None:
        """Relays' teardowns (media timeouts) end calls through `hang_up(uuid, cause)`."""
        def teardown(call: str, reason: str) -> None:
            hang_up(call, reason)  # False for a call already gone: a repeated teardown

        if self.client is not None:
            self.client.on_teardown = teardown

    def on_media_event(self, deliver: Callable[[str, MediaEvent], object]) -> None:
        """Relays' media events (played, recorded, ended, dtmf) reach the call
        through `deliver(uuid, event)`."""
        def media_event(call: str, message: dict[str, Any]) -> None:
            event = media_event_of(message)
            if event is None:
                self.log.warning("relay_bad_media_event", call=call, message=str(message))
                return
            deliver(call, event)  # False for a call already gone: a repeat

        if self.client is not None:
            self.client.on_media_event = media_event

    def figures(self, call: CallSnapshot) -> Deferred[dict[str, float | None]]:
        """The CDR's media columns of a call that ended (empty when direct)."""
        relay = self.choice.relay
        if relay is None or call.answered is None:
            return succeed({})  # no media flowed; and at shutdown the stores close at once
        return relay.figures(call.uuid).addCallback(cdr_figures, call)


def media_event_of(message: dict[str, Any]) -> MediaEvent | None:
    """A relay's `media event` notice as the call machine's event (None if malformed)."""
    name, tag = message.get("event"), message.get("from-tag")
    if not isinstance(name, str) or not name or not isinstance(tag, str):
        return None
    duration = message.get("duration")
    try:
        seconds = float(duration) if duration is not None else 0.0
    except (TypeError, ValueError):
        seconds = 0.0
    return MediaEvent(tag, name, digit=str(message.get("digit") or ""),
                      file=str(message.get("file") or ""), duration=seconds,
                      reason=str(message.get("reason") or ""))


def cdr_figures(figures: dict[str, LegFigures], call: CallSnapshot) -> dict[str, float | None]:
    """Loss, jitter and MOS of the caller's leg (a_) and of the callee who talked most (b_)."""
    out: dict[str, float | None] = {}
    callee_best: LegFigures | None = None
    for leg in call.legs:
        mine = figures.get(str(leg.id))
        if mine is None:
            continue
        if leg.caller_side and "a_loss" not in out:
            out.update(a_loss=mine.loss, a_jitter=mine.jitter, a_mos=mine.mos)
        elif not leg.caller_side and (callee_best is None or mine.packets > callee_best.packets):
            callee_best = mine
    if callee_best is not None:
        out.update(b_loss=callee_best.loss, b_jitter=callee_best.jitter, b_mos=callee_best.mos)
    return out


def build_media_side(config: Config, data_dir: Path, reactor: Any) -> MediaSide:
    s = config.settings
    media = s.media
    trunk_modes = {t.name: t.media for t in s.trunks}
    trunk_records = {t.name: t.record_calls for t in s.trunks}
    wants_relay = media.mode == "relay" or any(m == "relay" for m in trunk_modes.values())
    if not wants_relay:
        return MediaSide(MediaChoice("direct", None, trunk_modes), None, None)
    client = NgClient(reactor, timeout=media.timeout)
    relays = [(r.address, r.weight) for r in media.relays]
    embedded = None
    if media.embedded:
        relays.insert(0, (media.control, 1))
        advertise = media.advertise or s.advertised_address or outside_address()
        relay_dir = data_dir / "relay"
        relay_dir.mkdir(parents=True, exist_ok=True)
        env = None  # the relay inherits our environment
        if s.hep.auth_key:
            env = {**os.environ, HEP_AUTH_KEY_ENV: s.hep.auth_key}
        embedded = EmbeddedRelay(relay_command(
            media.control, media.ports, advertise, str(relay_dir), media.notify,
            listen_address=media.listen_address, silence_timeout=media.silence_timeout,
            media_dir=str(data_dir), hep=s.hep.collector, hep_id=s.hep.agent_id),
            reactor, env=env, lock=relay_dir / LOCK_FILE)
    pool = RelayPool(relays)
    relay_media = RelayMedia(client, pool, reactor)
    repair_trunks = {t.name for t in s.trunks if t.media_repair}
    side = MediaSide(MediaChoice(media.mode, relay_media, trunk_modes, trunk_records,
                                 repair_trunks), client, embedded)
    if embedded is not None:
        embedded.setServiceParent(side)
    _Listener(client, parse_address(media.notify), reactor).setServiceParent(side)
    _Pinger(client, pool, media.ping_interval, reactor).setServiceParent(side)
    side.live = RelayFigures(relay_media, client, pool, reactor)
    side.live.setServiceParent(side)
    if embedded is not None:
        side.live.names[media.control] = "embedded"
    return side
