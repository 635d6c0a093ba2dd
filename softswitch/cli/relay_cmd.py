"""`softswitch relay`: the media relay process (rtpengine's ng protocol on a UDP control socket).

`rtpmedia.relay` is imported inside the command, so that the signalling
process, which imports this package, never loads it (nor numpy).
"""

from __future__ import annotations

import ipaddress
import signal
import sys
from pathlib import Path
from typing import Any

import click


def parse_udp(text: str) -> tuple[str, int]:
    """`udp:HOST:PORT` (or `HOST:PORT`; IPv6 as `udp:[::1]:2223`) to (host, port)."""
    rest = text[4:] if text.lower().startswith("udp:") else text
    if rest.startswith("["):
        host, sep, port = rest[1:].partition("]:")
    else:
        host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected udp:HOST:PORT, got {text!r}")
    _address(host)
    return host, int(port)


def parse_host_port(text: str) -> tuple[str, int]:
    """`HOST:PORT` (a name or an IP; IPv6 as `[::1]:9060`) to (host, port)."""
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
    else:
        host, sep, port = text.rpartition(":")
    if not sep or not host or ":" in host and not text.startswith("[") \
            or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def parse_ports(text: str) -> tuple[int, int]:
    low, sep, high = text.partition("-")
    if not sep or not low.isdigit() or not high.isdigit():
        raise ValueError(f"expected LOW-HIGH, got {text!r}")
    lo, hi = int(low), int(high)
    if not 1024 <= lo < hi <= 65535:
        raise ValueError(f"port range {text} must lie within 1024-65535, low < high")
    return lo, hi


def _address(text: str) -> str:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an IP address") from None
    return text


def _convert(fn: Any) -> Any:
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value is None:
            return None
        try:
            return fn(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
    return callback


@click.command()
@click.option("--control", default="udp:127.0.0.1:2223", show_default=True,
              callback=_convert(parse_udp), metavar="udp:HOST:PORT",
              help="Where the ng control protocol listens.")
@click.option("--ports", default="16384-32767", show_default=True,
              callback=_convert(parse_ports), metavar="LOW-HIGH",
              help="The UDP ports for media (pairs: RTP even, RTCP odd).")
@click.option("--advertise", required=True, callback=_convert(_address), metavar="IP",
              help="The address written into SDP (c=, o= with replace-origin).")
@click.option("--listen-address", default=None, callback=_convert(_address), metavar="IP",
              help="The address media sockets bind to [default: --advertise].")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("."), show_default=True,
              help="Where the relay keeps its calls (relay-calls.sqlite).")
@click.option("--media-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the media the relay plays and records lives (prompts/, greetings/, "
                   "voicemail/, recordings/; the softswitch's data dir) [default: --data-dir].")
@click.option("--notify", default=None, callback=_convert(parse_udp), metavar="udp:HOST:PORT",
              help="Whom to tell when the relay ends a call (media timeout).")
@click.option("--silence-timeout", type=click.FloatRange(min=1), default=60.0, show_default=True,
              help="Seconds without media before a call ends.")
@click.option("--hold-timeout", type=click.FloatRange(min=1), default=3600.0, show_default=True,
              help="The same for a call on hold (sendonly/inactive).")
@click.option("--no-kernel", is_flag=True, default=False,
              help="Forward in userspace only, even where the kernel path works "
                   "(to measure it, or to keep per-packet health figures).")
@click.option("--log-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Append the log to this file as well (it outlives the process that started "
                   "the relay; the embedded relay writes DATA/relay/relay.log).")
@click.option("--hep", default=None, callback=_convert(parse_host_port), metavar="HOST:PORT",
              help="A Homer collector (HEP v3): each RTCP report relayed goes there as JSON.")
@click.option("--hep-id", type=click.IntRange(0, 0xFFFFFFFF), default=0, show_default=True,
              help="The capture agent id in HEP packets.")
@click.option("--hep-auth-key", default="", envvar="SOFTSWITCH_HEP_AUTH_KEY", metavar="KEY",
              help="The collector's auth key (better in $SOFTSWITCH_HEP_AUTH_KEY than on "
                   "the command line, where ps shows it).")
@click.option("--log-format", type=click.Choice(["console", "json"]), default="console")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
              default="info")
def relay(control: tuple[str, int], ports: tuple[int, int], advertise: str,
          listen_address: str | None, data_dir: Path, media_dir: Path | None,
          notify: tuple[str, int] | None, silence_timeout: float, hold_timeout: float,
          no_kernel: bool, log_file: Path | None, hep: tuple[str, int] | None, hep_id: int,
          hep_auth_key: str, log_format: str, log_level: str) -> None:
    """Run the media relay: anchors RTP/RTCP, speaks rtpengine's ng protocol."""
    from softswitch import logs

    copy = None
    if log_file is not None:
        try:
            copy = open(log_file, "a", encoding="utf-8")  # noqa: SIM115 - open for the process's life
        except OSError as exc:
            raise click.ClickException(f"cannot open the log file {log_file}: {exc}") from None
    logs.configure(log_format, log_level, copy=copy)
    log = logs.get_logger("relay")

    from twisted.internet import reactor as _reactor

    from rtpmedia.relay.service import Relay, RelaySettings

    reactor: Any = _reactor
    settings = RelaySettings(control=control, ports=ports, advertise=advertise,
                             listen=listen_address or advertise, data_dir=data_dir,
                             media_dir=media_dir or data_dir, notify=notify,
                             silence_timeout=silence_timeout, hold_timeout=hold_timeout,
                             hep=hep, hep_id=hep_id, hep_auth_key=hep_auth_key)
    try:
        if no_kernel:
            from rtpmedia.relay.fastpath import NoFastPath

            service = Relay(settings, reactor, (NoFastPath(), "--no-kernel"))
        else:
            service = Relay(settings, reactor)
        service.startService()
    except Exception as exc:  # noqa: BLE001 - a relay that cannot start says why and exits
        log.error("start_failed", error=str(exc))
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)  # exitcodes.FAILED

    stopping = False

    def on_stop(signum: int, frame: object) -> None:
        nonlocal stopping
        if not stopping:
            stopping = True
            reactor.callFromThread(reactor.stop)

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    reactor.run(installSignalHandlers=False)
