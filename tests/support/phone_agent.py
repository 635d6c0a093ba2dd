"""A pjsua2 softphone in its own process, driven by `tests.support.phone`.

pjsua2 must not live in pytest's process: its objects abort the process when
they are destroyed in the wrong order, so each phone is one child process with
one `Endpoint`, and it leaves with `os._exit`.

Protocol, one JSON object per line:
- stdin, commands: `{"cmd": "register", "id": 3, ...}`. Every command is
  answered by `{"event": "result", "id": 3, "ok": true, ...}` (or `"ok": false`
  with `"error"`); what follows from it (a registration, a call) comes later as
  events.
- stdout, events: `ready` (the local SIP port), `reg_state` (code, reason,
  expires, active), `incoming_call`, `call_state`, `media_state` (active, and
  the audio's status: ACTIVE, LOCAL_HOLD, REMOTE_HOLD...), `played` (a `play`
  command's WAV reached its end), `recorded` (a `stop_record` command's WAV is
  complete on disk), `result`.

Everything pjsua2 runs on the main thread (`threadCnt=0`, `mainThreadOnly`),
which pumps `libHandleEvents` and executes commands between pumps; a reader
thread only turns stdin lines into a queue. stdout is kept for the protocol:
file descriptor 1 is pointed at stderr so that nothing the C library prints can
break a line of JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import re
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

import pjsua2 as pj

PUMP_MS = 10


class Output:
    """The event stream to the parent (main thread only)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def emit(self, event: str, **fields: Any) -> None:
        self.stream.write(json.dumps({"event": event, "t": time.monotonic(), **fields}) + "\n")
        self.stream.flush()


_VIA = re.compile(r"^(?:via|v)[ \t]*:[ \t]*SIP/2\.0/\w+[ \t]+([^;, \t\r\n]+)",
                  re.IGNORECASE | re.MULTILINE)
_CONTACT = re.compile(r"^(?:contact|m)[ \t]*:(.*)$", re.IGNORECASE | re.MULTILINE)


def _own_contact(response: str) -> tuple[str | None, str | None]:
    """The Via sent-by of a REGISTER's response and, among its Contacts, ours.

    Over TCP pjsua puts the connection's local port in the Contact, not the
    listener's, so the parent cannot guess it: the contact that shares the
    Via's host:port is this phone's.
    """
    via = _VIA.search(response)
    if via is None:
        return None, None
    sent_by = via.group(1)
    for line in _CONTACT.findall(response):
        for uri in re.findall(r"<([^>]*)>", line):
            hostport = uri.partition("@")[2].split(";")[0]
            if hostport.lower() == sent_by.lower():
                return sent_by, uri
    return sent_by, None


class PhoneAccount(pj.Account):
    def __init__(self, agent: Agent) -> None:
        super().__init__()
        self.agent = agent

    def onRegState(self, prm: pj.OnRegStateParam) -> None:  # noqa: N802 - pjsua2's name
        info = self.getInfo()
        sent_by, contact = _own_contact(prm.rdata.wholeMsg if prm.rdata else "")
        self.agent.out.emit("reg_state", code=prm.code, reason=prm.reason,
                            expires=prm.expiration, active=bool(info.regIsActive),
                            sent_by=sent_by, contact=contact)

    def onMwiInfo(self, prm: pj.OnMwiInfoParam) -> None:  # noqa: N802 - pjsua2's name
        # Solicited (in a subscription) and unsolicited message-summary NOTIFYs both land here.
        whole = prm.rdata.wholeMsg if prm.rdata else ""
        head, _, body = whole.replace("\r\n", "\n").partition("\n\n")
        state = next((line.split(":", 1)[1].strip() for line in head.split("\n")
                      if line.lower().startswith("subscription-state:")), "")
        self.agent.out.emit("mwi", body=body, subscription_state=state,
                            cseq=next((line.split(":", 1)[1].strip() for line in head.split("\n")
                                       if line.lower().startswith("cseq:")), ""))

    def onIncomingCall(self, prm: pj.OnIncomingCallParam) -> None:  # noqa: N802
        call = PhoneCall(self.agent, self, prm.callId)
        call_id = self.agent.add_call(call)
        info = call.getInfo()
        self.agent.out.emit("incoming_call", call=call_id, remote_uri=info.remoteUri,
                            sip_call_id=info.callIdString)


# pjsua_call_media_status, as the media_state event names it.
_MEDIA_STATUS = {
    pj.PJSUA_CALL_MEDIA_NONE: "NONE",
    pj.PJSUA_CALL_MEDIA_ACTIVE: "ACTIVE",
    pj.PJSUA_CALL_MEDIA_LOCAL_HOLD: "LOCAL_HOLD",
    pj.PJSUA_CALL_MEDIA_REMOTE_HOLD: "REMOTE_HOLD",
    pj.PJSUA_CALL_MEDIA_ERROR: "ERROR",
}


class PhoneCall(pj.Call):
    def __init__(self, agent: Agent, account: pj.Account, pj_call_id: int = pj.PJSUA_INVALID_ID
                 ) -> None:
        super().__init__(account, pj_call_id)
        self.agent = agent
        self.number = 0  # set by Agent.add_call

    def onCallState(self, prm: pj.OnCallStateParam) -> None:  # noqa: N802
        info = self.getInfo()
        self.agent.out.emit("call_state", call=self.number, state=info.stateText,
                            code=info.lastStatusCode, reason=info.lastReason,
                            disconnected=info.state == pj.PJSIP_INV_STATE_DISCONNECTED)
        if info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            # Dropped later, on the main loop, not inside pjsua's own callback.
            self.agent.ended.append(self.number)

    def onCallMediaState(self, prm: pj.OnCallMediaStateParam) -> None:  # noqa: N802
        info = self.getInfo()
        active = False
        statuses = [_MEDIA_STATUS.get(m.status, str(m.status)) for m in info.media
                    if m.type == pj.PJMEDIA_TYPE_AUDIO]
        for m in info.media:
            if m.type == pj.PJMEDIA_TYPE_AUDIO and m.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                active = True
                # Through the null sound device, so that the bridge keeps its
                # clock and RTP keeps flowing both ways (silence frames).
                audio = self.getAudioMedia(m.index)
                devices = self.agent.ep.audDevManager()
                devices.getCaptureDevMedia().startTransmit(audio)
                audio.startTransmit(devices.getPlaybackDevMedia())
        self.agent.out.emit("media_state", call=self.number, active=active,
                            status=statuses[0] if statuses else "NONE")


class Agent:
    def __init__(self, opts: argparse.Namespace, out: Output) -> None:
        self.opts = opts
        self.out = out
        self.ep = pj.Endpoint()
        self.account: PhoneAccount | None = None
        self.calls: dict[int, PhoneCall] = {}
        self.ended: list[int] = []
        self._next_call = 1
        # WAV players and recorders per call number: kept referenced, since
        # dropping the SWIG object is what stops and destroys it.
        self.players: dict[int, pj.AudioMediaPlayer] = {}
        self.recorders: dict[int, pj.AudioMediaRecorder] = {}
        self.finishing: list[tuple[float, int, str]] = []  # (when, call, path) to report
        self.handlers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "register": self.register,
            "unregister": self.unregister,
            "call": self.call,
            "answer": self.answer,
            "hangup": self.hangup,
            "stats": self.stats,
            "hold": self.hold,
            "dtmf": self.dtmf,
            "transfer": self.transfer,
            "transfer_replaces": self.transfer_replaces,
            "unhold": self.unhold,
            "play": self.play,
            "record": self.record,
            "stop_record": self.stop_record,
        }

    # -- start ------------------------------------------------------------------

    def start(self) -> int:
        self.ep.libCreate()
        cfg = pj.EpConfig()
        cfg.uaConfig.threadCnt = 0
        cfg.uaConfig.mainThreadOnly = True
        cfg.uaConfig.userAgent = "softswitch-test-phone"
        cfg.logConfig.consoleLevel = 0
        if self.opts.log:
            cfg.logConfig.filename = self.opts.log
            cfg.logConfig.level = 5
            cfg.logConfig.msgLogging = 1
        else:
            cfg.logConfig.level = 0
        cfg.medConfig.clockRate = 8000
        cfg.medConfig.noVad = True
        cfg.medConfig.sndAutoCloseTime = -1
        self.ep.libInit(cfg)
        self.ep.audDevManager().setNullDev()
        for codec in self.ep.codecEnum2():
            priority = {"PCMU/8000/1": 255, "PCMA/8000/1": 254}.get(codec.codecId, 0)
            self.ep.codecSetPriority(codec.codecId, priority)
        tcfg = pj.TransportConfig()
        tcfg.boundAddress = self.opts.bind
        tcfg.publicAddress = self.opts.bind
        tcfg.port = 0
        kind = {"tcp": pj.PJSIP_TRANSPORT_TCP, "tls": pj.PJSIP_TRANSPORT_TLS}.get(
            self.opts.transport, pj.PJSIP_TRANSPORT_UDP)
        if self.opts.transport == "tls" and self.opts.tls_cert:
            # pjsua's TLS listener needs a certificate; the server's test one does.
            tcfg.tlsConfig.certFile = self.opts.tls_cert
            tcfg.tlsConfig.privKeyFile = self.opts.tls_key
            tcfg.tlsConfig.verifyServer = False
        transport = self.ep.transportCreate(kind, tcfg)
        self.ep.libStart()
        # The account exists from the start, so that incoming calls reach it
        # whether or not the phone has registered.
        self.account = PhoneAccount(self)
        self.account.create(self.account_config())
        return int(self.ep.transportGetInfo(transport).localName.rsplit(":", 1)[1])

    def account_config(self) -> pj.AccountConfig:
        o = self.opts
        cfg = pj.AccountConfig()
        cfg.idUri = f"sip:{o.user}@{o.domain}"
        suffix = f";transport={o.transport}" if o.transport in ("tcp", "tls") else ""
        cfg.regConfig.registrarUri = f"sip:{o.server_host}:{o.server_port}{suffix}"
        cfg.regConfig.registerOnAdd = False
        cfg.regConfig.timeoutSec = o.expires
        # A refused REGISTER stays refused: no retry behind the test's back.
        cfg.regConfig.retryIntervalSec = 0
        cfg.sipConfig.authCreds.append(pj.AuthCredInfo("digest", "*", o.user, 0, o.password))
        nat = cfg.natConfig
        nat.iceEnabled = False
        nat.contactRewriteUse = 0
        nat.viaRewriteUse = 0
        nat.sdpNatRewriteUse = 0
        nat.udpKaIntervalSec = 0
        # pjsua's own RFC 5626 support adds ";ob" and, over UDP, no instance:
        # the device's instance goes into the Contact parameters instead.
        nat.sipOutboundUse = 0
        if o.instance:
            cfg.regConfig.contactParams = f';+sip.instance="{o.instance}"'
        cfg.mediaConfig.transportConfig.boundAddress = o.bind
        if o.mwi:
            # RFC 3842 SUBSCRIBE for message-summary, refreshed by pjsua.
            cfg.mwiConfig.enabled = True
            cfg.mwiConfig.expirationSec = 600
        return cfg

    # -- commands ---------------------------------------------------------------

    def register(self, cmd: dict[str, Any]) -> dict[str, Any]:
        assert self.account is not None
        self.account.setRegistration(True)
        return {}

    def unregister(self, cmd: dict[str, Any]) -> dict[str, Any]:
        assert self.account is not None
        self.account.setRegistration(False)
        return {}

    def add_call(self, call: PhoneCall) -> int:
        number = self._next_call
        self._next_call += 1
        call.number = number
        self.calls[number] = call
        return number

    def _call(self, cmd: dict[str, Any]) -> PhoneCall:
        call = self.calls.get(int(cmd["call"]))
        if call is None:
            raise ValueError(f"no call {cmd['call']}")
        return call

    def call(self, cmd: dict[str, Any]) -> dict[str, Any]:
        assert self.account is not None
        call = PhoneCall(self, self.account)
        number = self.add_call(call)
        prm = pj.CallOpParam(True)
        call.makeCall(str(cmd["uri"]), prm)
        return {"call": number}

    def answer(self, cmd: dict[str, Any]) -> dict[str, Any]:
        prm = pj.CallOpParam()
        prm.statusCode = int(cmd.get("code", 200))
        self._call(cmd).answer(prm)
        return {}

    def hangup(self, cmd: dict[str, Any]) -> dict[str, Any]:
        if cmd.get("call") is None:
            self.ep.hangupAllCalls()
            return {}
        prm = pj.CallOpParam()
        if cmd.get("code"):
            prm.statusCode = int(cmd["code"])
        self._call(cmd).hangup(prm)
        return {}

    def hold(self, cmd: dict[str, Any]) -> dict[str, Any]:
        # A re-INVITE offering a=sendonly (RFC 3264 8.4).
        self._call(cmd).setHold(pj.CallOpParam(True))
        return {}

    def dtmf(self, cmd: dict[str, Any]) -> dict[str, Any]:
        # RFC 4733 telephone-events (pjsua's default DTMF method).
        self._call(cmd).dialDtmf(str(cmd["digits"]))
        return {}

    def transfer(self, cmd: dict[str, Any]) -> dict[str, Any]:
        # A blind transfer: REFER with Refer-To (RFC 3515).
        self._call(cmd).xfer(str(cmd["uri"]), pj.CallOpParam(True))
        return {}

    def transfer_replaces(self, cmd: dict[str, Any]) -> dict[str, Any]:
        # An attended transfer: REFER whose Refer-To carries Replaces naming
        # our other call (RFC 3891, RFC 5589 7).
        other = self._call({"call": cmd["other"]})
        self._call(cmd).xferReplaces(other, pj.CallOpParam(True))
        return {}

    def unhold(self, cmd: dict[str, Any]) -> dict[str, Any]:
        # A re-INVITE offering a=sendrecv again.
        prm = pj.CallOpParam(True)
        prm.opt.flag = pj.PJSUA_CALL_UNHOLD
        self._call(cmd).reinvite(prm)
        return {}

    def _audio(self, call: PhoneCall) -> pj.AudioMedia:
        info = call.getInfo()
        for m in info.media:
            if m.type == pj.PJMEDIA_TYPE_AUDIO and m.status in (
                    pj.PJSUA_CALL_MEDIA_ACTIVE, pj.PJSUA_CALL_MEDIA_REMOTE_HOLD,
                    pj.PJSUA_CALL_MEDIA_LOCAL_HOLD):
                return call.getAudioMedia(m.index)
        raise ValueError(f"call {call.number} has no audio")

    def play(self, cmd: dict[str, Any]) -> dict[str, Any]:
        # Streams a WAV (8 kHz mono, the bridge's rate) into the call once;
        # `played` follows at its end.
        call = self._call(cmd)
        number = call.number
        agent = self

        class Player(pj.AudioMediaPlayer):  # type: ignore[misc]
            def onEof2(self) -> None:  # noqa: N802 - pjsua2's name
                agent.finishing.append((time.monotonic(), number, ""))

        self.players.pop(number, None)
        player = Player()
        player.createPlayer(str(cmd["wav"]), pj.PJMEDIA_FILE_NO_LOOP)
        player.startTransmit(self._audio(call))
        self.players[number] = player
        return {}

    def record(self, cmd: dict[str, Any]) -> dict[str, Any]:
        # What the call receives, into a WAV, until `stop_record`.
        call = self._call(cmd)
        recorder = pj.AudioMediaRecorder()
        recorder.createRecorder(str(cmd["wav"]))
        self._audio(call).startTransmit(recorder)
        self.recorders[call.number] = recorder
        return {}

    def stop_record(self, cmd: dict[str, Any]) -> dict[str, Any]:
        # The recorder finalises its WAV header in the bridge's clock thread
        # after it is destroyed: `recorded` is sent 0.3 s later (pjsua2.md).
        number = int(cmd["call"])
        if self.recorders.pop(number, None) is None:
            raise ValueError(f"call {number} is not recording")
        self.finishing.append((time.monotonic() + 0.3, number, str(cmd.get("wav", ""))))
        return {}

    def report_finished(self) -> None:
        now = time.monotonic()
        due = [item for item in self.finishing if item[0] <= now]
        self.finishing = [item for item in self.finishing if item[0] > now]
        for _, number, wav in due:
            if wav:
                self.out.emit("recorded", call=number, wav=wav)
            else:
                self.players.pop(number, None)
                self.out.emit("played", call=number)

    def stats(self, cmd: dict[str, Any]) -> dict[str, Any]:
        call = self._call(cmd)
        stat = call.getStreamStat(0)
        info = call.getStreamInfo(0)
        rtcp = stat.rtcp
        return {
            "codec": info.codecName,
            "remote_rtp": info.remoteRtpAddress,
            "rx_packets": rtcp.rxStat.pkt,
            "rx_loss": rtcp.rxStat.loss,
            "rx_dup": rtcp.rxStat.dup,
            "rx_reorder": rtcp.rxStat.reorder,
            "rx_jitter_mean_us": rtcp.rxStat.jitterUsec.mean,
            "rx_jitter_max_us": rtcp.rxStat.jitterUsec.max,
            "tx_packets": rtcp.txStat.pkt,
            "rtt_mean_us": rtcp.rttUsec.mean,
            "jbuf_avg_delay_ms": stat.jbuf.avgDelayMsec,
        }

    def execute(self, cmd: dict[str, Any]) -> None:
        handler = self.handlers.get(str(cmd.get("cmd")))
        try:
            if handler is None:
                raise ValueError(f"unknown command {cmd.get('cmd')!r}")
            fields = handler(cmd)
        except pj.Error as exc:
            self.out.emit("result", id=cmd.get("id"), ok=False, error=exc.info())
        except (ValueError, KeyError, TypeError) as exc:
            self.out.emit("result", id=cmd.get("id"), ok=False, error=str(exc))
        else:
            self.out.emit("result", id=cmd.get("id"), ok=True, **fields)

    # -- the loop -----------------------------------------------------------------

    def run(self, commands: queue.SimpleQueue[dict[str, Any] | None]) -> int:
        while True:
            self.ep.libHandleEvents(PUMP_MS)
            self.report_finished()
            while self.ended:
                self.calls.pop(self.ended.pop(), None)
            while True:
                try:
                    cmd = commands.get_nowait()
                except queue.Empty:
                    break
                if cmd is None or cmd.get("cmd") == "quit":
                    if cmd is not None:
                        self.out.emit("result", id=cmd.get("id"), ok=True)
                    return 0
                self.execute(cmd)


def _read_commands(stream: TextIO, commands: queue.SimpleQueue[dict[str, Any] | None]) -> None:
    for line in stream:
        line = line.strip()
        if not line:
            continue
        try:
            commands.put(json.loads(line))
        except json.JSONDecodeError:
            print(f"phone_agent: not JSON: {line!r}", file=sys.stderr)
    commands.put(None)  # the parent went away: leave


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", default="")
    parser.add_argument("--server-port", type=int, required=True)
    parser.add_argument("--transport", choices=["udp", "tcp", "tls"], default="udp")
    parser.add_argument("--tls-cert", default="")
    parser.add_argument("--tls-key", default="")
    parser.add_argument("--domain", default="pbx.example.com")
    parser.add_argument("--bind", default="127.0.0.1",
                        help="the address for SIP and RTP (one inside a network namespace)")
    parser.add_argument("--server-host", default="127.0.0.1", help="the registrar's address")
    parser.add_argument("--instance", default=None)
    parser.add_argument("--expires", type=int, default=300)
    parser.add_argument("--log", default=None)
    parser.add_argument("--mwi", action="store_true", help="subscribe to message-summary")
    opts = parser.parse_args()

    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    out = Output(protocol)
    commands: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
    threading.Thread(target=_read_commands, args=(sys.stdin, commands), daemon=True).start()
    code = 1
    try:
        agent = Agent(opts, out)
        out.emit("ready", sip_port=agent.start())
        code = agent.run(commands)
    except BaseException as exc:  # noqa: BLE001 - reported, then we leave
        try:
            out.emit("fatal", error=repr(exc))
        except OSError:
            pass
    # Never run pjsua2's destructors: they can abort (see the module docstring).
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
