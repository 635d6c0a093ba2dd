"""The management API: HTTP JSON over twisted.web, answered by `Operations`.

`Operations.handle(method, path, body)` decides every answer (status and
JSON document) from the server's public state and is tested without a
socket; `ApiResource` is the thin twisted.web adapter that checks the
token and writes the answer. Endpoints (docs/operations.md):

    GET  /api/health                   the process answers
    GET  /api/ready                    503 while draining or not started
    GET  /api/calls                    live calls, one summary each
    GET  /api/calls/ID                 a live or recently ended call in detail, with its messages
    POST /api/calls/ID/hangup          end the call (BYE both legs, or 503 if ringing)
    GET  /api/registrations            current bindings
    GET  /api/trunks                   trunks and their registration state (never credentials)
    GET  /api/relays                   media relays with health and load
    POST /api/reload                   re-read directory and dialplan, like SIGHUP
    POST /api/dialplan/test            route {"dest", "caller", "context"?, "trunk"?} as the
                                       dialplan in force would, without a call
    GET  /metrics                      Prometheus text format

ID is a call's uuid, a unique prefix of one, or its Call-ID.
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from twisted.web.resource import Resource
from twisted.web.server import Request as WebRequest

from softswitch.b2bua.snapshot import CallSnapshot
from softswitch.management import calls as views
from softswitch.management.calls import MediaFigures
from softswitch.management.messages import MessageLog

MAX_BODY = 65536


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    document: Any  # JSON-able, or bytes for /metrics
    content_type: str = "application/json"


def _error(status: int, message: str) -> Answer:
    return Answer(status, {"error": message})


@dataclass(slots=True)
class ServerState:
    """What the API reads and does, as callables of the services' public methods."""

    live_calls: Callable[[], list[CallSnapshot]]
    hang_up: Callable[[str, str], bool]
    registrations: Callable[[], list[dict[str, Any]]]
    trunks: Callable[[], list[dict[str, Any]]]
    reload: Callable[[], list[dict[str, Any]]]
    route: Callable[[dict[str, Any]], dict[str, Any]]  # ValueError for a bad query
    ready: Callable[[], tuple[bool, str]]
    started: float


class Operations:
    """Every answer of the API, decided without I/O."""

    def __init__(self, state: ServerState, log: MessageLog, media: MediaFigures,
                 registry: CollectorRegistry, clock: Callable[[], float] = time.time) -> None:
        self.state = state
        self.log = log
        self.media = media
        self.registry = registry
        self.clock = clock

    def handle(self, method: str, path: str, body: bytes = b"") -> Answer:
        parts = [p for p in path.split("?", 1)[0].split("/") if p]
        if parts == ["metrics"]:
            if method != "GET":
                return _error(405, "use GET")
            return Answer(200, generate_latest(self.registry), CONTENT_TYPE_LATEST)
        if not parts or parts[0] != "api":
            return _error(404, f"no such endpoint {path}; see /api/health")
        route = parts[1:]
        gets: dict[tuple[str, ...], Callable[[], Answer]] = {
            ("health",): self._health, ("ready",): self._ready, ("calls",): self._calls,
            ("registrations",): lambda: Answer(200, self.state.registrations()),
            ("trunks",): lambda: Answer(200, self.state.trunks()),
            ("relays",): self._relays,
        }
        if tuple(route) in gets:
            return gets[tuple(route)]() if method == "GET" else _error(405, "use GET")
        if len(route) == 2 and route[0] == "calls":
            return self._call(route[1]) if method == "GET" else _error(405, "use GET")
        if len(route) == 3 and route[0] == "calls" and route[2] == "hangup":
            return self._hangup(route[1]) if method == "POST" else _error(405, "use POST")
        if route == ["reload"]:
            return self._reload() if method == "POST" else _error(405, "use POST")
        if route == ["dialplan", "test"]:
            return self._route(body) if method == "POST" else _error(405, "use POST")
        return _error(404, f"no such endpoint {path}; see /api/health")

    def _health(self) -> Answer:
        return Answer(200, {"status": "ok", "uptime": round(self.clock() - self.state.started, 3)})

    def _ready(self) -> Answer:
        ready, reason = self.state.ready()
        return Answer(200 if ready else 503, {"ready": ready, "reason": reason})

    def _calls(self) -> Answer:
        now = self.clock()
        return Answer(200, [views.summary(c, self.media.streams(c.uuid), now)
                            for c in sorted(self.state.live_calls(), key=lambda c: c.started)])

    def _find(self, wanted: str) -> tuple[CallSnapshot, bool] | Answer:
        """The call named by `wanted` and whether it has ended."""
        candidates = [(c, False) for c in self.state.live_calls()]
        live = {c.uuid for c, _ in candidates}
        candidates += [(c, True) for c in reversed(self.log.finished()) if c.uuid not in live]
        for call, ended in candidates:
            if call.uuid == wanted or call.call_id == wanted:
                return call, ended
        matches = [(c, e) for c, e in candidates if c.uuid.startswith(wanted)]
        if len({c.uuid for c, _ in matches}) == 1:
            return matches[0]
        if matches:
            return _error(409, f"{wanted!r} names {len(matches)} calls: give more of the id")
        return _error(404, f"no call {wanted!r} (neither in progress nor recently ended)")

    def _call(self, wanted: str) -> Answer:
        found = self._find(wanted)
        if isinstance(found, Answer):
            return found
        call, ended = found
        return Answer(200, views.detail(call, self.log, self.media.streams(call.uuid),
                                        self.clock(), ended))

    def _hangup(self, wanted: str) -> Answer:
        found = self._find(wanted)
        if isinstance(found, Answer):
            return found
        call, ended = found
        if ended or not self.state.hang_up(call.uuid, "operator"):
            return _error(409, f"call {call.uuid} has already ended")
        return Answer(200, {"id": call.uuid, "call_id": call.call_id, "hung_up": True})

    def _relays(self) -> Answer:
        relays = self.media.relays()
        return Answer(200, {"configured": bool(relays), "relays": relays})

    def _reload(self) -> Answer:
        parts = self.state.reload()
        ok = all(p["ok"] for p in parts)
        return Answer(200 if ok else 422, {"ok": ok, "parts": parts})

    def _route(self, body: bytes) -> Answer:
        try:
            query = json.loads(body or b"{}")
        except ValueError as exc:
            return _error(400, f"the body is not JSON: {exc}")
        if not isinstance(query, dict) or not isinstance(query.get("dest"), str):
            return _error(400, 'expected {"dest": "NUMBER", "caller"?, "context"?, "trunk"?}')
        try:
            return Answer(200, self.state.route(query))
        except ValueError as exc:
            return _error(422, str(exc))


class ApiResource(Resource):
    """twisted.web's side: the token, the body, the JSON; every decision in `Operations`."""

    isLeaf = True

    def __init__(self, operations: Operations, token: str | None) -> None:
        super().__init__()
        self.operations = operations
        self._token = token.encode() if token else None

    def render(self, request: WebRequest) -> bytes:
        method = (request.method or b"GET").decode("ascii", "replace")
        if self._token is not None:
            given = request.getHeader("authorization") or ""
            scheme, _, value = given.partition(" ")
            # Constant time: the comparison must not tell how much of a guess was right.
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                    value.strip().encode(), self._token):
                return self._write(request, _error(
                    401, "a valid token is required (Authorization: Bearer TOKEN)"))
        body = b""
        content = getattr(request, "content", None)
        if content is not None:
            body = content.read(MAX_BODY + 1)
        if len(body) > MAX_BODY:
            return self._write(request, _error(413, "request body too large"))
        path = (request.path or b"/").decode("utf-8", "replace")
        try:
            answer = self.operations.handle(method, path, body)
        except Exception as exc:  # noqa: BLE001 - one bad request must not take the API down
            answer = _error(500, f"internal error: {type(exc).__name__}")
            from softswitch.logs import get_logger
            get_logger("softswitch.management").exception("api_failed", path=path)
        return self._write(request, answer)

    @staticmethod
    def _write(request: WebRequest, answer: Answer) -> bytes:
        request.setResponseCode(answer.status)
        request.setHeader(b"content-type", answer.content_type.encode())
        request.setHeader(b"cache-control", b"no-store")
        if isinstance(answer.document, bytes):
            return answer.document
        return json.dumps(answer.document, default=_json_default).encode() + b"\n"


def _json_default(value: object) -> Any:
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)  # type: ignore[call-overload]
    return str(value)
