"""A pjsua2 softphone for integration tests, run in its own process.

`Phone.start(...)` spawns `tests/support/phone_agent.py` and talks to it with
one JSON object per line (see that module for the protocol). Every wait has a
timeout and `close()` kills the child if it does not leave at once, so a phone
never hangs a test.

    with Phone.start("1001", "1001pass", server.udp_port, log_dir=tmp_path) as phone:
        assert phone.register() == 200
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from tests.support.server import ROOT

AGENT = Path(__file__).resolve().with_name("phone_agent.py")

Event = dict[str, Any]


class PhoneError(Exception):
    """The phone did not do what was asked in time; carries its log's tail."""


class Phone:
    def __init__(self, process: subprocess.Popen[str], user: str, log_path: Path,
                 pjsua_log_path: Path) -> None:
        self.process = process
        self.user = user
        self.log_path = log_path
        self.pjsua_log_path = pjsua_log_path
        self.events: list[Event] = []
        self.sip_port = 0
        self._cond = threading.Condition()
        self._next_id = 1
        self._eof = False
        self._reader = threading.Thread(target=self._read, name=f"phone-{user}", daemon=True)
        self._reader.start()

    # -- start and stop -----------------------------------------------------------

    @classmethod
    def start(cls, user: str, password: str, server_port: int, transport: str = "udp",
              instance: str | None = None, *, domain: str = "pbx.example.com",
              expires: int = 300, log_dir: Path | None = None, wait: bool = True,
              timeout: float = 15.0, tls_cert: Path | None = None,
              tls_key: Path | None = None, mwi: bool = False, bind: str = "127.0.0.1",
              server_host: str = "127.0.0.1", netns: str | None = None) -> Phone:
        """Spawn a phone for `user`; with `wait`, return once it is ready.

        `domain` is the host of the account's URI (`sip:user@domain`);
        `instance` (`<urn:uuid:...>`) turns on RFC 5626 +sip.instance/reg-id.
        The phone's stderr and pjsua's own log (every SIP message) go to
        `log_dir`, or a temporary file. With `netns` the phone runs inside
        that network namespace (`ip netns exec`), bound to `bind`, and
        registers with `server_host`.
        """
        if log_dir is None:
            import tempfile
            log_dir = Path(tempfile.mkdtemp(prefix="phone-"))
        log_dir.mkdir(parents=True, exist_ok=True)
        stem = f"phone-{user}-{time.monotonic_ns()}"
        log_path = log_dir / f"{stem}.log"
        pjsua_log_path = log_dir / f"{stem}.pjsua.log"
        cmd = [sys.executable, str(AGENT), "--user", user, "--password", password,
               "--server-port", str(server_port), "--transport", transport,
               "--domain", domain, "--expires", str(expires),
               "--log", str(pjsua_log_path)]
        if instance is not None:
            cmd += ["--instance", instance]
        if mwi:
            cmd += ["--mwi"]
        if bind != "127.0.0.1" or server_host != "127.0.0.1":
            cmd += ["--bind", bind, "--server-host", server_host]
        if netns is not None:
            cmd = ["ip", "netns", "exec", netns, *cmd]
        if tls_cert is not None and tls_key is not None:
            cmd += ["--tls-cert", str(tls_cert), "--tls-key", str(tls_key)]
        with log_path.open("ab") as stderr:
            process = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, stderr=stderr, text=True,
                                       bufsize=1)
        phone = cls(process, user, log_path, pjsua_log_path)
        if wait:
            phone.wait_ready(timeout)
        return phone

    def wait_ready(self, timeout: float = 15.0) -> int:
        """Wait for the `ready` event; return the local SIP port."""
        self.sip_port = int(self.wait_event("ready", timeout, since=0)["sip_port"])
        return self.sip_port

    def close(self, timeout: float = 3.0) -> None:
        """Ask the child to quit; kill it if it has not gone within `timeout`."""
        if self.process.poll() is None:
            try:
                self.send("quit")
            except PhoneError:
                pass
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass

    def kill(self) -> None:
        """End the phone at once, as a crashed device would (no unregister)."""
        self.process.kill()
        self.process.wait()

    def __enter__(self) -> Phone:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the pipe -------------------------------------------------------------------

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            with self._cond:
                self.events.append(event)
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def mark(self) -> int:
        """A cursor: `wait_event(..., since=phone.mark())` sees only later events."""
        with self._cond:
            return len(self.events)

    def send(self, cmd: str, **fields: Any) -> int:
        """Send one command; return its id (its `result` event carries it)."""
        with self._cond:
            ident = self._next_id
            self._next_id += 1
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(json.dumps({"cmd": cmd, "id": ident, **fields}) + "\n")
            self.process.stdin.flush()
        except (BrokenPipeError, OSError, ValueError) as exc:
            raise PhoneError(f"phone {self.user} is gone: {exc}\n{self.log()}") from exc
        return ident

    def command(self, cmd: str, timeout: float = 5.0, **fields: Any) -> Event:
        """Send a command and wait for its result; raise PhoneError if it failed."""
        since = self.mark()
        ident = self.send(cmd, **fields)
        result = self.wait_event("result", timeout, since=since,
                                 where=lambda e: e.get("id") == ident)
        if not result.get("ok"):
            raise PhoneError(f"{cmd} failed: {result.get('error')}")
        return result

    def wait_event(self, name: str, timeout: float = 10.0, *, since: int | None = None,
                   where: Callable[[Event], bool] | None = None) -> Event:
        """The first event called `name` (from index `since`, default: any)
        that satisfies `where`; PhoneError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        start = since or 0
        with self._cond:
            while True:
                for event in self.events[start:]:
                    if event.get("event") == name and (where is None or where(event)):
                        return event
                    if event.get("event") == "fatal":
                        raise PhoneError(f"phone {self.user} failed: {event.get('error')}\n"
                                         f"{self.log()}")
                start = len(self.events)
                left = deadline - time.monotonic()
                if left <= 0 or self._eof:
                    break
                self._cond.wait(left)
        state = "exited" if self._eof else f"no {name!r} event after {timeout}s"
        raise PhoneError(f"phone {self.user}: {state}; events: {self.events[-5:]}\n{self.log()}")

    def events_named(self, name: str) -> list[Event]:
        with self._cond:
            return [e for e in self.events if e.get("event") == name]

    def log(self, chars: int = 3000) -> str:
        """The tails of the phone's stderr and of pjsua's log (the SIP messages)."""
        parts = []
        for path in (self.log_path, self.pjsua_log_path):
            try:
                parts.append(f"--- {path.name} ---\n{path.read_text(errors='replace')[-chars:]}")
            except OSError:
                pass
        return "\n".join(parts)

    # -- registration -------------------------------------------------------------------

    def register(self, timeout: float = 10.0) -> int:
        """REGISTER (digest auth done by pjsua); return the final status code."""
        since = self.mark()
        self.command("register", timeout)
        return int(self.wait_event("reg_state", timeout, since=since)["code"])

    def unregister(self, timeout: float = 10.0) -> int:
        """REGISTER with Expires: 0 for this phone's contact; return the final code."""
        since = self.mark()
        self.command("unregister", timeout)
        return int(self.wait_event("reg_state", timeout, since=since)["code"])

    @property
    def reg_state(self) -> Event | None:
        states = self.events_named("reg_state")
        return states[-1] if states else None

    @property
    def contact(self) -> str | None:
        """This phone's Contact URI as the registrar's last 200 listed it.

        Over TCP its port is the connection's, not `sip_port`.
        """
        for state in reversed(self.events_named("reg_state")):
            if state.get("contact"):
                return str(state["contact"])
        return None

    @property
    def contact_hostport(self) -> str:
        """The host:port this phone sends REGISTERs from (its Contact's)."""
        for state in reversed(self.events_named("reg_state")):
            if state.get("sent_by"):
                return str(state["sent_by"])
        return f"127.0.0.1:{self.sip_port}"

    # -- calls (the agent implements call/answer/hangup/hold/stats) ---------------------------

    def call(self, uri: str, timeout: float = 5.0) -> int:
        """Start an INVITE to `uri`; return the phone's number for the call."""
        return int(self.command("call", timeout, uri=uri)["call"])

    def answer(self, call: int, code: int = 200, timeout: float = 5.0) -> None:
        self.command("answer", timeout, call=call, code=code)

    def hangup(self, call: int | None = None, timeout: float = 5.0) -> None:
        """Hang up one call, or every call with `call=None`."""
        self.command("hangup", timeout, call=call)

    def hold(self, call: int, timeout: float = 5.0) -> None:
        """Put `call` on hold: a re-INVITE with an a=sendonly offer."""
        self.command("hold", timeout, call=call)

    def unhold(self, call: int, timeout: float = 5.0) -> None:
        """Resume `call`: a re-INVITE with an a=sendrecv offer."""
        self.command("unhold", timeout, call=call)

    def dtmf(self, call: int, digits: str, timeout: float = 5.0) -> None:
        """Send `digits` in `call` as RFC 4733 telephone-events."""
        self.command("dtmf", timeout, call=call, digits=digits)

    def transfer(self, call: int, uri: str, timeout: float = 5.0) -> None:
        """Blind-transfer the other party of `call` to `uri` (REFER)."""
        self.command("transfer", timeout, call=call, uri=uri)

    def transfer_replaces(self, call: int, other: int, timeout: float = 5.0) -> None:
        """Attended transfer: connect the party of `call` with that of `other`."""
        self.command("transfer_replaces", timeout, call=call, other=other)

    def play(self, call: int, wav: Path, timeout: float = 5.0) -> int:
        """Stream `wav` (8 kHz mono) into `call` once; return a cursor for `wait_played`."""
        since = self.mark()
        self.command("play", timeout, call=call, wav=str(wav))
        return since

    def wait_played(self, call: int, since: int, timeout: float = 15.0) -> None:
        self.wait_event("played", timeout, since=since, where=lambda e: e["call"] == call)

    def record(self, call: int, wav: Path, timeout: float = 5.0) -> None:
        """Record what `call` receives into `wav`, until `stop_record`."""
        self.command("record", timeout, call=call, wav=str(wav))

    def stop_record(self, call: int, wav: Path, timeout: float = 5.0) -> Path:
        """Stop recording `call`; return `wav` once its file is complete."""
        since = self.mark()
        self.command("stop_record", timeout, call=call, wav=str(wav))
        self.wait_event("recorded", timeout, since=since, where=lambda e: e["call"] == call)
        return wav

    def stats(self, call: int, timeout: float = 5.0) -> Event:
        """RTP statistics of the call's audio stream (getStreamStat/getStreamInfo)."""
        return self.command("stats", timeout, call=call)

    def wait_call_state(self, call: int, state: str, timeout: float = 10.0,
                        since: int = 0) -> Event:
        """Wait until `call` reaches `state`: pjsua's state text ("EARLY",
        "CONFIRMED", "DISCONNECTED"...); the event also has the last status
        code and reason."""
        return self.wait_event("call_state", timeout, since=since,
                               where=lambda e: e["call"] == call and e["state"] == state)


def start_phones(specs: Iterable[dict[str, Any]], timeout: float = 15.0) -> list[Phone]:
    """Start several phones in parallel (each a `Phone.start` kwargs dict)."""
    phones: list[Phone] = []
    try:
        for spec in specs:
            phones.append(Phone.start(**spec, wait=False))
        for phone in phones:
            phone.wait_ready(timeout)
    except BaseException:
        for phone in phones:
            phone.close()
        raise
    return phones


def registered_phones(server_port: int, users: Iterable[str], log_dir: Path) -> list[Phone]:
    """Phones for `users` (password USERpass), started in parallel and registered."""
    phones = start_phones([dict(user=u, password=f"{u}pass", server_port=server_port,
                                log_dir=log_dir) for u in users])
    try:
        for phone in phones:
            code = phone.register()
            if code != 200:
                raise PhoneError(f"phone {phone.user} could not register: {code}")
    except BaseException:
        for phone in phones:
            phone.close()
        raise
    return phones


def answered_call(caller: Phone, callee: Phone, uri: str) -> tuple[int, int]:
    """`caller` calls `uri`, `callee` answers; both numbers once the call is confirmed."""
    since = callee.mark()
    call = caller.call(uri)
    incoming = int(callee.wait_event("incoming_call", 10, since=since)["call"])
    callee.answer(incoming, 200)
    caller.wait_call_state(call, "CONFIRMED", 10)
    return call, incoming

