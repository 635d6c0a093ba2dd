"""The management Service: the API listener, the observers on the SIP core, the loop-lag probe.

Built by the `Application` (softswitch/service.py) after the other
services, so its observers see every message from the first one. Binding
the API's port is not fatal: a server whose API port is taken still
routes calls, and says so in its log. The API's address goes to
DATA_DIR/management.json, where the CLI finds it (the port may be 0 in
the configuration: any free port).
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry
from twisted.application.service import Service
from twisted.internet.error import CannotListenError
from twisted.internet.task import LoopingCall
from twisted.web.server import Site

import dialplan as dp
from rtpmedia.hep import HepSender
from softswitch.logs import get_logger
from softswitch.management.address import remove_api_address, write_api_address
from softswitch.management.api import ApiResource, Operations, ServerState
from softswitch.management.calls import MediaFigures, NoMedia
from softswitch.management.hep import HepCapture
from softswitch.management.messages import MessageLog
from softswitch.management.metrics import (
    CallOutcomes,
    MetricSources,
    SipCounters,
    SoftswitchCollector,
)

if TYPE_CHECKING:
    from softswitch.service import Application

LAG_INTERVAL = 0.5


class ManagementService(Service):
    def __init__(self, app: Application, reactor: Any, media: MediaFigures | None = None) -> None:
        self.app = app
        self.reactor = reactor
        settings = app.config.settings
        self.settings = settings.management
        self.log = get_logger("softswitch.management")
        self.messages = MessageLog(self.settings.ring_size, keep_finished=self.settings.keep_finished)
        self.counters = SipCounters()
        self.outcomes = CallOutcomes()
        # The relay's figures come in here once it lands (see calls.MediaFigures).
        self.media: MediaFigures = media or NoMedia()
        self.sources = MetricSources()
        core = app.sip.core
        core.add_observer(self.counters)
        if self.settings.enabled:
            core.add_observer(self.messages)
        app.calls.end_hooks.append(self.messages.call_ended)
        app.calls.end_hooks.append(self.outcomes.call_ended)
        self.hep: HepCapture | None = None
        self._hep_sender: HepSender | None = None
        self._listener: Any = None
        self._lag: LoopingCall | None = None
        self._lag_due = 0.0
        self.started = time.time()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(SoftswitchCollector(self.counters, self.outcomes, self.sources))

    # -- what the API reads ------------------------------------------------------------

    def _wire_sources(self) -> None:
        app, s = self.app, self.sources
        core = app.sip.core
        b2bua = app.calls.b2bua
        store = app.registrar.store
        auth = app.registrar.registrar.auth if app.registrar.registrar is not None else None
        if b2bua is not None:
            s.active_calls = lambda: len(b2bua.calls)
            s.calls_started = lambda: b2bua.calls_started
        if store is not None:
            s.registrations = lambda: len(store)
        if auth is not None:
            s.auth_failures = lambda: auth.failures
        s.malformed = lambda: core.stats["malformed"]
        transactions = core.transactions
        s.transactions_active = lambda: (transactions.active_server_count(),
                                         transactions.active_client_count())
        s.transaction_counts = lambda: transactions.counts
        s.trunk_states = lambda: {name: r.state.value for name, r in
                                  app.trunk_registrations.registrations.items()}

    def _state(self) -> ServerState:
        app = self.app
        b2bua = app.calls.b2bua
        assert b2bua is not None

        def registrations() -> list[dict[str, Any]]:
            store = app.registrar.store
            now = self.reactor.seconds()
            return [{**asdict(b), "expires_in": b.expires_in(now)}
                    for b in (store.list() if store is not None else []) if not b.is_expired(now)]

        def trunks() -> list[dict[str, Any]]:
            out = []
            for trunk in app.config.settings.trunks:
                registration = app.trunk_registrations.registrations.get(trunk.name)
                out.append({
                    "name": trunk.name, "host": trunk.host, "port": trunk.port,
                    "transport": trunk.transport, "context": trunk.context,
                    "register": trunk.register_,
                    # Credentials stay out: only whether there are some.
                    "authenticates": trunk.username is not None,
                    "registration": None if registration is None else {
                        "state": registration.state.value,
                        "last_status": registration.last_status,
                        "expires_at": registration.expires_at,
                        "failures": registration.failures,
                    },
                })
            return out

        def reload() -> list[dict[str, Any]]:
            return [asdict(part) for part in app.reload()]

        def route(query: dict[str, Any]) -> dict[str, Any]:
            plan = app.dialplan.plan
            if plan is None:
                raise ValueError("no dialplan in force")
            context = str(query.get("context") or "internal")
            if context not in plan.contexts:
                raise ValueError(f"no context {context!r}; contexts: {', '.join(sorted(plan.contexts))}")
            facts = dp.CallFacts(context=context, dest=str(query["dest"]),
                                 caller=str(query.get("caller") or ""),
                                 trunk=query.get("trunk") or None)
            decision = plan.route(facts)
            return {
                "generation": app.dialplan.generation, "matched": decision.matched,
                "trace": [{"context": s.context, "rule": s.rule, "line": s.line,
                           "outcome": s.outcome, "reason": s.reason} for s in decision.trace],
                "actions": [dp.describe_action(a) for a in decision.actions],
            }

        def ready() -> tuple[bool, str]:
            if app.sip.core.draining:
                return False, "draining: the server is stopping"
            if not self.running:
                return False, "starting"
            return True, "ok"

        return ServerState(live_calls=b2bua.live_calls, hang_up=b2bua.hang_up,
                           registrations=registrations, trunks=trunks, reload=reload,
                           route=route, ready=ready, started=self.started)

    # -- Service -----------------------------------------------------------------------

    def startService(self) -> None:  # noqa: N802
        super().startService()
        self._wire_sources()
        self._lag_due = time.monotonic() + LAG_INTERVAL
        self._lag = LoopingCall(self._measure_lag)
        self._lag.clock = self.reactor
        self._lag.start(LAG_INTERVAL, now=False)
        self._start_hep()
        if self.settings.enabled:
            self._start_api()

    def _measure_lag(self) -> None:
        now = time.monotonic()
        self.sources.loop_lag.observe(max(0.0, now - self._lag_due))
        self._lag_due = now + LAG_INTERVAL

    def _start_hep(self) -> None:
        hep = self.app.config.settings.hep
        address = hep.address
        if address is None:
            return
        try:
            send = self._hep_sender = HepSender(*address)
        except OSError as exc:
            # Capture is an extra: a collector's name that does not resolve
            # must not keep the softswitch from starting.
            self.log.error("hep_collector_unusable", collector=f"{address[0]}:{address[1]}",
                           error=str(exc))
            return
        self.hep = HepCapture(send, self.app.calls.local_address, agent_id=hep.agent_id,
                              auth_key=hep.auth_key or "")
        self.app.sip.core.add_observer(self.hep)
        self.log.info("hep_capture", collector=f"{address[0]}:{address[1]}")

    def _start_api(self) -> None:
        host, port = self.settings.address
        token = self.settings.token.get_secret_value() if self.settings.token else None
        operations = Operations(self._state(), self.messages, self.media, self.registry)
        site = Site(ApiResource(operations, token))
        site.noisy = False
        try:
            self._listener = self.reactor.listenTCP(port, site, interface=host)
        except CannotListenError as exc:
            self.log.error("management_api_not_listening", listen=self.settings.listen,
                           error=str(exc.socketError))
            return
        bound = self._listener.getHost()
        shown = f"[{bound.host}]" if ":" in bound.host else bound.host
        url = f"http://{shown}:{bound.port}"
        write_api_address(self.app.data_dir, url, token is not None)
        self.log.info("management_api_listening", url=url, token_required=token is not None)

    def stopService(self) -> Any:  # noqa: N802
        super().stopService()
        if self._lag is not None and self._lag.running:
            self._lag.stop()
        if self._hep_sender is not None:
            self._hep_sender.close()
        remove_api_address(self.app.data_dir)
        if self._listener is not None:
            return self._listener.stopListening()
        return None
