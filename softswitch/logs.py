"""Structured logs (structlog): readable on a terminal, JSON lines when asked.

Lines about a SIP message carry `call_id`, `method` or `status`, `transport`
and `peer` (see `message_fields`). The level filter is applied before the
event dict is built, so debug lines on the hot path cost a method call only.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import Any, TextIO

import structlog

from softswitch.sip.message import Message, Request
from softswitch.sip.peer import Peer

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO,
           "warning": logging.WARNING, "error": logging.ERROR}


class StreamLogger:
    """Writes each rendered line to a stream, and never raises into the caller.

    The stream is often a pipe (`softswitch run | tee server.log`). When its
    reader dies (Ctrl-C reaches `tee` too) every write fails with EPIPE; a log
    call raising there would escape into the reactor or a signal handler and
    leave a server that answers SIP but can no longer be stopped. So the
    first failed write points the descriptor at /dev/null: later lines, and
    the interpreter's own flush at exit, then go nowhere instead of failing.
    """

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.lost = False  # the stream failed once; lines are discarded since
        self._lock = threading.Lock()

    def msg(self, message: str) -> None:
        with self._lock:
            try:
                self.stream.write(message + "\n")
                self.stream.flush()
            except (OSError, ValueError):  # EPIPE, EIO, ENOSPC; ValueError: closed
                self._give_up()

    log = debug = info = warn = warning = msg
    fatal = failure = err = error = critical = exception = msg

    def _give_up(self) -> None:
        self.lost = True
        try:
            fd = self.stream.fileno()
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, fd)
            os.close(devnull)
            # Drop what the failed write left in the buffer: it goes to /dev/null now.
            self.stream.flush()
        except (OSError, ValueError):
            pass


class TeeLogger:
    """Each line to two streams, each given up on its own (a dead parent's pipe, a full disk)."""

    def __init__(self, first: StreamLogger, second: StreamLogger) -> None:
        self.first = first
        self.second = second

    def msg(self, message: str) -> None:
        self.first.msg(message)
        self.second.msg(message)

    log = debug = info = warn = warning = msg
    fatal = failure = err = error = critical = exception = msg


class _StreamLoggerFactory:
    def __init__(self, stream: TextIO, copy: TextIO | None = None) -> None:
        self.logger: StreamLogger | TeeLogger = StreamLogger(stream)
        if copy is not None:
            self.logger = TeeLogger(self.logger, StreamLogger(copy))

    def __call__(self, *args: Any) -> StreamLogger | TeeLogger:
        return self.logger


def configure(fmt: str = "console", level: str = "info", stream: TextIO | None = None,
              copy: TextIO | None = None) -> None:
    """Log lines to `stream` (stderr), and to `copy` as well when given (a log file)."""
    out = stream or sys.stderr
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if fmt == "json":
        processors += [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    else:
        processors.append(structlog.dev.ConsoleRenderer(colors=out.isatty()))
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=_StreamLoggerFactory(out, copy),
        cache_logger_on_first_use=True,
    )


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)


def message_fields(message: Message, peer: Peer) -> dict[str, Any]:
    """The fields every log line about `message` carries."""
    fields: dict[str, Any] = {"transport": peer.transport, "peer": f"{peer.host}:{peer.port}"}
    call_id = message.get("call-id")
    if call_id is not None:
        fields["call_id"] = call_id
    if isinstance(message, Request):
        fields["method"] = message.method
    else:
        fields["status"] = message.status  # type: ignore[attr-defined]
        cseq = message.get("cseq")
        if cseq:
            fields["method"] = cseq.partition(" ")[2].strip()
    return fields
