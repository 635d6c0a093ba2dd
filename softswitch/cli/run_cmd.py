"""`softswitch run`: start the server in the foreground."""

from __future__ import annotations

import gc
import signal
import sys
from pathlib import Path
from typing import Any

import click

from softswitch.config import ConfigError, ListenAddress, load_config

DEFAULT_CONFIG = Path("conf/softswitch.yaml")


def _listen(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> list[ListenAddress]:
    try:
        return [ListenAddress.parse(v) for v in values]
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, envvar="SOFTSWITCH_CONFIG", show_envvar=True,
              help="Configuration file [default: conf/softswitch.yaml].")
@click.option("--listen", multiple=True, callback=_listen, metavar="PROTO:HOST:PORT",
              help="Listen on udp:, tcp: or tls:HOST:PORT; repeatable; overrides the config.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for every file the server writes [default: from the config, 'data'].")
@click.option("--log-format", type=click.Choice(["console", "json"]), default=None)
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default=None)
def run(config_path: Path | None, listen: list[ListenAddress], data_dir: Path | None,
        log_format: str | None, log_level: str | None) -> None:
    """Run the softswitch in the foreground until SIGTERM or Ctrl-C."""
    from softswitch import logs

    if config_path is None and DEFAULT_CONFIG.exists():
        config_path = DEFAULT_CONFIG
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        for line in exc.errors:
            click.echo(line, err=True)
        sys.exit(2)  # exitcodes.USAGE, without importing the CLI package's modules first
    s = config.settings
    logs.configure(log_format or s.log.format, log_level or s.log.level)
    log = logs.get_logger("softswitch")

    from twisted.internet import reactor as _reactor

    reactor: Any = _reactor

    from softswitch.cli import exitcodes
    from softswitch.datadir import DataDirBusy
    from softswitch.directory import DirectoryError
    from softswitch.routing import DialplanError
    from softswitch.service import build_application

    data = data_dir if data_dir is not None else Path(s.data_dir)
    try:
        app = build_application(config, data, listen or None, reactor)
    except DataDirBusy as exc:
        click.echo(f"error: {exc}; stop it first (softswitch.pid holds its pid), or give "
                   "this one its own --data-dir", err=True)
        sys.exit(exitcodes.IN_USE)
    except OSError as exc:
        click.echo(f"error: cannot use data dir {data}: {exc}", err=True)
        sys.exit(exitcodes.FAILED)
    try:
        app.startService()
    except (DirectoryError, DialplanError) as exc:
        for line in exc.errors:
            log.error("start_failed", error=line)
        app.lock.release()  # no pid file left behind for the CLI to wonder about
        sys.exit(exitcodes.FAILED)
    except Exception as exc:  # noqa: BLE001 - a bind error and the like: say it and leave
        log.error("start_failed", error=str(exc))
        app.lock.release()
        sys.exit(exitcodes.FAILED)

    # Everything loaded at start (modules, directory, dialplan, bindings) lives
    # as long as the process: move it out of the collector's way, so full
    # collections under load scan only what the traffic creates.
    gc.collect()
    gc.freeze()
    # Young collections every 100,000 allocations instead of 700: a call or
    # a registration makes a few thousand short-lived objects, and the
    # default thresholds ran a collection (and promoted the survivors toward
    # costly full ones) several times per call. Measured with bench/calls.py:
    # p99 post-dial delay at 200 calls/s 540 ms -> 20 ms, CPU 60% -> 51%.
    gc.set_threshold(100_000, 50, 100)

    def on_hup(signum: int, frame: object) -> None:
        reactor.callFromThread(app.reload)

    stopping = False

    def on_stop(signum: int, frame: object) -> None:
        # A second SIGTERM or Ctrl-C (from a shell that signals the whole
        # process group, say) must not stop the reactor twice.
        # The stop is scheduled before anything is logged: the log line is
        # the part that can go wrong (see logs.StreamLogger), the stop must not.
        nonlocal stopping
        if not stopping:
            stopping = True
            reactor.callFromThread(reactor.stop)
            log.info("signal", signal=signal.Signals(signum).name)

    signal.signal(signal.SIGHUP, on_hup)
    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    reactor.addSystemEventTrigger("before", "shutdown", app.stopService)
    log.info("started", config=str(config_path) if config_path else "built-in defaults",
             data_dir=str(data))
    reactor.run(installSignalHandlers=False)
