"""The glue's side of hosted media: `HostMedia` and `MediaCommand` through a `MediaHost`,
the relay's media events back to the call, and the refusal when the seam cannot host.

No sockets: a Twisted `task.Clock`, a stand-in core that records what the
B2BUA sends, and a stand-in seam whose answers are Deferreds the test fires.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock

from softswitch.b2bua import events as ev
from softswitch.b2bua.b2bua import B2BUA
from softswitch.b2bua.legs import LegId
from softswitch.b2bua.media import DirectMedia, MediaHost
from softswitch.identity import Caller
from softswitch.sip.message import Request, Response
from softswitch.sip.peer import Peer
from tests.support.calls import CALLER, SDP, SDP_RELAY, Party, invite
from tests.support.calls import plan as load_plan
from tests.unit.b2bua.test_machine_hosted import PLAN


@dataclass
class FakeHost:
    """A relay seam that hosts: every answer is a Deferred the test fires."""

    hosted: list[tuple[str, LegId, bytes, bool]] = field(default_factory=list)
    commands: list[tuple[str, LegId, str, dict[str, Any]]] = field(default_factory=list)
    pending: list[Deferred[Any]] = field(default_factory=list)
    released: list[tuple[str, LegId | None]] = field(default_factory=list)

    def offer(self, call: str, source: LegId, sink: LegId, body: bytes,
              content_type: str | None) -> bytes:
        return body

    def answer(self, call: str, source: LegId, sink: LegId, body: bytes,
               content_type: str | None) -> bytes:
        return body

    def release(self, call: str, leg: LegId | None) -> None:
        self.released.append((call, leg))

    def host(self, call: str, leg: LegId, body: bytes, content_type: str | None,
             answer: bool) -> Deferred[bytes]:
        self.hosted.append((call, leg, body, answer))
        d: Deferred[bytes] = Deferred()
        self.pending.append(d)
        return d

    def command(self, call: str, leg: LegId, command: str,
                args: dict[str, str | int]) -> Deferred[None]:
        self.commands.append((call, leg, command, args))
        return succeed(None)


class FakeTransactions:
    def __init__(self) -> None:
        self.sent: list[Request] = []

    def send_request(self, request: Request, peer: Peer, **callbacks: Any) -> Any:
        self.sent.append(request)
        return self


class FakeCore:
    def __init__(self) -> None:
        self.transactions = FakeTransactions()
        self.routes: dict[tuple[str, bool | None], Callable[..., None]] = {}
        self.ack_handlers: list[Callable[[Request, Peer], bool]] = []

    def route(self, method: str, handler: Callable[..., None],
              in_dialog: bool | None = None) -> None:
        self.routes[(method, in_dialog)] = handler

    def add_ack_handler(self, handler: Callable[[Request, Peer], bool]) -> None:
        self.ack_handlers.append(handler)

    def add_stray_response_handler(self, handler: Any) -> None:
        return None

    def send(self, request: Request, peer: Peer) -> None:
        return None


class FakeIdentity:
    def identify(self, request: Request, source: Peer, now: float) -> Caller:
        return Caller("1001", "", "internal", frozenset(), "pbx.example.com", None, "1001")

    def dialled(self, request: Request, source: Peer, caller: Caller) -> str:
        return request.uri.user or ""  # type: ignore[union-attr]

    def default_domain(self) -> str:
        return "pbx.example.com"


@dataclass
class FakeServerTransaction:
    request: Request
    source: Peer = CALLER
    responses: list[Response] = field(default_factory=list)
    is_pending: bool = True

    def respond(self, response: Response) -> None:
        self.responses.append(response)


def b2bua(media: Any) -> tuple[B2BUA, FakeCore]:
    core = FakeCore()
    glue = B2BUA(core, None, lambda: load_plan(PLAN),  # type: ignore[arg-type]
                 lambda peer: ("198.51.100.1", 5060), [], Clock(), media=media,
                 identity=FakeIdentity())  # type: ignore[arg-type]
    glue.install()
    return glue, core


def call(glue: B2BUA, core: FakeCore, dest: str) -> FakeServerTransaction:
    tx = FakeServerTransaction(invite(dest))
    core.routes[("INVITE", False)](tx, tx.request)
    return tx


def test_the_glue_hosts_the_caller_then_commands_the_relay_and_routes_its_events() -> None:
    media = FakeHost()
    assert isinstance(media, MediaHost)
    glue, core = b2bua(media)
    tx = call(glue, core, "9196")
    ((uuid, leg, body, answer),) = media.hosted
    assert body == SDP and not answer
    assert [r.status for r in tx.responses] == [100]  # waiting for the relay
    media.pending.pop().callback(SDP_RELAY)
    ok = tx.responses[-1]
    assert ok.status == 200 and ok.body == SDP_RELAY
    caller = Party(_dialog(tx.request, ok), CALLER, CALLER.host)
    assert core.ack_handlers[0](caller.ack(tx.request, ok), CALLER)
    assert [(c, a) for _, _, c, a in media.commands] == [("play media",
                                                          {"file": "echo-test-intro"})]
    assert glue.media_event(uuid, ev.MediaEvent(str(leg), "played"))
    assert [c for _, _, c, _ in media.commands] == ["play media", "echo"]
    assert not glue.media_event("no-such-call", ev.MediaEvent(str(leg), "played"))
    core.routes[("BYE", True)](FakeServerTransaction(caller.request("BYE")),
                               caller.request("BYE"))
    assert media.released == [(uuid, None)]
    assert glue.calls.get(uuid) is None


def test_a_seam_that_cannot_host_refuses_as_before() -> None:
    glue, core = b2bua(DirectMedia())
    tx = call(glue, core, "9196")
    assert tx.responses[-1].status == 488
    tx = call(glue, core, "*98")
    assert tx.responses[-1].status == 480


def _dialog(request: Request, ok: Response) -> Any:
    from softswitch.sip.dialog import Dialog
    dialog = Dialog.from_uac(request, ok, peer=CALLER)
    dialog.receive_response(ok)
    return dialog
