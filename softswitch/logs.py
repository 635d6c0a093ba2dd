"""Structured logs (structlog): readable on a terminal, JSON lines when asked.

Lines about a SIP message carry `call_id`, `method` or `status`, `transport`
and `peer` (see `message_fields`). The level filter is applied before the
event dict is built, so debug lines on the hot path cost a method call only.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog

from softswitch.sip.message import Message, Request
from softswitch.sip.peer import Peer

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO,
           "warning": logging.WARNING, "error": logging.ERROR}


def configure(fmt: str = "console", level: str = "info", stream: TextIO | None = None) -> None:
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
        logger_factory=structlog.PrintLoggerFactory(out),
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
